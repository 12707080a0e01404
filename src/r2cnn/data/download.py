"""Download Quick, Draw! files from Google's public bucket: resumable (HTTP Range into a ``.part`` file),
size-checked (Content-Length), with a progress bar.

Layout under the base URL (default :data:`BASE_URL`, the bucket's ``full/`` folder), one file per class, class
names URL-encoded (spaces as ``%20``):

- ``simplified/<class>.ndjson`` (coordinates 0..255, RDP-simplified), ``raw/<class>.ndjson`` (screen pixels,
  timestamps), ``binary/<class>.bin`` (the simplified drawings, packed);
- ``../sketchrnn/<class>.npz`` (sketch-rnn stroke-3, the paper's 70K/2.5K/2.5K split).

Files are saved as ``OUT/<class>.<ext>`` so that ``r2cnn prepare OUT`` takes the class from the file stem.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

from r2cnn.errors import R2CNNError

BASE_URL = "https://storage.googleapis.com/quickdraw_dataset/full/"
# format -> (path under BASE_URL, file extension)
LAYOUT = {
    "simplified": ("simplified/{}.ndjson", ".ndjson"),
    "raw": ("raw/{}.ndjson", ".ndjson"),
    "bin": ("binary/{}.bin", ".bin"),
    "npz": ("../sketchrnn/{}.npz", ".npz"),
}
_BLOCK = 1 << 20
_TIMEOUT = 60

# The 345 Quick, Draw! categories (Google's categories.txt order).
QUICKDRAW_CLASSES: list[str] = [
    'The Eiffel Tower', 'The Great Wall of China', 'The Mona Lisa', 'aircraft carrier', 'airplane', 'alarm clock',
    'ambulance', 'angel', 'animal migration', 'ant', 'anvil', 'apple', 'arm', 'asparagus', 'axe', 'backpack',
    'banana', 'bandage', 'barn', 'baseball', 'baseball bat', 'basket', 'basketball', 'bat', 'bathtub', 'beach',
    'bear', 'beard', 'bed', 'bee', 'belt', 'bench', 'bicycle', 'binoculars', 'bird', 'birthday cake', 'blackberry',
    'blueberry', 'book', 'boomerang', 'bottlecap', 'bowtie', 'bracelet', 'brain', 'bread', 'bridge', 'broccoli',
    'broom', 'bucket', 'bulldozer', 'bus', 'bush', 'butterfly', 'cactus', 'cake', 'calculator', 'calendar', 'camel',
    'camera', 'camouflage', 'campfire', 'candle', 'cannon', 'canoe', 'car', 'carrot', 'castle', 'cat',
    'ceiling fan', 'cell phone', 'cello', 'chair', 'chandelier', 'church', 'circle', 'clarinet', 'clock', 'cloud',
    'coffee cup', 'compass', 'computer', 'cookie', 'cooler', 'couch', 'cow', 'crab', 'crayon', 'crocodile', 'crown',
    'cruise ship', 'cup', 'diamond', 'dishwasher', 'diving board', 'dog', 'dolphin', 'donut', 'door', 'dragon',
    'dresser', 'drill', 'drums', 'duck', 'dumbbell', 'ear', 'elbow', 'elephant', 'envelope', 'eraser', 'eye',
    'eyeglasses', 'face', 'fan', 'feather', 'fence', 'finger', 'fire hydrant', 'fireplace', 'firetruck', 'fish',
    'flamingo', 'flashlight', 'flip flops', 'floor lamp', 'flower', 'flying saucer', 'foot', 'fork', 'frog',
    'frying pan', 'garden', 'garden hose', 'giraffe', 'goatee', 'golf club', 'grapes', 'grass', 'guitar',
    'hamburger', 'hammer', 'hand', 'harp', 'hat', 'headphones', 'hedgehog', 'helicopter', 'helmet', 'hexagon',
    'hockey puck', 'hockey stick', 'horse', 'hospital', 'hot air balloon', 'hot dog', 'hot tub', 'hourglass',
    'house', 'house plant', 'hurricane', 'ice cream', 'jacket', 'jail', 'kangaroo', 'key', 'keyboard', 'knee',
    'knife', 'ladder', 'lantern', 'laptop', 'leaf', 'leg', 'light bulb', 'lighter', 'lighthouse', 'lightning',
    'line', 'lion', 'lipstick', 'lobster', 'lollipop', 'mailbox', 'map', 'marker', 'matches', 'megaphone',
    'mermaid', 'microphone', 'microwave', 'monkey', 'moon', 'mosquito', 'motorbike', 'mountain', 'mouse',
    'moustache', 'mouth', 'mug', 'mushroom', 'nail', 'necklace', 'nose', 'ocean', 'octagon', 'octopus', 'onion',
    'oven', 'owl', 'paint can', 'paintbrush', 'palm tree', 'panda', 'pants', 'paper clip', 'parachute', 'parrot',
    'passport', 'peanut', 'pear', 'peas', 'pencil', 'penguin', 'piano', 'pickup truck', 'picture frame', 'pig',
    'pillow', 'pineapple', 'pizza', 'pliers', 'police car', 'pond', 'pool', 'popsicle', 'postcard', 'potato',
    'power outlet', 'purse', 'rabbit', 'raccoon', 'radio', 'rain', 'rainbow', 'rake', 'remote control',
    'rhinoceros', 'rifle', 'river', 'roller coaster', 'rollerskates', 'sailboat', 'sandwich', 'saw', 'saxophone',
    'school bus', 'scissors', 'scorpion', 'screwdriver', 'sea turtle', 'see saw', 'shark', 'sheep', 'shoe',
    'shorts', 'shovel', 'sink', 'skateboard', 'skull', 'skyscraper', 'sleeping bag', 'smiley face', 'snail',
    'snake', 'snorkel', 'snowflake', 'snowman', 'soccer ball', 'sock', 'speedboat', 'spider', 'spoon',
    'spreadsheet', 'square', 'squiggle', 'squirrel', 'stairs', 'star', 'steak', 'stereo', 'stethoscope', 'stitches',
    'stop sign', 'stove', 'strawberry', 'streetlight', 'string bean', 'submarine', 'suitcase', 'sun', 'swan',
    'sweater', 'swing set', 'sword', 'syringe', 't-shirt', 'table', 'teapot', 'teddy-bear', 'telephone',
    'television', 'tennis racquet', 'tent', 'tiger', 'toaster', 'toe', 'toilet', 'tooth', 'toothbrush',
    'toothpaste', 'tornado', 'tractor', 'traffic light', 'train', 'tree', 'triangle', 'trombone', 'truck',
    'trumpet', 'umbrella', 'underwear', 'van', 'vase', 'violin', 'washing machine', 'watermelon', 'waterslide',
    'whale', 'wheel', 'windmill', 'wine bottle', 'wine glass', 'wristwatch', 'yoga', 'zebra', 'zigzag',
]


def parse_classes(text: str) -> list[str]:
    """``"all"`` or a comma-separated list of class names (checked against the 345 categories)."""
    if text.strip() == "all":
        return list(QUICKDRAW_CLASSES)
    names = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in names if c not in QUICKDRAW_CLASSES]
    if unknown:
        raise R2CNNError(f"unknown QuickDraw class(es): {', '.join(unknown)} (see `r2cnn download quickdraw "
                         "--list`; names use spaces, e.g. 'power outlet')")
    if not names:
        raise R2CNNError("--classes is empty")
    return names


def class_url(name: str, fmt: str, base_url: str = BASE_URL) -> str:
    if fmt not in LAYOUT:
        raise R2CNNError(f"unknown format {fmt!r}: choose from {', '.join(LAYOUT)}")
    base = base_url if base_url.endswith("/") else base_url + "/"
    return urllib.parse.urljoin(base, LAYOUT[fmt][0].format(urllib.parse.quote(name)))


def _open(url: str, *, method: str = "GET", start: int = 0):
    headers = {"Range": f"bytes={start}-"} if start else {}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, method=method, headers=headers), timeout=_TIMEOUT)
    except urllib.error.HTTPError as e:
        raise R2CNNError(f"{url}: HTTP {e.code} {e.reason}" + (" (no such file on the server: check the class "
                                                                 "name and --format)" if e.code == 404 else "")) from None
    except (urllib.error.URLError, OSError) as e:
        raise R2CNNError(f"{url}: cannot connect ({getattr(e, 'reason', e)})") from None


def remote_size(url: str) -> int | None:
    """Content-Length from a HEAD request (None when the server does not say)."""
    with _open(url, method="HEAD") as r:
        n = r.headers.get("Content-Length")
    return int(n) if n is not None else None


def download_file(url: str, dest: Path, *, progress: bool | None = None) -> str:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming a partial ``.part`` with a Range request.

    Returns ``"exists"`` (``dest`` already has the server's size), ``"resumed"`` or ``"downloaded"``. A final size
    different from the server's Content-Length raises :class:`R2CNNError` naming the file (the ``.part`` is kept).
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    size = remote_size(url)
    if dest.exists() and (size is None or dest.stat().st_size == size):
        return "exists"
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    if size is not None and start > size:
        start = 0  # not a prefix of this file
    if size is not None and start == size:
        status = "resumed"
    else:
        resp = _open(url, start=start)
        with resp:
            if start and resp.status != 206:  # the server ignored the Range: start over
                start = 0
            if size is None and resp.headers.get("Content-Length") is not None:
                size = start + int(resp.headers["Content-Length"])
            status = "resumed" if start else "downloaded"
            with open(part, "ab" if start else "wb") as f, \
                    tqdm(total=size, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                         disable=None if progress is None else not progress, leave=False) as bar:
                while True:
                    try:
                        block = resp.read(_BLOCK)
                    except (http.client.IncompleteRead, OSError):
                        break  # connection lost: keep what arrived; the size check below reports it
                    if not block:
                        break
                    f.write(block)
                    bar.update(len(block))
    got = part.stat().st_size
    if size is not None and got != size:
        raise R2CNNError(f"{dest}: size mismatch: got {got} bytes, the server says {size} ({url}); "
                         f"run again to resume, or delete {part.name}")
    os.replace(part, dest)
    return status


def download_quickdraw(classes: Sequence[str], fmt: str, out: str | Path, *, base_url: str = BASE_URL,
                       progress: bool | None = None, log: Callable[[str], None] = print) -> list[Path]:
    """Download ``classes`` in ``fmt`` (simplified, raw, bin, npz) into ``out``; returns the file paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(classes):
        url = class_url(name, fmt, base_url)
        dest = out / f"{name}{LAYOUT[fmt][1]}"
        status = download_file(url, dest, progress=progress)
        log(f"[{i + 1}/{len(classes)}] {dest}: {status} ({dest.stat().st_size} bytes)")
        paths.append(dest)
    return paths
