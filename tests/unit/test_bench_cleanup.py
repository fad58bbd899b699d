"""A bench stopped with SIGTERM runs its cleanup (the devnet's `down`), as with Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys, time
from pathlib import Path
from bench.common import _exit_on_sigterm
marker = Path(sys.argv[1])
with _exit_on_sigterm():
    try:
        (marker.parent / "started").touch()
        time.sleep(60)
    finally:
        marker.write_text("cleaned up")
"""


def test_sigterm_runs_the_cleanup_and_exits_143(tmp_path: Path) -> None:
    marker = tmp_path / "done"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(marker)], cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the script did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert marker.read_text() == "cleaned up"
