"""``lrface watch``: faces in a video, a folder of frames or a stream, tracked and checked
against a watch-list gallery; one decision per track (``lrface.video``).

A broken video or a Ctrl-C still writes every track finished so far (open tracks are ended
where the input stopped) before the error line or the exit.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Annotated

import typer

from lrface.cli.common import (
    INTERRUPTED,
    CutoffOpt,
    DeviceOpt,
    MinFaceOpt,
    RuntimeOpt,
    StudentOpt,
    ThreadsOpt,
    build_pipeline,
    check_choice,
    chosen_student,
    fail,
    open_gallery,
    reported,
)
from lrface.constants import DEFAULT_STUDENT


def watch(
    source: Annotated[
        str, typer.Argument(help="Video file, folder of frames, camera index or URL.")
    ],
    gallery: Annotated[
        str,
        typer.Option(help="Watch-list gallery: SQLite file or postgresql:// URL."),
    ],
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("out/watch"),
    stride: Annotated[int, typer.Option(help="Process every k-th frame.", min=1)] = 1,
    min_face: MinFaceOpt = 20,
    annotate: Annotated[
        bool,
        typer.Option(
            help="Also write annotated.webm (boxes, names, scores, time; plays in browsers)."
        ),
    ] = False,
    student: StudentOpt = DEFAULT_STUDENT,
    size_cutoff: CutoffOpt = None,
    threshold: Annotated[
        float | None, typer.Option(help="Open-set threshold: tracks scoring under it are unknown.")
    ] = None,
    calibration: Annotated[
        list[Path] | None,
        typer.Option(
            help="Calibration JSON for the threshold, repeatable; a track calibration "
            "(lrface calibrate-watch) beats a single-face one (--threshold wins)."
        ),
    ] = None,
    weighting: Annotated[
        str, typer.Option(help="Track aggregation: uniform, size, score, size-score or quality.")
    ] = "size-score",
    scoring: Annotated[
        str,
        typer.Option(
            help="Track scores: raw (cosine) or asnorm (normalized against the shipped cohort, "
            "judged by track thresholds set on those scores: fewer misses on synthetic clips, "
            "but one false alarm on a real clip where raw had none; docs/openset.md)."
        ),
    ] = "raw",
    full_every: Annotated[
        int,
        typer.Option(
            help="Detect faces only where the picture moves (and around live tracks), the whole "
            "frame every N-th processed frame; 1 = always the whole frame.",
            min=1,
        ),
    ] = 10,
    crowd_full_every: Annotated[
        int,
        typer.Option(
            help="While most of the picture moves (a crowd), detect around live tracks only and "
            "the whole frame every N-th frame; 1 = every such frame whole.",
            min=1,
        ),
    ] = 10,
    crowd_track_every: Annotated[
        int,
        typer.Option(
            help="In a crowd, detect around live tracks every N-th frame (the tracker's "
            "prediction carries them in between); 1 = every frame.",
            min=1,
        ),
    ] = 2,
    pipeline: Annotated[
        bool,
        typer.Option(
            help="Decode and gate motion, detect whole frames, detect the rest and track, embed: "
            "four threads (both cores for one camera); --no-pipeline runs them one after the "
            "other."
        ),
    ] = True,
    enough_faces: Annotated[
        int,
        typer.Option(
            help="Once a track has pooled N faces, embed a face of it only when it outweighs "
            "the track's N-th heaviest face by 10% (a face growing as the person walks "
            'closer); 0 = embed every face (docs/video.md, "Enough faces").',
            min=0,
        ),
    ] = 0,
    fps: Annotated[float, typer.Option(help="Frame rate of a folder of frames.")] = 25.0,
    camera: Annotated[
        str | None,
        typer.Option(
            help="Camera name: also log every finished track in the gallery's shared event "
            "log under it (lrface serve lists and pushes them)."
        ),
    ] = None,
    device: DeviceOpt = "cpu",
    runtime: RuntimeOpt = "onnx",
    threads: ThreadsOpt = None,
) -> None:
    """Watch SOURCE for the people of GALLERY: events.jsonl, tracks.csv, thumbnails/ in --out.

    The gallery is followed live: people enrolled or removed while watching (by any process)
    are searched from the next track on."""
    from lrface.models.onnx_encoder import RUNTIMES
    from lrface.search.decision import gallery_searcher
    from lrface.search.gallery import GalleryError
    from lrface.video.aggregate import WEIGHTINGS
    from lrface.video.outputs import StoreEventLog, run_key
    from lrface.video.sources import VideoReadError, open_source
    from lrface.video.watcher import FaceWatcher

    student = chosen_student(student)
    check_choice(weighting, WEIGHTINGS, "--weighting")
    check_choice(scoring, ("raw", "asnorm"), "--scoring")
    store = open_gallery(gallery)
    with reported(VideoReadError):
        frames = open_source(source, stride, fps)
    check_choice(runtime, RUNTIMES, "--runtime")
    options = (min_face, size_cutoff, "all", device, runtime)
    pipe = build_pipeline(
        store.encoder_name, student, "mtcnn", *options, pyramid="cascade", threads=threads
    )
    with reported(GalleryError, ValueError):
        store.check_compatible(pipe.teacher.cache_key, pipe.dim)
        live, thresholds, where = _judged(store, pipe, student, scoring, threshold, calibration)
        log = None if camera is None else StoreEventLog(store, camera, run_key(source, time.time()))
    config = _config(
        weighting, full_every, crowd_full_every, crowd_track_every, pipeline, enough_faces
    )
    watcher = FaceWatcher(
        pipe.detector, pipe.embed_faces, gallery_searcher(live), thresholds, config
    )
    typer.echo(f"threshold: {where}", err=True)
    typer.echo(f"gallery: {store.path}, faiss index {live.index_kind}", err=True)
    with store, contextlib.closing(live):  # the listener stops before the store closes
        run_watch(watcher, frames, source, out, stride, annotate, log)


def _judged(store, pipe, student, scoring: str, threshold, calibration):
    """The gallery followed live (in step with every process's enrolments and removals; its
    tracks scored by ``scoring`` unless a fixed ``threshold`` is given), the thresholds its
    tracks are judged by and a line saying where they come from."""
    from lrface.calibration import Calibration
    from lrface.pipeline import search_normalizer, watch_calibrations
    from lrface.search.sync import LiveGallery
    from lrface.video.decide import fixed_threshold, watch_thresholds

    normalizer = None
    if scoring != "raw" and threshold is None:
        normalizer = search_normalizer(store.encoder_name, student, scoring)
    live = LiveGallery(store, normalizer=normalizer)
    if threshold is not None:
        return live, fixed_threshold(threshold), f"--threshold {threshold}"
    calibs = [Calibration.load(path) for path in calibration or []]
    calibs += watch_calibrations(store.encoder_name, student)
    return live, *watch_thresholds(pipe, live, calibs)


def _config(weighting: str, full_every: int, crowd_full_every: int, crowd_track_every: int,
            pipeline: bool, enough_faces: int):  # fmt: skip
    """The WatchConfig of watch's options (docs/video.md, "Real footage": the crowd schedule)."""
    from lrface.video.motion import GateConfig
    from lrface.video.watcher import WatchConfig

    gate = GateConfig(
        full_every, crowd_full_every=crowd_full_every, crowd_track_every=crowd_track_every
    )
    return WatchConfig(
        weighting=weighting, gate=gate, pipelined=pipeline, enough_faces=enough_faces
    )


