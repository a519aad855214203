"""Runner for the synthetic CCTV watch-list benchmark (``lrface.eval.video`` states how clips are
made and scored): detection rate, frame vs track rank-1 and FNIR at FPIR 0.01 / 0.1 per face
size (or face-size bin of shrinking clips).

    python benchmarks/video_watchlist.py --people 60 --passersby 60 --out out/video-watchlist
    python benchmarks/video_watchlist.py --shrink 40,10 --bins 10,14,20,28,40 --frames 32 ...
    python benchmarks/video_watchlist.py --detect-only --camera "1,0,none;3,0,none;..." ...
    python benchmarks/video_watchlist.py --demo DIR   # one clip (clip.avi) + gallery photos

With ``--student CKPT`` it runs teacher alone and teacher+student on the same clips (detected
once, embedded by each); give a student that never trained on the probe people (the shipped
``lrface-lr-v1``, or a View 2 per-fold student with ``--fold``). ``--camera blur,noise,jpeg``
sets the camera effects (default 3,3,50, the original recipe); several, separated by ``;``,
are run one after the other. ``--detect-only`` measures the detection rate alone (no gallery,
no embedding). Detection is full-frame on every frame (no motion gating): this measures
recognition, not speed; tracks of a single face are kept (``min_faces=1``), so every detected
face counts at frame level. Wall and CPU seconds are reported.

Tracking is reported per clip set: tracks holding the person's faces (one per clip when
nothing fragments), clips split, tracks mixing the person with other detections; with
``--crossings`` each probe clip is also crossed with a passer-by's (``crossing``) and tracks
holding faces of both people (identity switches) are counted. ``--tracker`` sets
``TrackerConfig`` fields (e.g. ``first_distance=1.5``) for ablations.

Besides the bins, each summary has a ``whole clip`` row: the clip's longest track pooled from
all its faces, what ``lrface watch`` decides on. ``--enough-faces N`` embeds a track's faces
only while they could change its decision (``WatchConfig.enough_faces``, gated by width x
score: the watcher's weighting is then ``size-score``); the bins then hold only the faces
embedded, so compare its ``whole clip`` row, not the bins.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from lrface.data.lfw import LFW, fold_people
from lrface.detect.mtcnn import MTCNN
from lrface.eval.track_openset import WHOLE
from lrface.eval.video import (
    PATCH_WIDTHS,
    Camera,
    Clip,
    ClipSpec,
    Replay,
    bin_label,
    face_photo,
    frame_bins,
    make_clip,
    on_face,
    run_clip,
    summarize,
)
from lrface.models.factory import create_encoder
from lrface.pipeline import FacePipeline
from lrface.search.decision import gallery_searcher
from lrface.search.gallery import Gallery
from lrface.video.aggregate import WEIGHTINGS
from lrface.video.decide import fixed_threshold
from lrface.video.motion import GateConfig
from lrface.video.sources import Frame
from lrface.video.tracking import TrackerConfig
from lrface.video.watcher import FaceWatcher, WatchConfig


class RecordingWatcher(FaceWatcher):
    """A ``FaceWatcher`` that keeps the events it yields, for the tracking figures."""

    def watch(self, frames):
        self.events = []
        for event in super().watch(frames):
            self.events.append(event)
            yield event


def track_stats(clip, events) -> dict[str, int]:
    """How one clip was tracked: ``clips``; ``person_tracks``, tracks holding a face detected
    on the person's true box (1 per clip when nothing fragments); ``split_clips``, clips whose
    person faces went to more than one track; ``mixed_tracks``, tracks holding faces on the
    person and off it (a false detection, or another person, joined the track)."""
    on = [[on_face(o.face, clip.boxes[o.frame]) for o in e.observations] for e in events]
    person = [flags for flags in on if any(flags)]
    return {
        "clips": 1,
        "person_tracks": len(person),
        "split_clips": int(len(person) > 1),
        "mixed_tracks": sum(not all(flags) for flags in person),
    }


def crossing(a: Clip, b: Clip) -> Clip:
    """``a``'s frames with ``b``'s face patch pasted over them, mirrored if both walk the same
    way and moved to half a face below ``a``'s path, so the two faces cross (``b`` in front)
    mid-clip. The returned boxes stack ``a``'s then ``b``'s (frames x 2 x 4)."""
    h, w = a.frames[0].shape[:2]
    mirror = np.sign(a.boxes[-1, 0] - a.boxes[0, 0]) == np.sign(b.boxes[-1, 0] - b.boxes[0, 0])
    frames, boxes = [], []
    for image, b_image, a_box, b_box in zip(a.frames, b.frames, a.boxes, b.boxes, strict=True):
        if mirror:
            b_image = b_image[:, ::-1]
            b_box = np.array([w - b_box[2], b_box[1], w - b_box[0], b_box[3]], np.float32)
        width = float(b_box[2] - b_box[0])
        dy = int(round((a_box[1] + a_box[3]) / 2 + width / 2 - (b_box[1] + b_box[3]) / 2))
        side = int(round(PATCH_WIDTHS * width))
        x0 = int(round((b_box[0] + b_box[2]) / 2 - side / 2))
        y0 = int(round((b_box[1] + b_box[3]) / 2 - side / 2))
        mask = np.zeros((side, side), np.float32)
        axes = (int(side * 0.4), int(side * 0.45))
        cv2.ellipse(mask, (side // 2, side // 2), axes, 0, 0, 360, 1, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), side / 12)[..., None]
        # the patch's rows and columns inside both frames (source at y0, destination at y0 + dy)
        top, left = max(0, -y0, -(y0 + dy)), max(0, -x0)
        bottom, right = min(side, h - y0, h - y0 - dy), min(side, w - x0)
        out = image.astype(np.float32)
        if bottom > top and right > left:
            src = b_image[y0 + top : y0 + bottom, x0 + left : x0 + right].astype(np.float32)
            dst = out[y0 + dy + top : y0 + dy + bottom, x0 + left : x0 + right]
            m = mask[top:bottom, left:right]
            out[y0 + dy + top : y0 + dy + bottom, x0 + left : x0 + right] = m * src + (1 - m) * dst
        frames.append(np.clip(out, 0, 255).astype(np.uint8))
        boxes.append([a_box, b_box + np.array([0, dy, 0, dy], np.float32)])
    return Clip(frames, np.array(boxes, np.float32), a.sizes)


def crossing_stats(clip: Clip, events) -> dict[str, int]:
    """Two people crossing: ``person_tracks`` holding faces of either (2 when nothing
    fragments), ``switches``: tracks holding faces of both (an identity switch or merge)."""
    whose = []
    for event in events:
        people = set()
        for o in event.observations:
            hits = [on_face(o.face, box) for box in clip.boxes[o.frame]]
            if sum(hits) == 1:  # a face on both boxes (they overlap) says nothing
                people.add(hits.index(True))
        whose.append(people)
    return {
        "pairs": 1,
        "person_tracks": sum(bool(p) for p in whose),
        "switches": sum(len(p) > 1 for p in whose),
    }


def detection_rates(clip, faces_per_frame, bins) -> dict[str, list[int]]:
    """Per bin: [frames with a face detected on the true face, frames]."""
    out: dict[str, list[int]] = {}
    for label, box, faces in zip(frame_bins(clip.sizes, bins), clip.boxes, faces_per_frame,
                                 strict=True):  # fmt: skip
        if label is None:
            continue
        hit = any(on_face(f, box) for f in faces)
        counts = out.setdefault(label, [0, 0])
        counts[0] += hit
        counts[1] += 1
    return out


def markdown(summary: dict, weightings) -> list[str]:
    """One table row per bin: detection, frame and track rank-1, FNIR at FPIR 0.1 / 0.01."""
    rows = []
    for label, e in summary.items():
        f = e["frame"]
        tracks = " / ".join(f"{e[f'track/{w}']['rank1']:.0%}" for w in weightings)
        fnir = " / ".join(
            f"{e[f'track/{w}']['fnir@fpir=0.1']:.2f}, {e[f'track/{w}']['fnir@fpir=0.01']:.2f}"
            for w in weightings
        )
        rows.append(
            f"| {label} px | {e['detection_rate']:.0%} | {f['rank1']:.1%} | {tracks} | "
            f"{f['fnir@fpir=0.1']:.2f}, {f['fnir@fpir=0.01']:.2f} | {fnir} | "
            f"{e['tracks_detected']:.0%} | {e['extra_tracks']} |"
        )
    return rows


def choose_people(lfw: LFW, n_probe: int, n_pass: int, fold: int | None, seed: int):
    pairs = lfw.view2()
    folds = fold_people(pairs)
    people = sorted(folds[fold]) if fold is not None else sorted(set().union(*folds.values()))
    photos = defaultdict(list)
    for im in lfw.images():
        photos[im.identity].append(lfw.path(im.relpath))
    rng = random.Random(seed)
    multi = [p for p in people if len(photos[p]) >= 2]
    probes = rng.sample(multi, min(n_probe, len(multi)))
    rest = [p for p in people if p not in set(probes)]
    passers = rng.sample(rest, min(n_pass, len(rest)))
    return probes, passers, photos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lfw", default=None)
    ap.add_argument("--people", type=int, default=60)
    ap.add_argument("--passersby", type=int, default=60)
    ap.add_argument("--sizes", default="12,16,24")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--shrink", default=None, help="FROM,TO: faces shrink across each clip")
    ap.add_argument("--bins", default="10,14,20,28,40", help="bin edges (px) with --shrink")
    ap.add_argument("--camera", default="3,3,50", help="blur,noise,jpeg[;...] (jpeg: none)")
    ap.add_argument("--detect-only", action="store_true")
    ap.add_argument(
        "--crossings", action="store_true", help="also cross each probe with a passer-by"
    )
    ap.add_argument(
        "--tracker",
        default="",
        help="TrackerConfig fields, e.g. first_distance=1.5,velocity_std=1 (default: defaults)",
    )
    ap.add_argument(
        "--enough-faces", type=int, default=0, help="WatchConfig.enough_faces (0: every face)"
    )
    ap.add_argument("--student", default=None)
    ap.add_argument("--fold", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("out/video-watchlist"))
    ap.add_argument("--demo", type=Path, default=None, help="write one demo clip and exit")
    args = ap.parse_args()

    fields = dict(kv.split("=") for kv in args.tracker.split(",") if kv)
    defaults = TrackerConfig()
    if unknown := set(fields) - set(vars(defaults)):
        ap.error(f"--tracker: no TrackerConfig field {sorted(unknown)}")
    tracker = TrackerConfig(**{k: type(getattr(defaults, k))(v) for k, v in fields.items()})
    lfw = LFW(args.lfw)
    n_probe = 2 if args.demo else args.people
    probes, passers, photos = choose_people(
        lfw, n_probe, 1 if args.demo else args.passersby, args.fold, args.seed
    )
    photo_detector = MTCNN(min_face=20)
    if args.demo:
        write_demo(args.demo, probes, passers, photos, photo_detector)
        return
    cameras = [Camera.parse(c) for c in args.camera.split(";")]
    if args.shrink:
        start_px, end_px = (int(v) for v in args.shrink.split(","))
        edges = [float(v) for v in args.bins.split(",")]
        bins = list(zip(edges[:-1], edges[1:], strict=True))
        clip_sizes = [(start_px, end_px)]
    else:
        clip_sizes = [(int(v), None) for v in args.sizes.split(",")]
        bins = [(float(v), float(v)) for v, _ in clip_sizes]
    teacher = create_encoder("dlib-resnet-torch")
    enroll = FacePipeline(photo_detector, teacher, None)
    gallery = Gallery(teacher.cache_key, teacher.dim, "dlib-resnet-torch")
    probe_photos = {}
    for person in tqdm(probes, desc="enrol"):
        found = [f for f in (face_photo(p, photo_detector) for p in photos[person]) if f]
        if len(found) < 2:
            continue
        if not args.detect_only:
            embedded = enroll.embed_faces(found[0][0], [found[0][1]], template=True)[0]
            gallery.add(person, embedded.embedding[None])
        probe_photos[person] = [(image, face.box) for image, face in found[1:4]]
    pass_photos = {}
    for person in passers:
        found = [f for f in (face_photo(p, photo_detector) for p in photos[person][:3]) if f]
        if found:
            pass_photos[person] = [(image, face.box) for image, face in found]
    clip_detector = MTCNN(min_face=12)
    # student None: FacePipeline would otherwise load the shipped student by default
    configs = {} if args.detect_only else {"teacher": FacePipeline(clip_detector, teacher, None)}
    if args.student and not args.detect_only:
        student = create_encoder(args.student)
        configs["teacher+student"] = FacePipeline(clip_detector, teacher, student)
    searcher = gallery_searcher(gallery)
    jobs = [(p, ph, True) for p, ph in probe_photos.items()]
    jobs += [(p, ph, False) for p, ph in pass_photos.items()]
    report = {
        "probe_people": len(probe_photos),
        "passersby": len(pass_photos),
        "clips": [{"size": a, "end_size": b} for a, b in clip_sizes],
        "bins": [bin_label(b) for b in bins],
        "frames": args.frames,
        "student": args.student,
        "tracker": str(tracker),
        "cameras": {},
    }
    config = WatchConfig(
        weighting="size-score" if args.enough_faces else WEIGHTINGS[0],
        min_faces=1,
        gate=GateConfig(full_every=1),
        tracker=tracker,
        enough_faces=args.enough_faces,
    )
    started, cpu_started = time.time(), time.process_time()
    for camera in cameras:
        results: dict[str, list] = {name: [] for name in configs}
        rates: dict[str, list[int]] = {}
        tracking: dict[str, dict[str, Counter]] = {name: {} for name in configs}
        for size, end_size in clip_sizes:
            desc = f"{camera.label()}, {size}" + (f"-{end_size}" if end_size else "") + " px"
            probe_clips: list[Clip] = []
            passer_clips: list[Clip] = []
            for i, (person, found, enrolled) in enumerate(tqdm(jobs, desc=desc)):
                spec = ClipSpec(
                    person, found, size, args.frames, args.seed * 7919 + i, end_size, camera
                )
                clip = make_clip(spec)
                replay = Replay(clip_detector, clip.frames)
                detected = [replay.detect(f) for f in clip.frames]
                for label, (hits, n) in detection_rates(clip, detected, bins).items():
                    counts = rates.setdefault(label, [0, 0])
                    counts[0] += hits
                    counts[1] += n
                for name, pipe in configs.items():
                    watcher = RecordingWatcher(
                        replay, pipe.embed_faces, searcher, fixed_threshold(None), config
                    )
                    results[name].append(
                        run_clip(clip, spec, enrolled, watcher, WEIGHTINGS, bins, WHOLE)
                    )
                    counts = tracking[name].setdefault(desc, Counter())
                    counts.update(track_stats(clip, watcher.events))
                if args.crossings and configs:
                    (probe_clips if enrolled else passer_clips).append(clip)
            # the i-th probe crosses the i-th passer-by; unpaired clips are left out
            for a, b in zip(probe_clips, passer_clips, strict=False):
                clip = crossing(a, b)
                replay = Replay(clip_detector, clip.frames)
                for name, pipe in configs.items():
                    watcher = RecordingWatcher(
                        replay, pipe.embed_faces, searcher, fixed_threshold(None), config
                    )
                    list(watcher.watch(Frame(i, i / 25, f) for i, f in enumerate(clip.frames)))
                    counts = tracking[name].setdefault(f"{desc}, crossing", Counter())
                    counts.update(crossing_stats(clip, watcher.events))
        entry: dict = {"detection_rate": {k: h / max(n, 1) for k, (h, n) in rates.items()}}
        for name in configs:
            entry[name] = summarize(results[name], WEIGHTINGS)
            print(f"\n{camera.label()}, {name}: weightings {' / '.join(WEIGHTINGS)}")
            print("\n".join(markdown(entry[name], WEIGHTINGS)))
            entry[f"{name}/tracking"] = {k: dict(v) for k, v in tracking[name].items()}
            for clips, c in tracking[name].items():
                print(
                    f"tracking, {clips}: {c['person_tracks']} person tracks in {c['clips']} "
                    f"clips, {c['split_clips']} clips split, {c['mixed_tracks']} mixed tracks"
                    if "clips" in c
                    else f"tracking, {clips}: {c['person_tracks']} person tracks for "
                    f"{c['pairs']} pairs, {c['switches']} tracks holding both people"
                )
        if args.detect_only:
            print(f"{camera.label()}: detection rate {json.dumps(entry['detection_rate'])}")
        report["cameras"][camera.label()] = entry
    report["seconds"] = round(time.time() - started)
    report["cpu_seconds"] = round(time.process_time() - cpu_started)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2))
    print(
        f"{report['seconds']} s wall, {report['cpu_seconds']} s CPU; wrote {args.out}/results.json"
    )


def write_demo(out: Path, probes, passers, photos, detector) -> None:
    """clip.avi: the two probe people one after the other and a passer-by; gallery/ holds the
    probes' enrolment photos (for ``lrface gallery enroll``)."""
    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for i, person in enumerate([*probes, *passers]):
        found = [f for f in (face_photo(p, detector) for p in photos[person][:4]) if f]
        if person in probes:
            target = out / "gallery" / person
            target.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(target / "enrolled.jpg"), found[0][0][:, :, ::-1])
            found = found[1:] or found
        spec = ClipSpec(person, [(im, f.box) for im, f in found], 24, 20, seed=i)
        frames += make_clip(spec).frames
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(out / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    for f in frames:
        writer.write(np.ascontiguousarray(f[:, :, ::-1]))
    writer.release()
    print(f"wrote {out / 'clip.avi'} ({len(frames)} frames) and {out / 'gallery'}")


if __name__ == "__main__":
    main()
