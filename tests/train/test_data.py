"""Training streams: determinism, sharding, pairing, flips kept consistent across a pair."""

from __future__ import annotations

import numpy as np
import torch

from lrface.data.degrade import TrainDegradation, resize_chips
from lrface.train.data import TransferStream


def stream(synthetic, **kw) -> TransferStream:
    chips, emb, labels = synthetic
    options = dict(degradation=TrainDegradation(), input_size=32, batch_size=8, seed=3)
    options.update(kw)
    return TransferStream(chips, emb, labels, **options)


def test_batches_are_pure_functions_of_step(synthetic):
    a, b = stream(synthetic), stream(synthetic)
    later = a.batch(5)
    first = a.batch(0)
    for key in ("lr", "teacher", "labels"):
        assert torch.equal(first[key], b.batch(0)[key])
        assert torch.equal(later[key], b.batch(5)[key])
    assert not torch.equal(first["lr"], later["lr"])
    assert first["lr"].shape == (8, 3, 32, 32) and first["teacher"].shape == (8, 128)
    with_worker = list(a.loader(4, 6, num_workers=1))
    assert torch.equal(with_worker[1]["lr"], later["lr"])


def test_epochs_cover_every_face_once_and_reshuffle(synthetic):
    s = stream(synthetic)
    assert s.steps_per_epoch == 12
    epoch0 = np.concatenate([s.rows(i)[1] for i in range(12)])
    epoch1 = np.concatenate([s.rows(12 + i)[1] for i in range(12)])
    assert sorted(epoch0) == list(range(96)) == sorted(epoch1)
    assert not np.array_equal(epoch0, epoch1)


def test_ranks_split_the_global_batch(synthetic):
    ranks = [stream(synthetic, rank=r, world_size=2) for r in range(2)]
    single = stream(synthetic, batch_size=16)
    for step in (0, 7):
        parts = [r.rows(step)[1] for r in ranks]
        assert not set(parts[0]) & set(parts[1])
        assert np.array_equal(np.concatenate(parts), single.rows(step)[1])
    assert ranks[0].steps_per_epoch == 6


def test_paired_vs_unpaired(synthetic):
    chips, emb, labels = synthetic
    paired = stream(synthetic).batch(2)
    _, target, source = stream(synthetic).rows(2)
    assert np.array_equal(target, source)
    assert torch.equal(paired["teacher"], torch.from_numpy(emb[target]))
    _, target, source = stream(synthetic, pairing="unpaired").rows(2)
    assert not np.array_equal(target, source)
    unpaired = stream(synthetic, pairing="unpaired").batch(2)
    assert torch.equal(unpaired["labels"], torch.from_numpy(labels[source]))


def test_flip_applies_to_both_sides_of_a_pair(synthetic):
    clean = TrainDegradation(32, 32, ["area"], blur_prob=0, noise_prob=0, jpeg_prob=0)
    s = stream(synthetic, degradation=clean, with_hr=True, batch_size=32)
    batch = s.batch(0)
    hr = batch["hr"].permute(0, 2, 3, 1).byte().numpy()
    assert np.array_equal(
        batch["lr"].permute(0, 2, 3, 1).byte().numpy(), resize_chips(hr, 32, "area")
    )
    chips = synthetic[0][s.rows(0)[1]]
    flipped = [not np.array_equal(h, c) for h, c in zip(hr, chips, strict=True)]
    assert 0 < sum(flipped) < 32
    assert all(
        np.array_equal(h, c[:, ::-1]) for h, c, f in zip(hr, chips, flipped, strict=True) if f
    )
    no_flip = stream(synthetic, with_hr=True, flip=False, batch_size=32).batch(0)["hr"]
    assert torch.equal(no_flip, torch.from_numpy(chips).permute(0, 3, 1, 2).float())


def test_teacher_maps_follow_each_source_row_and_its_flip(synthetic):
    n = len(synthetic[0])
    # map value encodes (row, view): 10 * row + view
    maps = (10 * np.arange(n)[:, None] + np.arange(2)[None, :]).astype(np.float16)
    maps = np.broadcast_to(maps[:, :, None, None, None], (n, 2, 3, 2, 2)).copy()
    for pairing in ("paired", "unpaired"):
        s = stream(synthetic, with_hr=True, teacher_maps={2: maps}, batch_size=32, pairing=pairing)
        batch = s.batch(5)
        _, _, source = s.rows(5)
        chips = synthetic[0][source]
        hr = batch["hr"].permute(0, 2, 3, 1).byte().numpy()
        flipped = np.array([not np.array_equal(h, c) for h, c in zip(hr, chips, strict=True)])
        assert 0 < flipped.sum() < 32
        got = batch["teacher_map2"]
        assert got.shape == (32, 3, 2, 2) and got.dtype == torch.float32
        expected = torch.from_numpy(10.0 * source + flipped).float()
        assert torch.equal(got[:, 0, 0, 0], expected)
