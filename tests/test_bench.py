"""The benchmark scripts run, small: they print their figures and a last line scripts can read."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_discovery_benchmark_prints_its_figures_and_a_machine_readable_last_line():
    done = subprocess.run([sys.executable, "bench/discovery.py", "--projects", "450", "--subgroups", "12", "--latency", "0.01",
                           "--rate", "40", "--runs", "1", "--skip-plain"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert re.fullmatch(r"discovery floor_ratio=\d+\.\d\d speedup_vs_plain=nan requests=\d+", lines[-1]), lines[-1]
    assert any(line.startswith("ours: ") and "floor 5 pages x 10 ms / 8 workers" in line for line in lines), lines
    limited = next(line for line in lines if line.startswith("limited to 40 requests/s"))
    busiest = int(re.search(r"busiest second (\d+) requests", limited).group(1))
    assert busiest <= 40 and "RATE EXCEEDED" not in done.stdout
