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
        str,
        typer.Option(
            help="Gallery: SQLite file or postgresql:// URL (several servers may share one "
            "database); created empty if missing."
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key_file: Annotated[
        Path | None,
        typer.Option(help="File holding the API key (else $LRFACE_API_KEY)."),
    ] = None,
    admin_key_file: Annotated[
        Path | None,
        typer.Option(
            help="File holding the admin key, which may also read the audit log "
            "(else $LRFACE_ADMIN_KEY; none: no one reads it over HTTP)."
        ),
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
    max_pixels: Annotated[
        int, typer.Option(help="Largest image, pixels (refused from its header, undecoded).")
    ] = 25_000_000,
    max_work_pixels: Annotated[
        int,
        typer.Option(help="Larger images are analysed downscaled to this many pixels."),
    ] = 4_000_000,
    workers: Annotated[
        int,
        typer.Option(help="Images analysed at once (plus one worker for large ones).", min=1),
    ] = 2,
    threads: Annotated[
        int | None,
        typer.Option(
            help="Intra-op threads per worker (default: $LRFACE_THREADS, else half the CPUs "
            "shared among the workers).",
            min=1,
        ),
    ] = None,
    budget: Annotated[
        float, typer.Option(help="Time budget of an image request, s (then 503).", min=1)
    ] = 30.0,
    device: DeviceOpt = "cpu",
    runtime: RuntimeOpt = "onnx",
) -> None:
    """Serve the watch-list: REST API (schema at /openapi.json) and a web page at /."""
    import uvicorn

    from lrface.machine import intra_op_threads
    from lrface.pipeline import default_calibrations, search_normalizer, watch_calibrations
    from lrface.search.gallery import GalleryError
    from lrface.search.store import gallery_exists
    from lrface.service.app import ServiceConfig, create_app

    student = chosen_student(student)
    key, admin_key = api_keys(api_key_file, admin_key_file, no_auth, host)
    with reported(ValueError):  # a bad $LRFACE_THREADS
        threads = intra_op_threads(threads, workers + 1)
    with reported(GalleryError):
        existing = gallery_exists(gallery)
    if existing:  # an existing gallery decides the encoder
        with open_gallery(gallery) as store:
            encoder = store.encoder_name
    options = (detector, min_face, size_cutoff, "all", device, runtime)
    pipe = build_pipeline(encoder, student, *options, threads=threads)
    store = open_gallery(gallery, pipe.teacher.cache_key, pipe.dim, encoder)
    with reported(ValueError):
        calibrations = default_calibrations(encoder, student)
        watching = watch_calibrations(encoder, student)
        pipe.thresholds(watching)  # refuses calibrations that do not fit this pipeline
    config = ServiceConfig(
        api_key=key, admin_key=admin_key, max_upload_bytes=int(max_upload_mb * 2**20),
        max_pixels=max_pixels, max_work_pixels=max_work_pixels, workers=workers,
        request_budget_s=budget,
    )  # fmt: skip
    normalizer = search_normalizer(encoder, student)
    app = create_app(store, pipe, config, calibrations, watching, normalizer)
    watchlist = app.state.service.watch
    echo_serving(store, watchlist.live.index_kind, pipe, (host, port), config, threads)
    try:  # SIGTERM / SIGINT: uvicorn shuts the app down, which closes the gallery
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        watchlist.close()  # the lifespan did, unless the server never started


def echo_serving(store, index_kind: str, pipe, address: tuple[str, int], config, threads: int):
    """The line saying what is served where: the gallery (never a password), its size and
    faiss index, the models, the keys and the workers."""
    student = f", student {pipe.student.name}" if pipe.student else ""
    host, port = address
    typer.echo(
        f"serving {store.path} ({len(store)} identities, faiss index {index_kind}, encoder "
        f"{pipe.teacher.name}{student}) at http://{host}:{port}/  "
        f"({'API key required' if config.api_key else 'no API key'}"
        f"{', admin key set' if config.admin_key else ''}; {config.workers}+1 workers x "
        f"{threads} thread(s))"
    )


def api_keys(
    api_key_file: Path | None, admin_key_file: Path | None, no_auth: bool, host: str
) -> tuple[str | None, str | None]:
    """The API key the server requires and its admin key (both None with ``--no-auth``,
    allowed on loopback only)."""
    from lrface.service.security import (
        ADMIN_KEY_ENV,
        API_KEY_ENV,
        SecurityError,
        is_loopback,
        load_api_key,
    )

    with reported(SecurityError):
        key = None if no_auth else load_api_key(api_key_file)
        admin_key = None if no_auth else load_api_key(admin_key_file, ADMIN_KEY_ENV)
    if no_auth and not is_loopback(host):
        raise fail(f"--no-auth is only allowed on a loopback address, not {host}")
    if key is None and not no_auth:
        raise fail(
            f"no API key: set ${API_KEY_ENV} or give --api-key-file "
            "(or --no-auth to serve without one on loopback)"
        )
    return key, admin_key
