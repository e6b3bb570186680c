"""Result C of spec section 4 with learning agents: the verifier's dilemma and jackpots.

Without a reward for finding errors a check is a cost with no return once nodes are honest, so
learning clients stop checking, and once they check rarely enough learning nodes cheat again.
Forced errors (results the protocol makes wrong at rate ``phi``) paid from a jackpot keep a
check worth its cost when ``phi x J >= F`` (``J`` the jackpot's payout for catching one, ``F``
the cost of a check: the mediation fee). The three experiments
``configs/experiment/result_c_*.yaml`` share one market (``result_c_common``: every client seat
learns whether to check, every node seat whether to cheat) and differ only in the
taxes block:

=========  ============================================  ==============================
setting    taxes                                          analytic prediction
=========  ============================================  ==============================
none       no jackpot, no forced errors                   check rate falls
below      phi = 0.05, phi x J = 0.4 tokens < F = 2       check rate falls
above      phi = 0.05, phi x J = 6 tokens > F = 2         check rate holds
=========  ============================================  ==============================

:func:`boundary` derives each side from the config (exact: Fractions of wei), never typed in:
the payout ``J = min(floor(compensation / phi), floor(jackpot x cap_share))`` of
:mod:`twin.mechanisms.taxes` at the seeded jackpot, ``phi x J`` against ``F``, and the twin's
own client return of a check of an honest node's result, ``phi x (J + P) - F`` (a client that
catches a forced error also keeps the job's payment ``P``), at the smallest and the largest
payment of the config's jobs (:func:`payment_range`). A setting is *well below* when
``phi (J + P_max) <= F / MARGIN`` and *well above* when ``phi J >= MARGIN x F``.

:func:`run` trains every setting for the budget's seeds (sequentially in one Ray session; a
re-run skips the (setting, seed) pairs that finished (``<setting>/seed_<k>/run.json``) and
resumes a half-finished training from its last checkpoint; ``python -m experiments.result_c``
runs it from the shell). :func:`curves` reads each run's ``metrics.parquet``: per iteration the
learning clients' check rate (``learning_check_rate`` of role ``jc``: checked / submitted
results of their deals, as sampled in training) and the learning nodes' cheat rate
(``learning_cheat_rate`` of role ``rp``). :func:`verdicts`, per setting, over seeds:

- every setting starts alike: the untrained nodes cheat on about half of their results, so
  checking pays and the clients' check rate rises while the nodes learn honesty; the claim is
  about what follows. The run's nodes are *honest* from the first iteration whose cheat rate is
  at most :data:`HONEST` (iterations in which no episode finished, whose rates are NaN, are left
  out); ``peak``: the highest check rate up to then; ``later``: the mean check rate of the
  iterations after it. Without a jackpot the learners do not settle: checking falls, cheating
  returns, and checking comes back (the cycle around the game's mixed equilibrium), so neither
  the last iterations nor the run's overall highest check rate (which may come in a later cycle)
  says what the claim is about; the mean after the nodes learned honesty is that time average.
  ``final`` (the mean of the last ``budget.window`` iterations) is reported beside it;
- **falls** when the mean ``later`` is at most :data:`FALL_TO` x the mean ``peak`` and the
  upper end of the 95 % t-interval of ``later - peak`` over seeds is below 0;
- **holds** when the lower end of the 95 % t-interval of ``later - peak`` is above
  ``-HOLD_TOL`` (the check rate lost at most :data:`HOLD_TOL` from its peak for every
  plausible mean; the peak, a maximum of noisy rates, sits a little above the level held);
- whether cheating returns is reported, not judged: ``return_cheat``, the highest cheat rate
  from the (first) lowest on, with ``cheat_return = return_cheat - low_cheat``;
- the verdict is ``reproduced`` when the predicted behaviour (falls / holds) is observed,
  ``not reproduced`` otherwise, ``undecided`` with fewer than 2 seeds (no interval).
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from agents.stats import mean_ci  # noqa: F401 (part of this module's API)
from twin.config import TwinConfig
from twin.ledger import WEI_PER_TOKEN

EXPERIMENTS = {"none": "result_c_none", "below": "result_c_below", "above": "result_c_above"}
CLAIMS = {
    "none": "no jackpot: check rates fall",
    "below": "forced errors, phi x J < F: check rates fall",
    "above": "forced errors, phi x J > F: check rates hold",
}
MARGIN = 2  # well below: phi (J + P_max) <= F / MARGIN; well above: phi J >= MARGIN F
HONEST = 0.02  # nodes are honest from the first iteration with a cheat rate at most this
FALL_TO = 0.5  # falls: mean later check rate <= FALL_TO x mean peak check rate
HOLD_TOL = 0.1  # holds: the 95 % interval of later - peak stays above -HOLD_TOL
COVERAGE = 0.999  # share of jobs whose payment lies in payment_range
RUNS_CSV = "runs.csv"
RUN_ROW = "run.json"  # a finished run's row, in its directory


@dataclass(frozen=True)
class Budget:
    """Seeds per setting, training iterations, the number of final iterations averaged
    (``window``) and train overrides (the tiny budget shrinks batch, market and network)."""

    seeds: int
    iterations: int
    window: int
    check_episodes: int  # episodes of simulated_check_return per setting
    overrides: tuple[str, ...] = ()


BUDGETS = {
    "full": Budget(seeds=5, iterations=90, window=10, check_episodes=3),  # 5 seeds a claim
    "tiny": Budget(
        seeds=1, iterations=2, window=1, check_episodes=1,
        overrides=("train.train_batch_size=100", "train.rollout_fragment_length=50",
                   "train.num_envs_per_env_runner=2", "train.minibatch_size=100",
                   "train.num_epochs=1", "train.hidden_sizes=[8]", "market.episode_ticks=20",
                   "train.checkpoint_every_iters=1"),
    ),
}  # fmt: skip


def budget_of(budget: str | Budget) -> Budget:
    if isinstance(budget, Budget):
        return budget
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {sorted(BUDGETS)} or a Budget, got {budget!r}")
    return BUDGETS[budget]


def experiment_config(setting: str, seed: int = 0, budget: str | Budget = "full",
                      overrides: tuple[str, ...] = ()) -> TwinConfig:  # fmt: skip
    """The composed config of ``setting`` (``none``, ``below``, ``above``) for ``seed`` at
    ``budget``, plus ``overrides``."""
    import twin

    if setting not in EXPERIMENTS:
        raise ValueError(f"setting must be one of {sorted(EXPERIMENTS)}, got {setting!r}")
    b = budget_of(budget)
    return twin.compose([
        f"experiment={EXPERIMENTS[setting]}", f"seed={seed}", f"train.seed={seed}",
        f"train.iterations={b.iterations}", *b.overrides, *overrides,
    ])  # fmt: skip


# -- the analytic side ----------------------------------------------------------------------------
def _fraction(x: float) -> Fraction:
    """A rate as :mod:`twin.mechanisms.taxes` reads it: a fraction of denominator <= 10**9."""
    return Fraction(str(x)).limit_denominator(10**9)


def payment_range(cfg: TwinConfig, coverage: float = COVERAGE) -> tuple[int, int]:
    """(smallest, largest) job payment ``P`` (wei) of ``coverage`` of the config's jobs.

    A job's work is log-normal (median ``work_median_units``, sigma ``work_sigma``) rounded up
    to whole units (at least 1) and is priced ``units x instruction_price_wei x level``, capped by
    the payment collateral; the range spans the central ``coverage`` quantiles of every job class
    in demand at every price level.
    """
    from twin.modules import MODULES, in_demand, work_units_range

    m, pr = cfg.market, cfg.pricing
    modules = in_demand(m.modules, m.module_shares)
    if not modules:
        raise ValueError("market.modules / market.module_shares: no job class in demand")
    lo, hi = None, None
    for name in modules:
        units = work_units_range(MODULES[name], coverage)
        for level in pr.price_levels:
            price = round(pr.instruction_price_wei * float(level))
            p_lo, p_hi = (min(u * price, pr.payment_collateral_wei) for u in units)
            lo = p_lo if lo is None else min(lo, p_lo)
            hi = p_hi if hi is None else max(hi, p_hi)
    return lo, hi


@dataclass(frozen=True)
class Boundary:
    """Both sides of ``phi x J >= F`` for one config (wei; Fractions where exact)."""

    forced_error_rate: Fraction  # phi
    payout_wei: int  # J: the jackpot's payout for one forced error caught, at the seeded jackpot
    expected_payout_wei: Fraction  # phi x J: the spec's expected jackpot reward of a check
    check_cost_wei: int  # F: the mediation fee a check costs the client
    payment_lo_wei: int  # P of the smallest job (payment_range)
    payment_hi_wei: int  # P of the largest job
    jackpot_wei: int  # the seeded jackpot
    expected_drain_wei: Fraction  # phi x expected deals per episode x J
    need_wei: Fraction = Fraction(0)  # J / cap_share: the smallest jackpot that still pays J

    @property
    def ratio(self) -> Fraction:
        """``phi J / F``: >= 1 a check of an honest node's result pays for itself (spec)."""
        return self.expected_payout_wei / self.check_cost_wei

    @property
    def client_return_lo_wei(self) -> Fraction:
        """``phi (J + P_min) - F``: the client's expected return of checking an honest node's
        result (it keeps ``P`` on a forced error), smallest job."""
        return (
            self.forced_error_rate * (self.payout_wei + self.payment_lo_wei) - self.check_cost_wei
        )

    @property
    def client_return_hi_wei(self) -> Fraction:
        """As :attr:`client_return_lo_wei`, largest job."""
        return (
            self.forced_error_rate * (self.payout_wei + self.payment_hi_wei) - self.check_cost_wei
        )

    @property
    def jackpot_holds(self) -> bool:
        """The payout stays ``J`` (not the cap) after an episode's expected payouts: the jackpot
        keeps at least ``J / cap_share``. Vacuous without forced errors."""
        return self.payout_wei == 0 or self.jackpot_wei - self.expected_drain_wei >= self.need_wei

    @property
    def side(self) -> str:
        """``above`` (phi J >= MARGIN F), ``below`` (phi (J + P_max) <= F / MARGIN) or
        ``near`` (no prediction)."""
        if self.expected_payout_wei >= MARGIN * self.check_cost_wei and self.jackpot_holds:
            return "above"
        if MARGIN * (self.client_return_hi_wei + self.check_cost_wei) <= self.check_cost_wei:
            return "below"
        return "near"


