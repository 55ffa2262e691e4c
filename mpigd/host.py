"""What the operating system reports of this process and its machine: how long the
process has run, and the memory it may still use. No MPI, no imports beyond the
standard library."""

from __future__ import annotations

import math
import os


def process_age() -> float:
    """Seconds since this process started (Linux: ``/proc``, 10 ms resolution), so that
    the interpreter's start and the imports are counted; NaN where ``/proc`` is
    missing. Collective: no."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after "pid (command name)"
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    except (OSError, ValueError, IndexError):
        return math.nan


def parse_bytes(text: str) -> float:
    """``4G``, ``512M``, ``1000000`` -> bytes (binary units); a ``ValueError`` for
    anything but a finite size > 0. Collective: no."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = units.get(text[-1:], 1)
    size = float(text[:-1] if text[-1:] in units else text) * scale
    if not (0 < size < math.inf):
        raise ValueError(f"a size must be a finite number of bytes > 0, got {size}")
    return size


def resident_bytes() -> float:
    """Bytes of memory this process holds now (its resident set), 0 where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return float(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0.0


def available_memory() -> float:
    """Bytes this node can still give: MemAvailable, capped by a cgroup limit (SLURM)."""
    available = float("inf")
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = float(f.read())
        if limit != "max":
            available = min(available, float(limit) - used)
    except (OSError, ValueError):
        pass
    return available
