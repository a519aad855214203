"""Size-aware fusion: the student's part is recovered exactly from the fused embedding, and the
share fit picks the share that separates the pairs best."""

from __future__ import annotations

import numpy as np

from lrface.eval.fusion import SHARES, fit_shares, fuse, student_part


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_student_part_inverts_the_unit_mean():
    rng = np.random.default_rng(0)
    t, s = unit(rng.normal(size=(50, 16))), unit(rng.normal(size=(50, 16)))
    fused = fuse(t, s, 0.5)
    assert np.allclose(fused, unit(t + s), atol=1e-6)
    assert np.allclose(student_part(fused, t), s, atol=1e-5)
    assert np.allclose(fuse(t, s, 1.0), t, atol=1e-6) and np.allclose(fuse(t, s, 0.0), s, atol=1e-6)


def test_fit_prefers_the_student_when_the_teacher_is_noise():
    rng = np.random.default_rng(1)
    n, dim = 200, 16
    people = unit(rng.normal(size=(n, dim)))
    other = unit(rng.normal(size=(n, dim)))
    same = np.arange(n) % 2 == 0
    second_person = np.where(same[:, None], people, other)
    hr = (people, second_person)
    # the student sees the person, the teacher sees noise (an 8 px face)
    student = tuple(unit(x + 0.3 * rng.normal(size=(n, dim))) for x in hr)
    teacher = tuple(unit(rng.normal(size=(n, dim))) for _ in hr)
    fused = tuple(fuse(t, s, 0.5) for t, s in zip(teacher, student, strict=True))
    fitted = fit_shares(hr, {8: teacher}, {8: fused}, same)
    best, scored = fitted[8]
    assert set(scored) == set(SHARES) and best <= 0.2 and scored[best] > scored[0.5]
