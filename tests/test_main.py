"""The main job runs from the command line and writes its report (scripted simulation mode)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd


def test_main_job_writes_report(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "experiments.main", f"hydra.run.dir={out}", "run.episodes=1", "run.mode=simulate",
           "market.episode_ticks=20", "policies.rp.policy=cheat_with_probability"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "report:" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    deals = pd.read_parquet(out / "deals.parquet")
    assert summary["deals"] == len(deals) > 0
    assert deals["deal_id"].str.startswith("bafkrei").all()
    assert (out / "report.png").stat().st_size > 10_000
    agents = pd.read_csv(out / "agents.csv")
    assert set(agents.role) == {"jc", "rp", "mediator"}


def test_main_job_rejects_bad_config(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "experiments.main",
        f"hydra.run.dir={tmp_path}",
        "market.job_rate_per_tick=7",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "market.job_rate_per_tick = 7.0 is out of range" in proc.stderr
