"""One description of the machine, printed beside every figure lrface measures."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo on Linux, else platform's guess."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> str:
    """CPU, logical CPUs, torch threads, GPU if any, torch and Python versions."""
    import torch

    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (
        f"{cpu_model()}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch "
        f"thread(s){gpu}, torch {torch.__version__}, Python {platform.python_version()}"
    )


def save_measurement(report: dict, path: str | os.PathLike, started: float) -> None:
    """Write a benchmark's JSON ``report`` with its wall time since ``started``
    (``time.perf_counter``) and the machine, and say where it went."""
    import json
    import time
    from pathlib import Path

    report["seconds"] = round(time.perf_counter() - started, 1)
    report["machine"] = describe_machine()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{report['seconds']} s on {report['machine']} -> {path}")


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
"""/proc/cpuinfo flags of CPUs with bfloat16 arithmetic; without them torch emulates bf16 and a
training step is 14-19x slower than in fp32 (issue 16, item 15)."""


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_support(device: str) -> tuple[bool, str]:
    """Whether ``device`` (``cpu`` or ``cuda[:N]``) runs bfloat16 natively, and the evidence."""
    import torch

    if device.startswith("cuda"):
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return ok, f"CUDA device {'supports' if ok else 'does not support'} bf16"
    found = sorted(set(BF16_CPU_FLAGS) & cpu_flags())
    if found:
        return True, f"CPU has {', '.join(found)}"
    return False, f"CPU has none of {', '.join(BF16_CPU_FLAGS)}"


def resolve_precision(requested: str, device: str) -> tuple[str, str]:
    """``auto`` -> ``bf16`` where the hardware has it, else ``fp32``; (precision, why)."""
    ok, evidence = bf16_support(device)
    if requested == "auto":
        return ("bf16" if ok else "fp32"), f"auto: {evidence}"
    if requested == "bf16" and not ok:
        return requested, f"as configured, although the {evidence} (emulated bf16 is slow)"
    return requested, "as configured"


THREADS_ENV = "LRFACE_THREADS"
"""Environment variable that sets the intra-op threads of every model call (``--threads`` wins)."""


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def intra_op_threads(requested: int | None = None, workers: int = 1) -> int:
    """Threads for one model call (torch, ONNX Runtime, OpenCV): ``requested``, else
    ``$LRFACE_THREADS``, else half the available CPUs shared among ``workers`` calls running at
    once, at least 1. Half, not all: with every core claimed by one call's threads, a busy host
    (other processes, or this one decoding and tracking) makes them wait on each other, and
    ``watch``, ``verify`` and ``serve`` ran 2-8x slower with the libraries' default (one thread
    per core) than with one thread on a loaded 2-core machine (issue 26, item 5)."""
    if requested is None and os.environ.get(THREADS_ENV, "").strip():
        value = os.environ[THREADS_ENV].strip()
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"${THREADS_ENV} must be a whole number >= 1, got {value!r}")
        requested = int(value)
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads must be >= 1, got {requested}")
        return requested
    return max(1, available_cpus() // (2 * max(1, workers)))


def use_threads(threads: int) -> int:
    """Set ``threads`` intra-op threads for torch and OpenCV in this process (ONNX Runtime
    sessions created afterwards take torch's count); returns it."""
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    return threads
