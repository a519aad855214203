"""Runner for the synthetic CCTV watch-list benchmark (``lrface.eval.video`` states how clips are
made and scored): frame vs track rank-1 and FNIR at FPIR 0.01 / 0.1 per face size.

    python benchmarks/video_watchlist.py --people 60 --passersby 60 --out out/video-watchlist
    python benchmarks/video_watchlist.py --demo DIR   # one clip (clip.avi) + gallery photos

With ``--student CKPT`` it runs teacher alone and teacher+student on the same clips; give a
student that never trained on the probe people (View 2 per-fold student with ``--fold``).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from lrface.data.images import load_rgb
from lrface.data.lfw import LFW, fold_people
from lrface.detect.mtcnn import MTCNN
from lrface.eval.video import ClipSpec, make_clip, run_clip, summarize
from lrface.models.registry import create_encoder
from lrface.pipeline import FacePipeline
from lrface.search.gallery import Gallery
from lrface.video.aggregate import WEIGHTINGS
from lrface.video.decide import fixed_threshold, gallery_searcher
from lrface.video.watcher import FaceWatcher, WatchConfig


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


def face_photo(path: Path, detector: MTCNN):
    image = load_rgb(path)
    faces = detector.detect(image)
    if not faces:
        return None
    return image, max(faces, key=lambda f: f.area)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lfw", default=None)
    ap.add_argument("--people", type=int, default=60)
    ap.add_argument("--passersby", type=int, default=60)
    ap.add_argument("--sizes", default="12,16,24")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--student", default=None)
    ap.add_argument("--fold", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("out/video-watchlist"))
    ap.add_argument("--demo", type=Path, default=None, help="write one demo clip and exit")
    args = ap.parse_args()

    lfw = LFW(args.lfw)
    n_probe = 2 if args.demo else args.people
    probes, passers, photos = choose_people(
        lfw, n_probe, 1 if args.demo else args.passersby, args.fold, args.seed
    )
    photo_detector = MTCNN(min_face=20)
    teacher = create_encoder("dlib-resnet-torch")
    if args.demo:
        write_demo(args.demo, probes, passers, photos, photo_detector)
        return
    enroll = FacePipeline(photo_detector, teacher)
    gallery = Gallery(teacher.cache_key, teacher.dim, "dlib-resnet-torch")
    probe_photos = {}
    for person in tqdm(probes, desc="enrol"):
        found = [f for f in (face_photo(p, photo_detector) for p in photos[person]) if f]
        if len(found) < 2:
            continue
        gallery.add(person, enroll.embed_faces(*found[0][:1], [found[0][1]])[0].embedding[None])
        probe_photos[person] = [(image, face.box) for image, face in found[1:4]]
    pass_photos = {}
    for person in passers:
        found = [f for f in (face_photo(p, photo_detector) for p in photos[person][:3]) if f]
        if found:
            pass_photos[person] = [(image, face.box) for image, face in found]
    clip_detector = MTCNN(min_face=12)
    configs = {"teacher": FacePipeline(clip_detector, teacher)}
    if args.student:
        student = create_encoder(args.student)
        configs["teacher+student"] = FacePipeline(clip_detector, teacher, student)
    searcher = gallery_searcher(gallery)
    sizes = [int(s) for s in args.sizes.split(",")]
    report = {"gallery": len(gallery), "sizes": sizes, "frames": args.frames, "results": {}}
    started = time.time()
    for name, pipe in configs.items():
        results = []
        jobs = [(p, ph, True) for p, ph in probe_photos.items()]
        jobs += [(p, ph, False) for p, ph in pass_photos.items()]
        for size in sizes:
            for i, (person, found, enrolled) in enumerate(tqdm(jobs, desc=f"{name} {size}px")):
                spec = ClipSpec(person, found, size, args.frames, seed=args.seed * 7919 + i)
                watcher = FaceWatcher(
                    clip_detector,
                    pipe.embed_faces,
                    searcher,
                    fixed_threshold(None),
                    WatchConfig(weighting=WEIGHTINGS[0]),
                )
                frames = make_clip(spec)
                results.append(run_clip(frames, spec, enrolled, watcher, WEIGHTINGS))
        report["results"][name] = summarize(results, WEIGHTINGS)
    report["seconds"] = round(time.time() - started)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


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
        frames += make_clip(spec)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(out / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    for f in frames:
        writer.write(np.ascontiguousarray(f[:, :, ::-1]))
    writer.release()
    print(f"wrote {out / 'clip.avi'} ({len(frames)} frames) and {out / 'gallery'}")


if __name__ == "__main__":
    main()
