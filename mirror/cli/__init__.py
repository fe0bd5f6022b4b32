"""The `mirror` command line: each command parses arguments and calls the library."""

from mirror.cli.main import cli, main

__all__ = ["cli", "main"]
