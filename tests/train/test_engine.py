"""The training loop end to end on synthetic chips: methods, resume, divergence, schedules."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from lrface.data.degrade import EvalDegradation
from lrface.losses import registry
from lrface.losses.base import TransferLoss
from lrface.losses.prototype import teacher_prototypes
from lrface.models import students
from lrface.models.checkpoint import latest_checkpoint, load_student_encoder
from lrface.models.encoder import TorchEncoder
from lrface.train.engine import Trainer, train
from lrface.train.monitor import TrainingDiverged
from lrface.train.optim import lr_factor
from tests.train.synthetic import TINY_STUDENT, tiny_config


def read_csv(path) -> list[dict[str, float]]:
    with open(path, newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def cosine_eval(synthetic):
    """Fake evaluation: mean cosine between the student on 12 px faces and the teacher."""
    chips, emb, _ = synthetic
    low = EvalDegradation(12)(chips[:32])

    def evaluate_fn(encoder):
        return {"hr-lr/mean/accuracy": float(np.mean(np.sum(encoder.embed(low) * emb[:32], 1)))}

    return evaluate_fn


@pytest.mark.parametrize("method", ["l2", "adda+l2", "dann+l2"])
def test_methods_learn_and_log(tmp_path, synthetic, method):
    config = tiny_config(tmp_path, method=method, steps=30, eval_every=15, checkpoint_every=15)
    result = train(config, *synthetic, evaluate_fn=cosine_eval(synthetic), progress=False)
    rows = read_csv(tmp_path / "run" / "log.csv")
    assert [r["step"] for r in rows] == list(range(2, 31, 2))
    first, last = rows[0]["l2"], np.mean([r["l2"] for r in rows[-3:]])
    assert last < 0.8 * first, (first, last)
    if method == "adda+l2":
        accuracy = [r["adda_disc_accuracy"] for r in rows]
        assert all(0.0 <= a <= 1.0 for a in accuracy)
        assert "adda_disc_loss" in rows[0]
    if method == "dann+l2":
        assert all(math.isfinite(r["dann"]) for r in rows)
    evals = read_csv(tmp_path / "run" / "eval.csv")
    assert [e["step"] for e in evals] == [15, 30]
    assert result.best_step in (15, 30)
    assert result.best_metric == max(e["hr-lr/mean/accuracy"] for e in evals)
    best = load_student_encoder(tmp_path / "run" / "best")
    assert best.embed(synthetic[0][:2]).shape == (2, 128)


def test_bf16_prototype_run_learns(tmp_path, synthetic):
    """bf16 autocast on the student's forward, fp32 losses; the identity term falls too."""
    config = tiny_config(
        tmp_path, method="prototype+l2", precision="bf16", steps=30, checkpoint_every=30
    )
    train(config, *synthetic, progress=False)
    rows = read_csv(tmp_path / "run" / "log.csv")
    for name in ("l2", "prototype"):
        first, last = rows[0][name], np.mean([r[name] for r in rows[-3:]])
        assert last < 0.9 * first, (name, first, last)
    saved = load_file(str(latest_checkpoint(tmp_path / "run") / "student.safetensors"))
    assert all(t.dtype == torch.float32 for t in saved.values() if t.is_floating_point())


def test_adam_betas_reach_the_student_optimizer(tmp_path, synthetic):
    config = tiny_config(tmp_path, method="adda", adam_betas=[0.5, 0.9])
    trainer = Trainer(config, *synthetic, progress=False)
    assert all(group["betas"] == (0.5, 0.9) for group in trainer.optimizer.param_groups)


def test_prototypes_are_the_teacher_centres_and_built_only_when_used(tmp_path, synthetic):
    _, emb, labels = synthetic
    trainer = Trainer(tiny_config(tmp_path, method="prototype+l2"), *synthetic, progress=False)
    expected = teacher_prototypes(torch.from_numpy(emb), torch.from_numpy(labels))
    assert torch.allclose(trainer.losses["prototype"].prototypes, expected, atol=1e-6)
    assert (
        "prototype" not in Trainer(tiny_config(tmp_path / "l2"), *synthetic, progress=False).losses
    )


