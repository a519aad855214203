"""End-to-end 1:N identification on LFW: enrolment, detected probes, the no-detection
reference, per-fold students (conventions: ``eval.identification``).

The enrolled gallery is cached in ``<cache>/galleries/`` per teacher and detector settings,
each identity tagged with the sha1 of its photo, so later runs (or a larger ``limit``) embed
only what is new. Unreadable photos are skipped and counted (gallery: the person is left out;
probe: a miss).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lrface.constants import TEMPLATE_FLIP
from lrface.data.chips import aligned_chips
from lrface.data.degrade import EvalDegradation
from lrface.data.detected import CAMERA_SEED, camera_view, is_subject
from lrface.data.images import BadImageError, load_rgb
from lrface.data.lfw import LFW
from lrface.detect.mtcnn import MTCNN
from lrface.eval.embeddings import embed_chipset
from lrface.eval.identification import (
    GALLERY_MIN_FACE,
    PROBE_MIN_FACE,
    Person,
    rank_rates,
    reference_chip_px,
    truth_ranks,
)
from lrface.models.encoder import FaceEncoder
from lrface.paths import cache_dir
from lrface.pipeline import EmbeddedFace, FacePipeline, NoFaceError, select_faces
from lrface.search.gallery import Gallery

DETECT_CHUNK = 32
PRESET_SEED = CAMERA_SEED
"""Seed of the camera presets' draws, as in the verification benchmark."""


