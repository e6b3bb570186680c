"""The tour of one training run (``notebooks/tour_of_a_training_run.ipynb``): its budgets and the
one piece of logic it shows, acting in the twin with loaded policies.

- :func:`tour_config`: the run the tour trains. ``full`` is the README's main job (20 % of the
  nodes learn among honest scripted nodes; clients check 10 %, results collateral 2x, so cheating
  pays: m* = 9 at c = P); ``tiny`` (tests) the same market shrunk to a few iterations of a few
  hundred ticks. :func:`eval_episodes` is the number of greedy episodes for each budget.
- :func:`act_table`: plays a few ticks of a fresh market in which every learning seat acts with
  its loaded policy (:func:`agents.policies.load`: greedy, masked actions never chosen) and
  returns one row per seat and tick with its focus deal's terms and the action it took, decoded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from agents.baselines import JC_ACTIONS, MED_ACTIONS, RP_MODES
from twin.config import TwinConfig

BUDGETS = ("full", "tiny")
TINY = ("train=smoke", "train.iterations=2", "market.episode_ticks=40", "run.name=tour")
EPISODES = {"full": 4, "tiny": 1}


def _check(budget: str) -> str:
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {list(BUDGETS)}, got {budget!r}")
    return budget


def tour_config(budget: str = "full", overrides: Sequence[str] = ()) -> TwinConfig:
    """The composed config of the tour's training run for ``budget`` plus ``overrides``."""
    import twin

    base = ["run.name=tour"] if _check(budget) == "full" else list(TINY)
    return twin.compose([*base, *overrides])


def eval_episodes(budget: str = "full") -> int:
    """Greedy evaluation episodes of the tour for ``budget``."""
    return EPISODES[_check(budget)]


def decode_action(role: str, action, n_price_levels: int) -> str:
    """A readable name of an env action of ``role`` (RP: ``mode@level``)."""
    if role == "rp":
        mode, level = divmod(int(action), n_price_levels)
        return f"{RP_MODES[mode]}@{level}"
    if role == "jc":
        if np.ndim(action):  # the probability action
            return f"check p={float(np.asarray(action).reshape(-1)[0]):.2f}"
        return JC_ACTIONS[int(action)]
    return MED_ACTIONS[int(action)]


def act_table(policies: dict, config: TwinConfig, policy_of: dict[str, str], ticks: int = 10,
              seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """Play ``ticks`` ticks of a fresh market (seeded ``seed``): each learning seat acts with
    ``policies[policy_of[seat]]``, the other seats with their scripted policy inside the env.

    One row per learning seat and tick: ``tick``, ``agent``, ``policy``, ``focus`` (a deal is
    waiting for its decision), the focus deal's ``job_cost`` and ``results_collateral``
    (symlog-scaled observation features), the ``action`` and its decoded ``decision``, and the
    seat's ``reward`` for the tick (tokens).
    """
    from twin.env import MarketEnv

    env = MarketEnv(config, expose="learning")
    obs, _ = env.reset(seed=seed)
    names = {g: list(env.features[g]) for g in env.features}
    rows = []
    for _ in range(ticks):
        if not env.agents:
            break
        actions = {a: policies[policy_of[a]](obs[a]) for a in env.agents}
        tick = env.market.tick
        before = obs
        obs, rewards, *_ = env.step(actions)
        for a, act in actions.items():
            role = a.rsplit("_", 1)[0]
            x = dict(zip(names[role], np.asarray(before[a]["observation"]).tolist(), strict=True))
            rows.append({
                "tick": tick, "agent": a, "policy": policy_of[a], "focus": bool(x.get("focus", 0)),
                "job_cost": x.get("focus_job_cost", np.nan),
                "results_collateral": x.get("focus_results_collateral", np.nan),
                "action": act if np.ndim(act) else int(act),
                "decision": decode_action(role, act, env.n_levels),
                "reward": float(rewards[a]),
            })  # fmt: skip
    return pd.DataFrame(rows)
