"""Shipped students: packaging, hash-checked loading by name, clear errors when damaged."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from lrface.models import pretrained
from lrface.models.checkpoint import load_student_encoder
from lrface.models.students import create_student
from lrface.train.checkpoint import save_checkpoint
from tests.train.synthetic import TINY_STUDENT


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A tiny compact student packaged as shipped model ``tiny-v1`` in a temporary package."""
    torch.manual_seed(0)
    student = create_student("compact", **TINY_STUDENT).eval()
    info = {"name": "compact", "kwargs": TINY_STUDENT, "input_size": 32, "dim": 128}
    checkpoint = save_checkpoint(tmp_path / "run" / "final", student, info, {}, {"step": 1})
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path / "pretrained")
    out = pretrained.package_student(checkpoint, tmp_path / "pretrained" / "tiny-v1")
    calibration = {"probe_encoder": "x", "thresholds": {"hr-lr@16": 0.8}}
    (out / "calibration.json").write_text(json.dumps(calibration))
    monkeypatch.setattr(pretrained, "MANIFEST", {"tiny-v1": pretrained.manifest(out)})
    return checkpoint


def test_packaged_student_loads_by_name_and_matches_its_checkpoint(shipped):
    assert set(pretrained.MANIFEST["tiny-v1"]) == set(pretrained.FILES)
    encoder = pretrained.load_pretrained("tiny-v1")
    assert encoder.name == "tiny-v1" and encoder.input_size == 32
    chips = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    original = load_student_encoder(shipped).embed(chips)
    # float16 storage: the same embeddings up to rounding
    assert np.abs(encoder.embed(chips) - original).max() < 5e-3


def test_a_damaged_weights_file_is_refused_with_its_name(shipped):
    weights = pretrained.PRETRAINED_DIR / "tiny-v1" / "student.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(pretrained.PretrainedIntegrityError, match="student.safetensors.*sha256"):
        pretrained.load_pretrained("tiny-v1")


def test_files_are_hashed_once_unless_they_change(shipped, monkeypatch):
    hashed = []
    digest = pretrained.file_digest
    monkeypatch.setattr(pretrained, "file_digest", lambda p: hashed.append(p.name) or digest(p))
    pretrained.pretrained_dir("tiny-v1")
    pretrained.pretrained_dir("tiny-v1")
    assert sorted(hashed) == sorted(pretrained.FILES)
    weights = pretrained.PRETRAINED_DIR / "tiny-v1" / "student.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    stat = weights.stat()  # a new mtime even if the write fell in the same clock tick
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    with pytest.raises(pretrained.PretrainedIntegrityError, match="student.safetensors.*sha256"):
        pretrained.pretrained_dir("tiny-v1")


def test_a_missing_file_and_an_unknown_name_are_clear(shipped):
    (pretrained.PRETRAINED_DIR / "tiny-v1" / "calibration.json").unlink()
    with pytest.raises(pretrained.PretrainedIntegrityError, match="calibration.json.*missing"):
        pretrained.pretrained_dir("tiny-v1")
    with pytest.raises(KeyError, match="no shipped student 'nope'"):
        pretrained.pretrained_dir("nope")


def test_a_student_packaged_with_the_teacher_embeds_their_unit_mean(tmp_path):
    from lrface.models.factory import create_encoder

    torch.manual_seed(0)
    student = create_student("teacher-init", pretrained=True).eval()
    with torch.no_grad():
        student.net.fc.weight.add_(0.05 * torch.randn_like(student.net.fc.weight))
    info = {"name": "teacher-init", "kwargs": {}, "input_size": 150, "dim": 128}
    checkpoint = save_checkpoint(tmp_path / "run" / "final", student, info, {}, {"step": 1})
    alone = pretrained.package_student(checkpoint, tmp_path / "alone")
    fused = pretrained.package_student(
        checkpoint, tmp_path / "fused", fuse_teacher=True, size_cutoff=20
    )
    alone_encoder, fused_encoder = load_student_encoder(alone), load_student_encoder(fused)
    assert fused_encoder.size_cutoff == 20 and alone_encoder.size_cutoff is None
    assert fused_encoder.cache_key != alone_encoder.cache_key

    chips = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    mean = alone_encoder.embed(chips) + create_encoder("dlib-resnet-torch").embed(chips)
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    assert np.allclose(fused_encoder.embed(chips), mean, atol=1e-4)
    assert not np.allclose(alone_encoder.embed(chips), mean, atol=1e-3)


def test_only_a_student_shaped_like_the_teacher_can_be_fused(shipped, tmp_path):
    out = pretrained.package_student(shipped, tmp_path / "compact", fuse_teacher=True)
    with pytest.raises(ValueError, match="only a student with the teacher's input"):
        load_student_encoder(out)
