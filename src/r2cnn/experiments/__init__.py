"""The paper's experiments as commands (``r2cnn experiment``): specs, protocols, statistics, tables.

- :mod:`r2cnn.experiments.spec`: a spec is a TOML file of rows (preset + overrides, protocol, seeds, budget,
  ``init_from`` dependencies, the paper's figure); the built-in ones (``table1``, ``table2``, ``table3`` and their
  CPU twins ``table1-cpu``, ...) ship in ``specs/``.
- :mod:`r2cnn.experiments.protocols`: QuickDraw (fixed splits, seeds) and TU-Berlin (k folds; RDP to 448 points,
  augmentation) and which sketches a sub-run trains, selects and is tested on.
- :mod:`r2cnn.experiments.runners`: the row runners (``"neural"``: the engine; ``"classic"``: loaded lazily).
- :mod:`r2cnn.experiments.execute`: runs the rows in dependency order, resumable, keeping every test prediction.
- :mod:`r2cnn.experiments.stats`: accuracy, bootstrap intervals, paired comparisons, McNemar's exact test.
- :mod:`r2cnn.experiments.report`: ``results.md``, ``results.csv``, ``results.json`` and the bar chart.
- :mod:`r2cnn.experiments.dryrun`: what a spec would cost, here and at the paper's scale.

Nothing here is imported by the layers below (engine, models, data).
"""