def boundary(cfg: TwinConfig) -> Boundary:
    """The boundary ``phi x J >= F`` of ``cfg``, derived from its taxes and pricing blocks.

    ``phi`` = ``taxes.forced_error_rate``; ``J = min(floor(compensation / phi), floor(jackpot x
    payout_cap_share))`` at the seeded jackpot (``taxes.seed_jackpot_tokens``), as
    :meth:`twin.mechanisms.taxes.TaxesAndJackpot.payout` pays it (0 without forced errors:
    nothing to catch from honest nodes); ``F = pricing.mediation_fee_wei``. The expected drain
    of an episode is ``phi x n_job_creators x job_rate_per_tick x episode_ticks x J`` (every
    job checked)."""
    from twin.ledger import tokens_to_wei
    from twin.mechanisms.taxes import exact_share

    t, m = cfg.taxes, cfg.market
    phi = _fraction(t.forced_error_rate)
    jackpot = tokens_to_wei(t.seed_jackpot_tokens) if t.seed_jackpot_tokens else 0
    cap = _fraction(t.payout_cap_share)
    if phi > 0:
        payout = min(
            int(Fraction(t.compensation_wei) / phi), exact_share(jackpot, t.payout_cap_share)
        )
    else:
        payout = 0
    deals = Fraction(m.n_job_creators) * _fraction(m.job_rate_per_tick) * m.episode_ticks
    lo, hi = payment_range(cfg)
    return Boundary(
        forced_error_rate=phi, payout_wei=payout, expected_payout_wei=phi * payout,
        check_cost_wei=cfg.pricing.mediation_fee_wei, payment_lo_wei=lo, payment_hi_wei=hi,
        jackpot_wei=jackpot, expected_drain_wei=phi * deals * payout,
        need_wei=Fraction(payout) / cap if cap > 0 else Fraction(0),
    )  # fmt: skip


