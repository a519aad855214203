"""``lrface serve``: the watch-list API and web page on one gallery database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lrface.cli.common import (
    CutoffOpt,
    DetectorOpt,
    DeviceOpt,
    RuntimeOpt,
    StudentOpt,
    build_pipeline,
    chosen_student,
    fail,
    open_gallery,
    reported,
)
from lrface.constants import DEFAULT_STUDENT, DEFAULT_TEACHER


def serve(
    gallery: Annotated[
        Path, typer.Option(help="Gallery database (SQLite); created empty if missing.")
    ],
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key_file: Annotated[
        Path | None,
        typer.Option(help="File holding the API key (else $LRFACE_API_KEY)."),
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="No API key (only on a loopback address).")
    ] = False,
    encoder: Annotated[str, typer.Option(help="Encoder (new gallery).")] = DEFAULT_TEACHER,
    student: StudentOpt = DEFAULT_STUDENT,
    detector: DetectorOpt = "mtcnn",
    min_face: Annotated[
        float,
        typer.Option(help="MTCNN: smallest face searched for, px (CCTV faces are small).", min=12),
    ] = 12,
    size_cutoff: CutoffOpt = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload per file, MiB.")] = 10,
    max_pixels: Annotated[int, typer.Option(help="Largest image, pixels.")] = 25_000_000,
    device: DeviceOpt = "cpu",
    runtime: RuntimeOpt = "onnx",
) -> None:
    """Serve the watch-list: REST API (docs at /docs) and a web page at /."""
    import uvicorn

    from lrface.pipeline import default_calibrations, search_normalizer, watch_calibrations
    from lrface.service.app import ServiceConfig, create_app

    student = chosen_student(student)
    key = api_key(api_key_file, no_auth, host)
    if gallery.exists():  # an existing gallery decides the encoder
        with open_gallery(gallery) as existing:
            encoder = existing.encoder_name
    options = (detector, min_face, size_cutoff, "all", device, runtime)
    pipe = build_pipeline(encoder, student, *options)
    store = open_gallery(gallery, pipe.teacher.cache_key, pipe.dim, encoder)
    with reported(ValueError):
        calibrations = default_calibrations(encoder, student)
        watching = watch_calibrations(encoder, student)
        pipe.thresholds(watching)  # refuses calibrations that do not fit this pipeline
    config = ServiceConfig(
        api_key=key, max_upload_bytes=int(max_upload_mb * 2**20), max_pixels=max_pixels
    )
    normalizer = search_normalizer(encoder, student)
    app = create_app(store, pipe, config, calibrations, watching, normalizer)
    student_key = f", student {pipe.student.cache_key}" if pipe.student else ""
    typer.echo(
        f"serving {gallery} ({len(store)} identities, encoder {pipe.teacher.cache_key}"
        f"{student_key}) at http://{host}:{port}/  (API docs at /docs; "
        f"{'API key required' if key else 'no API key'})"
    )
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        store.close()


def api_key(api_key_file: Path | None, no_auth: bool, host: str) -> str | None:
    """The API key the server requires (None with ``--no-auth``, allowed on loopback only)."""
    from lrface.service.security import API_KEY_ENV, SecurityError, is_loopback, load_api_key

    with reported(SecurityError):
        key = None if no_auth else load_api_key(api_key_file)
    if no_auth and not is_loopback(host):
        raise fail(f"--no-auth is only allowed on a loopback address, not {host}")
    if key is None and not no_auth:
        raise fail(
            f"no API key: set ${API_KEY_ENV} or give --api-key-file "
            "(or --no-auth to serve without one on loopback)"
        )
    return key
