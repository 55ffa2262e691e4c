"""Waiting for a SLURM batch job as ``sbatch --wait`` does, in a fraction of the time.

``sbatch --wait`` looks at the job 2 s after submitting it, then 8 s later, then every
32 s (its pause grows fourfold up to 32 s while under half of MinJobAge), so a job of
3 s takes 10 s and one of 15 s takes 42 s. The tests submit with ``--parsable`` and ask
``scontrol`` every 0.2 s instead, and turn the job's ExitCode into the status sbatch
--wait would return.
"""

from __future__ import annotations

import subprocess
import time

#: Job states of a job that has ended (sbatch --wait's IS_JOB_FINISHED), as scontrol
#: shows them; COMPLETING is left out: its epilog is still running.
FINISHED = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
    "DEADLINE", "OUT_OF_MEMORY",
}  # fmt: skip


def wait_for_job(job: str, scontrol: list[str], timeout: float, poll: float = 0.2) -> int:
    """The exit status of batch job ``job`` once it has ended, as ``sbatch --wait`` gives
    it: the batch script's exit status, or 1 if a signal ended it. ``scontrol`` is the
    command line that runs scontrol (its environment included)."""
    deadline = time.monotonic() + timeout
    while True:
        shown = subprocess.run(
            [*scontrol, "-o", "show", "job", job],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        fields = dict(field.split("=", 1) for field in shown.stdout.split() if "=" in field)
        if fields.get("JobState") in FINISHED:
            status, signum = (int(part) for part in fields["ExitCode"].split(":"))
            return 1 if signum else status
        assert time.monotonic() < deadline, f"job {job} not done after {timeout} s: {shown}"
        time.sleep(poll)