def prediction(cfg: TwinConfig) -> str:
    """``falls`` (the config is well below the boundary) or ``holds`` (well above); raises
    ``ValueError`` for a config near it (no prediction)."""
    b = boundary(cfg)
    if b.side == "near":
        raise ValueError(
            f"the config is near the boundary: phi J = {float(b.expected_payout_wei) / 1e18:.3g} "
            f"tokens, phi (J + P) - F in [{float(b.client_return_lo_wei) / 1e18:.3g}, "
            f"{float(b.client_return_hi_wei) / 1e18:.3g}] tokens, F = "
            f"{b.check_cost_wei / 1e18:.3g} tokens; choose taxes.* well on one side (margin "
            f"{MARGIN})"
        )
    return "holds" if b.side == "above" else "falls"


def node_threshold(cfg: TwinConfig) -> Fraction:
    """The check rate below which a node's fake result pays (Result A, with a free fake):
    ``p* = (c / P) / (1 + m)``. ``c / P`` is one constant only with one machine class that runs
    one unit of the config's work in a whole number of seconds, and one price level; anything
    else raises ``ValueError`` naming the field."""
    from twin.hardware import CATALOGUE
    from twin.modules import MODULES, in_demand

    hw = [k for k, v in cfg.hardware.shares.items() if v > 0]
    levels = list(cfg.pricing.price_levels)
    mods = in_demand(cfg.market.modules, cfg.market.module_shares)
    kinds = {MODULES[k].kind for k in mods}
    if len(hw) != 1 or len(levels) != 1 or len(kinds) != 1:
        raise ValueError(
            f"hardware.shares {hw}, pricing.price_levels {levels}, market.modules {mods}: the "
            "node's threshold is one number only with one machine class, one price level and "
            "one kind of work"
        )
    machine = CATALOGUE[hw[0]]
    speed = Fraction(machine.cpu_speed if kinds == {"cpu"} else machine.gpu_speed)
    if speed <= 0 or (1 / speed).denominator != 1:
        raise ValueError(f"hardware.shares: {hw[0]} must run one unit in whole seconds")
    cost_per_unit = Fraction(machine.cost_wei_per_s(cfg.market.token_usd)) / speed
    price = round(cfg.pricing.instruction_price_wei * float(levels[0]))
    return cost_per_unit / price / (1 + cfg.pricing.results_collateral_multiple)


