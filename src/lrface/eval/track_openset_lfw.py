"""The track open-set protocol of ``lrface.eval.track_openset`` on LFW View 2's people: choose
the people, enrol the gallery, film every clip once and run each encoder configuration's
``FaceWatcher`` over it (detections made once, embedded by each). ``save_filmed`` /
``load_filmed`` keep every search (with its scores against every gallery identity) so that
thresholds can be set again without filming."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from lrface.data.lfw import LFW
from lrface.eval.openset import assign_people
from lrface.eval.openset_lfw import view2_people
from lrface.eval.track_openset import WHOLE, TrackRecipe, TrackScore, track_scores
from lrface.eval.video import ClipSpec, Replay, face_photo, make_clip, run_clip


@dataclass
class FilmedTracks:
    """Per configuration the searches of every clip; who was filmed."""

    scores: dict[str, list[TrackScore]]
    gallery_size: int
    probes: int
    calibration_passersby: int
    passersby: int
    recipe: dict | None = None
    """``TrackRecipe.to_dict()`` of the run that filmed them."""


def _take(pool: list[str], n: int, photos: dict[str, list[str]], detector, need: int, keep: int):
    """Up to ``n`` people of ``pool`` (in order) with at least ``need`` photos where the
    detector finds a face: ``{person: [(image, face), ...]}`` (their first ``keep`` such)."""
    out = {}
    for person in pool:
        if len(out) == n:
            break
        found = []
        for path in photos[person]:
            if len(found) == keep:
                break
            if (hit := face_photo(path, detector)) is not None:
                found.append(hit)
        if len(found) >= need:
            out[person] = found
    return out


def film_tracks(
    lfw: LFW, configs: dict, recipe: TrackRecipe, progress: bool = True, normalizer=None
):
    """``FilmedTracks`` for ``configs`` (``{name: FacePipeline}``, all with the same teacher;
    the gallery is enrolled by it at full resolution). With a ``normalizer``
    (``lrface.search.normalize.Normalizer``) the same tracks are also scored by it, as
    ``"<name> <method>"`` configurations (the gallery searched as ``Gallery.search`` scores a
    probe of that encoder and size)."""
    from lrface.detect.mtcnn import MTCNN
    from lrface.pipeline import FacePipeline
    from lrface.search.decision import gallery_searcher
    from lrface.search.gallery import Gallery
    from lrface.video.decide import fixed_threshold
    from lrface.video.motion import GateConfig
    from lrface.video.watcher import FaceWatcher, WatchConfig

    images = view2_people(lfw)
    photos = {p: [lfw.path(r) for r in sorted(paths)] for p, paths in images.items()}
    enrolled, half = assign_people(images, recipe.seed)
    rng = np.random.default_rng(recipe.seed)

    def pool(is_enrolled: bool, h: int) -> list[str]:
        chosen = sorted(p for p in images if half[p] == h and (p in enrolled) == is_enrolled)
        return rng.permutation(chosen).tolist()

    photo_detector = MTCNN(min_face=20)
    enrolled_pool = pool(True, 1)
    probes = _take(enrolled_pool, recipe.people, photos, photo_detector, 2, 4)
    rest = [p for p in enrolled_pool if p not in probes]
    extra = _take(rest, max(recipe.gallery - len(probes), 0), photos, photo_detector, 1, 1)
    calib = _take(pool(False, 0), recipe.calibration_passersby, photos, photo_detector, 1, 3)
    passers = _take(pool(False, 1), recipe.passersby, photos, photo_detector, 1, 3)
    teacher = next(iter(configs.values())).teacher
    enrol = FacePipeline(photo_detector, teacher, None)
    gallery = Gallery(teacher.cache_key, teacher.dim, teacher.name)
    for person, found in (probes | extra).items():
        image, face = found[0]
        template = enrol.embed_faces(image, [face], template=True)[0]
        gallery.add(person, template.embedding[None])
    searcher = gallery_searcher(gallery)
    names = list(gallery.names)
    templates = np.stack([gallery.identity(name).template for name in names])
    jobs = [(p, f[1:4], True, 1) for p, f in probes.items()]
    jobs += [(p, f[:3], False, 0) for p, f in calib.items()]
    jobs += [(p, f[:3], False, 1) for p, f in passers.items()]
    clip_detector = MTCNN(min_face=recipe.min_face)
    config = WatchConfig(weighting=recipe.weighting, min_faces=1, gate=GateConfig(full_every=1))
    results: dict[str, list] = {name: [] for name in configs}
    bins = recipe.bin_edges()
    for i, (person, found, mated, _) in enumerate(tqdm(jobs, desc="clips", disable=not progress)):
        spec = ClipSpec(
            person,
            [(image, face.box) for image, face in found],
            recipe.start_px,
            recipe.frames,
            recipe.seed * 7919 + i,
            recipe.end_px,
            recipe.camera,
        )
        clip = make_clip(spec)
        replay = Replay(clip_detector, clip.frames)
        for name, pipe in configs.items():
            watcher = FaceWatcher(replay, pipe.embed_faces, searcher, fixed_threshold(None), config)
            results[name].append(
                run_clip(clip, spec, mated, watcher, (recipe.weighting,), bins, WHOLE)
            )
    halves = [h for *_, h in jobs]
    scores = {
        name: track_scores(r, halves, recipe.weighting, templates, names)
        for name, r in results.items()
    }
    if normalizer is not None:
        rescore = _rescorer(gallery, normalizer, names)
        for name, r in results.items():
            scores[f"{name} {normalizer.method}"] = track_scores(
                r, halves, recipe.weighting, templates, names, rescore
            )
    return FilmedTracks(
        scores,
        len(probes) + len(extra),
        len(probes),
        len(calib),
        len(passers),
        recipe.to_dict(),
    )


def _rescorer(gallery, normalizer, names: list[str]):
    """Scores of a track embedding against every identity of ``gallery`` (in ``names``
    order) as a normalized search scores them, for its probe (encoder, native size)."""
    from lrface.calibration import FaceRef, as_resolution

    gallery.use_scoring(normalizer)
    order = {name: i for i, name in enumerate(names)}

    def rescore(embedding: np.ndarray, probe: tuple[str, int]) -> np.ndarray:
        ref = FaceRef(probe[0], as_resolution(probe[1]))
        every = np.zeros(len(names))
        for match in gallery.search(embedding[None], len(names), [ref])[0]:
            every[order[match.name]] = match.score
        return every

    return rescore


_FIELDS = ("half", "mated", "bin", "encoder", "size", "score", "correct", "own")


def save_filmed(path: str | os.PathLike, filmed: FilmedTracks) -> None:
    """Every search of ``filmed`` as one ``.npz`` (plain arrays, no pickle)."""
    arrays: dict[str, np.ndarray] = {}
    meta = {k: v for k, v in asdict(filmed).items() if k != "scores"}
    meta["configs"] = list(filmed.scores)
    for config, scores in filmed.scores.items():
        columns = {
            "half": [s.half for s in scores],
            "mated": [s.mated for s in scores],
            "bin": [s.bin for s in scores],
            "encoder": [s.probe[0] if s.probe else "" for s in scores],
            "size": [s.probe[1] if s.probe else -1 for s in scores],
            "score": [s.score for s in scores],
            "correct": [s.correct for s in scores],
            "own": [s.own for s in scores],
        }
        for name, values in columns.items():
            arrays[f"{config}/{name}"] = np.asarray(values)
        every = np.full((len(scores), filmed.gallery_size), np.nan)
        for i, s in enumerate(scores):
            if s.gallery_scores is not None:
                every[i] = s.gallery_scores
        arrays[f"{config}/gallery_scores"] = every
    arrays["meta"] = np.asarray(json.dumps(meta))
    np.savez_compressed(path, **arrays)


def load_filmed(path: str | os.PathLike) -> FilmedTracks:
    """What ``save_filmed`` wrote (ValueError naming the file when it is not such a file)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            scores = {}
            for config in meta.pop("configs"):
                c = {name: data[f"{config}/{name}"] for name in (*_FIELDS, "gallery_scores")}
                scores[config] = [
                    TrackScore(
                        int(c["half"][i]),
                        bool(c["mated"][i]),
                        str(c["bin"][i]),
                        (str(c["encoder"][i]), int(c["size"][i])) if c["encoder"][i] else None,
                        float(c["score"][i]),
                        bool(c["correct"][i]),
                        None if np.isnan(c["gallery_scores"][i]).any() else c["gallery_scores"][i],
                        int(c["own"][i]),
                    )
                    for i in range(len(c["half"]))
                ]
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a searches file of lrface calibrate-watch ({exc})") from None
    return FilmedTracks(scores, **meta)
