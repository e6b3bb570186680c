"""Configuration: every experiment composes and runs; bad input fails with the field's name."""

from __future__ import annotations

from pathlib import Path

import pytest

import twin
from experiments import run_episodes
from twin.config import ConfigError

EXPERIMENTS = sorted(p.stem for p in (Path(twin.config_dir()) / "experiment").glob("*.yaml"))
TINY = (
    "market.n_job_creators=3",
    "market.n_resource_providers=2",
    "market.n_mediators=1",
    "market.episode_ticks=10",
)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_runs(compose, name):
    cfg = compose(f"experiment={name}", *TINY)
    res = run_episodes(cfg, episodes=1, seed=0)
    assert len(res.agents) == 6 and res.events >= 0


@pytest.mark.parametrize(
    "override,needle",
    [
        ("market.n_job_creatorz=3", "n_job_creatorz"),
        (
            "market.job_rate_per_tick=1.5",
            "market.job_rate_per_tick = 1.5 is out of range; allowed range: [0.0, 1.0]",
        ),
        ("protocol.preset=lilypad_v2", "allowed values: ['lilypad_v1', 'lilypad_v1_deployed']"),
        ("policies.rp.policy=cheaty", "policies.rp: policy 'cheaty' is not a rp policy; allowed:"),
        ("policies.jc.check_probability=2", "policies.jc.check_probability = 2.0 is out of range"),
        ("+market.module_shares.foo=1", "market.module_shares: unknown key 'foo'"),
        ("+market.n_job_creatorz=3", "n_job_creatorz"),
        ("market.modules=[foo]", "market.modules: unknown job class 'foo'"),
        ("hardware.shares.cpu_server=-1", "hardware.shares.cpu_server must be >= 0"),
        ("market.solvers=[magic]", "market.solvers"),
        ("pricing.default_price_level=9", "pricing.default_price_level must be in [0, 4]"),
        ("market.n_mediators=0", "market.n_mediators = 0 is out of range"),
        ("market.tick_s=abc", "tick_s"),
    ],
)
def test_bad_values_name_the_field(compose, override, needle):
    with pytest.raises(ConfigError) as e:
        compose(override)
    assert needle in str(e.value)


def test_defaults_are_the_v1_economics(compose):
    cfg = compose()
    assert cfg.protocol.preset == "lilypad_v1"
    assert (cfg.timeouts.agree_s, cfg.timeouts.submit_results_s, cfg.timeouts.judge_results_s) == (
        3600,
        3600,
        3600,
    )
    assert (
        cfg.timeouts.submit_results_collateral_wei
        == cfg.timeouts.judge_results_collateral_wei
        == 10**18
    )
    assert cfg.pricing.results_collateral_multiple == 2 and cfg.pricing.mediation_fee_wei == 10**18
