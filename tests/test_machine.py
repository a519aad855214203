"""Precision ``auto``: bf16 only where the hardware has it."""

from __future__ import annotations

from lrface import machine


def test_auto_precision_follows_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2", "fma"})
    assert machine.resolve_precision("auto", "cpu") == (
        "fp32",
        "auto: CPU has none of avx512_bf16, amx_bf16",
    )
    precision, why = machine.resolve_precision("bf16", "cpu")
    assert precision == "bf16" and "emulated bf16 is slow" in why
    assert machine.resolve_precision("fp32", "cpu") == ("fp32", "as configured")
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert machine.resolve_precision("auto", "cpu") == ("bf16", "auto: CPU has avx512_bf16")


def test_cpu_flags_reads_proc_cpuinfo():
    flags = machine.cpu_flags()
    assert isinstance(flags, set) and (not flags or "fpu" in flags or "sse2" in flags)
