"""Train an ensemble: ``config.members`` students side by side, one process each.

Member ``k`` is the run ``<out>/member-k`` with seed ``seed + k`` (member 0 is the single run
with the config's seed); everything else is the config's. Members run at once in separate
processes, each with its share of the CPU threads, which on a small CPU is faster than one
process stepping all of them. A member's output goes to ``member-k/member.log``. A member that
fails does not stop the others; its exit code is reported. ``load_student`` on ``<out>`` then
gives the members' average (``EnsembleStudent``).
"""

from __future__ import annotations

import contextlib
import csv
import multiprocessing as mp
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from lrface.models.checkpoint import MEMBER_PREFIX
from lrface.train.config import TrainConfig

TrainMember = Callable[[TrainConfig, bool, int | None], object]
"""``(member config, resume, stop_after) -> anything``: trains one member in its process."""


def member_configs(config: TrainConfig) -> list[TrainConfig]:
    """One single-student config per member: its own seed and run directory."""
    return [
        config.replace(
            seed=config.seed + k, out=str(Path(config.out) / f"{MEMBER_PREFIX}{k}"), members=1
        )
        for k in range(config.members)
    ]


def _run_member(
    train_member: TrainMember,
    config: TrainConfig,
    resume: bool,
    stop_after: int | None,
    threads: int,
) -> None:
    torch.set_num_threads(threads)
    Path(config.out).mkdir(parents=True, exist_ok=True)
    with (
        open(Path(config.out) / "member.log", "a") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        try:
            train_member(config, resume, stop_after)
        except Exception:
            traceback.print_exc()  # into member.log, which the parent names
            raise SystemExit(1) from None


def _logged_step(run_dir: Path) -> int:
    """The last step a member wrote to its ``log.csv`` (0 before the first row)."""
    path = run_dir / "log.csv"
    if not path.is_file():
        return 0
    with open(path, newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    try:
        return int(rows[-1][0]) if len(rows) > 1 else 0
    except ValueError:  # a row being written right now
        return 0


def train_members(
    config: TrainConfig,
    train_member: TrainMember,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    threads: int | None = None,
) -> dict[int, int]:
    """Run every member to its end; ``{member: exit code}`` (0 for each that finished).

    ``threads`` per member defaults to the usable cores divided among the members (at least
    one). ``train_member`` must be picklable (a module-level function): members are spawned.
    """
    configs = member_configs(config)
    if threads is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        threads = max(1, (cores or 1) // len(configs))
    context = mp.get_context("spawn")
    processes = [
        context.Process(
            target=_run_member, args=(train_member, member, resume, stop_after, threads)
        )
        for member in configs
    ]
    for process in processes:
        process.start()
    target = stop_after if stop_after is not None else config.steps
    with tqdm(
        total=target * len(configs), desc=f"{len(configs)} members", disable=not progress
    ) as bar:
        while any(p.is_alive() for p in processes):
            time.sleep(1.0)
            done = sum(min(_logged_step(Path(m.out)), target) for m in configs)
            bar.update(done - bar.n)
    for process in processes:
        process.join()
    return {k: process.exitcode for k, process in enumerate(processes)}
