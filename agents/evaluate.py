"""Evaluation: trained policies played greedily in the twin, with tables, report and record.

``twin-eval checkpoint=<run dir or checkpoint> episodes=N`` (a Hydra app over
``configs/eval.yaml``, schema :class:`agents.schema.EvalConfig`) calls :func:`evaluate`, which

- loads the checkpoint with :func:`agents.policies.load_run` (no Ray): the trained RLModules and
  the twin config and seat layout they were trained with (``overrides`` may change the market,
  not the seats);
- runs ``episodes`` episodes with every seat exposed: each training seat plays its policy with
  exploration off, every other seat its group's scripted policy (seeded per episode);
- writes the per-deal and per-agent tables, the summary and the plot with
  :func:`experiments.report.write_report`, the pooled measures of :mod:`agents.measures`
  (``measures.csv``) and the episode record ``episodes.jsonl``
  (:class:`experiments.record.EpisodeRecorder`, schema in ``docs/episode-record.md``).
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from agents.baselines import policy_from_config
from agents.measures import ROLES, episode_counts, rates
from agents.schema import EvalConfig
from twin.config import ConfigError, TwinConfig, _walk
from twin.configuration import to_config
from twin.metrics import agents_frame, deals_frame, summary


@dataclass
class EvalResult:
    deals: pd.DataFrame
    agents: pd.DataFrame
    measures: pd.DataFrame
    summary: dict[str, float] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)


def apply_overrides(cfg: TwinConfig, overrides: list[str]) -> TwinConfig:
    """``cfg`` with Hydra-style ``key=value`` overrides (validated; unknown keys fail)."""
    if not overrides:
        return cfg
    base = OmegaConf.structured(cfg)
    try:
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(list(overrides)))
    except Exception as e:
        raise ConfigError(f"overrides {list(overrides)}: {e}") from e
    return to_config(merged)


def seat_policies(env, policies: dict, policy_of: dict[str, str]) -> dict[str, str]:
    """Policy id of every exposed seat: its training policy, or '' for a scripted seat.

    A learning seat the checkpoint does not name (the population grew through ``overrides``)
    plays its role's shared policy when there is one.
    """
    out = {}
    for g, rows in env.learning_rows.items():
        learning = {f"{g}_{r}" for r in rows}
        for agent in env.names[g]:
            pid = policy_of.get(agent)
            if pid is None and agent in learning:
                if g not in policies:
                    raise ConfigError(
                        f"learning seat {agent} has no policy in the checkpoint (it has "
                        f"{sorted(policies)}); with train.policy_mapping=per_agent the "
                        "population cannot grow"
                    )
                pid = g
            if pid is not None and pid not in policies:
                raise ConfigError(f"seat {agent} maps to policy {pid!r}, not in the checkpoint")
            out[agent] = pid or ""
    return out


def scripted_actions(policy, obs: dict, names: list[str], env, group: str, rng) -> list:
    """Env actions of the seats ``names`` of ``group`` under a scripted policy (one batch)."""
    import gymnasium as gym

    X = np.stack([obs[n]["observation"] for n in names])
    space = env.action_space(names[0])
    k = space.n if isinstance(space, gym.spaces.Discrete) else 1
    M = np.stack([obs[n].get("action_mask", np.ones(k, np.int8)) for n in names])
    rows = policy.act_batch(X, M, rng)
    if isinstance(space, gym.spaces.Discrete):
        return [int(r[0]) for r in rows]
    return [np.asarray(r, np.float32).reshape(space.shape) for r in rows]


def check_eval_inputs(episodes: int, seed: int) -> None:
    """``episodes`` at least 1 and ``seed`` non-negative (episode e is seeded ``seed + e``, which
    numpy refuses when negative), naming the key. ``twin-eval`` also holds them to the ranges of
    :class:`agents.schema.EvalConfig`; callers such as ``twin-run`` pass the root seed plus an
    offset, which may be larger."""
    if episodes < 1:
        raise ConfigError(f"episodes = {episodes} is out of range; allowed values: integers >= 1")
    if seed < 0:
        raise ConfigError(
            f"seed = {seed} is out of range; allowed values: integers >= 0 (episode e is seeded "
            "seed + e)"
        )


def evaluate(checkpoint: str | Path, episodes: int, out: Path | str, seed: int = 1_000_000,
             record: bool = True, overrides: list[str] | None = None, *,
             plots: bool = True) -> EvalResult:  # fmt: skip
    """Play ``episodes`` greedy episodes of ``checkpoint``; write tables, report and record
    (``plots=False`` skips ``report.png``)."""
    import torch

    from agents.policies import load_run
    from experiments.record import EpisodeRecorder
    from experiments.report import write_report
    from twin.env import MarketEnv

    check_eval_inputs(episodes, seed)
    torch.set_num_threads(1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run = load_run(checkpoint)
    cfg = apply_overrides(run.config, list(overrides or []))
    env = MarketEnv(cfg, expose="all")
    seat_pol = seat_policies(env, run.policies, run.policy_of)
    scripted = {g: policy_from_config(g, getattr(cfg.policies, g), env.ctx) for g in ROLES}
    by_policy: dict[str, list[str]] = defaultdict(list)
    for agent in env.possible_agents:
        by_policy[seat_pol[agent] or "scripted:" + agent.rsplit("_", 1)[0]].append(agent)
    shown = {a: p or "scripted:" + scripted[a.rsplit("_", 1)[0]].name for a, p in seat_pol.items()}
    recorder = None
    if record:
        header = {"checkpoint": str(run.checkpoint), "episodes": episodes, "seed": seed,
                  "config": OmegaConf.to_container(OmegaConf.structured(cfg))}  # fmt: skip
        recorder = EpisodeRecorder(out / "episodes.jsonl", header)
    deals, agents, counts = [], [], []
    t0 = time.perf_counter()
    try:
        for e in range(episodes):
            obs, _ = env.reset(seed=seed + e)
            rng = np.random.default_rng([seed, e])
            if recorder:
                recorder.start_episode(e, seed + e, env)
            while env.agents:
                actions = {}
                for pid, names in by_policy.items():
                    if pid.startswith("scripted:"):
                        g = pid.split(":", 1)[1]
                        actions.update(
                            zip(
                                names,
                                scripted_actions(scripted[g], obs, names, env, g, rng),
                                strict=True,
                            )
                        )
                    else:
                        acts = run.policies[pid].batch([obs[n] for n in names])
                        actions.update(zip(names, acts, strict=True))
                obs, *_ = env.step(actions)
                if recorder:
                    recorder.actions(env.market.tick, actions, shown)
                    recorder.events(env.market.tick)
            mk = env.market
            if recorder:
                recorder.end_episode()
            seats = env.seat_table()
            deals.append(deals_frame(mk, e, with_ids=True))
            agents.append(agents_frame(mk, seats, e))
            counts += episode_counts(mk, seats, cfg.train.client_value_multiple)
    finally:
        if recorder:
            recorder.close()
    d = pd.concat(deals, ignore_index=True)
    a = pd.concat(agents, ignore_index=True)
    measures = rates(counts)
    summ = dict(summary(d, a), episodes=episodes, seconds=round(time.perf_counter() - t0, 2))
    for _, r in measures.iterrows():
        prefix = "market" if r.role == "market" else f"{r.seats}_{r.role}"
        if r.role != "market" and r.seats != "learning":
            continue
        for k in ("payoff_tokens", "cheat_rate", "check_rate", "collusion_rate",
                  "wrong_accepted_rate", "mediation_rate", "collateral_locked_tokens",
                  "client_surplus_tokens", "protocol_revenue_tokens"):  # fmt: skip
            if np.isfinite(r[k]):
                summ[f"{prefix}_{k}"] = float(r[k])
    title = f"greedy evaluation of {run.checkpoint.parent.parent.name}/{run.checkpoint.name}"
    paths = write_report(out, d, a, summ, title, plots=plots)
    measures.to_csv(out / "measures.csv", index=False)
    paths["measures"] = out / "measures.csv"
    if recorder:
        paths["record"] = recorder.path
    return EvalResult(d, a, measures, summ, paths)


def print_result(res: EvalResult) -> None:
    s = res.summary
    print(f"{s['episodes']} episodes, {len(res.deals)} deals in {s['seconds']:.1f} s")
    for k, v in s.items():
        if k not in ("episodes", "seconds"):
            print(f"  {k:>40}: {v:.4g}")
    for k in ("report", "record"):
        if k in res.paths:
            print(f"{k}: {res.paths[k]}")


def register_eval_schema() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="eval_schema", node=EvalConfig)


def main() -> None:
    """``twin-eval checkpoint=... episodes=N``: the Hydra app over ``configs/eval.yaml``."""
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    from twin.configuration import check_cli_overrides, config_dir
    from twin.errors import user_errors

    register_eval_schema()
    with user_errors("twin-eval"):  # a bad override: one line, before Hydra's own composition
        check_cli_overrides(sys.argv[1:], "eval")

    @hydra.main(config_path=str(config_dir()), config_name="eval", version_base="1.3")
    def _main(dcfg: DictConfig) -> None:
        with user_errors("twin-eval"):
            ec: EvalConfig = OmegaConf.to_object(dcfg)
            if not ec.checkpoint:
                raise ConfigError(
                    "checkpoint: required, e.g. twin-eval checkpoint=outputs/<run>/<time>"
                )
            _walk(ec, "")  # every range and choice, naming the key (seed, episodes, ...)
            res = evaluate(ec.checkpoint, ec.episodes, Path(HydraConfig.get().runtime.output_dir),
                           ec.seed, ec.record, list(ec.overrides))  # fmt: skip
            print_result(res)

    _main()


if __name__ == "__main__":
    sys.exit(main())
