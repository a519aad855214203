from pathlib import Path

import pytest

from lrface.data.lfw import LFW, PairsFormatError, fold_people, parse_pairs
from lrface.paths import DatasetNotFoundError, resolve_lfw


def write(tmp_path: Path, text: str, name: str = "pairs.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


VIEW2_TOY = """2 2
Alice 1 2
Bob 1 3
Alice 1 Carol 2
Bob 2 Dave 1
Eve 1 2
Frank 2 4
Eve 3 Gina 1
Hank 1 Frank 1
"""


def test_parse_view2_folds_and_paths(tmp_path):
    pairs = parse_pairs(write(tmp_path, VIEW2_TOY))
    assert len(pairs) == 8
    assert [p.fold for p in pairs] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [p.same for p in pairs] == [True, True, False, False] * 2
    assert pairs[0].first == "Alice/Alice_0001.jpg" and pairs[0].second == "Alice/Alice_0002.jpg"
    assert pairs[2].people == ("Alice", "Carol")
    people = fold_people(pairs)
    assert people[0] == {"Alice", "Bob", "Carol", "Dave"}
    assert people[1] == {"Eve", "Frank", "Gina", "Hank"}


def test_parse_view1_single_number_header(tmp_path):
    pairs = parse_pairs(write(tmp_path, "1\nAnn 1 2\nAnn 1 Ben 1\n"))
    assert [(p.fold, p.same) for p in pairs] == [(0, True), (0, False)]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("2 2\nAlice 1 2\n", "header promises 8"),
        ("1\nAnn one 2\nAnn 1 Ben 1\n", "pairs.txt:2: malformed"),
        ("1\nAnn 1 2 3 4 5\nAnn 1 Ben 1\n", "pairs.txt:2: malformed"),
        ("1\nAnn 1 Ben 1\nAnn 1 2\n", "pairs.txt:2: expected a same-person"),
        ("ten\n", "pairs.txt:1: header"),
        ("", "empty pairs file"),
    ],
)
def test_malformed_pairs_name_the_line(tmp_path, text, needle):
    with pytest.raises(PairsFormatError, match=needle):
        parse_pairs(write(tmp_path, text))


def test_missing_lfw_says_where_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="vis-www.cs.umass.edu"):
        resolve_lfw(tmp_path / "nowhere")


def test_training_images_exclude_held_out_people(tmp_path):
    for name, count in [("Alice", 2), ("Bob", 1)]:
        (tmp_path / name).mkdir()
        for i in range(1, count + 1):
            (tmp_path / name / f"{name}_{i:04d}.jpg").write_bytes(b"x")
    write(tmp_path, "1 1\nAlice 1 2\nAlice 1 Bob 1\n")
    lfw = LFW(tmp_path)
    assert [im.relpath for im in lfw.training_images({"Alice"})] == ["Bob/Bob_0001.jpg"]
    assert len(lfw.images()) == 3


def test_real_view2_folds_are_person_disjoint(lfw_root):
    lfw = LFW(lfw_root)
    pairs = lfw.view2()
    assert len(pairs) == 6000
    people = fold_people(pairs)
    assert len(people) == 10
    seen: set[str] = set()
    for fold in people.values():
        assert not (seen & fold)
        seen |= fold
    assert len(seen) == 4281
    assert len(lfw.view1_test()) == 1000 and len(lfw.view1_train()) == 2200
