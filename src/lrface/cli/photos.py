"""Photos in, answers out: ``lrface detect``, ``lrface verify`` and ``lrface fetch-weights``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lrface.cli.common import (
    CutoffOpt,
    DetectorOpt,
    DeviceOpt,
    JsonOpt,
    MinFaceOpt,
    MultiOpt,
    StudentOpt,
    build_pipeline,
    chosen_student,
    face_line,
    fail,
    make_detector,
    reported,
)
from lrface.constants import DEFAULT_STUDENT, DEFAULT_TEACHER


def fetch_weights(
    force: Annotated[bool, typer.Option(help="Fetch again even when cached.")] = False,
    wheel: Annotated[
        Path | None, typer.Option(help="Use this facenet-pytorch 2.6.0 wheel instead of pip.")
    ] = None,
) -> None:
    """Fetch the MTCNN weights (facenet-pytorch 2.6.0 wheel from PyPI) into the cache."""
    from lrface.detect.weights import WeightsUnavailableError, fetch_mtcnn_weights

    with reported(WeightsUnavailableError):
        typer.echo(f"MTCNN weights in {fetch_mtcnn_weights(force=force, wheel=wheel)}")


def detect(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    detector: DetectorOpt = "mtcnn",
    min_face: MinFaceOpt = 20,
    annotate: Annotated[
        Path | None,
        typer.Option(
            help="Write the image with boxes and landmarks drawn here; with several images, "
            "<stem>_<image stem>.png beside it."
        ),
    ] = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Detect faces: JSON with boxes, scores and five landmarks per face, per image."""
    from lrface.data.images import BadImageError, load_rgb
    from lrface.detect import detect_bounded

    det = make_detector(detector, min_face, device)
    results, failed = [], 0
    for path in images:
        try:
            image = load_rgb(path)
        except BadImageError as exc:
            results.append({"image": str(path), "error": exc.reason})
            failed += 1
            continue
        faces = detect_bounded(det, image)
        results.append(
            {
                "image": str(path),
                "detector": det.name,
                "count": len(faces),
                "faces": [f.to_dict() for f in faces],
            }
        )
        if annotate is not None:
            out = annotate
            if len(images) > 1:
                out = annotate.with_name(f"{annotate.stem}_{path.stem}.png")
            draw_faces(image, faces, out)
    typer.echo(json.dumps(results, indent=2))
    if failed:
        raise fail(f"{failed} of {len(images)} images could not be read (see 'error' above)")


def draw_faces(image, faces, out: Path) -> None:
    """``image`` with the faces' boxes, landmarks and scores drawn, written to ``out``."""
    import cv2
    import numpy as np

    canvas = np.ascontiguousarray(image[:, :, ::-1])
    thick = max(1, round(max(image.shape[:2]) / 300))
    for face in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), (0, 255, 0), thick)
        for x, y in face.landmarks:
            cv2.circle(canvas, (int(x), int(y)), thick + 1, (0, 0, 255), -1)
        cv2.putText(
            canvas,
            f"{face.score:.2f}",
            (x1, max(y1 - 3, 10)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35 * thick,
            (0, 255, 0),
            thick,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), canvas):
        raise fail(f"{out}: could not write the annotated image")


def verify(
    a: Annotated[Path, typer.Argument(help="First image.")],
    b: Annotated[Path, typer.Argument(help="Second image.")],
    encoder: Annotated[
        str, typer.Option(help="Teacher encoder (registered name).")
    ] = DEFAULT_TEACHER,
    student: StudentOpt = DEFAULT_STUDENT,
    threshold: Annotated[
        float | None, typer.Option(help="Cosine threshold: same when the score is above it.")
    ] = None,
    calibration: Annotated[
        Path | None,
        typer.Option(
            help="Calibration JSON, used before the ones stored with the encoders (--threshold "
            "wins)."
        ),
    ] = None,
    detector: DetectorOpt = "mtcnn",
    min_face: MinFaceOpt = 20,
    size_cutoff: CutoffOpt = None,
    multi_face: MultiOpt = "all",
    as_json: JsonOpt = False,
    device: DeviceOpt = "cpu",
) -> None:
    """Are A and B the same person? Prints the score, the decision and the encoder per face."""
    from lrface.pipeline import Calibration, default_calibrations

    student = chosen_student(student)
    calibs = None
    if threshold is None:
        with reported(ValueError):
            calibs = [Calibration.load(calibration)] if calibration else []
            calibs += default_calibrations(encoder, student)
    pipe = build_pipeline(encoder, student, detector, min_face, size_cutoff, multi_face, device)
    with reported(ValueError):  # unreadable image, no face, calibration mismatch
        result = pipe.verify(a, b, threshold=threshold, calibration=calibs or None)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    typer.echo(f"score: {result.score:.4f}")
    if result.same is None:
        typer.echo("decision: none (give --threshold or --calibration)")
    else:
        verdict = "same person" if result.same else "different people"
        typer.echo(
            f"decision: {verdict} (threshold {result.threshold:.4f} from "
            f"{result.threshold_source}: {result.threshold_reason})"
        )
    if result.comparisons > 1:
        typer.echo(f"best of {result.comparisons} face pairs compared:")
    for label, path, face in (("A", a, result.a), ("B", b, result.b)):
        typer.echo(f"{label} {path}: {face_line(face)}")
