"""How long ``lrface --help`` takes, next to a bare Python start and ``import lrface`` in the
same run (interleaved, so a loaded machine slows all three alike): the CLI imports torch, dlib
and faiss only in the commands that need them. Wall time of each subprocess (median and
range) and its CPU time (user + system, median), which a loaded machine inflates less.

    python benchmarks/cli_startup.py --repeats 10 [--compare ../main/src]

``--compare SRC`` adds ``lrface --help`` with another source tree first on PYTHONPATH (an
earlier version), timed in the same interleaved runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

from lrface.machine import cpu_model

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import lrface'": [sys.executable, "-c", "import lrface"],
    "lrface --help": [sys.executable, "-m", "lrface.cli", "--help"],
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--compare", help="another lrface source tree (its src/ directory)")
    args = parser.parse_args()
    runs = {name: (command, None) for name, command in COMMANDS.items()}
    if args.compare:
        env = {**os.environ, "PYTHONPATH": args.compare}
        runs[f"lrface --help ({args.compare})"] = (COMMANDS["lrface --help"], env)
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, (command, env) in runs.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env=env)
            times[name].append(time.perf_counter() - started)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            cpu[name].append(used)
    print(f"| command | wall s, median | wall s, range | CPU s, median |  ({args.repeats} runs)")
    print("|---|---|---|---|")
    for name, values in times.items():
        spread = f"{min(values):.2f}-{max(values):.2f}"
        used = statistics.median(cpu[name])
        print(f"| `{name}` | {statistics.median(values):.2f} | {spread} | {used:.2f} |")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\nMachine: {cpu_model()}, {os.cpu_count()} logical CPUs, load average {load}")


if __name__ == "__main__":
    main()
