"""1:N identification conventions on small synthetic data: people, ranks, rates, pooling."""

from __future__ import annotations

import numpy as np
import pytest

from lrface.eval.identification import (
    Person,
    benchmark_people,
    markdown_table,
    pool_folds,
    rank_rates,
    reference_chip_px,
    truth_ranks,
)


def test_people_have_two_images_first_is_gallery_second_is_probe():
    images = [
        ("Bob", "Bob/Bob_0002.jpg"),
        ("Ann", "Ann/Ann_0001.jpg"),
        ("Bob", "Bob/Bob_0001.jpg"),
        ("Cid", "Cid/Cid_0001.jpg"),
        ("Bob", "Bob/Bob_0003.jpg"),
        ("Ann", "Ann/Ann_0002.jpg"),
    ]
    people = benchmark_people(images)
    assert people == [
        Person("Ann", "Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg"),
        Person("Bob", "Bob/Bob_0001.jpg", "Bob/Bob_0002.jpg"),
    ]
    assert benchmark_people(images, limit=1) == people[:1]


def test_truth_ranks_count_people_scoring_strictly_higher():
    templates = np.eye(4, dtype=np.float32)
    probes = np.array(
        [
            [1.0, 0.1, 0.0, 0.0],  # own person (0) best: rank 1
            [0.9, 0.5, 0.1, 0.0],  # own person (1) second: rank 2
            [0.8, 0.7, 0.1, 0.0],  # own person (2) third: rank 3
            [0.5, 0.0, 0.0, 0.5],  # tie with person 0: counts in the probe's favour
        ],
        dtype=np.float32,
    )
    ranks = truth_ranks(probes * 3.0, templates, np.array([0, 1, 2, 3]))  # scale-free
    assert ranks.tolist() == [1, 2, 3, 1]


def test_rates_count_probes_without_a_face_as_misses():
    rates = rank_rates(np.array([1, 2, 6]), probes=4)
    assert rates == {
        "probes": 4,
        "rank1_hits": 1,
        "rank1": 0.25,
        "rank5_hits": 2,
        "rank5": 0.5,
    }
    with pytest.raises(ValueError, match="3 ranks for 2 probes"):
        rank_rates(np.array([1, 1, 1]), probes=2)


def _fold(rank1: int, rank5: int, probes: int, no_face: int) -> dict:
    cell = rank_rates(np.array([1] * rank1 + [5] * (rank5 - rank1)), probes)
    return {
        "16": {
            "detected": {
                "image_px": 36,
                "no_face": no_face,
                "other_face": 0,
                "unreadable": 0,
                "pipelines": {"teacher": {**cell, "student_served": 0}},
            },
            "reference": {"chip_px": 18, "unaligned": 0, "pipelines": {"teacher": cell}},
        }
    }


def test_pooling_person_disjoint_folds_sums_hits_and_probes():
    pooled = pool_folds([_fold(3, 5, 10, 1), _fold(1, 2, 5, 2)])
    cell = pooled["16"]["detected"]["pipelines"]["teacher"]
    assert (cell["probes"], cell["rank1_hits"], cell["rank5_hits"]) == (15, 4, 7)
    assert cell["rank1"] == round(4 / 15, 4) and cell["rank5"] == round(7 / 15, 4)
    assert pooled["16"]["detected"]["no_face"] == 3
    assert pooled["16"]["reference"]["pipelines"]["teacher"]["probes"] == 15
    table = markdown_table(pooled)
    assert "| 16 | 36x36 image, MTCNN | teacher | 15 | 0 | 26.7% | 46.7% | 3 | 0 |" in table
    assert "| 16 | dlib chip -> 18 px, no detection | teacher | 15 |" in table


def test_reference_chip_has_the_pixel_density_of_the_face():
    assert reference_chip_px(110) == 124
    assert reference_chip_px(16) == 18 and reference_chip_px(24) == 27


def test_table_rounds_rates_once_from_the_hit_counts():
    cell = rank_rates(np.array([1] * 1016), probes=1627)  # 62.446%, stored rounded as 0.6245
    results = {
        "16": {
            "detected": {
                "image_px": 36,
                "no_face": 0,
                "other_face": 0,
                "pipelines": {"teacher": {**cell, "student_served": 0}},
            },
            "reference": {"chip_px": 18, "unaligned": 0, "pipelines": {"teacher": cell}},
        }
    }
    assert "| 62.4% | 62.4% |" in markdown_table(results)


def test_probe_image_applies_the_preset_seeded_by_path_and_clean_is_the_plain_shrink():
    from lrface.data.detected import shrink_image
    from lrface.eval.lfw_identification import probe_image

    image = np.random.default_rng(0).integers(0, 256, (250, 250, 3), dtype=np.uint8)
    plain = shrink_image(image, 16)
    assert np.array_equal(probe_image(image, "A/A_0001.jpg", 16, "clean"), plain)
    cctv = probe_image(image, "A/A_0001.jpg", 16, "cctv")
    assert cctv.shape == plain.shape and not np.array_equal(cctv, plain)
    assert np.array_equal(cctv, probe_image(image, "A/A_0001.jpg", 16, "cctv"))
    assert not np.array_equal(cctv, probe_image(image, "B/B_0001.jpg", 16, "cctv"))
    ir = probe_image(image, "A/A_0001.jpg", 16, "ir")
    assert np.array_equal(ir[..., 0], ir[..., 1]) and np.array_equal(ir[..., 1], ir[..., 2])
