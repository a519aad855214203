"""``lrface watch`` on a real crowd: frames/s and the tracks found, before and after.

    OMP_NUM_THREADS=1 python benchmarks/video_real.py --out out/video-real

Footage: ``../shared/data/video/arcade-1080p.mp4`` (people walking through an arcade towards
the camera, 105 frames, 1920x1080, no LFW person in it) and a 1280x720 copy written once into
``--out`` (INTER_AREA, MJPG at quality 95), so both sizes are decoded from a file as a camera's
stream would be. Watch-list: ``--people`` LFW people (seeded sample of every LFW person, the
first photo of each), enrolled by MTCNN (``--min-face 20``, the dominant face) and the teacher,
kept in ``--out/gallery-<N>.safetensors`` and reused. Thresholds: the shipped track
calibrations for this watch-list's size, as ``lrface watch`` picks them.

Settings, each run on the same file in this one process (``--settings``):

- ``full``: every frame detected whole (``--full-every 1``) with the previous MTCNN pyramid
  (``area``), every tracked face embedded, one thread: the reference;
- ``before``: ``lrface watch``'s defaults before this work: ``area`` pyramid, motion gating
  with the whole frame whenever the moving regions cover more than half of it
  (``--crowd-full-every 1``, ``max_area`` 0.5), one thread;
- ``after-1-thread``: the defaults now (``cascade`` pyramid, track canvases; a crowd searched
  whole every 10th frame and around its tracks every 2nd) in one thread;
- ``after``: the defaults now, in four threads (decode and motion gate / whole frames / the
  rest of detection and tracking / embed);
- ``crowd WxT`` (``--crowd``): ``after-1-thread`` with the crowd searched whole every W-th
  frame and around its tracks every T-th;
- ``FIELD=V`` (``--gate FIELD=V1,V2``): ``after-1-thread`` with that GateConfig field set
  (``canvas_range``: the track canvases searched for faces from 1/V to V times the tracked
  widths; ``max_area``: the share of the frame moving above which it is a crowd);
- ``FIELD=V`` (``--watch FIELD=V1,V2``): ``after`` with that WatchConfig field set (e.g.
  ``enough_faces``: a track's faces embedded only while they could still change its decision);
- ``upscaled``: ``after`` with ``--min-face 6``, MTCNN's upscaled pass for faces under 12 px
  (issue 25; for downscaled copies, ``--heights 270``, where faces are 8-25 px).

Per setting: start-up (detector, encoders, gallery, thresholds built; first frame not
included) apart from the frames' wall seconds (decode, detect, embed, track, decide), frames/s
in wall time, this process's CPU seconds, each stage's CPU seconds per frame (decoding;
``gate``: the motion gate's look at each frame, in the decoding thread, pipelined only;
``whole``: the frames the gate searches whole, found ahead, pipelined only; ``locate``: the
other detections and tracking, and the gate in one thread; ``record``: embedding, pooling,
deciding; each stage's own thread's CPU time, ``time.thread_time``), for the pipelined
setting the frames/s these allow on two free cores (no thread faster than its stages, the
whole no faster than two cores' worth: ``1 / max(threads, sum / 2)``, a figure the other jobs
on a shared machine move far less than wall time), and the tracks (``min_faces`` 2, as the
CLI). Each
setting's tracks are matched to the reference's: a reference track is *found* when a track of
the setting has a face in at least one of the same frames with box IoU >= 0.5 (the candidate
sharing most such frames is its match); *same decision* when the match's answer (identity or
unknown) is the reference's. The 1-minute load average before and after each setting is
recorded: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import torch

from lrface.constants import TEMPLATE_FLIP
from lrface.data.lfw import LFW
from lrface.detect import box_iou
from lrface.detect.mtcnn import MTCNN
from lrface.machine import describe_machine
from lrface.paths import shared_video
from lrface.pipeline import FaceInputError, load_pipeline, watch_calibrations
from lrface.search.decision import gallery_searcher
from lrface.search.gallery import Gallery
from lrface.video.decide import watch_thresholds
from lrface.video.motion import GateConfig
from lrface.video.sources import open_source
from lrface.video.watcher import FaceWatcher, TrackEvent, WatchConfig

TEACHER = "dlib-resnet-torch"
STUDENT = "lrface-lr-v2"


@dataclass
class Setting:
    """How one run detects and watches: MTCNN keyword arguments and the WatchConfig."""

    detector: dict = field(default_factory=dict)
    watch: dict = field(default_factory=dict)


SETTINGS = {
    "full": Setting({"pyramid": "area"}, {"gate": GateConfig(full_every=1), "pipelined": False}),
    "before": Setting(
        {"pyramid": "area"},
        {"gate": GateConfig(full_every=10, max_area=0.5, crowd_full_every=1), "pipelined": False},
    ),
    "after-1-thread": Setting({"pyramid": "cascade"}, {"pipelined": False}),
    "after": Setting({"pyramid": "cascade"}),
    "upscaled": Setting({"pyramid": "cascade", "min_face": 6}),
}


def build_gallery(lfw: LFW, people: int, seed: int, path: Path) -> Gallery:
    """``people`` LFW people (seeded), one photo each (their first), enrolled by the teacher;
    loaded from ``path`` when it is there."""
    if path.is_file():
        return Gallery.load(path)
    first: dict[str, Path] = {}
    for image in lfw.images():
        first.setdefault(image.identity, lfw.path(image.relpath))
    chosen = random.Random(seed).sample(sorted(first), people)
    pipe = load_pipeline(TEACHER, None, "mtcnn", 20, runtime="onnx")
    gallery = Gallery(pipe.teacher.cache_key, pipe.dim, TEACHER)
    skipped = 0
    for person in chosen:
        try:
            embedded = pipe.embed_template(first[person], "dominant")[0]
        except FaceInputError:
            skipped += 1
            continue
        gallery.add(person, embedded.embedding[None], [str(first[person])])
    print(f"watch-list: {len(gallery)} of {people} people enrolled ({skipped} photos skipped)")
    gallery.save(path)
    return gallery


def scaled_copy(video: Path, height: int, out: Path) -> Path:
    """``video`` at ``height`` (INTER_AREA), written once as MJPG (quality 95) into ``out``."""
    if height == 1080:
        return video
    path = out / f"{video.stem}-{height}p.avi"
    if path.is_file():
        return path
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        width = round(frame.shape[1] * height / frame.shape[0])
        small = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        if writer is None:
            writer = cv2.VideoWriter(
                str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height)
            )
            writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
        writer.write(small)
    cap.release()
    writer.release()
    return path


def run(setting: Setting, source: Path, gallery: Gallery, min_face: float) -> dict:
    """Start-up, then every frame of ``source`` through FaceWatcher; times and tracks."""
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    det = MTCNN(**({"min_face": min_face} | setting.detector))
    pipe = load_pipeline(TEACHER, STUDENT, det, runtime="onnx")  # as lrface watch
    thresholds = watch_thresholds(pipe, gallery, watch_calibrations(TEACHER, STUDENT))[0]
    watcher = FaceWatcher(
        det, pipe.embed_faces, gallery_searcher(gallery), thresholds, WatchConfig(**setting.watch)
    )
    frames = open_source(source)
    startup = time.perf_counter() - start
    stages = {"decode": 0.0, "gate": 0.0, "whole": 0.0, "locate": 0.0, "record": 0.0}
    search_whole = watcher.search_whole
    watcher.search_whole = lambda: thread_timed(search_whole(), stages, "whole")
    for name in ("observe", "locate", "record"):
        setattr(watcher, name, thread_timed(getattr(watcher, name), stages, STAGE[name]))
    wall, cpu = time.perf_counter(), time.process_time()
    events = list(watcher.watch(decode_timed(frames, stages)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = watcher.frames_processed
    # on two free cores: no thread faster than its stages, nor the whole faster than 2 cores
    threads = [stages["decode"] + stages["gate"], stages["whole"], stages["locate"]]
    two_cores = max(*threads, stages["record"], sum(stages.values()) / 2)
    return {
        "startup_s": round(startup, 2),
        "frames": n,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "fps": round(n / wall, 2),
        "stage_cpu_s_per_frame": {k: round(v / n, 4) for k, v in stages.items()},
        "fps_two_free_cores": round(n / two_cores, 2) if watcher.config.pipelined else None,
        "faces": watcher.faces_seen,
        "faces_embedded": watcher.faces_embedded,
        "tracks": len(events),
        "unknown": sum(e.decision.unknown for e in events),
        "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "events": events,
    }


STAGE = {"observe": "gate", "locate": "locate", "record": "record"}
"""The stage each timed FaceWatcher method's CPU seconds count for."""


