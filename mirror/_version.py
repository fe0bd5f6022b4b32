"""The package version (read by pyproject.toml, shown by `mirror --version`)."""

__version__ = "0.1.0"
