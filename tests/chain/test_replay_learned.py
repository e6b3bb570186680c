"""A learned episode on chain: a tiny real training (RLlib PPO, one iteration, its own Ray),
`twin-replay checkpoint=...` plays it greedily in the twin (`twin-eval`'s record) and replays it
on a fresh anvil: identical balances for every account to the wei, states and event sequences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from web3 import Web3

import twin
from agents.schema import RayConfig
from bridge.anvil import Anvil
from bridge.plan import read_plans
from bridge.replay_app import ANVIL_LEAD_S, ReplayConfig, replay
from tests.chain.replay_helpers import assert_parity

pytestmark = [pytest.mark.chain, pytest.mark.slow]

TINY = (
    "market.n_job_creators=4",
    "market.n_resource_providers=5",
    "market.n_mediators=2",
    "market.episode_ticks=20",
    "policies.rp.learning_share=0.4",
    "policies.rp.policy=cheat_with_probability",
    "policies.jc.check_probability=0.5",
    "train=smoke",
    "train.iterations=1",
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from agents.train import ray_session, train

    with ray_session(RayConfig(), tmp_path_factory.mktemp("ray")):
        res = train(twin.compose(list(TINY)), tmp_path_factory.mktemp("run"))
    return res.run_dir


def test_learned_episode_replays_to_the_wei(checkpoint, tmp_path) -> None:
    out = tmp_path / "replay"
    # the default target (a fresh anvil per episode) through the app's plain function
    (result,) = replay(ReplayConfig(checkpoint=str(checkpoint), episodes=1, seed=11), out)
    record = out / "eval" / "episodes.jsonl"
    (plan,) = read_plans(record)
    assert any(a.get("policy") == "learner" or (a.get("seat") == "learning")
               for a in json.loads(record.read_text().splitlines()[1])["accounts"])  # fmt: skip
    assert result.complete and result.summary["deals_matching"] == len(plan.deals) > 0
    # the episode's anvil dumped its state on exit: reload it and check parity independently
    state = out / "episode_0" / "anvil-state.json"
    with Anvil(genesis_timestamp_s=plan.first_time_s - ANVIL_LEAD_S,
               extra_args=("--state", str(state))) as node:  # fmt: skip
        assert_parity(Web3(Web3.HTTPProvider(node.url)), result, plan, record)
