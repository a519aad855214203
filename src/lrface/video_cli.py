"""``lrface watch``: faces in a video, a folder of frames or a stream, tracked and checked
against a watch-list gallery; one decision per track (``lrface.video``).

A broken video or a Ctrl-C still writes every track finished so far (open tracks are ended
where the input stopped) before the error line or the exit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lrface.pipeline_cli import (
    DEFAULT_STUDENT,
    CutoffOpt,
    DeviceOpt,
    MinFaceOpt,
    RuntimeOpt,
    StudentOpt,
    _fail,
    _load_gallery,
    _pipeline,
    chosen_runtime,
    chosen_student,
)


def _thresholds(threshold: float | None, calibrations: list[Path], gal, student, pipe):
    """The open-set threshold function and a line saying where it comes from: ``--threshold``,
    else per encoder its track calibration (``--calibration`` files that are one, then the one
    stored with the encoder: ``lrface calibrate-watch``; for this gallery's size where the file
    has thresholds by size) and, where it has none, its single-face open-set thresholds (other
    ``--calibration`` files, then the stored ones, as ``gallery search``)."""
    from lrface.calibration import Calibration
    from lrface.pipeline import watch_calibrations
    from lrface.video.decide import BookThresholds, fixed_threshold

    if threshold is not None:
        return fixed_threshold(threshold), f"--threshold {threshold}"
    try:
        calibs = [Calibration.load(path) for path in calibrations]
        calibs += watch_calibrations(gal.encoder_name, student)
        thresholds = BookThresholds(
            pipe.thresholds(calibs), gal.encoder, True, len(gal), scoring_for=gal.scoring_for
        )
        encoders = [e for e in (pipe.teacher, pipe.student) if e is not None]
        # a missing open-set calibration fails now, not mid-video
        used = [(e, thresholds.choice(e.cache_key, 16)) for e in encoders]
    except ValueError as exc:
        raise _fail(str(exc)) from None
    return thresholds, "; ".join(
        f"{e.name}: {'track' if choice.tracks else 'single-face'} open-set thresholds "
        f"from {choice.source.rsplit(' [', 1)[0]}" + _set_for(choice) + _scored(gal, e)
        for e, choice in used
    ) + f"; this gallery holds {len(gal)} identities"


def _scored(gal, encoder) -> str:
    """How the gallery scores this encoder's tracks, where not by cosine."""
    scoring = gal.scoring_for(encoder.cache_key)
    return "" if scoring == "raw" else f", on {scoring}-normalized scores"


def _set_for(choice) -> str:
    """What gallery size a threshold choice was set for, and (where its file holds thresholds
    by watch-list size) which size it was picked for."""
    if choice.for_gallery:
        return f" (calibrated on a gallery of {choice.gallery_size}; {choice.for_gallery})"
    return f" (set for a gallery of {choice.gallery_size})" if choice.gallery_size else ""


def watch_command(
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
    from tqdm import tqdm

    from lrface.pipeline import search_normalizer
    from lrface.search.gallery import GalleryError
    from lrface.video.aggregate import WEIGHTINGS
    from lrface.video.decide import gallery_searcher
    from lrface.video.motion import GateConfig
    from lrface.video.outputs import AnnotatedVideo, EventWriter
    from lrface.video.sources import VideoReadError, open_source
    from lrface.video.watcher import FaceWatcher, WatchConfig

    student = chosen_student(student)
    if weighting not in WEIGHTINGS:
        raise _fail(f"--weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    gal = _load_gallery(gallery)
    try:
        frames = open_source(source, stride, fps)
    except VideoReadError as exc:
        raise _fail(str(exc)) from None
    runtime = chosen_runtime(runtime)
    pipe = _pipeline(
        gal.encoder_name, student, "mtcnn", min_face, size_cutoff, "all", device, runtime
    )
    try:
        gal.check_compatible(pipe.teacher.cache_key, pipe.dim, gallery)
    except GalleryError as exc:
        raise _fail(str(exc)) from None
    if scoring not in ("raw", "asnorm"):
        raise _fail(f"--scoring must be raw or asnorm, got {scoring!r}")
    if scoring != "raw" and threshold is None:
        gal.use_scoring(search_normalizer(gal.encoder_name, student, scoring))
    thresholds, threshold_source = _thresholds(threshold, calibration or [], gal, student, pipe)
    watcher = FaceWatcher(
        pipe.detector,
        pipe.embed_faces,
        gallery_searcher(gal),
        thresholds,
        WatchConfig(weighting=weighting, gate=GateConfig(full_every=full_every)),
    )
    writer = EventWriter(out)
    video = AnnotatedVideo(out / "annotated.mp4", frames.fps / stride) if annotate else None
    typer.echo(f"threshold: {threshold_source}", err=True)
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
    gated = ""
    if watcher.gate is not None:
        gated = f" ({watcher.gate.full_frames} searched whole, the rest where they moved)"
    typer.echo(
        f"{watcher.frames_processed} frames processed{gated}, {watcher.faces_seen} faces, "
        f"{writer.count} tracks written to {out} ({watcher.dropped_tracks} tracks of fewer than "
        f"{watcher.config.min_faces} faces dropped)"
    )
    skipped = getattr(frames, "skipped", [])
    if skipped:
        typer.echo(f"skipped {len(skipped)} unreadable frames:", err=True)
        for path, reason in skipped:
            typer.echo(f"  {path}: {reason}", err=True)
    if getattr(frames, "dropped", 0):
        typer.echo(f"{frames.dropped} failed reads from the stream (dropped frames)", err=True)
    if interrupted:
        typer.echo("interrupted: the tracks finished so far are written", err=True)
        raise typer.Exit(130)
    if error is not None:
        raise _fail(f"{error}; the tracks seen before it are written")


def _labels(watcher) -> list:
    """(face, 'id name') for the faces of the frame just processed."""
    out = []
    for track_id, face in watcher.current:
        decision = watcher.label(track_id)
        name = "unknown" if decision is None or decision.unknown else decision.identity
        out.append((face, f"{track_id} {name}"))
    return out
