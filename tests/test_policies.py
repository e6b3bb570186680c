"""Checkpoint loading fails clearly, naming the path and what was expected (no Ray needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agents.evaluate import evaluate
from agents.policies import CheckpointError, load, load_run
from twin.config import ConfigError

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
    # a user error: one line naming the path, exit status 2, no traceback (nor Hydra's banner)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"twin-eval: checkpoint {tmp_path / 'nope'} does not exist")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_eval_inputs_are_range_checked_naming_the_key(tmp_path):
    # numpy would say "expected non-negative integer" without naming the key
    with pytest.raises(
        ConfigError, match=r"^seed = -1 is out of range; allowed values: integers >= 0"
    ):
        evaluate(tmp_path / "nope", 1, tmp_path / "out", seed=-1)
    with pytest.raises(
        ConfigError, match=r"^episodes = 0 is out of range; allowed values: integers >= 1"
    ):
        evaluate(tmp_path / "nope", 0, tmp_path / "out")


def test_checkpoint_without_twin_files_names_them(tmp_path):
    ck = tmp_path / "iter_000004"
    (ck / "learner_group/learner/rl_module/rp").mkdir(parents=True)
    (ck / "rllib_checkpoint.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"iter_000004 has no twin_config.yaml"):
        load_run(ck)
