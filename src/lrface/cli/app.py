"""The ``lrface`` app: every command registered here, implemented in one module per command
group (``benchmark``, ``calibrate``, ``photos``, ``gallery``, ``watch``, ``train``, ``serve``,
``export``), all sharing ``lrface.cli.common``. Command modules import only typer and the
shared module at the top, so ``lrface --help`` stays fast (tests/cli/test_startup.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from lrface.cli import benchmark, calibrate, export, gallery, photos, serve, train, watch
from lrface.constants import __version__

app = typer.Typer(
    help="Low-resolution face recognition by transfer from a high-resolution teacher.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

app.command()(benchmark.benchmark)
app.command("calibrate-openset")(calibrate.calibrate_openset)
app.command("calibrate-watch")(calibrate.calibrate_watch)
app.command("build-cohort")(calibrate.build_cohort)
app.command()(train.train)
app.command()(train.decontaminate)
app.command("package-student")(train.package_student)
app.command()(photos.detect)
app.command()(photos.verify)
app.command("fetch-weights")(photos.fetch_weights)
app.add_typer(gallery.gallery_app, name="gallery")
app.command()(watch.watch)
app.command()(watch.cameras)
app.command()(serve.serve)
app.command()(export.encoders)
app.command()(export.export)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Low-resolution face recognition by transfer from a high-resolution teacher."""
