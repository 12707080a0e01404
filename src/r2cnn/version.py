"""The package version, in a module of its own so that any layer can record it without importing ``r2cnn``."""

__version__ = "0.1.0"
