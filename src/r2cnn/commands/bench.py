"""``r2cnn bench TARGET``: dispatch to :mod:`r2cnn.bench.<target>`."""

import argparse
import importlib

HELP = "benchmarks, each reported as a ratio to an anchor measured in the same run"
TARGETS = {
    "raster": "r2cnn.bench.raster",
    "train": "r2cnn.bench.train",
    "data": "r2cnn.bench.data",
    "encoder": "r2cnn.bench.encoder",
    "simplify-agreement": "r2cnn.bench.simplify_agreement",
    "serve": "r2cnn.bench.serve",
    "classic": "r2cnn.bench.classic",
    "export": "r2cnn.bench.export",
    "mirror": "r2cnn.bench.mirror",
    "gpu": "r2cnn.bench.gpu",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="target", metavar="TARGET", required=True)
    for name, mod in TARGETS.items():
        module = importlib.import_module(mod)
        sp = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sp)
        sp.set_defaults(_bench_module=module)


def run(args) -> int:
    return args._bench_module.run(args)
