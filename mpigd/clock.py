"""How long this process has run, from the operating system: no MPI, no imports."""

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
