"""Smoke tests: the example scripts run end to end as a user would run them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_nve_ethanol_runs_and_reports_drift(tmp_path: Path) -> None:
    png = tmp_path / "nve.png"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "nve_ethanol.py"), "--steps", "100", "--log-every", "50"]
        + ["--output", str(png)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    drift = re.search(r"NVE total-energy drift: (\S+) meV/atom/ps", out)
    assert drift is not None, out
    max_dev = re.search(r"max \|Etot - Etot\(0\)\|: (\S+) meV/atom", out)
    assert max_dev is not None, out
    # 100 steps of 0.5 fs from a relaxed bound cluster: energy is conserved to well under 1 meV/atom.
    assert abs(float(max_dev.group(1))) < 1.0
    assert re.search(r"\d+\.\d+ ms/step", out)
    assert len(re.findall(r"^step +\d+ ", out, flags=re.MULTILINE)) == 3  # steps 0, 50, 100
    assert "stayed one connected cluster" in out
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_active_learning_cu_emt_quick(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "active_learning_cu_emt.py"),
            "--quick",
            "--out",
            str(tmp_path / "al"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for label in ("900 K", "300/600 K"):
        assert re.search(rf"committee-mean test force MAE on 10 {label} frames: \S+ -> \S+ eV/Å", proc.stdout)
    assert re.search(
        r"largest per-atom force deviation on the 900 K test frames: median \S+ -> \S+", proc.stdout
    )
    summary = json.loads((tmp_path / "al" / "active_learning.json").read_text())
    assert summary["selected"] > 0 and summary["train_frames"][1] == 10 + summary["selected"]
    assert summary["selected"] <= 2 and summary["candidates"] >= summary["selected"]
    for stage in ("before", "after"):
        for name in ("900K", "300-600K"):
            result = summary[stage][name]
            assert result["frames"] == 10 and len(result["members_force_mae"]) == 2
            assert 0 < result["mean_force_mae"] < 10