def boundary_table(budget: str | Budget = "full") -> pd.DataFrame:
    """Per setting (tokens): phi, J, phi J, F, the ratio phi J / F, the client's expected return
    of checking an honest result for the smallest and largest job, the side and prediction."""
    rows = []
    for s in EXPERIMENTS:
        cfg = experiment_config(s, 0, budget)
        b = boundary(cfg)
        rows.append({
            "setting": s, "phi": float(b.forced_error_rate), "J": b.payout_wei / WEI_PER_TOKEN,
            "phi_J": float(b.expected_payout_wei) / WEI_PER_TOKEN,
            "F": b.check_cost_wei / WEI_PER_TOKEN, "phi_J_over_F": float(b.ratio),
            "return_lo": float(b.client_return_lo_wei) / WEI_PER_TOKEN,
            "return_hi": float(b.client_return_hi_wei) / WEI_PER_TOKEN,
            "jackpot_holds": b.jackpot_holds, "node_threshold": float(node_threshold(cfg)),
            "side": b.side, "prediction": prediction(cfg),
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("setting")


def simulated_check_return(cfg: TwinConfig, episodes: int = 3, seed: int = 0) -> float:
    """The client's return of a check in the twin itself, in tokens per deal: the clients'
    total reward per deal when they check every result minus when they check none, against
    honest scripted nodes (every learning seat of ``cfg`` plays its group's scripted policy;
    the clients act with a check probability, ``env.jc_action=probability`` whatever ``cfg``
    says), over ``episodes`` episodes seeded ``seed``, ``seed + 1``, ... (the same markets for
    both). Derived: ``phi (J + E[P]) - F``."""
    from dataclasses import replace

    from twin.env import MarketEnv

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    cfg = replace(cfg, env=replace(cfg.env, jc_action="probability"))
    per_deal = []
    for p in (1.0, 0.0):
        reward, deals = 0.0, 0
        for e in range(episodes):
            env = MarketEnv(cfg, expose="learning")
            env.reset(seed=seed + e)
            act = np.array([p], np.float32)
            while env.agents:
                _, r, *_ = env.step({a: act for a in env.agents if a.startswith("jc_")})
                reward += sum(v for a, v in r.items() if a.startswith("jc_"))
            deals += len(env.market.deals)
        per_deal.append(reward / max(deals, 1))
    return per_deal[0] - per_deal[1]


def check_return_table(budget: str | Budget = "full") -> pd.DataFrame:
    """Per setting: the derived client return of checking an honest result (mean of the
    smallest and largest job's, :class:`Boundary`) next to the simulated one
    (:func:`simulated_check_return`, ``budget.check_episodes`` episodes), tokens."""
    b = budget_of(budget)
    rows = []
    for s in EXPERIMENTS:
        cfg = experiment_config(s, 0, b)
        bd = boundary(cfg)
        rows.append({
            "setting": s,
            "derived_lo": float(bd.client_return_lo_wei) / WEI_PER_TOKEN,
            "derived_hi": float(bd.client_return_hi_wei) / WEI_PER_TOKEN,
            "simulated": simulated_check_return(cfg, b.check_episodes),
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("setting")


# -- the learned side -----------------------------------------------------------------------------
def run_curve(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per iteration of one run's metrics table: the learning clients' ``check_rate`` and the
    learning nodes' ``cheat_rate``."""
    need = {"iteration", "role", "learning_check_rate", "learning_cheat_rate"}
    if missing := need - set(metrics.columns):
        raise ValueError(f"the metrics table lacks columns {sorted(missing)}")
    jc = metrics[metrics.role == "jc"].set_index("iteration").learning_check_rate
    rp = metrics[metrics.role == "rp"].set_index("iteration").learning_cheat_rate
    out = pd.DataFrame({"check_rate": jc, "cheat_rate": rp}).sort_index()
    return out.rename_axis("iteration").reset_index()


def summarize_curve(curve: pd.DataFrame, window: int) -> dict[str, float]:
    """Figures of one run's :func:`run_curve` (iterations without a finished episode, whose
    rates are NaN, are left out): ``first_check`` / ``first_cheat`` (the first iteration),
    ``honest_iteration`` (the first iteration whose cheat rate is at most :data:`HONEST`; the
    first lowest if none is), ``peak_check`` (the highest check rate up to it), ``later_check``
    (the mean check rate of the iterations after it; its own if it is the last),
    ``final_check`` / ``final_cheat`` (means of the last ``window`` iterations), ``low_cheat``
    (the lowest cheat rate) and ``return_cheat`` (the highest cheat rate from the first lowest
    on)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    c = curve.sort_values("iteration").dropna(subset=["check_rate", "cheat_rate"])
    if c.empty:
        raise ValueError("the run has no iteration with a finished episode (no rates)")
    last = c.tail(window)
    checks, cheats = c.check_rate.to_numpy(float), c.cheat_rate.to_numpy(float)
    low = int(np.argmin(cheats))
    honest = np.flatnonzero(cheats <= HONEST)
    h = int(honest[0]) if len(honest) else low
    later = checks[h + 1 :] if h + 1 < len(checks) else checks[h:]
    return {
        "first_check": float(checks[0]), "honest_iteration": float(c.iteration.iloc[h]),
        "peak_check": float(checks[: h + 1].max()),
        "later_check": float(later.mean()), "final_check": float(last.check_rate.mean()),
        "first_cheat": float(cheats[0]), "low_cheat": float(cheats[low]),
        "return_cheat": float(cheats[low:].max()), "final_cheat": float(last.cheat_rate.mean()),
    }  # fmt: skip


def _run_dir(out: Path, setting: str, seed: int) -> Path:
    return out / setting / f"seed_{seed}"


def _finished(out: Path, setting: str, seed: int, iterations: int) -> bool:
    """Whether the run has its ``run.json`` with at least ``iterations`` iterations."""
    import json

    p = _run_dir(out, setting, seed) / RUN_ROW
    return p.exists() and json.loads(p.read_text()).get("iterations", 0) >= iterations


def load_runs(out_dir: str | Path, window: int) -> pd.DataFrame:
    """One row per finished run under ``out_dir`` (``<setting>/seed_<k>/run.json``: setting,
    seed, prediction, iterations, wall time), in setting and seed order, with the
    :func:`summarize_curve` figures of its ``metrics.parquet`` over the last ``window``
    iterations; also written to ``out_dir/runs.csv``."""
    import json

    out = Path(out_dir)
    rows = []
    for p in out.glob(f"*/seed_*/{RUN_ROW}"):
        row = {k: v for k, v in json.loads(p.read_text()).items() if k in RUN_KEYS}
        curve = run_curve(pd.read_parquet(p.parent / "metrics.parquet"))
        rows.append({**row, **summarize_curve(curve, window)})
    order = {s: i for i, s in enumerate(EXPERIMENTS)}
    rows.sort(key=lambda r: (order.get(r["setting"], len(order)), r["seed"]))
    df = pd.DataFrame(rows)
    if len(df):
        df.to_csv(out / RUNS_CSV, index=False)
    return df


RUN_KEYS = ("setting", "seed", "prediction", "iterations", "train_seconds", "seconds")


def run(budget: str | Budget = "full", out_dir: str | Path = "outputs/result_c",
        settings: tuple[str, ...] = tuple(EXPERIMENTS), seeds: tuple[int, ...] | None = None,
        verbose: bool = True) -> pd.DataFrame:  # fmt: skip
    """Train every setting for ``seeds`` (default: the budget's ``range(seeds)``); return one row
    per (setting, seed): the prediction, the :func:`summarize_curve` figures and the wall time
    (:func:`load_runs`: every finished run under ``out_dir``, of these settings).

    Each finished run leaves ``<setting>/seed_<k>/run.json`` and is not run again, unless it
    has fewer iterations than the budget: then it is extended from its last checkpoint (so a
    larger budget reuses the trainings of a smaller one); a training killed part-way resumes
    from its last checkpoint (``train.resume=true``). Processes working
    on disjoint (setting, seed) pairs may share ``out_dir`` (each starts its own Ray, with its
    session files in its first run's directory)."""
    import json

    from agents.policies import list_checkpoints
    from agents.train import ray_session, train

    b = budget_of(budget)
    for s in settings:
        if s not in EXPERIMENTS:
            raise ValueError(f"settings: each must be one of {sorted(EXPERIMENTS)}, got {s!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seeds = tuple(range(b.seeds)) if seeds is None else tuple(seeds)
    todo = [(s, k) for s in settings for k in seeds if not _finished(out, s, k, b.iterations)]
    if todo:
        first = experiment_config(todo[0][0], todo[0][1], b)
        ray_dir = _run_dir(out, *todo[0])
        ray_dir.mkdir(parents=True, exist_ok=True)
        with ray_session(first.train.ray, ray_dir):
            for s, k in todo:
                run_dir = _run_dir(out, s, k)
                resume = run_dir.exists() and bool(list_checkpoints(run_dir))
                cfg = experiment_config(s, k, b, (f"train.resume={str(resume).lower()}",))
                t0 = time.perf_counter()
                with contextlib.redirect_stdout(sys.stdout if verbose else io.StringIO()):
                    res = train(cfg, run_dir)
                row = {"setting": s, "seed": k, "prediction": prediction(cfg),
                       "iterations": res.iterations, "train_seconds": round(res.seconds, 1),
                       "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
                fig = summarize_curve(run_curve(res.metrics), b.window)
                tmp = run_dir / (RUN_ROW + ".tmp")
                tmp.write_text(json.dumps(row, indent=1))
                tmp.replace(run_dir / RUN_ROW)
                if verbose:
                    print(f"result C: {s} seed {k}: check {fig['first_check']:.2f} -> peak "
                          f"{fig['peak_check']:.2f} -> {fig['final_check']:.2f}, cheat "
                          f"{fig['first_cheat']:.2f} -> {fig['final_cheat']:.2f} "
                          f"({row['seconds']:.0f} s)", flush=True)  # fmt: skip
    done = load_runs(out, b.window)
    if done.empty:
        return done
    return done[done.setting.isin(settings) & done.seed.isin(seeds)].reset_index(drop=True)


def curves(out_dir: str | Path) -> pd.DataFrame:
    """Every run's :func:`run_curve` under ``out_dir`` (``<setting>/seed_<k>/metrics.parquet``),
    with its ``setting`` and ``seed``."""
    frames = []
    for p in sorted(Path(out_dir).glob("*/seed_*/metrics.parquet")):
        c = run_curve(pd.read_parquet(p))
        frames.append(c.assign(setting=p.parent.parent.name, seed=int(p.parent.name[5:])))
    if not frames:
        raise ValueError(f"{out_dir}: no <setting>/seed_<k>/metrics.parquet (run() writes them)")
    return pd.concat(frames, ignore_index=True)


MEASURES = ("first_check", "peak_check", "later_check", "final_check", "first_cheat",
            "low_cheat", "return_cheat", "final_cheat")  # fmt: skip


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per setting: its prediction, the number of seeds and, for each of :data:`MEASURES` and
    for ``check_change = later_check - peak_check`` and ``cheat_return = return_cheat -
    low_cheat``, the mean over seeds and its 95 % t-interval (``_lo``, ``_hi``)."""
    rows = []
    for s in [x for x in EXPERIMENTS if x in set(runs.setting)]:
        g = runs[runs.setting == s]
        row = {"setting": s, "prediction": g.prediction.iloc[0], "seeds": len(g)}
        for m in MEASURES:
            row[m], row[m + "_lo"], row[m + "_hi"] = mean_ci(g[m])
        for name, a, b in (("check_change", "later_check", "peak_check"),
                           ("cheat_return", "return_cheat", "low_cheat")):  # fmt: skip
            row[name], row[name + "_lo"], row[name + "_hi"] = mean_ci((g[a] - g[b]).to_numpy(float))
        rows.append(row)
    return pd.DataFrame(rows)


def verdict(prediction: str, peak: float, later: float, change_lo: float,
            change_hi: float) -> str:  # fmt: skip
    """``reproduced``, ``not reproduced`` or ``undecided`` (no interval) for one setting, from
    the mean peak and later check rates over seeds and the 95 % interval of
    ``later - peak``. ``falls``: ``later <= FALL_TO x peak`` and ``change_hi < 0``;
    ``holds``: ``change_lo > -HOLD_TOL``."""
    if prediction not in ("falls", "holds"):
        raise ValueError(f"prediction must be 'falls' or 'holds', got {prediction!r}")
    if not (np.isfinite(change_lo) and np.isfinite(change_hi)):
        return "undecided"
    if prediction == "falls":
        ok = later <= FALL_TO * peak and change_hi < 0
    else:
        ok = change_lo > -HOLD_TOL
    return "reproduced" if ok else "not reproduced"


def verdicts(tab: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: the prediction, the peak, later (with its 95 % interval) and final
    check rates, the interval of ``later - peak``, the cheat rate after its low
    (``return_cheat``) and at the end, with intervals, and the verdict."""
    rows = []
    for r in tab.itertuples():
        rows.append({
            "claim": CLAIMS[r.setting], "setting": r.setting, "prediction": r.prediction,
            "seeds": r.seeds, "peak_check": r.peak_check, "later_check": r.later_check,
            "later_check_ci95": (r.later_check_lo, r.later_check_hi),
            "final_check": r.final_check,
            "check_change_ci95": (r.check_change_lo, r.check_change_hi),
            "return_cheat": r.return_cheat,
            "return_cheat_ci95": (r.return_cheat_lo, r.return_cheat_hi),
            "final_cheat": r.final_cheat, "final_cheat_ci95": (r.final_cheat_lo, r.final_cheat_hi),
            "verdict": verdict(r.prediction, r.peak_check, r.later_check,
                               r.check_change_lo, r.check_change_hi),
        })  # fmt: skip
    return pd.DataFrame(rows)


def plot_curves(curves_df: pd.DataFrame, threshold: float | None = None, axes=None):
    """Two panels over training iterations, one line per setting with its 95 % interval over
    seeds: the learning clients' check rate (left) and the learning nodes' cheat rate (right).
    ``threshold``: the nodes' threshold check rate (:func:`node_threshold`: below it cheating
    pays), drawn dashed on the left when given. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    fig = axes[0].figure
    for col, ax, label in (("check_rate", axes[0], "learning clients' check rate"),
                           ("cheat_rate", axes[1], "learning nodes' cheat rate")):  # fmt: skip
        for s in [x for x in EXPERIMENTS if x in set(curves_df.setting)]:
            g = curves_df[curves_df.setting == s]
            stats = [(it, *mean_ci(h[col])) for it, h in g.groupby("iteration")]
            it, m, lo, hi = (np.array(v, float) for v in zip(*stats, strict=True))
            ax.plot(it, m, marker=".", label=s)
            ax.fill_between(it, lo, hi, alpha=0.2)
        ax.set_xlabel("training iteration")
        ax.set_ylabel(label)
        ax.set_ylim(-0.02, 1.02)
    if threshold is not None:
        axes[0].axhline(float(threshold), ls="--", color="black", lw=1,
                        label=f"nodes' threshold p* = {float(threshold):.3g}")  # fmt: skip
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    seeds = int(curves_df.groupby("setting").seed.nunique().max())
    fig.suptitle(
        f"Result C: check and cheat rates while learning (mean of {seeds} seed(s), 95 % CI)"
    )
    return fig


def plot_seeds(curves_df: pd.DataFrame, threshold: float | None = None):
    """One column per setting, one line per seed: the learning clients' check rate (top) and the
    learning nodes' cheat rate (bottom) over training iterations. Unlike :func:`plot_curves`'
    means, this shows each run's cycle (checking falls, cheating returns, checking comes back),
    whose phases differ between seeds. ``threshold``: the nodes' threshold check rate, dashed.
    Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    settings = [x for x in EXPERIMENTS if x in set(curves_df.setting)]
    fig, axes = plt.subplots(2, len(settings), figsize=(4 * len(settings), 6), sharex=True,
                             sharey=True, squeeze=False)  # fmt: skip
    for j, s in enumerate(settings):
        g = curves_df[curves_df.setting == s].dropna(subset=["check_rate", "cheat_rate"])
        for k, h in g.groupby("seed"):
            axes[0, j].plot(h.iteration, h.check_rate, lw=1.2, label=f"seed {k}")
            axes[1, j].plot(h.iteration, h.cheat_rate, lw=1.2, label=f"seed {k}")
        axes[0, j].set_title(f"{s} ({CLAIMS[s]})", fontsize=9)
        if threshold is not None:
            axes[0, j].axhline(float(threshold), ls="--", color="black", lw=0.8)
        axes[1, j].set_xlabel("training iteration")
    axes[0, 0].set_ylabel("clients' check rate")
    axes[1, 0].set_ylabel("nodes' cheat rate")
    axes[0, 0].set_ylim(-0.02, 1.02)
    axes[0, -1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> None:
    """``python -m experiments.result_c [--budget full|tiny] [--out DIR] [--settings ...]
    [--seeds ...]``: train (or resume) and print the table and the verdicts."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m experiments.result_c", description=main.__doc__)
    ap.add_argument("--budget", default="full", choices=sorted(BUDGETS))
    ap.add_argument("--out", default="outputs/result_c")
    ap.add_argument("--settings", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    ap.add_argument("--seeds", nargs="+", type=int, default=None)
    a = ap.parse_args(argv)
    runs = run(a.budget, a.out, tuple(a.settings), None if a.seeds is None else tuple(a.seeds))
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table(runs))
        print(verdicts(table(runs)))


if __name__ == "__main__":
    main()
