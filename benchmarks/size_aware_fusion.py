"""Size-aware fusion for lrface-lr-v2: the teacher's share fitted per size on View 1, measured on
View 2 against the shipped share (1/2), in one run.

    python benchmarks/size_aware_fusion.py --sizes 8,12,16,20 --out out/size-aware-fusion.json

``lrface.eval.fusion`` (the share per size, picked on View 1's test pairs by HR-vs-LR accuracy;
the student's part recovered from the fused and the teacher's embeddings). On View 2 (all ten
folds, no flip, as the pipeline embeds): HR-vs-LR accuracy +- std over folds, TAR at FAR 1e-3
and 1e-4 and the paired per-fold gain over the shipped share, for the shipped share, the
fitted one and the student alone; then open-set FNIR at FPIR 1% (``calibrate-openset``
protocol, raw and AS-norm scores, the cohort fused the same way).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from lrface.data.degrade import EvalDegradation
from lrface.data.lfw import LFW
from lrface.eval.benchmark import gain_text, load_pair_data, paired_gain
from lrface.eval.cohort import DEFAULT_SIZE, cohort_chips, embed_cohort
from lrface.eval.embeddings import embed_chipset
from lrface.eval.fusion import SHIPPED_SHARE, fit_shares, fuse, student_part
from lrface.eval.openset_lfw import normalized_rows, openset_embeddings
from lrface.eval.protocol import protocol_trials, tar_at_far, trial_folds, verification_report
from lrface.machine import save_measurement
from lrface.models.factory import create_encoder


def pair_embeddings(lfw: LFW, view: str, teacher, fused, sizes):
    """(pairs' same, folds, HR teacher pair, {size: teacher pair}, {size: fused pair})."""
    data = load_pair_data(lfw, lfw.pairs(view))
    first = data.chipset.rows([p.first for p in data.pairs])
    second = data.chipset.rows([p.second for p in data.pairs])

    def pair(encoder, size):
        rows = embed_chipset(encoder, data.chipset, EvalDegradation(size))
        return rows[first], rows[second]

    same = np.array([p.same for p in data.pairs])
    folds = trial_folds(np.array([p.fold for p in data.pairs]))
    hr = pair(teacher, None)
    return (
        same,
        folds,
        hr,
        {s: pair(teacher, s) for s in sizes},
        {s: pair(fused, s) for s in sizes},
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="8,12,16,20")
    parser.add_argument("--lfw", default=None)
    parser.add_argument("--cohort-size", type=int, default=DEFAULT_SIZE)
    parser.add_argument("--out", type=Path, default=Path("out/size-aware-fusion.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    lfw = LFW(args.lfw)
    sizes = [int(s) for s in args.sizes.split(",")]
    teacher, fused = create_encoder("dlib-resnet-torch"), create_encoder("lrface-lr-v2")
    same1, _, hr1, t1, f1 = pair_embeddings(lfw, "view1", teacher, fused, sizes)
    fitted = fit_shares(hr1, t1, f1, same1)
    report: dict = {"view1_fit": {s: {"share": b, "accuracy": a} for s, (b, a) in fitted.items()}}
    print("## teacher share fitted on View 1 (HR-vs-LR accuracy by share)\n")
    for size, (best, scored) in fitted.items():
        cells = ", ".join(f"{share:g}: {100 * acc:.1f}" for share, acc in scored.items())
        print(f"- {size} px: share {best:g} ({cells})")
    same, folds, hr, t2, f2 = pair_embeddings(lfw, "view2", teacher, fused, sizes)
    print("\n## View 2, HR vs LR (10 folds, no flip)\n")
    print("| size | teacher share | accuracy | TAR@FAR 1e-3 | TAR@FAR 1e-4 | gain over 1/2 |")
    print("|---|---|---|---|---|---|")
    report["view2"] = []
    for size in sizes:
        students = tuple(student_part(f, t) for f, t in zip(f2[size], t2[size], strict=True))
        shares = dict.fromkeys([SHIPPED_SHARE, fitted[size][0], 0.0])
        rows = {}
        for share in shares:
            probe = tuple(fuse(t, s, share) for t, s in zip(t2[size], students, strict=True))
            scores, truth, trial_fold = protocol_trials("hr-lr", hr, probe, same, folds)
            row = verification_report(scores, truth, trial_fold).to_dict()
            row["tar_far_1e_4"] = tar_at_far(scores, truth, 1e-4)
            rows[share] = row
            gain = "—"
            if share != SHIPPED_SHARE:
                paired = paired_gain(rows[SHIPPED_SHARE], row)
                gain = f"{gain_text(paired)} ({paired['folds_won']}/{paired['folds']})"
            print(
                f"| {size} px | {share:g} | {100 * row['accuracy']:.2f} ± "
                f"{100 * row['accuracy_std']:.2f} | {100 * row['tar_far_1e_3']:.1f} | "
                f"{100 * row['tar_far_1e_4']:.1f} | {gain} |"
            )
            report["view2"].append({"size": size, "share": share, **row})
    chipsets, _ = cohort_chips(lfw, None, args.cohort_size)
    cohort_hr, cohort_t = embed_cohort(chipsets, teacher, teacher, tuple(sizes))
    _, cohort_f = embed_cohort(chipsets, teacher, fused, tuple(sizes))
    split, _, gallery, probes_t = openset_embeddings(lfw, teacher, teacher, sizes, probe_flip=False)
    _, _, _, probes_f = openset_embeddings(lfw, teacher, fused, sizes)
    print("\n## Open set, 814 enrolled, FNIR at FPIR 1% (FPIR on the held-out half)\n")
    print("| size | teacher share | raw | asnorm |")
    print("|---|---|---|---|")
    report["openset"] = []
    for size in sizes:
        student = student_part(probes_f[size], probes_t[size])
        cohort_s = student_part(cohort_f[size], cohort_t[size])
        for share in dict.fromkeys([SHIPPED_SHARE, fitted[size][0], 0.0]):
            probes = fuse(probes_t[size], student, share)
            band = fuse(cohort_t[size], cohort_s, share)
            found = normalized_rows(
                gallery, probes, split, cohort_hr, band, size, [0.01], ("raw", "asnorm")
            )
            cells = " | ".join(
                f"{100 * r.fnir:.1f}% ({100 * r.fpir:.2f}%), rank-1 miss {100 * r.rank1_miss:.1f}%"
                for r in found
            )
            print(f"| {size} px | {share:g} | {cells} |")
            report["openset"] += [{"share": share, **r.to_dict()} for r in found]
    save_measurement(report, args.out, started)


if __name__ == "__main__":
    main()
