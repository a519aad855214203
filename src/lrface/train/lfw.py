"""LFW training data for one split, and the evaluation run periodically during training.

Splits (person-disjoint from their test pairs):

* ``view1``: train on everyone not named in ``pairsDevTest.txt``, evaluate on its 1,000 pairs
  (the development protocol, for choosing methods and settings);
* ``view2`` fold k: train on everyone not in fold k's pairs, evaluate on fold k's 600 pairs.

Training arrays: aligned HR chips (``aligned_chips``, cached), the teacher's embeddings of them
(``embed_chipset`` with the torch port of dlib's ResNet, cached; flip-averaged when training
with random flips, see ``train.data``) and identity labels 0..C-1 in name order; on request
(``SplitData.teacher_maps``) the teacher's pooled stage maps for hint losses.

Periodic evaluation: probe embeddings by the student at each size are computed in memory (a
training student changes every time, so nothing is cached for it); gallery embeddings by the
teacher come from the cache. The eval pairs form a single fold, so the accuracy threshold is
cross-validated over ten interleaved pseudo-folds of the pairs (people may recur across them;
good for monitoring and model selection, while reported View 2 numbers are final-step ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lrface.data.chips import ChipSet, aligned_chips
from lrface.data.degrade import EvalDegradation
from lrface.data.lfw import LFW, fold_people
from lrface.data.unlabelled import label_free_labels
from lrface.eval.benchmark import PairData, load_pair_data
from lrface.eval.embeddings import embed_chipset
from lrface.eval.protocol import protocol_trials, trial_folds, verification_report
from lrface.models.checkpoint import TEACHER_ENCODER
from lrface.models.encoder import FaceEncoder
from lrface.models.factory import create_encoder
from lrface.train.evaluation import EvaluateFn
from lrface.train.sources import unlabelled_training_set
from lrface.train.teacher_maps import standardize_channels, teacher_stage_maps


@dataclass
class SplitData:
    """Training arrays of one split and the pairs it is evaluated on."""

    chipset: ChipSet
    teacher_emb: np.ndarray
    labels: np.ndarray
    identities: list[str]
    relpaths: list[str]
    eval_pairs: PairData
    teacher: FaceEncoder
    progress: bool = True

    @property
    def hr_chips(self) -> np.ndarray:
        return self.chipset.chips

    def teacher_maps(self, stages: tuple[int, ...]) -> list[np.ndarray]:
        """Per stage: the teacher's maps of the training chips and their mirror images,
        standardized per channel over this split (cached before standardizing)."""
        maps = teacher_stage_maps(self.teacher, self.chipset, stages, progress=self.progress)
        return [standardize_channels(m) for m in maps]


def held_out_pairs(lfw: LFW, view: str, fold: int | None):
    """``(test pairs, their people)`` of View 1 (dev test list), a View 2 fold, or all of View 2
    (``view2-all``)."""
    if view == "view2-all":
        pairs = lfw.view2()
        return pairs, {person for pair in pairs for person in pair.people}
    if view == "view1":
        pairs = lfw.view1_test()
        return pairs, {person for pair in pairs for person in pair.people}
    if view == "view2":
        if fold is None or not 0 <= fold < 10:
            raise ValueError(f"view2 needs a fold in 0..9, got {fold}")
        pairs = lfw.view2()
        return [p for p in pairs if p.fold == fold], fold_people(pairs)[fold]
    raise ValueError(f"unknown view {view!r}; use view1 or view2")


def split_data(
    view: str = "view1",
    fold: int | None = None,
    lfw_root: str | None = None,
    flip: bool = True,
    device: str = "cpu",
    progress: bool = True,
    workers: int = 1,
    lfw_train: bool = True,
    unlabelled: tuple[str, ...] | list[str] = (),
) -> SplitData:
    """Align, embed and label the training images of a split (LFW people outside its test
    pairs, then each unlabelled folder, every image its own identity); load its test pairs."""
    lfw = LFW(lfw_root)
    test_pairs, held_out = held_out_pairs(lfw, view, fold)
    teacher = create_encoder(TEACHER_ENCODER, device=device)
    parts: list[tuple[ChipSet, np.ndarray, np.ndarray, list[str]]] = []
    identities: list[str] = []
    if lfw_train:
        images = lfw.training_images(held_out)
        chipset = aligned_chips(
            lfw.root, [im.relpath for im in images], progress=progress, workers=workers
        )
        kept = [im for im in images if im.relpath in chipset.index]
        identities = sorted({im.identity for im in kept})
        label_of = {name: i for i, name in enumerate(identities)}
        lfw_chips = chipset.subset([im.relpath for im in kept])
        emb = embed_chipset(teacher, lfw_chips, EvalDegradation(None), flip=flip, progress=progress)
        labels = np.array([label_of[im.identity] for im in kept], np.int64)
        parts.append((lfw_chips, emb, labels, [im.relpath for im in kept]))
    for spec in unlabelled:
        folder = unlabelled_training_set(spec, teacher, flip, progress, workers)
        labels = label_free_labels(len(folder.chipset), first=len(identities))
        names = [f"{folder.name}:{relpath}" for relpath in folder.chipset.relpaths]
        identities += names
        parts.append((folder.chipset, folder.teacher_emb, labels, names))
        print(
            f"unlabelled {folder.name}: {len(folder.chipset)} faces "
            f"({folder.excluded} dropped as LFW matches, {len(folder.chipset.fallbacks)} "
            f"aligned by the whole-image fallback, {len(folder.chipset.failures)} unusable)"
        )
    chipset = parts[0][0] if len(parts) == 1 else concat_chipsets([p[0] for p in parts])
    return SplitData(
        chipset=chipset,
        teacher_emb=np.concatenate([p[1] for p in parts]),
        labels=np.concatenate([p[2] for p in parts]),
        identities=identities,
        relpaths=[name for p in parts for name in p[3]],
        eval_pairs=load_pair_data(lfw, test_pairs, progress=progress, workers=workers),
        teacher=teacher,
        progress=progress,
    )


def concat_chipsets(chipsets: list[ChipSet]) -> ChipSet:
    """One ChipSet of several sources (relpaths prefixed by source number to stay unique)."""
    return ChipSet(
        chips=np.concatenate([c.chips for c in chipsets]),
        relpaths=[f"{i}:{p}" for i, c in enumerate(chipsets) for p in c.relpaths],
        keys=[k for c in chipsets for k in c.keys],
        fallbacks={f"{i}:{p}" for i, c in enumerate(chipsets) for p in c.fallbacks},
        align_key="+".join(dict.fromkeys(c.align_key for c in chipsets)),
    )


def make_evaluate_fn(
    data: PairData,
    gallery_encoder: FaceEncoder,
    sizes: list[int],
    protocols: tuple[str, ...] = ("hr-lr",),
    kernel: str = "area",
) -> EvaluateFn:
    """``student encoder -> metrics`` on these pairs: ``{protocol}/s{size}/{accuracy,
    tar_far_1e-3,auc}`` and ``{protocol}/mean/accuracy`` over the sizes."""
    same = np.array([p.same for p in data.pairs])
    folds = trial_folds(np.array([p.fold for p in data.pairs]))
    first = data.chipset.rows([p.first for p in data.pairs])
    second = data.chipset.rows([p.second for p in data.pairs])
    hr = embed_chipset(gallery_encoder, data.chipset, EvalDegradation(None), progress=False)
    gallery = (hr[first], hr[second])

    def evaluate_fn(encoder: FaceEncoder) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for size in sizes:
            probe = encoder.embed(EvalDegradation(size, kernel)(data.chipset.chips))
            for protocol in protocols:
                trials = protocol_trials(
                    protocol, gallery, (probe[first], probe[second]), same, folds
                )
                report = verification_report(*trials)
                metrics[f"{protocol}/s{size}/accuracy"] = report.accuracy
                metrics[f"{protocol}/s{size}/tar_far_1e-3"] = report.tar_far_1e_3
                metrics[f"{protocol}/s{size}/auc"] = report.auc
        for protocol in protocols:
            values = [metrics[f"{protocol}/s{size}/accuracy"] for size in sizes]
            metrics[f"{protocol}/mean/accuracy"] = float(np.mean(values))
        return metrics

    return evaluate_fn
