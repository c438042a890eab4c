"""A real SIGKILL in the middle of training, for the exact-resume tests (``from killing import sigkill_at_step``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path


def sigkill_at_step(proc: subprocess.Popen, metrics: Path, step: int, timeout: float = 240.0) -> None:
    """Watch ``metrics`` (``metrics.jsonl``) and SIGKILL ``proc`` as soon as it has logged ``step``; wait for it
    to die and assert it died of the signal (not of an error, not by finishing first)."""
    t_end, seen = time.time() + timeout, 0
    while time.time() < t_end and proc.poll() is None:
        if metrics.exists():
            lines = metrics.read_text().splitlines()
            seen = json.loads(lines[-1])["step"] if lines and lines[-1].endswith("}") else seen
            if seen >= step:
                os.kill(proc.pid, signal.SIGKILL)
                break
        time.sleep(0.005)
    proc.wait(timeout=30)
    out = proc.stdout.read()[-2000:] if proc.stdout else ""
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, out)
