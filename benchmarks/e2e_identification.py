"""End-to-end 1:N identification on LFW (#6): HR gallery, low-resolution probes, detection included.

Gallery: for each LFW person with two or more images, their first image (sorted) at full
resolution, detected by MTCNN (min face 20 px, the pipeline's default), aligned and embedded by
the teacher. The enrolled embeddings are cached in ``<cache>/galleries/`` per teacher and
detector settings, each identity tagged with the sha1 of its image, so later runs (or a larger
``--limit``) embed only what is new. A person whose gallery photo gives no MTCNN face is left
out of the benchmark (and counted).

Probes: each person's second image. The raw 250x250 image is area-resized (PIL box filter) by
``s / 110`` (LFW faces are about 110 px wide), so the face is about ``s`` px wide, e.g. 36x36
for 16 px. MTCNN (min face 12 px) runs on that small image as it is: no upscaling, it finds
the faces without it. The largest face is kept (the pipeline's ``largest`` policy), then:

* teacher alone: ``FacePipeline(mtcnn, teacher)``, which warps the face straight to the
  teacher's 150 px chip from the small image;
* teacher + student: ``FacePipeline(mtcnn, teacher, student, size_cutoff)``, whose routing gives
  faces narrower than the cutoff (all of them at 16 and 24 px) to the student as a chip at the
  face's native resolution (``native_chip_size``); wider ones still go to the teacher.

A probe without a detected face is a miss at every rank ("no face"); "other face" counts kept
faces that are off-centre or of an implausible width (likely someone in the background; they
are searched like any other). Scores: rank-1 and rank-5 identification rates over all probes.

Reference without detection: the dlib-aligned 150 px chip of the same probe (the project's chip
cache) area-downsampled to ``round(s * 124 / 110)`` px, the side with the pixel density of the
``s`` px face (a 110 px LFW face gives a 124 px dlib chip side: median ``150 / chip_scale`` over
every 130th LFW image), embedded by the teacher (bicubic to 150) and by the student (native),
through the embedding cache.

    python benchmarks/e2e_identification.py --limit 200 --out e2e.json
    python benchmarks/e2e_identification.py --student runs/<run>/best --out e2e.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import faiss
import numpy as np
import torch
from detection_rate import FACE_PX, is_hit
from tqdm import tqdm

from lrface.data.chips import aligned_chips
from lrface.data.degrade import EvalDegradation
from lrface.data.detected import shrink_image
from lrface.data.images import load_rgb
from lrface.data.lfw import LFW, fold_people
from lrface.detect.mtcnn import MTCNN
from lrface.eval.embeddings import embed_chipset
from lrface.machine import describe_machine
from lrface.models.encoder import FaceEncoder
from lrface.models.registry import create_encoder
from lrface.paths import cache_dir
from lrface.pipeline import (
    DEFAULT_SIZE_CUTOFF,
    EmbeddedFace,
    FacePipeline,
    NoFaceError,
    select_faces,
)
from lrface.search.gallery import Gallery

CHIP_PX_PER_FACE_PX = 124 / FACE_PX
GALLERY_MIN_FACE = 20
PROBE_MIN_FACE = 12
DETECT_CHUNK = 32
TOP_K = 5


@dataclass(frozen=True)
class Person:
    """One benchmark identity: the gallery photo and the probe photo (LFW relpaths)."""

    name: str
    gallery: str
    probe: str


@dataclass
class Scores:
    """Rank-1/rank-5 hits of one probe set against the gallery, over ``probes`` probes."""

    probes: int
    rank1: int
    rank5: int

    def to_dict(self) -> dict:
        return {
            "probes": self.probes,
            "rank1_hits": self.rank1,
            "rank5_hits": self.rank5,
            "rank1": round(self.rank1 / self.probes, 4),
            "rank5": round(self.rank5 / self.probes, 4),
        }


def benchmark_people(lfw: LFW, limit: int | None) -> list[Person]:
    """People with two or more images, in name order, with their first and second image."""
    by_name: dict[str, list[str]] = {}
    for image in lfw.images():
        by_name.setdefault(image.identity, []).append(image.relpath)
    people = [Person(n, rels[0], rels[1]) for n, rels in sorted(by_name.items()) if len(rels) > 1]
    return people[:limit] if limit is not None else people


def file_sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def gallery_cache_path(teacher: FaceEncoder, detector: MTCNN) -> Path:
    """Cached gallery file for this teacher (its weights) and these MTCNN settings."""
    key = hashlib.sha1(json.dumps(detector.settings, sort_keys=True).encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", teacher.cache_key)
    return cache_dir() / "galleries" / f"lfw-e2e-{safe}-mtcnn-{key}.safetensors"


def enroll(
    lfw: LFW, people: list[Person], teacher: FaceEncoder, progress: bool
) -> tuple[Gallery, list[str]]:
    """Gallery of ``people`` (first photo each, MTCNN + teacher) and the names left out.

    Embeddings come from the cached gallery where its identity carries the photo's sha1; the
    rest are detected and embedded, and added to the cache.
    """
    pipe = FacePipeline(MTCNN(min_face=GALLERY_MIN_FACE), teacher)
    path = gallery_cache_path(teacher, pipe.detector)
    cached = Gallery.load(path) if path.is_file() else Gallery(teacher.cache_key, teacher.dim)
    cached.check_compatible(teacher.cache_key, teacher.dim, path)
    keys = {p.name: file_sha1(lfw.path(p.gallery)) for p in people}
    todo = [
        p
        for p in people
        if p.name not in cached or cached.identity(p.name).sources != [keys[p.name]]
    ]
    left_out: list[str] = []
    with tqdm(total=len(todo), desc="enroll", unit="img", disable=not progress) as bar:
        for start in range(0, len(todo), DETECT_CHUNK):
            chunk = todo[start : start + DETECT_CHUNK]
            images = [load_rgb(lfw.path(p.gallery)) for p in chunk]
            found = pipe.detector.detect_batch(images)
            for person, image, faces in zip(chunk, images, found, strict=True):
                try:
                    faces = select_faces(faces, "largest", person.gallery)
                except NoFaceError:
                    left_out.append(person.name)
                    continue
                if person.name in cached:
                    cached.remove(person.name)
                embedding = pipe.embed_faces(image, faces)[0].embedding
                cached.add(person.name, embedding[None], [keys[person.name]])
            bar.update(len(chunk))
    if len(todo) > len(left_out):
        cached.save(path)
    gallery = Gallery(teacher.cache_key, teacher.dim)
    for person in people:
        if person.name not in left_out:
            gallery.add(person.name, cached.identity(person.name).embeddings, [person.gallery])
    return gallery, left_out


def score(gallery: Gallery, embeddings: np.ndarray, names: list[str], total: int) -> Scores:
    """Hits of ``embeddings`` (true identities ``names``) among ``total`` probes (rest: misses)."""
    if not names:
        return Scores(total, 0, 0)
    matches = gallery.search(embeddings, TOP_K)
    rank1 = sum(ms[0].name == n for ms, n in zip(matches, names, strict=True))
    rank5 = sum(n in {m.name for m in ms} for ms, n in zip(matches, names, strict=True))
    return Scores(total, rank1, rank5)


def run_detected(
    lfw: LFW,
    people: list[Person],
    face_px: int,
    pipes: dict[str, FacePipeline],
    gallery: Gallery,
    progress: bool,
) -> dict:
    """Degrade, detect (once) and embed every probe with each pipeline; scores and counts."""
    detector = next(iter(pipes.values())).detector
    embedded: dict[str, list[EmbeddedFace]] = {label: [] for label in pipes}
    names: list[str] = []
    no_face = other_face = side = 0
    bar = tqdm(total=len(people), desc=f"probes {face_px}px", unit="img", disable=not progress)
    for start in range(0, len(people), DETECT_CHUNK):
        chunk = people[start : start + DETECT_CHUNK]
        images = [shrink_image(load_rgb(lfw.path(p.probe)), face_px) for p in chunk]
        side = images[0].shape[1]
        for person, image, faces in zip(chunk, images, detector.detect_batch(images), strict=True):
            try:
                faces = select_faces(faces, "largest", person.probe)
            except NoFaceError:
                no_face += 1
                continue
            other_face += not is_hit(faces, image.shape[1], face_px)
            names.append(person.name)
            for label, pipe in pipes.items():
                embedded[label].append(pipe.embed_faces(image, faces)[0])
        bar.update(len(chunk))
    bar.close()
    chip_px = [f.chip_size for faces in embedded.values() for f in faces if f.role == "student"]
    results = {}
    for label, faces in embedded.items():
        vectors = np.stack([f.embedding for f in faces]) if faces else np.zeros((0, gallery.dim))
        results[label] = {
            **score(gallery, vectors, names, len(people)).to_dict(),
            "student_served": sum(f.role == "student" for f in faces),
        }
    return {
        "image_px": side,
        "no_face": no_face,
        "other_face": other_face,
        "student_chip_px_median": float(np.median(chip_px)) if chip_px else None,
        "pipelines": results,
    }


def run_reference(
    lfw: LFW,
    people: list[Person],
    face_px: int,
    encoders: dict[str, FaceEncoder],
    gallery: Gallery,
    progress: bool,
) -> dict:
    """Probes as dlib-aligned chips downsampled to the face's pixel density, no detection."""
    chipset = aligned_chips(lfw.root, [p.probe for p in people], progress=progress)
    usable = [p for p in people if p.probe in chipset.index]
    chipset = chipset.subset([p.probe for p in usable])
    chip_px = round(face_px * CHIP_PX_PER_FACE_PX)
    results = {}
    for label, encoder in encoders.items():
        vectors = embed_chipset(encoder, chipset, EvalDegradation(chip_px), progress=progress)
        results[label] = score(gallery, vectors, [p.name for p in usable], len(people)).to_dict()
    return {"chip_px": chip_px, "unaligned": len(people) - len(usable), "pipelines": results}


