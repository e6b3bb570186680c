"""Result B of spec section 3 with learning agents: counter-collusion contracts (Dong et al.).

A pair of learning nodes (``rp_0`` and ``rp_1``, one shared PPO policy) gets every job as a dual
deal (:mod:`twin.mechanisms.counter_collusion`); the four experiments
``configs/experiment/result_b_*.yaml`` differ only in the contracts on offer and the deposits:

==================  ==========================  =====================================
experiment           contracts                   analytic prediction
==================  ==========================  =====================================
prisoner_honest      prisoner's, d > c + ch      honest (cheating dies out)
prisoner_cheat       prisoner's, d < c + ch      collusion (tacit: the same wrong answer)
colluder             + colluder's, t, b < c      collusion (self-enforcing)
traitor              + traitor's, d > c + ch     no collusion (betrayal pays)
==================  ==========================  =====================================

The conditions are derived from each config (:func:`cost_range`: the range of the honest cost c
of the config's jobs on its hardware; :func:`conditions`: Dong et al.'s conditions at both ends
of that range, with the twin's own :func:`twin.mechanisms.counter_collusion.conditions`;
:func:`prediction`), never typed in.

Why one policy for both nodes (``train.policy_mapping=shared_per_role``): the claims are about
what self-interested nodes learn to do when they meet in a dual deal. With a shared policy each
seat's samples still carry that seat's own payoff (PPO's advantage of a node's action is computed
from its own rewards), so every update is each node best-responding to its partner's current
behaviour; the nodes are told apart by what they observe (``ccc_leader``, the partner's row and
record), and the policy gets both seats' experience. That matters under the colluder's contract:
collusion is a strict equilibrium there but honesty is a weak one (:func:`stage_game`: agreeing
with a partner who refuses changes nothing), and the gradient towards agreeing is the partner's
agreement probability times the gain of a *bound* pair, which is only positive once the pair has
learnt to follow the agreement in the bound compute stage. With one policy per node
(``per_agent``) the agreements died out before that in some seeds: of 9 trainings of 20
iterations (gamma 0.99 and 0.9), 2 stayed honest and 2 more colluded in only 31-58 % of their
greedy deals; with
the shared policy the bound stage is visited by both seats' samples. Even so, at 12 iterations
2 of 5 seeds had not yet reached it (greedy collusion 0.00 and 0.33); at 24 iterations they
collude too, which is why the full budget trains 24 (README, Result B).

:func:`run` trains every experiment for ``budget.seeds`` seeds (sequentially, in one Ray
session; a re-run skips the (experiment, seed) pairs already finished), plays greedy
episodes of each final checkpoint (:func:`greedy_dual_deals`) and measures, per seed, the share
of dual deals that end in undetected collusion (``collusion_rate``), the share of compute
decisions that submit a wrong answer (``cheat_rate``), agreements and betrayals.
:func:`table` gives the mean and a 95 % t-interval over seeds per experiment; :func:`verdicts`
says whether each claim is reproduced: collusion predicted -> the interval's lower end is above
:data:`COLLUDE_AT_LEAST`; no collusion predicted -> its upper end is below
:data:`HONEST_AT_MOST` (and so is the cheat rate's).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from agents.stats import mean_ci  # noqa: F401 (part of this module's API)
from twin.config import TwinConfig
from twin.hardware import CATALOGUE
from twin.ledger import WEI_PER_TOKEN
from twin.mechanisms.counter_collusion import Terms
from twin.mechanisms.counter_collusion import conditions as ccc_conditions
from twin.modules import MODULES, in_demand, runtime_s, work_units_range

EXPERIMENTS = {
    "prisoner_honest": "result_b_prisoner_honest",
    "prisoner_cheat": "result_b_prisoner_cheat",
    "colluder": "result_b_colluder",
    "traitor": "result_b_traitor",
}
CLAIMS = {
    "prisoner_honest": "(i) prisoner's contract, d > c + ch: learned pairs stay honest",
    "prisoner_cheat": "(i) prisoner's contract, d < c + ch: learned pairs cheat (collude)",
    "colluder": "(ii) colluder's contract under its conditions: learned pairs collude",
    "traitor": "(iii) traitor's contract added: collusion disappears",
}
COLLUDE_AT_LEAST = 0.5  # lower end of the collusion rate's interval when collusion is predicted
HONEST_AT_MOST = 0.1  # upper end of the collusion (and cheat) rate's interval otherwise
COVERAGE = 0.999  # share of jobs whose honest cost lies in cost_range
RUNS_CSV = "runs.csv"
RUN_CSV = "run.csv"  # one finished run's row, in its run directory


@dataclass(frozen=True)
class Budget:
    """How much to run: seeds per experiment, training iterations, greedy evaluation episodes,
    and train overrides (the tiny budget shrinks the batch and the network)."""

    seeds: int
    iterations: int
    eval_episodes: int
    overrides: tuple[str, ...] = ()


BUDGETS = {
    "full": Budget(seeds=5, iterations=24, eval_episodes=8),  # 5 seeds a claim (spec section 5)
    "tiny": Budget(
        seeds=1, iterations=1, eval_episodes=1,
        overrides=("train.train_batch_size=200", "train.rollout_fragment_length=200",
                   "train.num_envs_per_env_runner=1", "train.minibatch_size=64",
                   "train.num_epochs=1", "train.hidden_sizes=[16]", "market.episode_ticks=30"),
    ),
}  # fmt: skip


def budget_of(budget: str | Budget) -> Budget:
    if isinstance(budget, Budget):
        return budget
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {sorted(BUDGETS)} or a Budget, got {budget!r}")
    return BUDGETS[budget]


# -- the analytic side ----------------------------------------------------------------------------
def terms(cfg: TwinConfig) -> Terms:
    """The contract terms of ``cfg`` (wei) and which optional contracts are on offer."""
    cc = cfg.counter_collusion
    return Terms(cc.wage_wei, cc.deposit_wei, cc.dispute_cost_wei, cc.collusion_deposit_wei,
                 cc.bribe_wei, "colluder" in cc.contracts, "traitor" in cc.contracts)  # fmt: skip


def cost_range(cfg: TwinConfig, coverage: float = COVERAGE) -> tuple[int, int]:
    """(lowest, highest) honest cost c (wei) of a run of ``coverage`` of the config's jobs.

    A job's work is log-normal (median ``work_median_units``, sigma ``work_sigma``) rounded up
    to whole units (at least 1); its run takes ``runtime_s(units, speed)`` seconds at the
    machine's cost per second (:mod:`twin.modules`, :mod:`twin.hardware`). The range spans the
    central ``coverage`` quantiles of the work of every job class in demand, on every hardware
    class with a positive share that can run it.
    """
    m = cfg.market
    modules = in_demand(m.modules, m.module_shares)
    machines = [CATALOGUE[k] for k, v in cfg.hardware.shares.items() if v > 0]
    lo, hi = None, None
    for name in modules:
        job = MODULES[name]
        units = work_units_range(job, coverage)
        for h in machines:
            speed = h.gpu_speed if job.kind == "gpu" else h.cpu_speed
            if speed <= 0:
                continue
            cost_s = h.cost_wei_per_s(m.token_usd)
            c_lo, c_hi = (runtime_s(u, speed) * cost_s for u in units)
            lo = c_lo if lo is None else min(lo, c_lo)
            hi = c_hi if hi is None else max(hi, c_hi)
    if lo is None:
        raise ValueError(
            f"no hardware class with a positive share in hardware.shares can run the job classes "
            f"{modules} of market.modules / market.module_shares"
        )
    return lo, hi


def conditions_at(t: Terms, c: int) -> dict[str, bool]:
    """Dong et al.'s conditions for a node of cost ``c`` (wei), plus two that decide what
    independent learners find where the contracts leave two equilibria:

    - ``loyal_dominant``: under a binding colluder's contract, following the agreement pays
      whatever the partner does (t > w - c + d for the leader, t + b > w - c + d for the
      follower), not only when the partner follows it too (``leader_loyal``);
    - ``collusion_risk_dominant``: under the prisoner's contract alone, tacit collusion
      risk-dominates honest computing: its deviation loss c + ch - d exceeds honesty's,
      w - c + d (the loss of cheating alone against an honest partner).
    """
    k = ccc_conditions(t.w, t.d, t.ch, t.t, t.b, c)
    k["loyal_dominant"] = t.t > t.w - c + t.d
    k["collusion_risk_dominant"] = c + t.ch - t.d > t.w - c + t.d
    return k


def conditions(cfg: TwinConfig) -> pd.DataFrame:
    """Each condition at the lowest and the highest honest cost of ``cfg`` (:func:`cost_range`),
    and whether it holds for every job (every condition is monotone in c)."""
    t = terms(cfg)
    lo, hi = cost_range(cfg)
    a, b = conditions_at(t, lo), conditions_at(t, hi)
    rows = [(k, a[k], b[k], a[k] and b[k], not (a[k] or b[k])) for k in a]
    cols = ["condition", "at_c_lo", "at_c_hi", "every_job", "no_job"]
    return pd.DataFrame(rows, columns=cols).set_index("condition")


def prediction(cfg: TwinConfig) -> str:
    """What rational pairs do under the contracts of ``cfg``: ``collude`` or ``honest``.

    Prisoner's contract alone: collusion iff it is stable (d <= c + ch, ``tacit_stable``).
    With the colluder's contract: collusion iff the leader's and the follower's conditions
    hold and the leader initiates (b < c). With the traitor's contract: no collusion when
    betraying pays (d > c + ch); otherwise as without it. Raises ``ValueError`` when the
    deciding condition holds for some of the config's jobs and not for others (the config
    straddles the boundary).
    """
    k = conditions(cfg)
    t = terms(cfg)

    def holds(*names: str) -> bool | None:
        """True: all hold for every job; False: one holds for none; None: it depends on c."""
        if all(k.loc[n, "every_job"] for n in names):
            return True
        return False if any(k.loc[n, "no_job"] for n in names) else None

    def straddles() -> ValueError:
        lo, hi = (x / WEI_PER_TOKEN for x in cost_range(cfg))
        return ValueError(
            f"the contract terms straddle Dong et al.'s conditions for honest costs c in "
            f"[{lo:.3g}, {hi:.3g}] tokens: choose counter_collusion.* so that they hold for "
            f"every job or for none\n{k}"
        )

    if t.traitor:
        betray = holds("betrayal_pays")
        if betray is None:
            raise straddles()
        if betray:
            return "honest"
    stable = (
        holds("leader_loyal", "follower_loyal", "leader_initiates")
        if t.colluder
        else holds("tacit_stable")
    )
    if stable is None:
        raise straddles()
    return "collude" if stable else "honest"


def analytic_table(budget: str | Budget = "full") -> pd.DataFrame:
    """The analytic side of the counter-collusion table: per experiment, the contracts on offer,
    the terms (tokens), the range of the honest cost c (:func:`cost_range`), Dong et al.'s
    conditions (True / False when they hold for every job / for none, :func:`conditions`) and
    the :func:`prediction`, all derived from the experiment configs at ``budget``."""
    b = budget_of(budget)
    rows = []
    for x in EXPERIMENTS:
        cfg = experiment_config(x, 0, b)
        t, k = terms(cfg), conditions(cfg)
        lo, hi = (v / WEI_PER_TOKEN for v in cost_range(cfg))
        row = {"experiment": x, "contracts": "+".join(cfg.counter_collusion.contracts),
               "w": t.w / WEI_PER_TOKEN, "d": t.d / WEI_PER_TOKEN, "ch": t.ch / WEI_PER_TOKEN,
               "t": t.t / WEI_PER_TOKEN, "b": t.b / WEI_PER_TOKEN, "c_lo": round(lo, 3),
               "c_hi": round(hi, 3)}  # fmt: skip
        for name in ("tacit_stable", "leader_loyal", "follower_loyal", "leader_initiates",
                     "betrayal_pays"):  # fmt: skip
            r = k.loc[name]
            row[name] = True if r.every_job else (False if r.no_job else "depends on c")
        row["prediction"] = prediction(cfg)
        rows.append(row)
    return pd.DataFrame(rows).set_index("experiment")


def _pure_equilibria(p0: np.ndarray, p1: np.ndarray) -> list[tuple[int, int, bool]]:
    """Pure Nash equilibria (row, column, strict) of the bimatrix game (p0 row payoffs,
    p1 column payoffs): strict when every unilateral deviation loses."""
    out = []
    for i in range(p0.shape[0]):
        for j in range(p0.shape[1]):
            r0 = np.delete(p0[:, j], i)
            r1 = np.delete(p1[i, :], j)
            if (r0 <= p0[i, j]).all() and (r1 <= p1[i, j]).all():
                out.append((i, j, bool((r0 < p0[i, j]).all() and (r1 < p1[i, j]).all())))
    return out


def stage_game(t: Terms, c: int, cheat_cost_fraction: float = 0.0) -> pd.DataFrame:
    """The subgame-perfect pure equilibria of one dual deal as the twin plays it, for two nodes
    of honest cost ``c`` (wei; node 0 leads): a sign stage (both at once: agree or refuse; both
    agreeing binds the colluder's contract when it is on offer), then a compute stage (honest,
    cheat, skip, and betray where the traitor's contract is on offer and the pair agreed), with
    the payoffs of :func:`twin.mechanisms.counter_collusion.analytic_payoffs` (a cheat costs
    ``cheat_cost_fraction`` of c, a skip nothing; two betrayals: each report first with
    probability 1/2).

    One row per equilibrium outcome: the compute profile played on its path (leader/follower),
    each node's payoff (tokens), the sign profiles (leader/follower) that lead to it in some
    subgame-perfect equilibrium, and whether one of them is strict in both stages (every
    unilateral deviation loses). A weak equilibrium (``strict`` False) is one where a lone
    deviation changes nothing -- e.g. agreeing to collude with a partner who refuses -- so a
    learner that reaches it gets no gradient away from it."""
    from twin.mechanisms.counter_collusion import Decision, analytic_payoffs

    cost = {Decision.Honest: c, Decision.Betray: c, Decision.Skip: 0,
            Decision.Cheat: int(c * cheat_cost_fraction)}  # fmt: skip

    def subgame(agreed: bool) -> tuple[list[Decision], list[tuple[int, int, bool]], np.ndarray]:
        acts = [Decision.Honest, Decision.Cheat, Decision.Skip]
        if agreed and t.traitor:
            acts.append(Decision.Betray)
        n = len(acts)
        pay = np.zeros((2, n, n))
        for i, a in enumerate(acts):
            for j, b in enumerate(acts):
                firsts = (0, 1) if a == b == Decision.Betray else (0,)
                v = [analytic_payoffs(t, (a, b), agreed, agreed and t.colluder, 0,
                                      (cost[a], cost[b]), first=f) for f in firsts]  # fmt: skip
                pay[:, i, j] = np.mean(v, axis=0) / WEI_PER_TOKEN
        return acts, _pure_equilibria(pay[0], pay[1]), pay

    agreed_g, other_g = subgame(True), subgame(False)
    found: dict[tuple, dict] = {}
    for ai, aj, a_strict in agreed_g[1]:
        for oi, oj, o_strict in other_g[1]:
            va, vo = agreed_g[2][:, ai, aj], other_g[2][:, oi, oj]
            # sign stage: 0 agree, 1 refuse; only (agree, agree) reaches the agreed subgame
            p = np.array([[va, vo], [vo, vo]])  # [leader sign, follower sign, node]
            for si, sj, strict in _pure_equilibria(p[:, :, 0], p[:, :, 1]):
                both = si == sj == 0
                acts, (i, j) = (agreed_g[0], (ai, aj)) if both else (other_g[0], (oi, oj))
                key = (f"{acts[i].name.lower()}/{acts[j].name.lower()}", *map(float, p[si, sj]))
                row = found.setdefault(key, {"sign": [], "strict": False})
                sign = f"{('agree', 'refuse')[si]}/{('agree', 'refuse')[sj]}"
                if sign not in row["sign"]:
                    row["sign"].append(sign)
                row["strict"] |= strict and (a_strict if both else o_strict)
    rows = [{"outcome": k[0], "leader_tokens": k[1], "follower_tokens": k[2],
             "sign": ", ".join(v["sign"]), "strict": v["strict"]} for k, v in found.items()]  # fmt: skip
    cols = ["outcome", "leader_tokens", "follower_tokens", "sign", "strict"]
    return pd.DataFrame(rows, columns=cols)


def equilibria(budget: str | Budget = "full", c: int | None = None) -> pd.DataFrame:
    """:func:`stage_game` of every experiment config at honest cost ``c`` (wei; default: the
    median job's, ``cost_range(cfg, coverage=0)``: 2 tokens in the result_b market), one block
    per experiment."""
    b = budget_of(budget)
    frames = []
    for x in EXPERIMENTS:
        cfg = experiment_config(x, 0, b)
        cx = c if c is not None else cost_range(cfg, coverage=0.0)[0]
        g = stage_game(terms(cfg), cx, cfg.execution.cheat_cost_fraction)
        frames.append(g.assign(experiment=x, c=round(cx / WEI_PER_TOKEN, 3)))
    return pd.concat(frames, ignore_index=True).set_index(["experiment", "c"])


# -- the learned side -----------------------------------------------------------------------------
def greedy_dual_deals(checkpoint: str | Path, episodes: int, seed: int = 1_000_000) -> pd.DataFrame:
    """The dual deals (:meth:`twin.mechanisms.counter_collusion.CounterCollusion.tables`) of
    ``episodes`` episodes in which every learning seat of ``checkpoint`` plays its trained policy
    greedily (episode ``e`` seeded ``seed + e``); the other seats play their scripted policies."""
    import torch

    from agents.policies import load_run
    from twin.env import MarketEnv

    torch.set_num_threads(1)
    run = load_run(checkpoint)
    env = MarketEnv(run.config, expose="learning")
    frames = []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        while env.agents:
            by_policy: dict[str, list[str]] = {}
            for a in env.agents:
                by_policy.setdefault(run.policy_of[a], []).append(a)
            actions = {}
            for pid, names in by_policy.items():
                actions.update(zip(names, run.policies[pid].batch([obs[n] for n in names]),
                                   strict=True))  # fmt: skip
            obs, *_ = env.step(actions)
        mk = env.market
        for m in mk.mechanisms:
            df = m.tables(mk).get("dual_deals")
            if df is not None:
                frames.append(df.assign(episode=e))
    if not frames or not sum(len(f) for f in frames):
        raise ValueError(f"{checkpoint}: its config makes no dual deals (counter_collusion.share)")
    return pd.concat(frames, ignore_index=True)


def deal_rates(dual: pd.DataFrame) -> dict[str, float]:
    """Measures of a set of dual deals: shares of deals that end in undetected collusion, in a
    betrayal, with an agreement to collude, with both nodes honest; share of compute decisions
    that submit a wrong answer (``cheat``); mean node payoff per dual deal (tokens)."""
    n = len(dual)
    decisions = pd.concat([dual.decision_a, dual.decision_b])
    decisions = decisions[decisions != "none"]
    return {
        "dual_deals": float(n),
        "collusion_rate": float((dual.outcome == "collusion").mean()),
        "cheat_rate": float((decisions == "cheat").mean()) if len(decisions) else float("nan"),
        "agreed_rate": float(dual.agreed.mean()),
        "betrayal_rate": float((dual.outcome == "betrayed").mean()),
        "honest_rate": float((dual.outcome == "honest").mean()),
        "node_payoff_tokens": float((dual.payoff_a_tokens + dual.payoff_b_tokens).mean() / 2),
    }


def experiment_config(experiment: str, seed: int, budget: Budget,
                      overrides: tuple[str, ...] = ()) -> TwinConfig:  # fmt: skip
    """The composed config of ``experiment`` at ``seed`` and ``budget``, plus ``overrides``."""
    import twin

    if experiment not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {sorted(EXPERIMENTS)}, got {experiment!r}")
    return twin.compose([
        f"experiment={EXPERIMENTS[experiment]}", f"seed={seed}", f"train.seed={seed}",
        f"train.iterations={budget.iterations}", *budget.overrides, *overrides,
    ])  # fmt: skip


def run(budget: str | Budget = "full", out_dir: str | Path = "outputs/result_b",
        experiments: tuple[str, ...] = tuple(EXPERIMENTS), verbose: bool = True) -> pd.DataFrame:  # fmt: skip
    """Train and evaluate every experiment for the budget's seeds; return (and keep in
    ``out_dir/runs.csv``) one row per (experiment, seed).

    Each finished run leaves its row in ``out_dir/<experiment>/seed_<s>/run.csv``; a run with
    that file is not run again, a killed one continues from its last checkpoint
    (``train.resume``) or, killed before one, starts afresh; and processes given
    disjoint ``experiments`` can share ``out_dir`` (each has its own Ray session directory,
    ``out_dir/ray_<pid>``). ``runs.csv`` is rebuilt from the row files after every run."""
    from agents.train import ray_session, train

    b = budget_of(budget)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    todo = [(x, s) for x in experiments for s in range(b.seeds)
            if not (out / x / f"seed_{s}" / RUN_CSV).exists()]  # fmt: skip
    if todo:
        first = experiment_config(todo[0][0], todo[0][1], b)
        with ray_session(first.train.ray, out / f"ray_{os.getpid()}"):
            for x, s in todo:
                run_dir = out / x / f"seed_{s}"
                ckpts = run_dir / "checkpoints"
                resume = ckpts.is_dir() and any(ckpts.iterdir())  # killed after a checkpoint
                if run_dir.exists() and not resume:  # killed before one: start afresh
                    shutil.rmtree(run_dir)
                cfg = experiment_config(x, s, b, ("train.resume=true",) if resume else ())
                t0 = time.perf_counter()
                with contextlib.redirect_stdout(sys.stdout if verbose else io.StringIO()):
                    res = train(cfg, run_dir)
                dual = greedy_dual_deals(res.checkpoint, b.eval_episodes)
                dual.to_csv(run_dir / "dual_deals.csv", index=False)
                row = {"experiment": x, "seed": s, "iterations": res.iterations,
                       "train_seconds": round(res.seconds, 1),
                       "seconds": round(time.perf_counter() - t0, 1),
                       "load_1min": round(os.getloadavg()[0], 2),
                       "prediction": prediction(cfg), **deal_rates(dual)}  # fmt: skip
                pd.DataFrame([row]).to_csv(run_dir / RUN_CSV, index=False)
                runs_table(out)
                if verbose:
                    print(f"result B: {x} seed {s}: collusion {row['collusion_rate']:.2f} "
                          f"cheat {row['cheat_rate']:.2f} ({row['seconds']:.0f} s)", flush=True)  # fmt: skip
    done = runs_table(out)
    if done.empty:
        return done
    keep = done.experiment.isin(experiments) & (done.seed < b.seeds)
    return done[keep].reset_index(drop=True)


def runs_table(out_dir: str | Path) -> pd.DataFrame:
    """Every finished run's row under ``out_dir`` (``<experiment>/seed_<s>/run.csv``), in
    experiment and seed order; written to ``out_dir/runs.csv`` (atomically) and returned."""
    out = Path(out_dir)
    frames = [pd.read_csv(p) for p in out.glob(f"*/seed_*/{RUN_CSV}")]
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    order = {x: i for i, x in enumerate(EXPERIMENTS)}
    df = df.assign(_order=df.experiment.map(order)).sort_values(["_order", "seed"])
    df = df.drop(columns="_order").reset_index(drop=True)
    tmp = out / f".{RUNS_CSV}.{os.getpid()}"
    df.to_csv(tmp, index=False)
    os.replace(tmp, out / RUNS_CSV)
    return df


MEASURES = ("collusion_rate", "cheat_rate", "agreed_rate", "betrayal_rate", "node_payoff_tokens")


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """The counter-collusion table: per experiment, its prediction, the number of seeds, how
    many of them colluded (greedy collusion rate at least 1/2: ``seeds_colluding``; where
    collusion and honesty are both equilibria, :func:`equilibria`, the share of seeds that
    reached each) and, for each measure, the mean over seeds and its 95 % t-interval
    (``_lo``, ``_hi``)."""
    rows = []
    for x in [e for e in EXPERIMENTS if e in set(runs.experiment)]:
        g = runs[runs.experiment == x]
        row = {"experiment": x, "prediction": g.prediction.iloc[0], "seeds": len(g),
               "seeds_colluding": int((g.collusion_rate >= 0.5).sum()),
               "dual_deals": int(g.dual_deals.sum())}  # fmt: skip
        for m in MEASURES:
            row[m], row[m + "_lo"], row[m + "_hi"] = mean_ci(g[m])
        rows.append(row)
    return pd.DataFrame(rows)


def verdict(prediction: str, collusion_hi: float, collusion_lo: float, cheat_hi: float) -> str:
    """``reproduced``, ``not reproduced`` or ``undecided`` (no interval: fewer than 2 seeds)."""
    if not (np.isfinite(collusion_lo) and np.isfinite(collusion_hi)):
        return "undecided"
    if prediction == "collude":
        return "reproduced" if collusion_lo > COLLUDE_AT_LEAST else "not reproduced"
    ok = collusion_hi < HONEST_AT_MOST and (not np.isfinite(cheat_hi) or cheat_hi < HONEST_AT_MOST)
    return "reproduced" if ok else "not reproduced"


def verdicts(tab: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: the claim, the prediction, the learned collusion rate with its
    interval, and whether the learned behaviour matches the prediction."""
    rows = []
    for r in tab.itertuples():
        rows.append({
            "claim": CLAIMS[r.experiment], "experiment": r.experiment, "prediction": r.prediction,
            "seeds": r.seeds, "seeds_colluding": r.seeds_colluding,
            "collusion_rate": r.collusion_rate,
            "ci95": (r.collusion_rate_lo, r.collusion_rate_hi), "cheat_rate": r.cheat_rate,
            "verdict": verdict(r.prediction, r.collusion_rate_hi, r.collusion_rate_lo,
                               r.cheat_rate_hi),
        })  # fmt: skip
    return pd.DataFrame(rows)


def outcome_shares(out_dir: str | Path) -> pd.DataFrame:
    """Per experiment, the share of its greedy dual deals (every seed's ``dual_deals.csv``
    under ``out_dir``, pooled) that ended in each outcome (columns: the outcomes of
    :func:`twin.mechanisms.counter_collusion.settle`, plus ``open`` for deals unsettled at the
    end of an episode)."""
    frames = [
        pd.read_csv(p, usecols=["outcome"]).assign(experiment=p.parent.parent.name)
        for p in sorted(Path(out_dir).glob("*/seed_*/dual_deals.csv"))
    ]
    if not frames:
        raise ValueError(f"{out_dir}: no */seed_*/dual_deals.csv (run() writes them)")
    df = pd.concat(frames, ignore_index=True)
    shares = pd.crosstab(df.experiment, df.outcome, normalize="index")
    return shares.reindex([x for x in EXPERIMENTS if x in shares.index]).fillna(0.0)


def learning_curves(out_dir: str | Path) -> pd.DataFrame:
    """Per experiment, seed and iteration, the learning nodes' mean payoff per episode (tokens)
    from each finished run's ``metrics.parquet``."""
    frames = []
    for p in sorted(Path(out_dir).glob("*/seed_*/metrics.parquet")):
        if not (p.parent / RUN_CSV).exists():  # unfinished (killed) run
            continue
        m = pd.read_parquet(p)
        m = m[m.role == "rp"][["iteration", "learning_payoff_tokens"]]
        frames.append(m.assign(experiment=p.parent.parent.name, seed=int(p.parent.name[5:])))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def plot_curves(curves: pd.DataFrame, ax=None):
    """Mean learning-node payoff per episode over iterations, per experiment, with its 95 %
    interval over seeds."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(7, 4))[1]
    for x, g in curves.groupby("experiment", sort=False):
        stats = [(it, *mean_ci(h.learning_payoff_tokens)) for it, h in g.groupby("iteration")]
        it, m, lo, hi = (np.array(v, float) for v in zip(*stats, strict=True))
        ax.plot(it, m, label=x)
        ax.fill_between(it, lo, hi, alpha=0.2)
    ax.set_xlabel("training iteration")
    ax.set_ylabel("learning node payoff per episode (tokens)")
    ax.legend()
    return ax
