"""Training-step speed of a student, fp32 against bf16 autocast, in one run.

One step = the student's forward on a batch of LR faces (upsampled to its input size inside),
an L2 loss against random unit targets, backward and an AdamW update: the work of
``lrface train`` without data loading. Reports faces/s, median of ``--repeats`` timed steps
after two warm-up steps, for each precision on the same random batch.

    python benchmarks/train_step_speed.py --student teacher-init --batch 32 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from lrface.machine import describe_machine
from lrface.models.students import create_student


def step_seconds(student, batch, target, optimizer, bf16: bool) -> float:
    start = time.perf_counter()
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        embedding = student(batch)
    loss = (F.normalize(embedding.float(), dim=1) - target).pow(2).sum(1).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--student", default="teacher-init")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr-size", type=int, default=16, help="side of the LR faces")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch = torch.rand(args.batch, 3, args.lr_size, args.lr_size) * 255
    rows = []
    for precision in ("fp32", "bf16"):
        student = create_student(args.student).train()
        target = F.normalize(torch.randn(args.batch, student.dim), dim=1)
        optimizer = torch.optim.AdamW(student.parameters(), lr=1e-5)
        times = [
            step_seconds(student, batch, target, optimizer, precision == "bf16")
            for _ in range(args.repeats + 2)
        ][2:]
        rows.append((precision, args.batch / statistics.median(times)))
    print(f"Machine: {describe_machine()}\n")
    print("| student | batch | precision | faces/s | × fp32 |\n|---|---|---|---|---|")
    for precision, rate in rows:
        ratio = rate / rows[0][1]
        print(f"| {args.student} | {args.batch} | {precision} | {rate:.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