def thread_timed(step, stages: dict, name: str):
    """``step`` adding the CPU seconds of its thread it took to ``stages[name]``."""

    def timed(*args):
        start = time.thread_time()
        try:
            return step(*args)
        finally:
            stages[name] += time.thread_time() - start

    return timed


def decode_timed(frames, stages: dict):
    """``frames``, adding the decoding thread's CPU seconds to ``stages["decode"]``."""
    iterator = iter(frames)
    while True:
        start = time.thread_time()
        frame = next(iterator, None)
        stages["decode"] += time.thread_time() - start
        if frame is None:
            return
        yield frame


def shared_frames(a: TrackEvent, b: TrackEvent, iou: float = 0.5) -> int:
    """Frames where both tracks have a face and the boxes overlap by ``iou`` or more."""
    boxes = {o.frame: o.face.box for o in b.observations}
    return sum(
        o.frame in boxes and box_iou(o.face.box, boxes[o.frame]) >= iou for o in a.observations
    )


def compare(reference: list[TrackEvent], other: list[TrackEvent]) -> dict:
    """Reference tracks found in ``other`` and those with the same identity or unknown."""
    found = same = 0
    lost = []
    for ref in reference:
        overlaps = [(shared_frames(ref, e), e) for e in other]
        best = max(overlaps, key=lambda p: p[0], default=(0, None))
        if best[0] == 0:
            lost.append(ref.to_dict() | {"why": "not found"})
            continue
        found += 1
        if best[1].decision.identity == ref.decision.identity:
            same += 1
        else:
            why = f"decided {best[1].decision.identity} at {best[1].decision.score:.4f}"
            lost.append(ref.to_dict() | {"why": why})
    n = max(len(reference), 1)
    return {
        "reference_tracks": len(reference),
        "found": found,
        "found_pct": round(100 * found / n, 1),
        "same_decision": same,
        "same_decision_pct": round(100 * same / n, 1),
        "lost": [
            {
                k: t[k]
                for k in (
                    "track_id",
                    "first_frame",
                    "last_frame",
                    "frames_used",
                    "median_face_px",
                    "identity",
                    "score",
                    "threshold",
                    "why",
                )
            }  # fmt: skip
            for t in lost
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", type=Path, default=None, help="default: ../shared/data/video/")
    ap.add_argument("--heights", default="1080,720")
    ap.add_argument("--settings", default="full,before,after-1-thread,after")
    ap.add_argument(
        "--crowd",
        default="",
        help="extra one-thread settings of the crowd schedule, WxT,...: the whole frame every "
        "W-th crowded frame, the tracks every T-th (e.g. 5x1,5x2,10x2,10x3)",
    )
    ap.add_argument(
        "--gate",
        action="append",
        default=[],
        metavar="FIELD=V1,V2",
        help="extra one-thread settings, one per value of a GateConfig field (repeatable), "
        "e.g. canvas_range=2,1.5 or max_area=0.5,0.4",
    )
    ap.add_argument(
        "--watch",
        action="append",
        default=[],
        metavar="FIELD=V1,V2",
        help="extra settings of after, one per value of a WatchConfig field (repeatable), "
        "e.g. enough_faces=4,8",
    )
    ap.add_argument("--people", type=int, default=400)
    ap.add_argument("--min-face", type=float, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lfw", default=None)
    ap.add_argument("--out", type=Path, default=Path("out/video-real"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    mirrored = "-mirrored" if TEMPLATE_FLIP else ""  # a gallery cached before is not reused
    cached = args.out / f"gallery-{args.people}{mirrored}.safetensors"
    gallery = build_gallery(LFW(args.lfw), args.people, args.seed, cached)
    video = args.video or shared_video()
    report: dict = {
        "video": str(video),
        "watch_list": len(gallery),
        "machine": describe_machine(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "runs": [],
    }
    for height in (int(h) for h in args.heights.split(",")):
        source = scaled_copy(video, height, args.out)
        results = {}
        for name in args.settings.split(","):
            results[name] = run(SETTINGS[name], source, gallery, args.min_face)
        for schedule in filter(None, args.crowd.split(",")):
            whole, tracks = (int(v) for v in schedule.split("x"))
            gate = GateConfig(crowd_full_every=whole, crowd_track_every=tracks)
            setting = Setting({"pyramid": "cascade"}, {"gate": gate, "pipelined": False})
            results[f"crowd {schedule}"] = run(setting, source, gallery, args.min_face)
        for field_values in args.gate:
            name, values = field_values.split("=")
            for value in values.split(","):
                gate = GateConfig(**{name: float(value)})
                setting = Setting({"pyramid": "cascade"}, {"gate": gate, "pipelined": False})
                results[f"{name}={value}"] = run(setting, source, gallery, args.min_face)
        for field_values in args.watch:
            name, values = field_values.split("=")
            for value in values.split(","):
                kind = type(getattr(WatchConfig(), name))
                setting = Setting({"pyramid": "cascade"}, {name: kind(value)})
                results[f"{name}={value}"] = run(setting, source, gallery, args.min_face)
        reference = results.get("full", {}).get("events")
        for name, row in results.items():
            events = row.pop("events")
            if reference is not None and name != "full":
                row["vs_full"] = compare(reference, events)
            row |= {"height": height, "setting": name}
            print(json.dumps({k: v for k, v in row.items() if k != "vs_full"}), flush=True)
            if "vs_full" in row:
                print("  vs full:", json.dumps({k: v for k, v in row["vs_full"].items()
                                                 if k != "lost"}), flush=True)  # fmt: skip
                for track in row["vs_full"]["lost"]:
                    print("  lost:", json.dumps(track), flush=True)
            report["runs"].append(row)
    (args.out / "results.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
