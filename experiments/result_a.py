"""Result A of the spec (mechanisms.md section 2): the collateral threshold, learned.

A node paid ``P`` for a job that costs it ``c`` to run honestly, facing a client that checks the
result with probability ``p`` and a results collateral ``D = m P`` that a caught cheat loses (with
its payment), earns ``P - c`` by honest work and ``(1 - p) P - p m P`` by faking the result
(a fake costs ``f c``, ``f = execution.cheat_cost_fraction``, 0 by default). Cheating pays iff

    (1 - p) P - p m P - f c  >  P - c    <=>    m  <  m* = (1 - f) c / (p P) - 1,

the spec's ``m* = c / (p P) - 1`` at ``f = 0`` (:func:`threshold_multiple`).

The node has a second way to cheat: *inflating* its instruction count by ``k``
(``execution.inflate_factor``): it runs the job (cost ``c``), is paid ``k P`` unless checked and
loses ``k m P`` when caught, so inflating beats honest work iff ``k ((1 - p) - p m) P - c > P - c``
iff ``m < (1 - 1/k) / p - 1`` (:func:`inflate_threshold_multiple`). The measured cheat rate
counts both kinds of fake, so its boundary is the larger of the two
(:func:`dishonesty_threshold_multiple`). The experiment config
``configs/experiment/result_a_threshold.yaml`` sets ``c / P = 1/2 = 1 - 1/k`` (``k = 2``), where
the two boundaries coincide: below ``m*`` inflating is the best reply, above it honest work.

:func:`cost_price_ratio` derives ``c / P`` from a config, and refuses configs in which it is not
one constant (several machine classes, several price levels, a runtime that is not a whole
multiple of the work, non-deterministic jobs that honest results can fail).

The grid (:func:`grid`) crosses check probabilities and multiples, one training run (plus its
greedy evaluation) per cell and seed, through the sweep runner; the analysis reads its
long-format dataset (columns ``sweep``, ``trial_id``, ``seed``, one column per swept parameter
named by its dotted path, ``overrides``, ``metric``, ``value``, ``node``, ``status``):

- :func:`cell_table`: per cell, the learned greedy cheat rate over seeds (mean, standard
  deviation, 95 % t-interval, worst seed) with ``m*`` and the deterrence ratio
  ``r = p (1 + m) P / c = (1 + m) / (1 + m*)`` (``r = 1`` on the boundary);
- :func:`agreement`: per cell, the analytic prediction and whether learned behaviour agrees.
  A cell is *well below* the boundary when ``r <= 1 / margin`` (cheating gains at least
  ``(1 - 1/margin) c`` per deal over honest work) and *well above* when ``r >= margin``
  (cheating loses at least ``(margin - 1) c`` per deal); ``margin = 2`` by default. Well below,
  learned behaviour agrees when it cheats almost always (mean greedy cheat rate ``>= 0.9``),
  well above when it almost never cheats (``<= 0.1``); cells near the boundary get no verdict;
- :func:`phase_diagram`: the heatmap of the mean learned cheat rate over ``(p, m)`` (log axes, so
  the boundary ``1 + m* = c / (p P)`` is a straight line), with the 95 % interval in each cell,
  the boundary and the margin band drawn on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd

from twin.config import ConfigError, TwinConfig
from twin.hardware import CATALOGUE
from twin.modules import MODULES

EXPERIMENT = "result_a_threshold"
P_KEY = "policies.jc.check_probability"
M_KEY = "pricing.results_collateral_multiple"
METRIC = "learning_rp_cheat_rate"
#: the learning nodes' mean episode payoff: honest work earns (a cell where nodes stop cheating
#: by walking away from their jobs shows a loss here, not a cheat rate)
PAYOFF_METRIC = "learning_rp_payoff_tokens"
BUDGETS = ("full", "tiny")


# -- the analytic threshold ---------------------------------------------------------------------
def _active(shares: dict[str, float]) -> list[str]:
    return [k for k, v in shares.items() if v > 0]


def cost_price_ratio(cfg: TwinConfig) -> Fraction:
    """``c / P`` of the config's market, exactly: the node's honest cost over the job's price.

    ``c = runtime x cost per second`` with ``runtime = ceil(units / speed)`` seconds, and
    ``P = units x price per unit`` (the one price level times ``pricing.instruction_price_wei``).
    Their ratio is a constant iff there is one machine class (``hardware.shares``), one price
    level (``pricing.price_levels``: else the node chooses ``P``), every job class in demand is
    deterministic (an honest result always passes a check) and of one kind of work, and the
    machine's speed ``s`` on it makes ``units / s`` whole (``1 / s`` an integer); then
    ``c / P = (cost_wei_per_s / s) / price_per_unit_wei``. Anything else raises
    :class:`twin.config.ConfigError` naming the field.
    """
    hw = _active(cfg.hardware.shares)
    if len(hw) != 1:
        raise ConfigError(
            f"hardware.shares: c/P is one constant only with one machine class, got {hw}; "
            "set one class's share > 0 and the others to 0"
        )
    levels = list(cfg.pricing.price_levels)
    if len(levels) != 1:
        raise ConfigError(
            f"pricing.price_levels = {levels}: c/P is one constant only with one price level "
            "(with several the node chooses its price); e.g. pricing.price_levels=[1.0]"
        )
    mods = list(cfg.market.modules) or _active(cfg.market.module_shares)
    jobs = [MODULES[k] for k in mods]
    kinds = {j.kind for j in jobs}
    if len(kinds) != 1:
        raise ConfigError(
            f"market.modules = {mods}: c/P is one constant only for one kind of work, got {kinds}"
        )
    if not all(j.deterministic for j in jobs):
        raise ConfigError(
            f"market.modules = {mods}: every job class must be deterministic (an honest result "
            "of a non-deterministic job can fail a check, and the threshold moves)"
        )
    machine = CATALOGUE[hw[0]]
    speed = machine.cpu_speed if kinds == {"cpu"} else machine.gpu_speed
    per_unit_s = Fraction(1) / Fraction(speed) if speed > 0 else None
    if per_unit_s is None or per_unit_s.denominator != 1:
        raise ConfigError(
            f"hardware.shares: {hw[0]} runs {kinds.pop()} work at speed {speed}; c/P is one "
            "constant only when 1/speed is a whole number of seconds per unit"
        )
    price_per_unit = round(cfg.pricing.instruction_price_wei * float(levels[0]))
    if price_per_unit <= 0:
        raise ConfigError("pricing.instruction_price_wei x price level must be > 0 wei")
    cost_per_unit = machine.cost_wei_per_s(cfg.market.token_usd) * per_unit_s
    return Fraction(cost_per_unit) / price_per_unit


def _p(cfg: TwinConfig, p: float | None) -> float:
    p = cfg.policies.jc.check_probability if p is None else float(p)
    if not 0.0 < p <= 1.0:
        raise ValueError(f"check probability p must be in (0, 1], got {p}")
    return p


def threshold_multiple(cfg: TwinConfig, p: float | None = None) -> float:
    """``m* = (1 - f) c / (p P) - 1`` (spec: ``c / (p P) - 1`` with ``f = 0``): cheating by a fake
    result pays iff ``m < m*``. ``p``: the clients' check probability (default: the config's
    ``policies.jc.check_probability``)."""
    f = cfg.execution.cheat_cost_fraction
    return (1.0 - f) * float(cost_price_ratio(cfg)) / _p(cfg, p) - 1.0


def inflate_threshold_multiple(cfg: TwinConfig, p: float | None = None) -> float:
    """``(1 - 1/k) / p - 1`` (``k = execution.inflate_factor``): inflating the instruction count
    pays iff ``m`` is below it (``k = 1`` is honest work: never pays, ``-1``)."""
    k = cfg.execution.inflate_factor
    return (1.0 - 1.0 / k) / _p(cfg, p) - 1.0


def dishonesty_threshold_multiple(cfg: TwinConfig, p: float | None = None) -> float:
    """The multiple below which some kind of fake (fake result or inflated count) pays."""
    return max(threshold_multiple(cfg, p), inflate_threshold_multiple(cfg, p))


def threshold_table(cfg: TwinConfig, check_probabilities: Sequence[float]) -> pd.DataFrame:
    """Per check probability ``p``: ``m_star`` (fake results), ``m_star_inflate`` (inflated
    counts) and ``boundary``, the larger: the multiple below which some fake pays."""
    return pd.DataFrame([{"p": float(p), "m_star": threshold_multiple(cfg, p),
                          "m_star_inflate": inflate_threshold_multiple(cfg, p),
                          "boundary": dishonesty_threshold_multiple(cfg, p)}
                         for p in check_probabilities])  # fmt: skip


def deterrence_ratio(p, m, ratio: float):
    """``r = p (1 + m) / (c / P)``: expected loss of a caught cheat (payment and collateral) over
    the cost saved; ``r < 1`` cheating pays, ``r > 1`` it does not (``ratio`` = ``c / P``)."""
    return np.asarray(p, float) * (1.0 + np.asarray(m, float)) / float(ratio)


# -- grids and budgets --------------------------------------------------------------------------
@dataclass(frozen=True)
class Grid:
    """The cells of the experiment: check probabilities x multiples, each trained per seed."""

    check_probabilities: tuple[float, ...]
    multiples: tuple[int, ...]
    seeds: tuple[int, ...]

    @property
    def params(self) -> dict[str, list]:
        """The swept parameters by dotted path (the sweep runner's grid)."""
        return {P_KEY: list(self.check_probabilities), M_KEY: list(self.multiples)}

    @property
    def trials(self) -> int:
        return len(self.check_probabilities) * len(self.multiples) * len(self.seeds)


def check_budget(budget: str) -> str:
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {list(BUDGETS)}, got {budget!r}")
    return budget


#: the tiny budget (tests): one small iteration, a short market
TINY_OVERRIDES = (
    "train.iterations=1", "train.train_batch_size=200", "train.num_envs_per_env_runner=1",
    "train.rollout_fragment_length=200", "train.minibatch_size=200", "train.num_epochs=1",
    "market.episode_ticks=30",
)  # fmt: skip
EVAL_EPISODES = {"full": 2, "tiny": 1}


def train_overrides(budget: str = "full") -> list[str]:
    """Overrides of the experiment config for ``budget``: none for ``full`` (the tuned budget is
    the ``train`` block of ``configs/experiment/result_a_threshold.yaml``), :data:`TINY_OVERRIDES`
    for ``tiny``."""
    return [] if check_budget(budget) == "full" else list(TINY_OVERRIDES)


def eval_episodes(budget: str = "full") -> int:
    """Greedy evaluation episodes per trial for ``budget``."""
    return EVAL_EPISODES[check_budget(budget)]


def experiment_config(budget: str = "full", overrides: Sequence[str] = ()) -> TwinConfig:
    """The composed experiment config at ``budget``, plus ``overrides``."""
    import twin

    return twin.compose([f"experiment={EXPERIMENT}", *train_overrides(budget), *overrides])


def grid(budget: str = "full") -> Grid:
    """``full``: 5 check probabilities x 5 multiples x 5 seeds (125 trainings: the spec's "at least
    5 seeds for a claim", ../shared/spec/mechanisms.md section 5); with ``c/P = 1/2``
    the deterrence ratio ``r = 2 p (1 + m)`` runs from 0.1 to 25.6 in factors of 2, so the
    anti-diagonal straddles the boundary, 6 cells are well below and 10 well above it (margin 2).
    ``tiny`` (tests): one cell well below and one well above, one seed."""
    if check_budget(budget) == "tiny":
        return Grid((0.05, 0.8), (0, 15), (0,))
    return Grid((0.05, 0.1, 0.2, 0.4, 0.8), (0, 1, 3, 7, 15), (0, 1, 2, 3, 4))


# -- running the grid ---------------------------------------------------------------------------
def sweep_overrides(budget: str = "full", cells: Grid | None = None) -> list[str]:
    """The sweep runner's overrides (Hydra sweep syntax) of the grid at ``budget``: the
    experiment, its budget, the greedy evaluation episodes (``run.episodes``) and the swept
    check probabilities and multiples."""
    g = cells or grid(budget)
    swept = [f"{k}={','.join(f'{v:g}' for v in vs)}" for k, vs in g.params.items()]
    return [f"experiment={EXPERIMENT}", *train_overrides(budget),
            f"run.episodes={eval_episodes(budget)}", *swept]  # fmt: skip


def run_grid(out, budget: str = "full", cells: Grid | None = None, ray_address: str = "",
             **settings) -> pd.DataFrame:  # fmt: skip
    """Run the grid (default :func:`grid` of ``budget``) with the sweep runner
    (:func:`experiments.sweep.run_sweep`: one training and greedy evaluation per cell and seed,
    scheduled by Ray Tune; trials already finished in ``out`` are skipped) and return its
    long-format dataset. ``ray_address``: an existing Ray cluster (default: a local Ray on this
    machine); ``settings``: other :class:`experiments.sweep_schema.SweepConfig` fields."""
    from pathlib import Path

    from agents.schema import RayConfig
    from experiments.sweep import run_sweep
    from experiments.sweep_schema import SweepConfig

    g = cells or grid(budget)
    if list(g.seeds) != list(range(g.seeds[0], g.seeds[0] + len(g.seeds))):
        raise ValueError(f"the grid's seeds must be consecutive, got {list(g.seeds)}")
    sweep = SweepConfig(**{"name": f"{EXPERIMENT}_{budget}", "seeds": len(g.seeds),
                           "first_seed": g.seeds[0], **settings})  # fmt: skip
    return run_sweep(sweep_overrides(budget, g), sweep, RayConfig(address=ray_address),
                     sweep_dir=Path(out))  # fmt: skip


def load_grid(sweep_dir) -> pd.DataFrame:
    """The long-format dataset of a finished (or partly finished) sweep directory."""
    from experiments.sweep import load_results

    return load_results(sweep_dir)


# -- analysis of a sweep's dataset ----------------------------------------------------------------
def seed_values(df: pd.DataFrame, metric: str = METRIC) -> pd.DataFrame:
    """One row per cell and seed: ``p``, ``m``, ``seed``, ``value`` of ``metric`` (finished trials
    only; a trial re-run after a failure counts once, with its last value)."""
    missing = {P_KEY, M_KEY, "seed", "metric", "value", "status"} - set(df.columns)
    if missing:
        raise ValueError(
            f"the sweep dataset lacks columns {sorted(missing)}; expected one row per trial and "
            f"metric with columns seed, {P_KEY}, {M_KEY}, metric, value, status"
        )
    ok = df[(df["status"] == "ok") & (df["metric"] == metric)]
    out = pd.DataFrame({
        "p": pd.to_numeric(ok[P_KEY]).to_numpy(float),
        "m": pd.to_numeric(ok[M_KEY]).to_numpy(float),
        "seed": pd.to_numeric(ok["seed"]).to_numpy(int),
        "value": pd.to_numeric(ok["value"]).to_numpy(float),
    })  # fmt: skip
    out = out.groupby(["p", "m", "seed"], as_index=False).last()
    out["m"] = out["m"].astype(int) if len(out) and (out["m"] % 1 == 0).all() else out["m"]
    return out


def cell_table(df: pd.DataFrame, ratio: float, metric: str = METRIC,
               confidence: float = 0.95) -> pd.DataFrame:  # fmt: skip
    """Per cell ``(p, m)``: seeds, mean / std / ``confidence`` t-interval / min / max of ``metric``
    over seeds, the boundary ``m_star`` and the deterrence ratio ``r`` (``ratio`` = ``c / P``)."""
    from scipy import stats

    sv = seed_values(df, metric)
    rows = []
    for (p, m), g in sv.groupby(["p", "m"], sort=True):
        v = g["value"].to_numpy(float)
        v = v[np.isfinite(v)]
        n = len(v)
        mean = float(v.mean()) if n else float("nan")
        sd = float(v.std(ddof=1)) if n > 1 else float("nan")
        half = (
            float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / np.sqrt(n))
            if n > 1
            else float("nan")
        )
        rows.append({
            "p": p, "m": m, "seeds": n, "mean": mean, "std": sd,
            "ci_low": mean - half, "ci_high": mean + half,
            "min": float(v.min()) if n else float("nan"), "max": float(v.max()) if n else float("nan"),
            "m_star": float(ratio) / p - 1.0, "r": float(deterrence_ratio(p, m, ratio)),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=["p", "m", "seeds", "mean", "std", "ci_low", "ci_high",
                                       "min", "max", "m_star", "r"])  # fmt: skip


def region(r, margin: float = 2.0):
    """``below`` (``r <= 1/margin``), ``above`` (``r >= margin``) or ``near`` the boundary."""
    if margin <= 1.0:
        raise ValueError(f"margin must be > 1, got {margin}")
    r = np.asarray(r, float)
    return np.where(r <= 1.0 / margin, "below", np.where(r >= margin, "above", "near"))


def agreement(df: pd.DataFrame, ratio: float, margin: float = 2.0, cheat_min: float = 0.9,
              honest_max: float = 0.1, metric: str = METRIC) -> pd.DataFrame:  # fmt: skip
    """Per cell: :func:`cell_table` plus ``region`` (:func:`region`), ``predicted`` (``cheat``
    well below the boundary, ``honest`` well above, ``''`` near it) and ``agrees``: the mean
    learned cheat rate over seeds is ``>= cheat_min`` where cheating is predicted, ``<=
    honest_max`` where honesty is; ``None`` near the boundary (no prediction). ``payoff_tokens``
    is the mean over seeds of the learning nodes' greedy episode payoff (:data:`PAYOFF_METRIC`;
    NaN when the dataset lacks it): honesty means working honestly, which pays, and a cell whose
    nodes stop cheating by skipping their jobs shows a loss there."""
    t = cell_table(df, ratio, metric)
    pay = seed_values(df, PAYOFF_METRIC).groupby(["p", "m"], as_index=False)["value"].mean()
    t = t.merge(pay.rename(columns={"value": "payoff_tokens"}), on=["p", "m"], how="left")
    t["region"] = region(t["r"], margin) if len(t) else pd.Series(dtype=object)
    t["predicted"] = t["region"].map({"below": "cheat", "above": "honest", "near": ""})
    agrees: list[bool | None] = []
    for reg, mean in zip(t["region"], t["mean"], strict=True):
        if reg == "below":
            agrees.append(bool(mean >= cheat_min))
        elif reg == "above":
            agrees.append(bool(mean <= honest_max))
        else:
            agrees.append(None)
    t["agrees"] = pd.Series(agrees, index=t.index, dtype=object)
    return t


def summarize_agreement(table: pd.DataFrame) -> dict[str, int]:
    """Counts of cells per verdict: ``judged``, ``agree``, ``disagree``, ``near``."""
    judged = table[table["region"] != "near"]
    agree = int((judged["agrees"] == True).sum())  # noqa: E712 (object column of bools)
    return {"cells": len(table), "judged": len(judged), "agree": agree,
            "disagree": len(judged) - agree, "near": int((table["region"] == "near").sum())}  # fmt: skip


def _edges(values: np.ndarray) -> np.ndarray:
    """Cell edges on a log axis: geometric midpoints, the outer ones mirrored."""
    v = np.log(np.asarray(values, float))
    if len(v) == 1:
        return np.exp(np.array([v[0] - 0.5, v[0] + 0.5]))
    mid = (v[1:] + v[:-1]) / 2
    return np.exp(np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]]))


