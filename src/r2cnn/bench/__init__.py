"""Benchmarks behind ``r2cnn bench TARGET``; each module: ``HELP``, ``add_arguments(parser)``, ``run(args)``.

Every figure is reported next to an anchor measured in the same run (docs/architecture.md "Performance").
"""