def test_fixed_common_component_takes_the_teacher_direction_and_is_exported(tmp_path, synthetic):
    _, emb, _ = synthetic
    student = {**TINY_STUDENT, "fix_common": True}
    config = tiny_config(tmp_path, student_kwargs=student, steps=4, checkpoint_every=4)
    train(config, *synthetic, progress=False)
    unit = F.normalize(torch.from_numpy(emb), dim=1)
    direction = F.normalize(unit.mean(0), dim=0)
    encoder = load_student_encoder(tmp_path / "run")
    probe = encoder.embed(EvalDegradation(12)(synthetic[0][:6]))
    expected = float((unit @ direction).mean())
    assert np.allclose(probe @ direction.numpy(), expected, atol=1e-4)


def test_detected_faces_feed_the_stream_and_are_required_when_asked_for(tmp_path, synthetic):
    from lrface.data.detected import DetectedFaces
    from lrface.detect.align import MTCNN_TEMPLATE_150

    n = len(synthetic[0])
    landmarks = np.broadcast_to((MTCNN_TEMPLATE_150 - 75) * 0.12 + 18, (1, n, 5, 2))
    detected = DetectedFaces(
        sizes=(16,),
        images=[np.random.default_rng(0).integers(0, 256, (n, 36, 36, 3), dtype=np.uint8)],
        boxes=np.tile(np.array([10.0, 10.0, 26.0, 26.0], np.float32), (1, n, 1)),
        scores=np.ones((1, n), np.float32),
        landmarks=landmarks.astype(np.float32),
        found=np.ones((1, n), bool),
    )
    config = tiny_config(tmp_path, steps=2, checkpoint_every=2, detected_prob=0.5)
    with pytest.raises(ValueError, match="detected faces"):
        Trainer(config, *synthetic, progress=False)
    trainer = Trainer(config, *synthetic, progress=False, detected=detected)
    batch = trainer.stream.batch(0)
    _, target, _ = trainer.stream.rows(0)
    chips = {bytes(detected.chip(0, int(r), 32)) for r in target}
    chips |= {bytes(detected.chip(0, int(r), 32)[:, ::-1].copy()) for r in target}
    lr = batch["lr"].permute(0, 2, 3, 1).numpy().astype(np.uint8)
    taken = sum(bytes(np.ascontiguousarray(x)) in chips for x in lr)
    assert 0 < taken < len(lr)  # about half of the batch, from the detected versions
    trainer.fit()


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_continues_bit_for_bit(tmp_path, synthetic, ema_decay):
    kwargs = dict(method="adda+l2", steps=8, checkpoint_every=4, seed=5, ema_decay=ema_decay)
    student = {**TINY_STUDENT, "dropout": 0.3}  # dropout: the RNG state must come back too
    straight = tiny_config(tmp_path / "a", student_kwargs=student, **kwargs)
    train(straight, *synthetic, progress=False)
    split = tiny_config(tmp_path / "b", student_kwargs=student, **kwargs)
    first = train(split, *synthetic, stop_after=4, progress=False)
    assert first.step == 4 and latest_checkpoint(split.out).name == "step-0000004"
    resumed = tiny_config(tmp_path / "b", student_kwargs=student, num_workers=1, **kwargs)
    assert train(resumed, *synthetic, resume=True, progress=False).step == 8
    for name in ("student.safetensors", "train.safetensors"):
        a = load_file(f"{straight.out}/checkpoints/step-0000008/{name}")
        b = load_file(f"{split.out}/checkpoints/step-0000008/{name}")
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert any(k.startswith("losses.adda.adda.discriminator") for k in a)  # train.safetensors
    assert any(k.startswith("optim.adda0.state") for k in a)
    rows_a = read_csv(f"{straight.out}/log.csv")
    rows_b = read_csv(f"{split.out}/log.csv")
    assert [r["total"] for r in rows_a] == [r["total"] for r in rows_b]


