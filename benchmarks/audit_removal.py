"""How long removing one identity takes as the audit log grows: a removal rewrites only the
audit entries that the index ``audit_names`` lists for the name, so its time should follow
the entries naming the person, not the size of the log.

For each ``--entries`` size, an SQLite gallery of ``--identities`` names and that many audited
searches (each answering one identity, as the service logs them) is written at the schema
version before the index; this tree opens a copy (the migration indexes the log: "open" is
timed) and removes ``--removals`` identities, each timed, and reports the database's size
after. ``--compare SRC`` runs the same on another copy with another source tree first on
PYTHONPATH (an earlier version, which string-scans every entry per removal), in the same run.

    python benchmarks/audit_removal.py --entries 10000 100000 --compare ../main/src
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from lrface.machine import cpu_model
from lrface.search.store import AUDIT_NAMES, MIGRATIONS, Enrolment, SqliteStore

WORKER = """
import json, sys, time
from lrface.search.store import open_store
path, names = sys.argv[1], json.loads(sys.argv[2])
started = time.perf_counter()
store = open_store(path)
opened = time.perf_counter() - started
removals = []
for name in names:
    started = time.perf_counter()
    store.remove(name, "bench")
    removals.append(time.perf_counter() - started)
store.close()
print(json.dumps({"open": opened, "remove": removals}))
"""


def make_gallery(path: Path, identities: int, entries: int) -> list[str]:
    """A gallery at the version before ``audit_names`` with ``entries`` audited searches; its
    identity names."""
    names = [f"Person {i:05d}" for i in range(identities)]
    vectors = np.random.default_rng(0).normal(size=(identities, 8)).astype(np.float32)
    with SqliteStore.create(path, "enc", 8) as store:
        for name, vector in zip(names, vectors, strict=True):
            store.add(name, [Enrolment(vector / np.linalg.norm(vector), f"{name}.jpg")])
    rows = [
        (
            float(i),
            "user:0123abcd",
            "search",
            json.dumps({"probe": {"sha256": f"{i:064x}", "bytes": 40_000}, "k": 5}),
            json.dumps(
                {"faces": [{"identity": names[i % identities], "score": 0.7, "threshold": 0.5}]}
            ),
        )
        for i in range(entries)
    ]
    before_index = next(v for v, steps in MIGRATIONS.items() if AUDIT_NAMES in steps)
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO audit (time, actor, action, target, request, answer) "
            "VALUES (?, ?, ?, NULL, ?, ?)",
            rows,
        )
        db.execute("DROP TABLE audit_names")
        db.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (str(before_index),))
    db.close()
    return names


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--identities", type=int, default=200)
    parser.add_argument("--removals", type=int, default=5)
    parser.add_argument("--compare", help="another lrface source tree (its src/ directory)")
    args = parser.parse_args()
    trees = {"this tree": str(Path(__file__).resolve().parents[1] / "src")}
    if args.compare:
        trees[args.compare] = args.compare
    print("| audit entries | tree | open s | removal ms, median (range) | database MB |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for entries in args.entries:
            source = Path(tmp) / f"v4-{entries}.db"
            names = make_gallery(source, args.identities, entries)
            step = max(1, len(names) // args.removals)
            removed = names[::step][: args.removals]
            for label, src in trees.items():
                copy = Path(tmp) / "copy.db"
                shutil.copy(source, copy)
                env = {**os.environ, "PYTHONPATH": src}
                done = subprocess.run(
                    [sys.executable, "-c", WORKER, str(copy), json.dumps(removed)],
                    check=True,
                    capture_output=True,
                    text=True,
                    env=env,
                )
                result = json.loads(done.stdout)
                ms = [1000 * t for t in result["remove"]]
                spread = f"{min(ms):.1f}-{max(ms):.1f}"
                size = copy.stat().st_size / 1e6
                print(
                    f"| {entries:,} | {label} | {result['open']:.2f} | "
                    f"{statistics.median(ms):.1f} ({spread}) | {size:.1f} |"
                )
                copy.unlink()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\nMachine: {cpu_model()}, {os.cpu_count()} logical CPUs, load average {load}")


if __name__ == "__main__":
    main()
