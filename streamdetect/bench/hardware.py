"""A one-line description of the machine, printed beside every benchmark figure."""

from __future__ import annotations

import os
import platform


def describe() -> str:
    cpu = platform.processor() or platform.machine()
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        cpu = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), cpu)
        flag_line = next((l for l in info.splitlines() if l.startswith("flags")), "")
        flags = "AVX-512" if "avx512f" in flag_line else "AVX2" if "avx2" in flag_line else "AVX" if " avx " in flag_line else ""
    except OSError:
        pass
    parts = [f"{cpu}, {os.cpu_count()} cores" + (f" ({flags})" if flags else "") + _memory()]
    try:
        import torch

        if torch.cuda.is_available():
            parts.append(", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))
    except ImportError:
        pass
    return "; ".join(parts)


def _memory() -> str:
    try:
        with open("/proc/meminfo") as f:
            kb = next(int(l.split()[1]) for l in f if l.startswith("MemTotal:"))
        return f", {kb / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        return ""


def load() -> str:
    """The 1, 5 and 15-minute load averages and the core count: a benchmark on a shared machine means little
    without them."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f} (1 / 5 / 15 min) on {os.cpu_count()} cores"
