"""Where a student's LR embeddings lie in the teacher's space, beside the teacher's own.

For the images of View 1's test pairs (people no View 1 student trained on) at each size:

* ``cos to HR``: mean cosine between the encoder's embedding of the s-px face and the
  teacher's embedding of the same full-resolution face (1 = the student hit its target);
* ``on common``: mean (± std) projection on the teacher's common direction, the normalized
  mean of its HR embeddings of the student's training faces. dlib's space is compressed (all
  faces sit near that direction; View 1 same-person pairs score ~0.95, others ~0.83), so
  identity lives in the small part off it, and a probe-to-probe spread of the projection
  shifts raw-cosine scores by amounts that have nothing to do with identity;
* ``hr-lr``: the protocol's accuracy (10 interleaved pseudo-folds, as in training).

    python benchmarks/embedding_geometry.py runs/s5/clean-pl2/checkpoints/step-0002500

Every row uses the student's checkpoint as given and the teacher without flip.
"""

from __future__ import annotations

import argparse

import numpy as np

from lrface.data.degrade import EvalDegradation
from lrface.eval.embeddings import embed_chipset
from lrface.eval.protocol import protocol_trials, trial_folds, verification_report
from lrface.models.factory import create_encoder
from lrface.train.lfw import split_data


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("students", nargs="+", help="student checkpoint directories")
    parser.add_argument("--sizes", default="8,12,16")
    args = parser.parse_args()

    data = split_data("view1", progress=False)
    common = data.teacher_emb.mean(0)
    common /= np.linalg.norm(common)
    pairs = data.eval_pairs
    same = np.array([p.same for p in pairs.pairs])
    folds = trial_folds(np.array([p.fold for p in pairs.pairs]))
    first = pairs.chipset.rows([p.first for p in pairs.pairs])
    second = pairs.chipset.rows([p.second for p in pairs.pairs])
    hr = embed_chipset(data.teacher, pairs.chipset, EvalDegradation(None), progress=False)
    on_common = hr @ common
    print(f"teacher HR on common: {on_common.mean():.3f} ± {on_common.std():.3f}\n")
    print("| encoder | size | cos to HR | on common | hr-lr acc |")
    print("|---|---|---|---|---|")
    encoders = [("teacher", data.teacher)] + [(s, create_encoder(s)) for s in args.students]
    for name, encoder in encoders:
        for size in (int(s) for s in args.sizes.split(",")):
            probe = encoder.embed(EvalDegradation(size)(pairs.chipset.chips))
            trials = protocol_trials(
                "hr-lr", (hr[first], hr[second]), (probe[first], probe[second]), same, folds
            )
            projection = probe @ common
            print(
                f"| {name} | {size} | {np.sum(probe * hr, 1).mean():.3f} | "
                f"{projection.mean():.3f} ± {projection.std():.3f} | "
                f"{100 * verification_report(*trials).accuracy:.2f} |"
            )


if __name__ == "__main__":
    main()
