"""``hr-lr-detected``: the HR-vs-LR pair protocol with probes cut the way the pipeline cuts them.

The ``hr-lr`` protocol (``eval.protocol``) aligns every image at full resolution with dlib and
then shrinks the chip; ``lrface gallery search`` and ``lrface watch`` instead get a small face
in a whole frame, find it with MTCNN there and warp the chip from those few pixels. Here the
probe side is made that way, so the figure is the one a user gets.

Conventions
-----------
* Pairs, folds, the HR gallery side (the gallery encoder on the dlib-aligned full-resolution
  image, flip-averaged as the benchmark's ``flip`` says), the two trials per pair and every
  metric are those of ``hr-lr`` (``eval.protocol``).
* Probe at width ``s``: the whole LFW image (250 px, face about ``FACE_PX`` = 110 px wide)
  area-shrunk so the face is ``s`` px wide, through the camera preset when one is named (its
  effects seeded by the image's path and ``s``, ``data.detected.camera_view``); MTCNN with the
  probe pipeline's smallest face (``PROBE_MIN_FACE`` = 12 px), on the shrunk image upscaled 2x
  (bicubic) when ``s`` is at most ``UPSCALE_MAX_FACE`` = 12 px, coordinates mapped back; the
  subject face kept (centred, plausible width: ``data.detected.is_subject``, the training
  bank's rule, so a background face is never scored as the person); the chip cut from the
  shrunk image with MTCNN's five landmarks straight to the probe encoder's input
  (``detect.align.student_chip``, as ``FacePipeline`` does for small faces); no flip (a probe
  frame is seen once).
* A probe in which MTCNN finds no subject face scores 0 (its embedding is a zero vector):
  below any threshold the protocol can pick, so a genuine pair is missed and an impostor pair
  rejected, as the user would see it. Rows report the share found (``detected``).
* Detection is cached per image list, width, preset and detector settings
  (``data.detected.detect_faces``); probe embeddings per encoder in the embedding cache under
  an align key naming the detection.
"""

from __future__ import annotations

import numpy as np

from lrface.data.chips import ChipSet
from lrface.data.degrade import EvalDegradation
from lrface.data.detected import DetectedFaces, DetectionPlan, detect_faces
from lrface.data.lfw import LFW
from lrface.detect.mtcnn import MTCNN
from lrface.eval.benchmark import PairData, gain_text, paired_gain
from lrface.eval.embeddings import embed_chipset
from lrface.eval.identification import PROBE_MIN_FACE
from lrface.eval.protocol import protocol_trials, trial_folds, verification_report
from lrface.models.encoder import FaceEncoder

PROTOCOL = "hr-lr-detected"
UPSCALE_MAX_FACE = 12


def detected_probes(
    lfw: LFW, data: PairData, size: int, preset: str = "clean", progress: bool = True
) -> DetectedFaces:
    """MTCNN's subject face in every pair image at probe width ``size`` (cached)."""
    detector = MTCNN(min_face=PROBE_MIN_FACE)
    plan = DetectionPlan(upscale_max_face=UPSCALE_MAX_FACE, preset=preset)
    return detect_faces(
        lfw.root, data.chipset.relpaths, (size,), detector, detector.settings, progress, plan
    )


def probe_embeddings(
    encoder: FaceEncoder, data: PairData, bank: DetectedFaces, preset: str, progress: bool = True
) -> np.ndarray:
    """One row per pair image (``data.chipset`` order): the encoder's embedding of its detected
    chip, zeros where no subject face was found."""
    found = np.flatnonzero(bank.found[0])
    out = np.zeros((len(data.chipset), encoder.dim), np.float32)
    if not len(found):
        return out
    chips = np.stack([bank.chip(0, int(row), encoder.input_size) for row in found])
    detection = f"detected-{bank.sizes[0]}px-{preset}-up{UPSCALE_MAX_FACE}-min{PROBE_MIN_FACE}"
    chipset = ChipSet(
        chips,
        [data.chipset.relpaths[row] for row in found],
        [data.chipset.keys[row] for row in found],
        align_key=f"{data.chipset.align_key}-{detection}",
    )
    out[found] = embed_chipset(encoder, chipset, EvalDegradation(None), progress=progress)
    return out


def detected_rows(
    lfw: LFW,
    data: PairData,
    sizes: list[int],
    gallery_encoder: FaceEncoder,
    probe_encoder: FaceEncoder,
    preset: str = "clean",
    flip: bool = True,
    progress: bool = True,
) -> list[dict]:
    """One ``hr-lr-detected`` row per size, shaped like the benchmark's rows (plus
    ``detected``, the share of pair images in which MTCNN found the subject)."""
    same = np.array([p.same for p in data.pairs])
    folds = trial_folds(np.array([p.fold for p in data.pairs]))
    first = data.chipset.rows([p.first for p in data.pairs])
    second = data.chipset.rows([p.second for p in data.pairs])
    hr = embed_chipset(gallery_encoder, data.chipset, EvalDegradation(None), flip, progress)
    rows = []
    for size in sizes:
        bank = detected_probes(lfw, data, size, preset, progress)
        probe = probe_embeddings(probe_encoder, data, bank, preset, progress)
        trials = protocol_trials(
            "hr-lr", (hr[first], hr[second]), (probe[first], probe[second]), same, folds
        )
        rows.append(
            {
                "protocol": PROTOCOL,
                "size": size,
                "preset": preset,
                "detected": float(bank.found[0].mean()),
                "gallery_encoder": gallery_encoder.cache_key,
                "probe_encoder": probe_encoder.cache_key,
                **verification_report(*trials).to_dict(),
            }
        )
    return rows


def detected_report(
    lfw: LFW,
    data: PairData,
    sizes: list[int],
    gallery_encoder: FaceEncoder,
    probe_encoders: dict[str, FaceEncoder],
    preset: str = "clean",
    flip: bool = False,
    progress: bool = True,
) -> dict:
    """``detected_rows`` for each labelled probe encoder against one HR gallery side (so the
    rows share their trials and the first label is the others' baseline), as one report."""
    results = {
        label: detected_rows(lfw, data, sizes, gallery_encoder, encoder, preset, flip, progress)
        for label, encoder in probe_encoders.items()
    }
    return {
        "protocol": PROTOCOL,
        "degradation": preset,
        "pairs": len(data.pairs),
        "flip": flip,
        "gallery_encoder": gallery_encoder.cache_key,
        "results": results,
    }


def detected_table(report: dict) -> str:
    """Markdown: a row per label, a column per size: accuracy % (TAR at FAR 1e-3 / 1e-4 %),
    and from the second label on the paired per-fold gain over the first (folds won); then
    the share of probes in which MTCNN found the subject."""
    results = report["results"]
    first = next(iter(results))
    sizes = [row["size"] for row in results[first]]
    lines = [
        f"| {PROTOCOL} ({report['degradation']}) | " + " | ".join(f"{s} px" for s in sizes) + " |",
        "|---" * (len(sizes) + 1) + "|",
    ]
    for label, rows in results.items():
        cells = []
        for row, base in zip(rows, results[first], strict=True):
            cell = (
                f"{100 * row['accuracy']:.2f} ({100 * row['tar_far_1e_3']:.1f} / "
                f"{100 * row['tar_far_1e_4']:.1f})"
            )
            if label != first:
                gain = paired_gain(base, row)
                cell += f" {gain_text(gain)} ({gain['folds_won']}/{gain['folds']})"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    found = ", ".join(f"{r['size']} px {100 * r['detected']:.1f}%" for r in results[first])
    lines.append(f"\nsubject found: {found}")
    return "\n".join(lines)