def phase_diagram(df: pd.DataFrame, ratio: float, margin: float = 2.0, metric: str = METRIC,
                  ax=None, title: str | None = None):  # fmt: skip
    """The heatmap of the mean learned ``metric`` over check probability ``p`` (x, log) and
    multiple ``m`` (y: ``1 + m``, log, labelled ``m``), each cell annotated with its mean and
    95 % interval over seeds; the analytic boundary ``1 + m* = (c/P) / p`` (solid) and the margin
    band ``r = 1/margin``, ``r = margin`` (dashed). Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    t = cell_table(df, ratio, metric)
    if t.empty:
        raise ValueError(f"no finished trial has the metric {metric!r}: nothing to draw")
    ps, ms = np.sort(t["p"].unique()), np.sort(t["m"].unique())
    Z = np.full((len(ms), len(ps)), np.nan)
    for row in t.itertuples():
        Z[int(np.searchsorted(ms, row.m)), int(np.searchsorted(ps, row.p))] = row.mean
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, 6))
    else:
        fig = ax.figure
    xe, ye = _edges(ps), _edges(1.0 + ms)
    mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(Z), cmap="RdYlGn_r", vmin=0, vmax=1,
                         shading="flat")  # fmt: skip
    fig.colorbar(mesh, ax=ax, label=f"learned greedy cheat rate ({metric})")
    for row in t.itertuples():
        half = (row.ci_high - row.ci_low) / 2
        txt = f"{row.mean:.2f}" + (f"\n±{half:.2f}" if np.isfinite(half) else "")
        ax.text(row.p, 1.0 + row.m, txt, ha="center", va="center", fontsize=8)
    x = np.geomspace(xe[0], xe[-1], 200)
    for k, style, label in ((1.0, "-", "boundary m* = c/(pP) - 1"),
                            (1.0 / margin, "--", f"r = 1/{margin:g} (well below)"),
                            (margin, ":", f"r = {margin:g} (well above)")):  # fmt: skip
        ax.plot(x, k * float(ratio) / x, style, color="black", lw=1.5 if k == 1.0 else 1.0,
                label=label)  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    ax.set_xticks(ps, [f"{p:g}" for p in ps])
    ax.set_yticks(1.0 + ms, [f"{m:g}" for m in ms])
    ax.minorticks_off()
    ax.set_xlabel("check probability p")
    ax.set_ylabel("results-collateral multiple m")
    ax.legend(loc="lower left", fontsize=8, framealpha=0.8)
    seeds = int(t["seeds"].max())
    ax.set_title(title or f"Result A: learned cheat rate (mean of {seeds} seed(s), 95 % CI)")
    return fig
