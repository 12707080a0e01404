"""One module per ``r2cnn`` sub-command: ``HELP``, ``add_arguments(parser)``, ``run(args) -> int``."""