def run_watch(watcher, frames, source: str, out: Path, stride: int, annotate: bool, log=None):
    """Process ``frames``, writing each event as its track ends (to the event log too, with
    ``log``: ``lrface.video.outputs.StoreEventLog``) and the annotated video; on a broken
    video or Ctrl-C, the tracks seen so far are still written."""
    from tqdm import tqdm

    from lrface.video.outputs import ANNOTATED_VIDEO, AnnotatedVideo, EventWriter, frame_labels
    from lrface.video.sources import VideoReadError

    writer = EventWriter(out, log)
    video = AnnotatedVideo(out / ANNOTATED_VIDEO, frames.fps / stride) if annotate else None
    error, interrupted = None, False
    bar = tqdm(frames, unit="frame", desc=f"watch {Path(str(source)).name}")

    def after_frame(frame) -> None:
        if video is not None:
            video.write(frame.image, frame_labels(watcher), frame.time)
        bar.set_postfix(tracks=len(watcher.tracker.active()), events=writer.count)

    try:
        for event in watcher.watch(bar, after_frame):
            writer.write(event)
    except VideoReadError as exc:
        error = str(exc)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        for event in watcher.flush():
            writer.write(event)
        writer.close()
        if video is not None:
            video.close()
    echo_watch_summary(watcher, frames, writer.count, out, log)
    if interrupted:
        typer.echo("interrupted: the tracks finished so far are written", err=True)
        raise typer.Exit(INTERRUPTED)
    if error is not None:
        raise fail(f"{error}; the tracks seen before it are written")


