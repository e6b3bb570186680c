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
        # an unknown key: the keys allowed there, and the close matches (Hydra alone suggests
        # appending the key with "+")
        (
            "market.n_job_creatorz=3",
            "market.n_job_creatorz: unknown key; allowed keys of market: ['n_job_creators',",
        ),
        ("market.n_job_creatorz=3", "did you mean market.n_job_creators?"),
        ("ray.address=127.0.0.1:6379", "ray: unknown key; allowed keys of the root: ['seed',"),
        ("ray.address=127.0.0.1:6379", "did you mean train.ray?"),
        # a value of the wrong type: what was expected
        (
            "policies.jc.check_probability=abc",
            "policies.jc.check_probability=abc: Value 'abc' of type 'str' could not be "
            "converted to Float",
        ),
        # an unknown option of a config group: the group's options, on one line
        (
            "mediation=bogus",
            "mediation=bogus: no such option of the config group 'mediation'; allowed values: "
            "['auction', 'commit_reveal', 'consortium', 'consortium_recursive', 'reputation', "
            "'v1'] (the files of configs/mediation/)",
        ),
        ("experiment=cheating_economic", "allowed values: ['cheating_economics', "),
        # the run block and the training batch, checked at composition (not after a run)
        ("run.episodes=0", "run.episodes = 0 is out of range; allowed range: >= 1"),
        ("run.episodes=two", "run.episodes = 'two' must be an integer; allowed range: >= 1"),
        (
            "run.mode=bogus",
            "run.mode = 'bogus' is not allowed; allowed values: ['train', 'simulate']",
        ),
        ("run.name=a/b", "run.name = 'a/b' must be a non-empty name without '/'"),
        (
            "train.minibatch_size=5000",
            "train.minibatch_size = 5000 must be <= train.train_batch_size = 2000",
        ),
    ],
)
def test_bad_values_name_the_field(compose, override, needle):
    with pytest.raises(ConfigError) as e:
        compose(override)
    assert needle in str(e.value)
    assert "\n" not in str(e.value).strip(), "one line"


def test_overrides_must_be_a_list():
    with pytest.raises(ConfigError, match=r"a list of 'key=value' strings.*\(write \["):
        twin.compose("market.n_mediators=3")


def test_an_experiment_sets_its_run_block(compose):
    """configs/config.yaml merges its own keys (seed, run) before the experiment, so an
    experiment's run block wins over the defaults, and the command line over both."""
    assert compose().run == {"name": "default", "mode": "train", "episodes": 4}
    cfg = compose("experiment=cheating_economics")
    assert cfg.run == {"name": "cheating_economics", "mode": "simulate", "episodes": 4}
    assert compose("experiment=cheating_economics", "run.mode=train").run["mode"] == "train"
    assert compose("experiment=none") == compose()  # the group's default changes nothing
    assert compose("experiment=collusion_ring").run["name"] == "collusion_ring"


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