def gallery_cache_path(teacher: FaceEncoder, detector: MTCNN) -> Path:
    """Cached gallery file for this teacher (its weights), these MTCNN settings and the way
    templates are made (``TEMPLATE_FLIP``)."""
    key = hashlib.sha1(json.dumps(detector.settings, sort_keys=True).encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", teacher.cache_key)
    mirrored = "-mirrored" if TEMPLATE_FLIP else ""
    return cache_dir() / "galleries" / f"lfw-e2e-{safe}-mtcnn-{key}{mirrored}.safetensors"


def _load_chunk(lfw: LFW, relpaths: list[str]) -> list[np.ndarray | None]:
    images: list[np.ndarray | None] = []
    for relpath in relpaths:
        try:
            images.append(load_rgb(lfw.path(relpath)))
        except BadImageError:
            images.append(None)
    return images


def _detect(detector: MTCNN, images: list[np.ndarray | None]) -> list[list]:
    """Detections per image; an unreadable image (``None``) has none."""
    readable = [image for image in images if image is not None]
    found = iter(detector.detect_batch(readable) if readable else [])
    return [next(found) if image is not None else [] for image in images]


def enroll(
    lfw: LFW, people: list[Person], teacher: FaceEncoder, progress: bool = True
) -> tuple[Gallery, list[str]]:
    """Gallery of ``people`` (gallery photo each, MTCNN + teacher, enrolled as templates:
    ``FacePipeline.embed_faces(template=True)``) and the names left out."""
    pipe = FacePipeline(MTCNN(min_face=GALLERY_MIN_FACE), teacher, None)
    path = gallery_cache_path(teacher, pipe.detector)
    cached = Gallery.load(path) if path.is_file() else Gallery(teacher.cache_key, teacher.dim)
    cached.check_compatible(teacher.cache_key, teacher.dim, path)
    keys = {}
    for p in people:
        try:
            keys[p.name] = hashlib.sha1(lfw.path(p.gallery).read_bytes()).hexdigest()
        except OSError:
            keys[p.name] = ""
    todo = [
        p
        for p in people
        if p.name not in cached or cached.identity(p.name).sources != [keys[p.name]]
    ]
    left_out: list[str] = []
    with tqdm(total=len(todo), desc="enroll", unit="img", disable=not progress) as bar:
        for start in range(0, len(todo), DETECT_CHUNK):
            chunk = todo[start : start + DETECT_CHUNK]
            images = _load_chunk(lfw, [p.gallery for p in chunk])
            found = _detect(pipe.detector, images)
            for person, image, faces in zip(chunk, images, found, strict=True):
                try:
                    faces = select_faces(faces, "largest", person.gallery)
                except NoFaceError:
                    left_out.append(person.name)
                    continue
                if person.name in cached:
                    cached.remove(person.name)
                embedding = pipe.embed_faces(image, faces, template=True)[0].embedding
                cached.add(person.name, embedding[None], [keys[person.name]])
            bar.update(len(chunk))
    if len(todo) > len(left_out):
        cached.save(path)
    gallery = Gallery(teacher.cache_key, teacher.dim)
    for person in people:
        if person.name not in left_out:
            gallery.add(person.name, cached.identity(person.name).embeddings, [person.gallery])
    return gallery, left_out


def _rates(gallery: Gallery, embeddings: list[np.ndarray], names: list[str], total: int) -> dict:
    """Rank-k rates of ``embeddings`` (people ``names``) over ``total`` probes."""
    everyone = gallery.names
    templates = np.stack([gallery.identity(n).template for n in everyone])
    row = {name: i for i, name in enumerate(everyone)}
    if not names:
        return rank_rates(np.zeros(0, np.int64), total)
    truth = np.array([row[n] for n in names])
    return rank_rates(truth_ranks(np.stack(embeddings), templates, truth), total)


def probe_image(image: np.ndarray, relpath: str, face_px: int, preset: str) -> np.ndarray:
    """The raw probe image as a camera at ``face_px`` px per face would give it (module
    ``eval.identification``: the shrink, and the preset's effects seeded by the path)."""
    return camera_view(image, relpath, face_px, preset)


def run_detected(
    lfw: LFW,
    people: list[Person],
    face_px: int,
    pipes: dict[str, FacePipeline],
    gallery: Gallery,
    progress: bool = True,
    preset: str = "clean",
) -> dict:
    """Shrink, detect (once) and embed every probe with each pipeline; rates and counts."""
    detector = next(iter(pipes.values())).detector
    embedded: dict[str, list[EmbeddedFace]] = {label: [] for label in pipes}
    names: list[str] = []
    no_face = other_face = unreadable = side = 0
    bar = tqdm(total=len(people), desc=f"probes {face_px}px", unit="img", disable=not progress)
    for start in range(0, len(people), DETECT_CHUNK):
        chunk = people[start : start + DETECT_CHUNK]
        images = [
            None if image is None else probe_image(image, person.probe, face_px, preset)
            for person, image in zip(chunk, _load_chunk(lfw, [p.probe for p in chunk]), strict=True)
        ]
        for person, image, faces in zip(chunk, images, _detect(detector, images), strict=True):
            if image is None:
                unreadable += 1
                continue
            side = image.shape[1]
            try:
                faces = select_faces(faces, "largest", person.probe)
            except NoFaceError:
                no_face += 1
                continue
            other_face += not any(is_subject(face, image.shape, face_px) for face in faces)
            names.append(person.name)
            for label, pipe in pipes.items():
                embedded[label].append(pipe.embed_faces(image, faces, search=True)[0])
        bar.update(len(chunk))
    bar.close()
    chip_px = [f.chip_size for faces in embedded.values() for f in faces if f.role == "student"]
    results = {
        label: {
            **_rates(gallery, [f.embedding for f in faces], names, len(people)),
            "student_served": sum(f.role == "student" for f in faces),
        }
        for label, faces in embedded.items()
    }
    return {
        "image_px": side,
        "no_face": no_face,
        "other_face": other_face,
        "unreadable": unreadable,
        "student_chip_px_median": float(np.median(chip_px)) if chip_px else None,
        "pipelines": results,
    }


def run_reference(
    lfw: LFW,
    people: list[Person],
    face_px: int,
    encoders: dict[str, FaceEncoder],
    gallery: Gallery,
    progress: bool = True,
    preset: str = "clean",
) -> dict:
    """Probes as dlib-aligned chips downsampled to the face's pixel density, no detection."""
    chipset = aligned_chips(lfw.root, [p.probe for p in people], progress=progress)
    usable = [p for p in people if p.probe in chipset.index]
    chipset = chipset.subset([p.probe for p in usable])
    chip_px = reference_chip_px(face_px)
    names = [p.name for p in usable]
    results = {}
    for label, encoder in encoders.items():
        degradation = EvalDegradation(chip_px, preset=preset, seed=PRESET_SEED)
        vectors = embed_chipset(encoder, chipset, degradation, progress=progress)
        results[label] = _rates(gallery, list(vectors), names, len(people))
    return {"chip_px": chip_px, "unaligned": len(people) - len(usable), "pipelines": results}


def identify(
    lfw: LFW,
    probes: list[Person],
    sizes: list[int],
    gallery: Gallery,
    teacher: FaceEncoder,
    student: FaceEncoder | None,
    size_cutoff: float | None,
    progress: bool = True,
    preset: str = "clean",
) -> dict:
    """``{size: {"detected": ..., "reference": ...}}`` for ``probes`` searched in ``gallery``:
    the teacher's pipeline, and with a student the routed pipeline and the student alone,
    probes through camera preset ``preset``."""
    detector = MTCNN(min_face=PROBE_MIN_FACE)
    pipes = {"teacher": FacePipeline(detector, teacher, None)}
    encoders: dict[str, FaceEncoder] = {"teacher": teacher}
    if student is not None:
        pipes["teacher+student"] = FacePipeline(detector, teacher, student, size_cutoff)
        encoders["student"] = student  # no routing here: what the student does at this size
    return {
        str(s): {
            "detected": run_detected(lfw, probes, s, pipes, gallery, progress, preset),
            "reference": run_reference(lfw, probes, s, encoders, gallery, progress, preset),
        }
        for s in sizes
    }


def run_identification(
    lfw: LFW,
    gallery_encoder: FaceEncoder,
    students: dict[int | None, FaceEncoder | None],
    widths: list[int],
    view: str = "view2",
    folds: set[int] | None = None,
    size_cutoff: float | None = None,
    limit: int | None = None,
    degradation: str = "clean",
    log=print,
    started: float | None = None,
) -> dict:
    """The identification benchmark as ``lrface benchmark --protocol identification`` reports
    it: every LFW person with two or more photos enrolled (``gallery_encoder``), then probes.
    ``students`` maps a View 2 fold to the student trained without its people (probing that
    fold's people, the folds pooled), or ``None`` to one student (or None: the teacher alone)
    probing View 1's pairsDevTest people (``view1``), the chosen ``folds``' people, or all.
    ``started`` (``time.perf_counter()``) is when the reported wall time began (default: now)."""
    from lrface.constants import __version__
    from lrface.data.lfw import fold_people
    from lrface.eval.identification import benchmark_people, pool_folds
    from lrface.machine import describe_machine
    from lrface.pipeline import routing_cutoff

    started = time.perf_counter() if started is None else started
    people = benchmark_people(((i.identity, i.relpath) for i in lfw.images()), limit)
    gallery, left_out = enroll(lfw, people, gallery_encoder)
    people = [p for p in people if p.name not in left_out]
    by_fold = fold_people(lfw.view2())
    runs = {}
    for fold, student in students.items():
        if fold is not None:
            wanted = by_fold[fold]
        elif view == "view1":
            wanted = {name for pair in lfw.view1_test() for name in pair.people}
        else:
            wanted = None if folds is None else set().union(*(by_fold[k] for k in folds))
        probes = [p for p in people if wanted is None or p.name in wanted]
        label = "all" if fold is None else f"fold-{fold}"
        log(f"{label}: {len(probes)} probes against {len(people)} people")
        runs[label] = identify(
            lfw, probes, widths, gallery, gallery_encoder, student, size_cutoff, preset=degradation
        )
    results = pool_folds(list(runs.values())) if len(runs) > 1 else next(iter(runs.values()))
    named = {("all" if k is None else f"fold-{k}"): s for k, s in students.items() if s}
    return {
        "lrface_version": __version__,
        "lfw": str(lfw.root),
        "view": view,
        "people": len(people),
        "left_out": left_out,
        "teacher": gallery_encoder.cache_key,
        "students": {label: s.cache_key for label, s in named.items()},
        "size_cutoff": {label: routing_cutoff(s, size_cutoff) for label, s in named.items()},
        "degradation": degradation,
        "limit": limit,
        "runs": runs,
        "results": results,
        "machine": describe_machine(),
        "wall_time_s": round(time.perf_counter() - started, 1),
    }


def write_identification(report: dict, out: Path) -> tuple[Path, Path]:
    """``identification.json`` (the report) and ``identification.md`` (its table) in ``out``."""
    from lrface.eval.identification import markdown_table

    out.mkdir(parents=True, exist_ok=True)
    paths = out / "identification.json", out / "identification.md"
    paths[0].write_text(json.dumps(report, indent=2) + "\n")
    paths[1].write_text(markdown_table(report["results"]) + "\n")
    return paths