def echo_watch_summary(watcher, frames, written: int, out: Path, log=None) -> None:
    """Frames, faces and tracks on stdout; unreadable frames and dropped reads on stderr."""
    gated = ""
    if watcher.gate is not None:
        gated = (
            f" ({watcher.gate.full_frames} searched whole, the rest where they moved and around "
            f"live tracks; {watcher.gate.skipped_frames} crowded frames left to the tracker)"
        )
    logged = ""
    if log is not None:
        logged = f" and to the event log as camera {log.camera}"
        if log.repeats:
            logged += f" ({log.repeats} were logged by an earlier run of this input)"
    typer.echo(
        f"{watcher.frames_processed} frames processed{gated}, {watcher.faces_seen} faces, "
        f"{written} tracks written to {out}{logged} ({watcher.dropped_tracks} tracks of "
        f"fewer than {watcher.config.min_faces} faces dropped)"
    )
    skipped = getattr(frames, "skipped", [])
    if skipped:
        typer.echo(f"skipped {len(skipped)} unreadable frames:", err=True)
        for path, reason in skipped:
            typer.echo(f"  {path}: {reason}", err=True)
    if getattr(frames, "dropped", 0):
        typer.echo(f"{frames.dropped} failed reads from the stream (dropped frames)", err=True)


def cameras(
    config: Annotated[Path, typer.Argument(help="Cameras file (YAML): gallery, out, cameras.")],
    only: Annotated[
        str | None,
        typer.Option(
            help="Run only these cameras (comma-separated names): split one file across machines."
        ),
    ] = None,
    backoff: Annotated[
        float, typer.Option(help="Seconds before restarting a dead worker (doubling).", min=0)
    ] = 1.0,
) -> None:
    """Watch several cameras: one `lrface watch --camera NAME` worker process per camera of
    CONFIG, against its one gallery; a worker that dies is restarted, Ctrl-C or SIGTERM stops
    them all (each writes the tracks it saw)."""
    import logging
    import sys

    from lrface.video.cameras import CameraConfigError, Supervisor, load_cameras, watch_arguments

    with reported(CameraConfigError):
        chosen = load_cameras(config, only.split(",") if only else None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    watch = [sys.executable, "-m", "lrface.cli", "watch"]
    supervisor = Supervisor(
        {c.name: watch + watch_arguments(c, chosen) for c in chosen.cameras}, backoff=backoff
    )
    typer.echo(f"watching {len(chosen.cameras)} cameras; Ctrl-C stops them", err=True)
    restarts = supervisor.run()
    typer.echo(
        "stopped; restarts: " + ", ".join(f"{name} {n}" for name, n in restarts.items()), err=True
    )
