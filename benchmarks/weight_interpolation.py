"""Interpolate a teacher-init student's weights with the teacher's (WiSE-FT style), as a
checkpoint directory that ``lrface benchmark --encoder`` scores like any other student.

theta = alpha * student + (1 - alpha) * teacher: alpha 1 is the student, 0 the teacher. A
lever of issue #17 ("weight averaging with the teacher"): does it keep the student's gains on
small faces while giving back the teacher's accuracy on larger ones?

    python benchmarks/weight_interpolation.py lrface-lr-v1 0.5 out/wise-0.5
    lrface benchmark --encoder out/wise-0.5 --sizes 8,12,16,20,24,32 --out out/wise-0.5-clean
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from lrface.models.checkpoint import resolve_student_dir
from lrface.models.pretrained import MANIFEST, pretrained_dir
from lrface.models.students import create_student


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("student", help="a shipped student's name or a teacher-init checkpoint")
    parser.add_argument("alpha", type=float, help="weight of the student (0-1)")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    source = (
        pretrained_dir(args.student)
        if args.student in MANIFEST
        else resolve_student_dir(args.student)
    )
    info = json.loads((source / "student.json").read_text())
    if info["name"] != "teacher-init":
        raise SystemExit(f"{source}: only teacher-init students share the teacher's weights")
    student = load_file(str(source / "student.safetensors"))
    teacher = create_student("teacher-init", **info.get("kwargs", {})).state_dict()
    mixed = {
        key: (args.alpha * value.float() + (1 - args.alpha) * teacher[key].float())
        if value.is_floating_point()
        else value
        for key, value in student.items()
    }
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in mixed.items()}, str(args.out / "student.safetensors"))
    info["interpolation"] = {"student": str(source), "alpha": args.alpha}
    (args.out / "student.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"alpha {args.alpha}: {source} x teacher -> {args.out}")


if __name__ == "__main__":
    main()
