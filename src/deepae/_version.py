"""The package version, in a module of its own so that any layer can read it without
importing the package's face (deepae/__init__.py) from below."""

__version__ = "0.1.0"
