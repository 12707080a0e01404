"""``r2cnn export``: a checkpoint as ONNX or TorchScript, with its metadata beside it (``OUT.json``)."""

from __future__ import annotations

import argparse

HELP = "export a checkpoint as ONNX or TorchScript (class names and input contract in OUT.json)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by `r2cnn train` (best.pt, last.pt)")
    p.add_argument("--format", dest="fmt", required=True, choices=["onnx", "torchscript"], help="what to write")
    p.add_argument("--out", required=True, help="the model file to write (e.g. model.onnx, model.pt); the metadata "
                                                "goes to OUT.json")


def run(args) -> int:
    from r2cnn.export import export_checkpoint

    meta = export_checkpoint(args.checkpoint, args.fmt, args.out)
    attention = "per-point attention" if meta["has_attention"] else "no attention (output is all ones)"
    print(f"wrote {args.out} ({args.fmt}; {meta['model']}, {len(meta['classes'])} classes, "
          f"{meta['canvas']['size'][0]}px canvas, {attention}) and {args.out}.json")
    return 0
