"""``lrface watch``: faces in a video, a folder of frames or a stream, tracked and checked
against a watch-list gallery; one decision per track (``lrface.video``).

A broken video or a Ctrl-C still writes every track finished so far (open tracks are ended
where the input stopped) before the error line or the exit.
"""

from __future__ import annotations

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
    build_pipeline,
    check_choice,
    chosen_student,
    fail,
    load_gallery,
    reported,
)
from lrface.constants import DEFAULT_STUDENT


def watch(
    source: Annotated[
        str, typer.Argument(help="Video file, folder of frames, camera index or URL.")
    ],
    gallery: Annotated[Path, typer.Option(help="Watch-list gallery file.")],
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("out/watch"),
    stride: Annotated[int, typer.Option(help="Process every k-th frame.", min=1)] = 1,
    min_face: MinFaceOpt = 20,
    annotate: Annotated[
        bool, typer.Option(help="Also write annotated.mp4 (processed frames, boxes, names).")
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
    fps: Annotated[float, typer.Option(help="Frame rate of a folder of frames.")] = 25.0,
    device: DeviceOpt = "cpu",
    runtime: RuntimeOpt = "onnx",
) -> None:
    """Watch SOURCE for the people of GALLERY: events.jsonl, tracks.csv, thumbnails/ in --out."""
    from lrface.calibration import Calibration
    from lrface.models.onnx_encoder import RUNTIMES
    from lrface.pipeline import search_normalizer, watch_calibrations
    from lrface.search.decision import gallery_searcher
    from lrface.search.gallery import GalleryError
    from lrface.video.aggregate import WEIGHTINGS
    from lrface.video.decide import fixed_threshold, watch_thresholds
    from lrface.video.motion import GateConfig
    from lrface.video.sources import VideoReadError, open_source
    from lrface.video.watcher import FaceWatcher, WatchConfig

    student = chosen_student(student)
    check_choice(weighting, WEIGHTINGS, "--weighting")
    check_choice(scoring, ("raw", "asnorm"), "--scoring")
    gal = load_gallery(gallery)
    with reported(VideoReadError):
        frames = open_source(source, stride, fps)
    check_choice(runtime, RUNTIMES, "--runtime")
    options = (min_face, size_cutoff, "all", device, runtime)
    pipe = build_pipeline(gal.encoder_name, student, "mtcnn", *options)
    with reported(GalleryError, ValueError):
        gal.check_compatible(pipe.teacher.cache_key, pipe.dim, gallery)
        if scoring != "raw" and threshold is None:
            gal.use_scoring(search_normalizer(gal.encoder_name, student, scoring))
        if threshold is not None:
            thresholds, where = fixed_threshold(threshold), f"--threshold {threshold}"
        else:
            calibs = [Calibration.load(path) for path in calibration or []]
            calibs += watch_calibrations(gal.encoder_name, student)
            thresholds, where = watch_thresholds(pipe, gal, calibs)
    config = WatchConfig(weighting=weighting, gate=GateConfig(full_every=full_every))
    search = gallery_searcher(gal)
    watcher = FaceWatcher(pipe.detector, pipe.embed_faces, search, thresholds, config)
    typer.echo(f"threshold: {where}", err=True)
    run_watch(watcher, frames, source, out, stride, annotate)


def run_watch(watcher, frames, source: str, out: Path, stride: int, annotate: bool) -> None:
    """Process ``frames``, writing each event as its track ends (and the annotated video);
    on a broken video or Ctrl-C, the tracks seen so far are still written."""
    from tqdm import tqdm

    from lrface.video.outputs import AnnotatedVideo, EventWriter
    from lrface.video.sources import VideoReadError

    writer = EventWriter(out)
    video = AnnotatedVideo(out / "annotated.mp4", frames.fps / stride) if annotate else None
    error, interrupted = None, False
    bar = tqdm(frames, unit="frame", desc=f"watch {Path(str(source)).name}")
    try:
        for frame in bar:
            for event in watcher.process(frame):
                writer.write(event)
            if video is not None:
                video.write(frame.image, _labels(watcher))
            bar.set_postfix(tracks=len(watcher.tracker.active()), events=writer.count)
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
    echo_watch_summary(watcher, frames, writer.count, out)
    if interrupted:
        typer.echo("interrupted: the tracks finished so far are written", err=True)
        raise typer.Exit(INTERRUPTED)
    if error is not None:
        raise fail(f"{error}; the tracks seen before it are written")


def echo_watch_summary(watcher, frames, written: int, out: Path) -> None:
    """Frames, faces and tracks on stdout; unreadable frames and dropped reads on stderr."""
    gated = ""
    if watcher.gate is not None:
        gated = f" ({watcher.gate.full_frames} searched whole, the rest where they moved)"
    typer.echo(
        f"{watcher.frames_processed} frames processed{gated}, {watcher.faces_seen} faces, "
        f"{written} tracks written to {out} ({watcher.dropped_tracks} tracks of fewer than "
        f"{watcher.config.min_faces} faces dropped)"
    )
    skipped = getattr(frames, "skipped", [])
    if skipped:
        typer.echo(f"skipped {len(skipped)} unreadable frames:", err=True)
        for path, reason in skipped:
            typer.echo(f"  {path}: {reason}", err=True)
    if getattr(frames, "dropped", 0):
        typer.echo(f"{frames.dropped} failed reads from the stream (dropped frames)", err=True)


def _labels(watcher) -> list:
    """(face, 'id name') for the faces of the frame just processed."""
    out = []
    for track_id, face in watcher.current:
        decision = watcher.label(track_id)
        name = "unknown" if decision is None or decision.unknown else decision.identity
        out.append((face, f"{track_id} {name}"))
    return out
