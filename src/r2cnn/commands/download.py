"""``r2cnn download quickdraw``: fetch Quick, Draw! files (see :mod:`r2cnn.data.download`)."""

from __future__ import annotations

import argparse

HELP = "download QuickDraw files from Google's public bucket (resumable; checked by size and MD5 when given)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from r2cnn.data.download import BASE_URL, LAYOUT

    p.add_argument("dataset", nargs="?", choices=("quickdraw",),
                   help="the data set (only QuickDraw is downloadable; not needed with --list)")
    p.add_argument("--classes", help="comma-separated class names, or 'all' for the 345 categories")
    p.add_argument("--format", default="simplified", choices=tuple(LAYOUT),
                   help="simplified/raw ndjson, packed bin, or sketch-rnn npz (default: simplified)")
    p.add_argument("--out", help="folder to write <class>.<ext> files into")
    p.add_argument("--base-url", default=BASE_URL, help=f"bucket URL (default {BASE_URL})")
    p.add_argument("--list", action="store_true", help="print the 345 class names and exit")


def run(args) -> int:
    from r2cnn.data.download import QUICKDRAW_CLASSES, download_quickdraw, parse_classes
    from r2cnn.errors import R2CNNError

    if args.list:
        print("\n".join(QUICKDRAW_CLASSES))
        return 0
    if args.dataset is None:
        raise R2CNNError("download needs a data set: r2cnn download quickdraw --classes ... --out ... (or --list)")
    if not args.classes or not args.out:
        raise R2CNNError("download needs --classes and --out (or --list)")
    paths = download_quickdraw(parse_classes(args.classes), args.format, args.out, base_url=args.base_url)
    print(f"{len(paths)} files in {args.out}")
    return 0
