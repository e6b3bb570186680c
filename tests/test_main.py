"""The main job runs from the command line and writes its report (scripted simulation mode);
bad input ends it with one line on stderr and status 2, before anything runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import twin
from experiments.main import check_run
from twin.config import ConfigError


def _run_main(*overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "experiments.main", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_main_job_writes_report(tmp_path):
    out = tmp_path / "run"
    proc = _run_main(f"hydra.run.dir={out}", "run.episodes=1", "run.mode=simulate",
                     "market.episode_ticks=20", "policies.rp.policy=cheat_with_probability")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "report:" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    deals = pd.read_parquet(out / "deals.parquet")
    assert summary["deals"] == len(deals) > 0
    assert deals["deal_id"].str.startswith("bafkrei").all()
    assert (out / "report.png").stat().st_size > 10_000
    agents = pd.read_csv(out / "agents.csv")
    assert set(agents.role) == {"jc", "rp", "mediator"}


def test_simulate_writes_train_modes_report_and_a_replayable_record(tmp_path):
    """Simulate mode writes the files train mode's evaluation writes (config.yaml,
    measures.csv, episodes.jsonl, ...), and the bridge's record reader loads the record."""
    from omegaconf import OmegaConf

    from agents.measures import MEASURES
    from bridge.plan import read_plans
    from experiments.record import read_record
    from twin.configuration import to_config

    out = tmp_path / "run"
    proc = _run_main(f"hydra.run.dir={out}", "train=smoke", "run.mode=simulate", "run.episodes=2",
                     "market.episode_ticks=20", "seed=5")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("config.yaml", "deals.parquet", "deals.csv", "agents.parquet", "agents.csv",
                 "summary.json", "report.md", "report.png", "measures.csv", "episodes.jsonl"):  # fmt: skip
        assert (out / name).is_file(), name
    # the resolved config, loadable as the twin config (as train mode's config.yaml)
    cfg = to_config(OmegaConf.load(out / "config.yaml"))
    assert (cfg.seed, cfg.market.episode_ticks, cfg.run["mode"]) == (5, 20, "simulate")
    # the measures table of twin-eval: a market row and one per role, every measure a column
    measures = pd.read_csv(out / "measures.csv")
    assert {"market", "rp", "jc", "mediator"} <= set(measures.role)
    assert set(MEASURES) <= set(measures.columns)
    summary = json.loads((out / "summary.json").read_text())
    market = measures[measures.role == "market"].iloc[0]
    assert summary["market_check_rate"] == pytest.approx(market.check_rate)
    # the episode record: both episodes, seeded seed + e, every deal of deals.parquet
    deals = pd.read_parquet(out / "deals.parquet")
    header = read_record(out / "episodes.jsonl")[0]
    assert (header["type"], header["episodes"], header["seed"]) == ("run", 2, 5)
    plans = read_plans(out / "episodes.jsonl")
    assert [(p.episode, p.seed) for p in plans] == [(0, 5), (1, 6)]
    for p in plans:
        ids = set(deals[deals.episode == p.episode].deal_id)
        assert set(p.deals) == ids and ids
        assert p.steps


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("policies.jc.check_probability=1.5",
         "policies.jc.check_probability = 1.5 is out of range; allowed range: [0.0, 1.0]"),
        ("run.episodes=0", "run.episodes = 0 is out of range; allowed range: >= 1"),
        ("run.mode=bogus",
         "run.mode = 'bogus' is not allowed; allowed values: ['train', 'simulate']"),
        # a misspelt key: checked before Hydra's own composition (which suggests "+" instead)
        ("policies.jc.check_probabilty=0.3",
         "policies.jc.check_probabilty: unknown key; allowed keys of policies.jc: ['policy', "
         "'learning_share', 'cheat_probability', 'check_probability', 'price_level']; did you "
         "mean policies.jc.check_probability, policies.jc.cheat_probability?"),
        ("experiment=cheating_economic",
         "experiment=cheating_economic: no such option of the config group 'experiment'; "
         "allowed values: ['cheating_economics', 'collusion_ring', 'deployed_defects', "
         "'learning_checkers', " + ", ".join(
             repr(p.stem) for p in sorted((Path(twin.config_dir()) / "experiment").glob("*.yaml"))
             if p.stem not in ("cheating_economics", "collusion_ring", "deployed_defects",
                               "learning_checkers")) + "] (the files of configs/experiment/)"),
    ],
)  # fmt: skip
def test_main_job_reports_a_user_error_on_one_line_before_training(tmp_path, override, message):
    # train mode (the default): the run.* checks come before any training
    proc = _run_main(f"hydra.run.dir={tmp_path}", "train=smoke", override)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.splitlines() == [f"twin-run: {message}"]
    assert not (tmp_path / "checkpoints").exists()


def test_main_job_rejects_bad_config(tmp_path):
    proc = _run_main(f"hydra.run.dir={tmp_path}", "market.job_rate_per_tick=7")
    assert proc.returncode == 2
    assert "market.job_rate_per_tick = 7.0 is out of range" in proc.stderr


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ({"episodes": 0}, "run.episodes = 0 is out of range; allowed range: >= 1"),
        ({"episodes": "4"}, "run.episodes = '4' must be an integer; allowed range: >= 1"),
        ({"episodes": True}, "run.episodes = True must be an integer; allowed range: >= 1"),
        ({"mode": "eval"}, "run.mode = 'eval' is not allowed; allowed values: ['train', 'simulate']"),
    ],
)  # fmt: skip
def test_check_run_names_the_field_and_the_allowed_values(run, message):
    with pytest.raises(ConfigError) as e:
        check_run(run)
    assert str(e.value) == message


def test_check_run_accepts_the_defaults_and_both_modes():
    check_run({})
    check_run({"mode": "train", "episodes": 1})
    check_run({"mode": "simulate", "episodes": 4, "name": "x"})
