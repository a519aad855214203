"""The ``lrface`` command line: ``app`` (the console entry point) and one module per command
group, all sharing ``lrface.cli.common``. Nothing outside this package imports it."""

from lrface.cli.app import app

__all__ = ["app"]
