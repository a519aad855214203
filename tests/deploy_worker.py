"""``python -m tests.deploy_worker ARGS``: the ``lrface`` command line with the test pipeline
(the square detector and colour encoder of tests/test_pipeline.py) in place of MTCNN and the
dlib teacher, so the multi-process deployment test runs real ``serve`` and ``watch``
processes without model weights. ``enroll-loop URL PREFIX COUNT`` enrolls COUNT synthetic
people one transaction each and prints each name once committed."""

from __future__ import annotations

import sys

import numpy as np


def _enroll_loop(url: str, prefix: str, count: int) -> None:
    from lrface.search.store import Enrolment, open_store

    rng = np.random.default_rng(abs(hash(prefix)) % 1000)
    with open_store(url) as store:
        for i in range(count):
            vector = rng.normal(size=store.dim).astype(np.float32)
            vector /= np.linalg.norm(vector)
            store.add(f"{prefix}{i:04d}", [Enrolment(vector, f"{prefix}{i}.jpg")])
            print(f"{prefix}{i:04d}", flush=True)


def main() -> None:
    if sys.argv[1] == "enroll-loop":
        _enroll_loop(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    from lrface.cli import app, common
    from tests.test_pipeline import ColourEncoder, SquareDetector

    common.make_detector = lambda *a, **k: SquareDetector()
    common.load_encoder = lambda name, *a, **k: ColourEncoder(name)
    app(sys.argv[1:])


if __name__ == "__main__":
    main()
