"""A run's logs: CSV rows (``log.csv``, ``eval.csv``) and TensorBoard scalars, rank 0 only."""

from __future__ import annotations

import csv
from pathlib import Path


class RunLogs:
    """Appends rows to the run directory's CSVs (and TensorBoard), from ``start_step`` on."""

    def __init__(self, run_dir: Path, start_step: int, tensorboard: bool):
        self.run_dir = run_dir
        for name in ("log.csv", "eval.csv"):
            truncate_csv(run_dir / name, start_step)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step or None)

    def row(self, name: str, step: int, values: dict[str, float]) -> None:
        """One row of ``name``; its columns are fixed by the file's first row."""
        path = self.run_dir / name
        new = not path.exists()
        fields = ["step", *values]
        if not new:
            with open(path, newline="") as handle:
                fields = next(csv.reader(handle))
        with open(path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({"step": step, **values})
        if self.writer is not None:
            prefix = "eval" if name == "eval.csv" else "train"
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def truncate_csv(path: Path, step: int) -> None:
    """Drop rows logged after ``step`` (a resumed run logs them again)."""
    if not path.exists():
        return
    if step == 0:
        path.unlink()
        return
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= step]
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(kept)
