"""Training, evaluation, prediction, checkpoints and distributed training (docs/architecture.md "Engine").

- :mod:`r2cnn.engine.train`: ``train(TrainOptions(...))``, the loop behind ``r2cnn train`` (DDP under torchrun);
  its config (``TrainOptions``, preset + overrides, checks) in :mod:`r2cnn.engine.config`, the optimiser and
  learning-rate schedule in :mod:`r2cnn.engine.optim`, the progress lines and time budget in
  :mod:`r2cnn.engine.progress` and :mod:`r2cnn.engine.clock`.
- :mod:`r2cnn.engine.evaluate`: ``evaluate_model`` (metrics over a loader), ``evaluate_checkpoint`` (the report of
  ``r2cnn evaluate``: top-1/top-5, per class, confusion matrix, partial sketches).
- :mod:`r2cnn.engine.predict`: ``Predictor(checkpoint).predict(sketch) -> [(class, probability), ...]``.
- :mod:`r2cnn.engine.checkpoint`: atomic ``save_atomic``, ``load_checkpoint`` (``weights_only=True``), RNG states.
- :mod:`r2cnn.engine.distributed`: process group set-up, all-reduce, synchronised batch norm on CPU and GPU.
- :mod:`r2cnn.engine.metrics`, :mod:`r2cnn.engine.log` (JSONL + optional TensorBoard),
  :mod:`r2cnn.engine.report` (confusion-matrix PNG, tables), :mod:`r2cnn.engine.factory` (model and transforms
  from a run's config), :mod:`r2cnn.engine.timing` (a training step and its wall clock, for the benchmarks and the
  dry run), :mod:`r2cnn.engine.demo` (where ``r2cnn demo`` leaves its runs: the default checkpoint).

Submodules import torch; this package itself imports nothing, so ``import r2cnn`` stays light.
"""