def test_ema_student_is_what_the_checkpoint_exports(tmp_path, synthetic):
    """With ema_decay the exported weights are the running average, checked by hand."""
    decay = 0.8
    config = tiny_config(tmp_path, steps=3, checkpoint_every=1, ema_decay=decay)
    train(config, *synthetic, progress=False)
    steps = [
        load_file(f"{config.out}/checkpoints/step-000000{k}/train.safetensors") for k in (2, 3)
    ]
    exported = [
        load_file(f"{config.out}/checkpoints/step-000000{k}/student.safetensors") for k in (2, 3)
    ]
    name = "stem.0.weight"
    raw = steps[1][f"student_raw.{name}"]
    expected = decay * exported[0][name] + (1 - decay) * raw
    assert torch.allclose(exported[1][name], expected, atol=1e-6)
    assert not torch.allclose(exported[1][name], raw)
    assert int(steps[1]["ema.n_averaged"]) == 3
    assert load_student_encoder(config.out).embed(synthetic[0][:2]).shape == (2, 128)


def test_refuses_to_overwrite_or_resume_a_different_run(tmp_path, synthetic):
    config = tiny_config(tmp_path, steps=4, checkpoint_every=2)
    train(config, *synthetic, stop_after=2, progress=False)
    with pytest.raises(FileExistsError):
        train(config, *synthetic, progress=False)
    with pytest.raises(ValueError, match="different method"):
        train(config.replace(method="dann+l2"), *synthetic, resume=True, progress=False)


