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
