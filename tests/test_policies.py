"""Checkpoint loading fails clearly, naming the path and what was expected (no Ray needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agents.policies import CheckpointError, load, load_run

ROOT = Path(__file__).resolve().parent.parent


def test_bad_checkpoint_paths_fail_clearly(tmp_path):
    with pytest.raises(CheckpointError, match=r"does not exist; expected an RLlib algorithm"):
        load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty holds no checkpoint"):
        load(tmp_path / "empty")
    bad = tmp_path / "bad" / "checkpoints" / "iter_000001"
    (bad / "learner_group/learner/rl_module/rp").mkdir(parents=True)
    (bad / "rllib_checkpoint.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"cannot load the RLModule in .*rl_module/rp"):
        load(tmp_path / "bad")
    cmd = [sys.executable, "-m", "agents.evaluate", f"checkpoint={tmp_path / 'nope'}",
           f"hydra.run.dir={tmp_path / 'out'}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert f"checkpoint {tmp_path / 'nope'} does not exist" in proc.stderr


def test_checkpoint_without_twin_files_names_them(tmp_path):
    ck = tmp_path / "iter_000004"
    (ck / "learner_group/learner/rl_module/rp").mkdir(parents=True)
    (ck / "rllib_checkpoint.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"iter_000004 has no twin_config.yaml"):
        load_run(ck)
