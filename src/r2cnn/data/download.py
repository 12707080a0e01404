"""Download Quick, Draw! files from Google's public bucket: resumable (HTTP Range into a ``.part`` file),
checked, with a progress bar.

Checks: the size against Content-Length, and the MD5 against the server's checksum header when it sends one
(Google Cloud Storage's ``x-goog-hash: md5=...``, ``Content-MD5``, or an ETag that is a bare MD5 in hex, in that
order). A server that sends neither a size nor a checksum gets one line saying the file is not verified: a
connection that drops early would then look like the end of the file.

Layout under the base URL (default :data:`BASE_URL`, the bucket's ``full/`` folder), one file per class, class
names URL-encoded (spaces as ``%20``):

- ``simplified/<class>.ndjson`` (coordinates 0..255, RDP-simplified), ``raw/<class>.ndjson`` (screen pixels,
  timestamps), ``binary/<class>.bin`` (the simplified drawings, packed);
- ``../sketchrnn/<class>.npz`` (sketch-rnn stroke-3, the paper's 70K/2.5K/2.5K split).

Files are saved as ``OUT/<class>.<ext>`` so that ``r2cnn prepare OUT`` takes the class from the file stem.
A rerun skips the files already there: each verified file's size, mtime and MD5 are recorded in
``OUT/.r2cnn-download.state`` (JSON), so a file whose size and mtime match its record is not hashed again (a file with
neither a record nor a match is hashed, and fetched again when its MD5 differs from the server's).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

from r2cnn.data.formats.common import replace_durably
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
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise R2CNNError(f"--base-url {base_url!r} is not an http(s) URL (default {BASE_URL})")
    base = base_url if base_url.endswith("/") else base_url + "/"
    return urllib.parse.urljoin(base, LAYOUT[fmt][0].format(urllib.parse.quote(name)))


def _open(url: str, *, method: str = "GET", start: int = 0):
    headers = {"Range": f"bytes={start}-"} if start else {}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, method=method, headers=headers), timeout=_TIMEOUT)
    except urllib.error.HTTPError as e:
        raise R2CNNError(f"{url}: HTTP {e.code} {e.reason}" + (" (no such file on the server: check the class "
                                                                 "name and --format)" if e.code == 404 else "")) from None
    except (urllib.error.URLError, OSError, ValueError) as e:  # ValueError: a URL urllib cannot parse
        raise R2CNNError(f"{url}: cannot connect ({getattr(e, 'reason', e)})") from None


def _head(url: str):
    with _open(url, method="HEAD") as r:
        return r.headers


def _size(headers) -> int | None:
    """Content-Length (None when the server does not say)."""
    n = headers.get("Content-Length")
    return int(n) if n is not None and n.strip().isdigit() else None


def remote_md5(headers) -> tuple[str, str] | None:
    """``(hex MD5, header it came from)`` from a response's headers, or None when the server gives none."""
    for header in headers.get_all("x-goog-hash") or []:  # "crc32c=<b64>,md5=<b64>", possibly one per line
        for item in header.split(","):
            key, _, value = item.strip().partition("=")
            if key == "md5":
                return _b64_hex(value), "x-goog-hash"
    if headers.get("Content-MD5"):
        return _b64_hex(headers["Content-MD5"]), "Content-MD5"
    etag = (headers.get("ETag") or "").strip().strip('"').lower()
    if re.fullmatch(r"[0-9a-f]{32}", etag):
        return etag, "ETag"
    return None


def _b64_hex(value: str) -> str:
    try:
        return base64.b64decode(value.strip(), validate=True).hex()
    except ValueError:
        return value.strip()  # not base64: cannot match any MD5, so the check reports it


def _file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def download_file(url: str, dest: Path, *, progress: bool | None = None, log: Callable[[str], None] = print) -> str:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming a partial ``.part`` with a Range request.

    Returns ``"exists"`` (``dest`` already has the server's size and checksum), ``"resumed"`` or ``"downloaded"``.
    A final size different from the server's Content-Length raises :class:`R2CNNError` naming the file (the
    ``.part`` is kept for resuming); an MD5 different from the server's checksum too (the ``.part`` is removed:
    its bytes are wrong, so resuming it cannot help). With neither a size nor a checksum, ``log`` gets one line.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    head = _head(url)
    size, md5 = _size(head), remote_md5(head)
    if dest.exists() and (size is None or dest.stat().st_size == size) and (md5 is None or _verified(dest, md5[0])):
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
            if size is None and _size(resp.headers) is not None:
                size = start + _size(resp.headers)
            md5 = md5 or (remote_md5(resp.headers) if not start else None)  # a range's own MD5 is not the file's
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
    if md5 is not None and _file_md5(part) != md5[0]:
        part.unlink()
        raise R2CNNError(f"{dest}: checksum mismatch: the {got} bytes received do not have the MD5 of the server's "
                         f"{md5[1]} header ({url}); run again to download it anew")
    if size is None and md5 is None:
        log(f"{dest}: not verified: the server sent neither a size nor a checksum ({got} bytes received)")
    replace_durably(part, dest)
    if md5 is not None:
        _record_verified(dest, md5[0])
    return status


STATE_FILE = ".r2cnn-download.state"  # JSON in the output folder (not a sketch file suffix): files checked


def _state(folder: Path) -> dict:
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _verified(dest: Path, md5: str) -> bool:
    """Whether ``dest`` has the MD5 ``md5``: from the folder's record of checked files when its size and mtime are
    those recorded (a rerun after a kill at hour 2 does not hash the 20 GB already there again), else hashed."""
    st = dest.stat()
    rec = _state(dest.parent).get(dest.name)
    if isinstance(rec, dict) and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns:
        return rec.get("md5") == md5
    if _file_md5(dest) != md5:
        return False
    _record_verified(dest, md5)
    return True


def _record_verified(dest: Path, md5: str) -> None:
    st = dest.stat()
    state = _state(dest.parent)
    state[dest.name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "md5": md5}
    tmp = dest.parent / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=0, sort_keys=True))
    os.replace(tmp, dest.parent / STATE_FILE)


def download_quickdraw(classes: Sequence[str], fmt: str, out: str | Path, *, base_url: str = BASE_URL,
                       progress: bool | None = None, log: Callable[[str], None] = print) -> list[Path]:
    """Download ``classes`` in ``fmt`` (simplified, raw, bin, npz) into ``out``; returns the file paths."""
    from r2cnn.data.formats.common import class_name, make_folder

    out = Path(out)
    urls = [class_url(name, fmt, base_url) for name in classes]  # a bad --base-url fails before anything is made
    make_folder(out)
    paths = []
    for i, (name, url) in enumerate(zip(classes, urls)):
        dest = out / f"{class_name(name, LAYOUT[fmt][1])}{LAYOUT[fmt][1]}"
        status = download_file(url, dest, progress=progress, log=log)
        log(f"[{i + 1}/{len(classes)}] {dest}: {status} ({dest.stat().st_size} bytes)")
        paths.append(dest)
    return paths