def markdown(report: dict) -> str:
    """The results as a Markdown table, with the run's context above it."""
    rows = [
        "| face px | probe | pipeline | rank-1 | rank-5 | no face | other face |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, res in report["sizes"].items():
        det, ref = res["detected"], res["reference"]
        for label, r in det["pipelines"].items():
            served = ""
            if label != "teacher":
                served = f" ({r['student_served']} to student"
                if det["student_chip_px_median"] is not None:
                    served += f", median chip {det['student_chip_px_median']:g} px"
                served += ")"
            rows.append(
                f"| {size} | {det['image_px']}x{det['image_px']} image, MTCNN | {label}{served} | "
                f"{100 * r['rank1']:.1f}% | {100 * r['rank5']:.1f}% | {det['no_face']} | "
                f"{det['other_face']} |"
            )
        for label, r in ref["pipelines"].items():
            rows.append(
                f"| {size} | dlib chip -> {ref['chip_px']} px, no detection | {label} | "
                f"{100 * r['rank1']:.1f}% | {100 * r['rank5']:.1f}% | {ref['unaligned']} | - |"
            )
    fold = report["probe_fold"]
    which = "" if fold is None else f", people of View 2 fold {fold}"
    if report["probe_view1"]:
        which = ", people of View 1's pairsDevTest"
    head = (
        f"LFW 1:N identification, {report['people']} people in the gallery (first photo, MTCNN + "
        f"{report['teacher']}), {report['probes']} probes (second photo"
        f"{which}); {len(report['left_out'])} left out (no "
        f"MTCNN face in the gallery photo). Student: {report['student'] or 'none'} (size "
        f"cutoff {report['size_cutoff']:g} px).\n"
        f"Wall time {report['wall_s']:.0f} s. Machine: {report['machine']}\n"
    )
    return head + "\n" + "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lfw", default=None, help="LFW root (default: lrface.paths lookup)")
    parser.add_argument("--sizes", default="16,24", help="probe face widths in px")
    parser.add_argument("--student", default=None, help="student checkpoint dir (or name)")
    parser.add_argument(
        "--size-cutoff",
        type=float,
        default=DEFAULT_SIZE_CUTOFF,
        help="faces narrower (px) go to the student",
    )
    parser.add_argument("--limit", type=int, default=None, help="first N people (default: all)")
    parser.add_argument(
        "--probe-fold",
        type=int,
        default=None,
        help="search only with people of this View 2 fold (the ones a student trained with "
        "--fold K never saw); the gallery keeps everyone",
    )
    parser.add_argument(
        "--probe-view1",
        action="store_true",
        help="search only with the people of View 1's pairsDevTest.txt (the ones a View 1 "
        "student never saw); the gallery keeps everyone",
    )
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--threads", type=int, default=1, help="torch, faiss and OpenCV threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args()
    if args.probe_view1 and args.probe_fold is not None:
        parser.error("--probe-fold and --probe-view1 exclude each other")

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    progress = not args.no_progress
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.perf_counter()

    lfw = LFW(args.lfw)
    people = benchmark_people(lfw, args.limit)
    teacher = create_encoder("dlib-resnet-torch")
    student = create_encoder(args.student) if args.student else None
    gallery, left_out = enroll(lfw, people, teacher, progress)
    people = [p for p in people if p.name not in left_out]
    probes = people
    if args.probe_fold is not None:
        held_out = fold_people(lfw.view2())[args.probe_fold]
        probes = [p for p in people if p.name in held_out]
    elif args.probe_view1:
        held_out = {name for pair in lfw.view1_test() for name in pair.people}
        probes = [p for p in people if p.name in held_out]

    detector = MTCNN(min_face=PROBE_MIN_FACE)
    pipes = {"teacher": FacePipeline(detector, teacher)}
    encoders: dict[str, FaceEncoder] = {"teacher": teacher}
    if student is not None:
        pipes["teacher+student"] = FacePipeline(detector, teacher, student, args.size_cutoff)
        encoders["student"] = student  # no routing here: what the student does at this size
    results = {
        str(s): {
            "detected": run_detected(lfw, probes, s, pipes, gallery, progress),
            "reference": run_reference(lfw, probes, s, encoders, gallery, progress),
        }
        for s in sizes
    }
    report = {
        "lfw": str(lfw.root),
        "people": len(people),
        "probes": len(probes),
        "probe_fold": args.probe_fold,
        "probe_view1": args.probe_view1,
        "left_out": left_out,
        "teacher": teacher.cache_key,
        "student": student.cache_key if student else None,
        "student_path": args.student,
        "size_cutoff": args.size_cutoff,
        "gallery_min_face": GALLERY_MIN_FACE,
        "probe_min_face": PROBE_MIN_FACE,
        "limit": args.limit,
        "sizes": results,
        "threads": args.threads,
        "wall_s": round(time.perf_counter() - started, 1),
        "machine": describe_machine(),
    }
    print(markdown(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