class _Sabotage(TransferLoss):
    """Zero until ``progress`` reaches ``at``, then NaN (or a huge value)."""

    name = "sabotage"

    def __init__(self, weight: float = 1.0, at: float = 0.5, value: float = float("nan")):
        super().__init__(weight)
        self.at, self.value = at, value

    def forward(self, outputs):
        bad = self.value if outputs.progress >= self.at else 0.0
        return 0.0 * outputs.student.sum() + bad


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path, synthetic, monkeypatch):
    monkeypatch.setitem(registry.LOSSES.entries, "sabotage", _Sabotage)
    config = tiny_config(tmp_path, method="l2+sabotage", steps=8, checkpoint_every=2)
    with pytest.raises(TrainingDiverged, match=r"step 4: loss is nan.*step-0000004"):
        train(config, *synthetic, progress=False)
    last = latest_checkpoint(config.out)
    assert last.name == "step-0000004"
    weights = load_file(str(last / "student.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert load_student_encoder(last).embed(synthetic[0][:2]).shape == (2, 128)


def test_exploding_loss_stops(tmp_path, synthetic, monkeypatch):
    monkeypatch.setitem(registry.LOSSES.entries, "sabotage", _Sabotage)
    config = tiny_config(
        tmp_path,
        method="l2+sabotage",
        method_kwargs={"sabotage": {"at": 0.8, "value": 1e9}},
        steps=30,
        checkpoint_every=10,
    )
    with pytest.raises(TrainingDiverged, match=r"step 24: loss .* exceeds 1000 x"):
        train(config, *synthetic, progress=False)
    assert latest_checkpoint(config.out).name == "step-0000020"


class _NoFeatures(torch.nn.Module):
    """A student without stage features."""

    supports_features, input_size, dim = False, 32, 128

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 128)

    def forward(self, x):
        return self.fc(x.mean((2, 3)))


def test_feature_methods_need_a_student_with_stage_features(tmp_path, synthetic, monkeypatch):
    monkeypatch.setitem(students.STUDENTS.entries, "no-features", _NoFeatures)
    for method in ("nst+l2", "hint+l2"):
        config = tiny_config(tmp_path, method=method, student="no-features", student_kwargs={})
        with pytest.raises(ValueError, match="stage features"):
            Trainer(config, *synthetic, progress=False, teacher_maps=chip_maps(synthetic[0]))


def test_guided_trains_an_hr_branch(tmp_path, synthetic):
    config = tiny_config(tmp_path, method="guided", steps=2, checkpoint_every=2)
    result = train(config, *synthetic, progress=False)
    assert math.isfinite(result.last_parts["guided"])
    state = load_file(f"{config.out}/checkpoints/step-0000002/train.safetensors")
    assert any(k.startswith("hr_branch.") for k in state)
    assert "losses.guided.classes" in state


def test_schedules(tmp_path):
    cosine = tiny_config(tmp_path, steps=100, warmup_steps=10, min_lr_ratio=0.01)
    assert lr_factor(cosine, 0) == pytest.approx(0.1)
    assert lr_factor(cosine, 10) == pytest.approx(1.0)
    assert lr_factor(cosine, 55) == pytest.approx(0.505)
    assert lr_factor(cosine, 100) == pytest.approx(0.01)
    step = cosine.replace(schedule="step", milestones=[50, 80], gamma=0.1)
    assert [lr_factor(step, s) for s in (20, 50, 90)] == pytest.approx([1.0, 0.1, 0.01])


def chip_maps(chips: np.ndarray):
    """A teacher-map provider: each stage's map is a fixed random 1x1 projection of the pooled
    chip (and of its mirror image), so a student can learn to predict it."""

    def provider(stages):
        x = torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 255.0
        generator = torch.Generator().manual_seed(0)
        out = []
        for stage in stages:
            channels, grid = (32, 64, 128, 256)[stage], (16, 8, 4, 2)[stage]
            proj = torch.randn(channels, 3, generator=generator)
            views = [
                torch.einsum("ck,nkhw->nchw", proj, F.adaptive_avg_pool2d(v, grid))
                for v in (x, x.flip(-1))
            ]
            out.append(torch.stack(views, 1).numpy().astype(np.float16))
        return out

    return provider


def test_hint_method_learns_the_maps_and_resumes_bit_for_bit(tmp_path, synthetic):
    kwargs = dict(method="hint+prototype+l2", steps=24, checkpoint_every=12, seed=1)
    maps = chip_maps(synthetic[0])
    straight = tiny_config(tmp_path / "a", **kwargs)
    train(straight, *synthetic, progress=False, teacher_maps=maps)
    rows = read_csv(f"{straight.out}/log.csv")
    first, last = rows[0]["hint"], np.mean([r["hint"] for r in rows[-3:]])
    assert last < 0.7 * first, (first, last)
    split = tiny_config(tmp_path / "b", **kwargs)
    train(split, *synthetic, stop_after=12, progress=False, teacher_maps=maps)
    train(split, *synthetic, resume=True, progress=False, teacher_maps=maps)
    a = load_file(f"{straight.out}/checkpoints/step-0000024/train.safetensors")
    b = load_file(f"{split.out}/checkpoints/step-0000024/train.safetensors")
    assert any(k.startswith("losses.hint.regressors") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    exported = load_file(f"{straight.out}/checkpoints/step-0000024/student.safetensors")
    assert not any("regressors" in k for k in exported)


def test_hint_method_without_maps_is_refused(tmp_path, synthetic):
    with pytest.raises(ValueError, match="stage maps"):
        Trainer(tiny_config(tmp_path, method="hint+l2"), *synthetic, progress=False)


def test_a_student_trained_fused_is_packaged_as_the_pair_it_learnt_in(tmp_path, synthetic):
    from lrface.models.pretrained import package_student

    chips, emb, labels = synthetic
    config = tiny_config(
        tmp_path,
        student="teacher-init",
        student_kwargs={},
        fuse_teacher=True,
        batch_size=4,
        steps=1,
        checkpoint_every=1,
    )
    trainer = Trainer(config, chips[:8], emb[:8], labels[:8], progress=False)
    with torch.no_grad():  # a student that errs unlike the teacher, so the pair differs from it
        fc = trainer.student.net.fc.weight
        fc.add_(0.5 * fc.std() * torch.randn_like(fc))
    trainer.fit()
    low = EvalDegradation(16)(chips[:3])
    trained = trainer.encoder().embed(low)
    alone = TorchEncoder(trainer.deployed, "teacher-init", 150, 128).embed(low)
    assert np.abs(alone - trained).max() > 0.02
    final = latest_checkpoint(config.out)
    with pytest.raises(ValueError, match="package it with --fuse-teacher"):
        package_student(final, tmp_path / "alone")
    packaged = load_student_encoder(package_student(final, tmp_path / "pair", fuse_teacher=True))
    np.testing.assert_allclose(packaged.embed(low), trained, atol=2e-3)


def test_only_a_student_shaped_like_the_teacher_trains_fused(tmp_path, synthetic):
    with pytest.raises(ValueError, match="only a student with the teacher's input"):
        Trainer(tiny_config(tmp_path, fuse_teacher=True), *synthetic, progress=False)
