"""PettingZoo ``ParallelEnv`` adapter over the market core.

Agents
    One agent per *exposed seat*: ``rp_<i>`` (resource providers), ``jc_<i>`` (job creators),
    ``mediator_<i>``. ``env.expose=learning`` (default) exposes the learning seats (the first
    ``round(learning_share * n)`` seats of each group, per ``policies.<group>.learning_share``);
    the other seats are driven inside the env by their group's scripted policy (as is an exposed
    seat that is given no action in a step)
    (:mod:`agents.baselines`). ``env.expose=all`` exposes every seat.

Action spaces
    - RP: ``Discrete(4 * n_price_levels)``, action ``mode * n_price_levels + level``: the
      execution mode for its waiting deals (0 honest, 1 cheat = fake result, 2 inflate the
      instruction count, 3 skip = never submit) and the price level of its resource offer
      (``pricing.price_levels`` x base price). In a dual deal of the counter-collusion
      contracts the modes decide whether to collude (1 or 2: agree) and then how to compute
      (0 honest, 1 the agreed wrong answer, 2 betray, 3 skip); see
      :mod:`twin.mechanisms.counter_collusion`.
    - JC: ``Discrete(3)``: 0 accept, 1 check (pays the mediation fee), 2 wait (the RP may call
      the judge timeout); or with ``env.jc_action=probability`` ``Box(0, 1, (1,))``: the
      probability of checking each waiting result now (else it is accepted).
    - Mediator: ``Discrete(2)``: 0 vote on an honest re-execution, 1 collude (honour its ring's
      agreement: accept a ring RP's wrong result, or reject a ring JC's counterparty's correct
      one, for the ring's bribe).

Observation spaces
    ``Dict(observation=Box(-inf, inf, (d,), float32), action_mask=Box(0, 1, (k,), int8))``
    (a JC with ``env.jc_action=probability`` has no mask: every probability is allowed); the
    features of each role are ``env.features[role]`` (:data:`twin.observe.FEATURES` plus the
    public features of the mechanisms switched on: own balances and open
    deals, the terms of the deal it decides on, public ledger aggregates per node, recent
    mediation outcomes, an orderbook summary); the mask marks the allowed actions.

Rewards
    The change, over the step, of the agent's wealth (wallet plus escrow it can still reclaim,
    plus deposits a mechanism's contracts still hold for it: ``Market.wealth_tokens``) minus the
    execution cost it bore (hardware cost of runs and re-runs), in tokens.

Episodes
    ``market.episode_ticks`` ticks of trading, then the market closes (no new offers) and keeps
    stepping until every deal has settled; then every agent is truncated.

What is computed
    Only what some seat reads: the observation matrices of the groups with exposed seats, or
    whose scripted policy reads features; only the masks of groups whose scripted seats act from
    them; nothing for groups whose scripted seats act from the template
    (:attr:`MarketEnv.observe_build`, :class:`twin.observe.Observer`'s ``build``). The scripted
    seats' actions can be computed ahead, between steps (:meth:`MarketEnv.prepare_step`), and
    :meth:`MarketEnv.step_vector` steps from an action vector and answers with arrays: both for
    an env process (:mod:`agents.env_process`). None of this changes a draw or a value
    (``tests/test_env.py``).
"""

from __future__ import annotations

import functools
import gc
import operator
from itertools import repeat

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from agents.baselines import PolicyContext, policy_from_config
from twin.config import TwinConfig
from twin.configuration import to_config
from twin.market import Actions, Market
from twin.mechanisms import build_mechanisms
from twin.observe import Observer, feature_names

GROUPS = ("rp", "jc", "mediator")
_gc_frozen = False  # freeze_gc_once() has run in this process
#: a JC's discrete action + 1 -> probability of checking: 0 accept (p = 0), 1 check (p = 1),
#: anything else wait (NaN); indexed in ``take``'s clip mode, so negatives read the first entry
#: and 2 and above the last
_JC_CHECK_PROB = np.array([np.nan, 0.0, 1.0, np.nan])


def _matrices(o, g: str) -> tuple[np.ndarray, np.ndarray]:
    """Group ``g``'s observation matrix and mask in observation ``o``."""
    if g == "rp":
        return o.rp, o.rp_mask
    if g == "jc":
        return o.jc, o.jc_mask
    return o.mediator, o.mediator_mask


def _as_slice(rows: np.ndarray) -> slice | np.ndarray:
    """``rows`` (ascending, distinct) as a slice if they are a run, else as they are."""
    if not len(rows):
        return slice(0, 0)
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    return slice(lo, hi) if hi - lo == len(rows) else rows


def freeze_gc_once() -> bool:
    """Move every object alive now to the garbage collector's permanent generation
    (:func:`gc.freeze`), once per process, after a full collection; True if it did so now.

    Why: CPython's full (generation 2) collection re-traverses every tracked object of the
    process, about 120 000 once numpy, torch and the library are imported, each time a quarter of
    that many new objects have survived; a market keeps a few tens per tick (deals, events), so
    at 100 agents such a collection of ~60 ms came every ~1 000 steps, ~5 % of the step time.
    Frozen objects are skipped: full collections then visit only what was created since.

    Leaks: a frozen object is still freed when its reference count drops to zero; only frozen
    objects that later become unreachable *cycles* are never collected. Freezing once, after
    ``gc.collect()`` (so no garbage is frozen), bounds that to what was alive at the first reset
    (modules, configs, the first market, which holds no reference cycles: it is freed by
    reference counting when the next reset replaces it; ``tests/test_env.py`` checks both). It
    never grows with the number of episodes. Nothing is done while the collector is disabled.
    Set ``MarketEnv.freeze_gc = False`` to leave the collector alone.
    """
    global _gc_frozen
    if _gc_frozen or not gc.isenabled():
        return False
    _gc_frozen = True
    gc.collect()
    gc.freeze()
    return True


class MarketEnv(ParallelEnv):
    metadata = {"name": "lilypad_twin_v0", "render_modes": [], "is_parallelizable": True}
    #: call :func:`freeze_gc_once` at the first reset (a process-wide, one-time effect)
    freeze_gc: bool = True

    def __init__(self, config: TwinConfig, expose: str | None = None) -> None:
        self.cfg = to_config(config)
        c = self.cfg
        self.expose = expose or c.env.expose
        if self.expose not in ("learning", "all"):
            raise ValueError(f"expose must be 'learning' or 'all', got {self.expose!r}")
        self.n = {
            "rp": c.market.n_resource_providers,
            "jc": c.market.n_job_creators,
            "mediator": c.market.n_mediators,
        }
        self.n_levels = len(c.pricing.price_levels)
        #: an RP's discrete action -> (execution mode, price level), as tables (see _rp_actions)
        flat = np.arange(4 * self.n_levels)
        self._rp_split = (flat // self.n_levels, flat % self.n_levels)
        mechs = build_mechanisms(c)
        #: observation columns per role: the base features, then each mechanism's public ones
        self.features = {g: feature_names(mechs, g) for g in GROUPS}
        self.ctx = PolicyContext(
            n_price_levels=self.n_levels,
            default_price_level=c.pricing.default_price_level,
            jc_action=c.env.jc_action,
            defect_probability=c.mediation.defect_probability,
            features=tuple((g, self.features[g]) for g in GROUPS),
        )
        self.learning_rows: dict[str, np.ndarray] = {}
        self.exposed_rows: dict[str, np.ndarray] = {}
        self.scripted_rows: dict[str, np.ndarray] = {}
        self.scripted = {}
        for g in GROUPS:
            gc = getattr(c.policies, g)
            k = int(round(gc.learning_share * self.n[g]))
            rows = np.arange(self.n[g])
            self.learning_rows[g] = rows[:k]
            self.exposed_rows[g] = rows if self.expose == "all" else rows[:k]
            self.scripted_rows[g] = np.setdiff1d(rows, self.exposed_rows[g])
            self.scripted[g] = policy_from_config(g, gc, self.ctx)
        #: every step's market actions start from this copy: the defaults, with the actions of
        #: the scripted seats whose policy acts the same whatever it observes
        #: (:meth:`agents.baselines.Policy.fixed_batch`: honest nodes and mediators) written once
        self._template = Actions(
            np.zeros(self.n["rp"], np.int64),
            np.full(self.n["rp"], c.pricing.default_price_level, np.int64),
            np.full(self.n["jc"], np.nan),
            np.zeros(self.n["mediator"], bool),
        )
        #: groups whose scripted seats are all in the template
        self._fixed_groups: set[str] = set()
        for g in GROUPS:
            rows = self.scripted_rows[g]
            fixed = self.scripted[g].fixed_batch(len(rows)) if len(rows) else None
            if fixed is not None:
                self._apply(self._template, g, rows, fixed)
                self._fixed_groups.add(g)
        #: the exposed and the scripted rows of each group as a slice where they are a run of
        #: rows (they are, but for a group with no seat of one kind: a prefix and the rest): row
        #: views and plain assignment instead of fancy indexing
        self._exposed_sel = {g: _as_slice(self.exposed_rows[g]) for g in GROUPS}
        self._scripted_sel = {g: _as_slice(self.scripted_rows[g]) for g in GROUPS}
        #: groups whose scripted seats act each step (not from the template)
        self._acting_groups = [
            g for g in GROUPS if len(self.scripted_rows[g]) and g not in self._fixed_groups
        ]
        self.names = {g: [f"{g}_{i}" for i in self.exposed_rows[g]] for g in GROUPS}
        self._exposed_groups = [g for g in GROUPS if self.names[g]]
        #: step_vector's input: each exposed group's columns of the action vector
        self._vector_cols, k = [], 0
        for g in self._exposed_groups:
            self._vector_cols.append((g, slice(k, k + len(self.names[g]))))
            k += len(self.names[g])
        #: every exposed agent acts through a discrete space and has a mask (step_vector)
        self.vector_ok = c.env.jc_action != "probability" or "jc" not in self._exposed_groups
        self.possible_agents = [a for g in GROUPS for a in self.names[g]]
        self.agents: list[str] = []
        self._group_of = {a: g for g in GROUPS for a in self.names[g]}
        self.market: Market | None = None
        self._acct = {g: None for g in GROUPS}
        #: every seat is an exposed agent acting through the discrete spaces (see _to_market_actions)
        self._all_acting = c.env.jc_action != "probability" and all(
            len(self.exposed_rows[g]) == self.n[g] > 0 for g in GROUPS
        )
        #: what the observer builds of each group (twin.observe.Observer's ``build``): the
        #: features and masks where a seat reads them (an exposed agent, or scripted seats whose
        #: policy reads features), the masks only where scripted seats act from their masks, and
        #: nothing where every seat acts from the template
        self.observe_build = {g: self._build_of(g) for g in GROUPS}

    def _build_of(self, g: str) -> str | None:
        if len(self.exposed_rows[g]) or (
            len(self.scripted_rows[g]) and g not in self._fixed_groups
            and self.scripted[g].reads_features
        ):  # fmt: skip
            return "features"
        if len(self.scripted_rows[g]) and g not in self._fixed_groups:
            return "mask"
        return None

    # -- spaces ---------------------------------------------------------------------------------
    @functools.cache  # noqa: B019 - spaces must be the same object per agent
    def observation_space(self, agent: str) -> spaces.Dict:
        g = self._group_of[agent]
        k = {"rp": 4 * self.n_levels, "jc": 3, "mediator": 2}[g]
        if g == "jc" and self.cfg.env.jc_action == "probability":
            return spaces.Dict(
                {"observation": spaces.Box(-np.inf, np.inf, (len(self.features[g]),), np.float32)}
            )
        return spaces.Dict({
            "observation": spaces.Box(-np.inf, np.inf, (len(self.features[g]),), np.float32),
            "action_mask": spaces.Box(0, 1, (k,), np.int8),
        })  # fmt: skip

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> spaces.Space:
        g = self._group_of[agent]
        if g == "rp":
            return spaces.Discrete(4 * self.n_levels)
        if g == "jc":
            return (
                spaces.Box(0.0, 1.0, (1,), np.float32)
                if self.cfg.env.jc_action == "probability"
                else spaces.Discrete(3)
            )
        return spaces.Discrete(2)

    # -- API ------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict | None = None):
        self.market = Market(self.cfg, seed=seed)
        mk = self.market
        self._acct = {"rp": mk.rp_acct, "jc": mk.jc_acct, "mediator": mk.med_acct}
        self._exposed_acct = {g: self._acct[g][self.exposed_rows[g]] for g in GROUPS}
        self._agent_acct = np.concatenate([self._exposed_acct[g] for g in GROUPS])  # agent order
        self._wealth = mk.wealth_tokens().copy()
        self._cost = mk.cost_tokens.copy()
        self.agents = list(self.possible_agents)
        # every agent's termination / truncation flag, copied each step (a dict copy is 10x
        # cheaper than dict.fromkeys); every agent acts until the market closes
        self._flags = (dict.fromkeys(self.agents, False), dict.fromkeys(self.agents, True))
        # what the agents' answers need, built each step; what only scripted seats read (groups
        # without an exposed seat), built when their actions are (see prepare_step)
        b = self.observe_build
        self._observer = Observer(
            mk, self.n_levels, {g: b[g] if g in self._exposed_groups else None for g in GROUPS}
        )
        later = {g: None if g in self._exposed_groups else b[g] for g in GROUPS}
        self._scripted_observer = (
            Observer(mk, self.n_levels, later) if any(later.values()) else None
        )
        self._obs = self._observer()
        self._prepared: Actions | None = None
        if self.freeze_gc:
            freeze_gc_once()
        return self._observations(), {a: {} for a in self.agents}

    def prepare_step(self) -> None:
        """Compute now what the next :meth:`step` needs that the agents' actions do not change:
        the scripted seats' market actions (from what they observe now). Optional: a step does it
        itself when it was not done. An env process calls it while it waits for the agents'
        actions (:mod:`agents.env_process`); the draws are the same, in the same order, either
        way (nothing else draws from the market's generator between a step and the next)."""
        if self._prepared is None and self.market is not None and self.agents:
            self._prepared = self._scripted_actions()

    def step(self, actions: dict):
        mk = self.market
        if mk is None:
            raise RuntimeError("call reset() before step()")
        acts = self._to_market_actions(actions)
        reward = self._tick(acts)
        obs = self._observations()
        rewards = dict(zip(self.possible_agents, reward.tolist(), strict=True))
        done = mk.done
        live, ended = self._flags if self.agents else ({}, {})
        terms = live.copy()
        truncs = (ended if done else live).copy()
        infos = {a: {} for a in self.agents}
        if done:
            self.agents = []
        return obs, rewards, terms, truncs, infos

    def step_vector(self, actions: np.ndarray) -> tuple[list, np.ndarray, bool]:
        """:meth:`step` with the exposed agents' actions as one integer vector
        (``possible_agents`` order) and its results as arrays instead of per-agent dicts:
        ``(blocks, rewards, done)``. ``blocks`` holds an ``(observations, masks)`` pair of
        matrices per group with exposed seats (in ``GROUPS`` order; rows in ``names[group]``
        order, views of the step's fresh matrices): the rows of :meth:`step`'s observation dicts.
        ``rewards`` (float64, ``possible_agents`` order) holds the values of its reward dict, and
        ``done`` says whether the episode ended (every agent is then truncated). For envs whose
        agents all act through the discrete spaces with masks (:attr:`vector_ok`). An env process
        steps its markets this way (:mod:`agents.env_process`): no dicts to build and pickle."""
        if not self.vector_ok:
            raise ValueError(
                "step_vector needs every exposed agent to act through a discrete space with a "
                "mask; with env.jc_action=probability and exposed clients, use step()"
            )
        mk = self.market
        if mk is None:
            raise RuntimeError("call reset() before step_vector()")
        if len(actions) != len(self.possible_agents):
            raise ValueError(
                f"step_vector: {len(actions)} actions for {len(self.possible_agents)} agents "
                f"({', '.join(self.possible_agents)})"
            )
        a = self._next_actions()
        for g, cols in self._vector_cols:
            self._apply(a, g, self._exposed_sel[g], actions[cols])
        reward = self._tick(a)
        blocks = [self._exposed_matrices(self._obs, g) for g in self._exposed_groups]
        done = mk.done
        if done:
            self.agents = []
        return blocks, reward, done

    def _tick(self, acts: Actions) -> np.ndarray:
        """Step the market with ``acts``, observe it, and return the exposed agents' rewards
        (``possible_agents`` order)."""
        mk = self.market
        mk.step(acts)
        self._obs = self._observer()
        wealth, cost = mk.wealth_tokens(), mk.cost_tokens  # wealth: a fresh array
        reward = (wealth - self._wealth) - (cost - self._cost)
        self._wealth = wealth
        self._cost = cost.copy()
        return reward[self._agent_acct]

    def render(self) -> None:
        return None

    def close(self) -> None:
        self.market = None

    # -- translation ----------------------------------------------------------------------------
    def _observations(self) -> dict:
        """Per-agent observation dicts: rows (views) of this step's fresh matrices."""
        o = self._obs
        if self._all_acting:  # every seat exposed, each with a mask: one comprehension
            return {
                n: {"observation": x, "action_mask": m}
                for n, x, m in zip(
                    self.possible_agents,
                    [*o.rp, *o.jc, *o.mediator],
                    [*o.rp_mask, *o.jc_mask, *o.mediator_mask],
                    strict=True,
                )
            }
        out = {}
        for g in self._exposed_groups:
            names = self.names[g]
            X, M = self._exposed_matrices(o, g)
            if g == "jc" and self.cfg.env.jc_action == "probability":
                out.update({n: {"observation": x} for n, x in zip(names, X, strict=True)})
            else:
                out.update(
                    {
                        n: {"observation": x, "action_mask": m}
                        for n, x, m in zip(names, X, M, strict=True)
                    }
                )
        return out

    def _scripted_actions(self) -> Actions:
        """The next step's market actions of the scripted seats: the template's, and those of the
        scripted seats that act from what they observe (drawing from the market's generator)."""
        mk, t = self.market, self._template
        a = Actions(t.rp_mode.copy(), t.rp_price_level.copy(), t.jc_check_prob.copy(),
                    t.med_collude.copy())  # fmt: skip
        if not self._acting_groups:
            return a
        o = self._obs
        s = self._scripted_observer() if self._scripted_observer is not None else None
        for g in self._acting_groups:
            X, M = _matrices(o if g in self._exposed_groups else s, g)
            sel = self._scripted_sel[g]
            if len(self.scripted_rows[g]) != len(X):  # (every seat scripted: no row copies)
                X, M = X[sel], M[sel]
            self._apply(a, g, sel, self.scripted[g].act_batch(X, M, mk.rng))
        return a

    def _next_actions(self) -> Actions:
        """This step's market actions of the scripted seats: those prepared ahead
        (:meth:`prepare_step`, for this step only), else computed now."""
        a, self._prepared = self._prepared, None
        return a if a is not None else self._scripted_actions()

    def _exposed_matrices(self, o, g: str) -> tuple[np.ndarray, np.ndarray]:
        """Group ``g``'s observation and mask rows of its exposed seats in observation ``o``."""
        X, M = _matrices(o, g)
        if len(self.names[g]) != len(X):
            sel = self._exposed_sel[g]
            X, M = X[sel], M[sel]
        return X, M

    def _to_market_actions(self, actions: dict) -> Actions:
        if self._all_acting:
            every = self._every_seat_actions(actions)
            if every is not None:
                self._prepared = None  # (prepared for this step only)
                return every
        mk, o = self.market, self._obs
        a = self._next_actions()
        get = actions.get
        for g in self._exposed_groups:
            X, M = _matrices(o, g)
            vals = [get(n) for n in self.names[g]]
            rows = self._exposed_sel[g]
            if any(map(operator.is_, vals, repeat(None))):
                # an exposed seat given no action plays its group's scripted policy this step
                rows = self.exposed_rows[g]
                idle = rows[[i for i, v in enumerate(vals) if v is None]]
                self._apply(a, g, idle, self.scripted[g].act_batch(X[idle], M[idle], mk.rng))
                keep = [i for i, v in enumerate(vals) if v is not None]
                if not keep:
                    continue
                rows, vals = rows[keep], [vals[i] for i in keep]
            arr = np.asarray(vals)
            if arr.ndim != 1:  # (array actions: one row per seat, the first entry counts)
                arr = arr.reshape(len(vals), -1)[:, 0]
            self._apply(a, g, rows, arr)
        return a

    def _every_seat_actions(self, actions: dict) -> Actions | None:
        """The common case, computed without the general path's copies: every seat is exposed
        and acted with an integer (the discrete spaces). The values are those of the general
        path (:meth:`_apply` on every row); None when the case does not hold."""
        try:  # every agent's action in one array (agents: the groups' seats in GROUPS order)
            arr = np.asarray(list(map(actions.get, self.possible_agents)))
        except ValueError:  # actions of different shapes
            return None
        if arr.dtype.kind not in "iu" or arr.ndim != 1:
            return None  # a missing seat (None), a Box action
        if arr.dtype != np.int64:  # (RLlib's categorical actions arrive as int32)
            arr = arr.astype(np.int64)
        a, b = self.n["rp"], self.n["rp"] + self.n["jc"]
        rp, jc, med = arr[:a], arr[a:b], arr[b:]
        mode, level = self._rp_actions(rp)
        return Actions(mode, level, _JC_CHECK_PROB.take(jc + 1, mode="clip"), med == 1)

    def _rp_actions(self, choice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(execution mode, price level) of RP discrete actions (int64), the choice clipped to
        [0, 4 levels): ``take``'s clip mode reads entry 0 for negatives, the last for too large."""
        mode_of, level_of = self._rp_split
        return mode_of.take(choice, mode="clip"), level_of.take(choice, mode="clip")

    def _apply(self, a: Actions, g: str, rows, vals: np.ndarray) -> None:
        """Write the actions ``vals`` (one per seat: a vector, or one row per seat whose first
        entry counts) of group ``g``'s ``rows`` (an index array or a slice) into ``a``.
        Out-of-range choices are clipped (RP) or mean wait (JC) / honest (mediator)."""
        v = vals[:, 0] if vals.ndim == 2 else vals
        if g == "jc" and self.cfg.env.jc_action == "probability":
            a.jc_check_prob[rows] = np.minimum(np.maximum(v.astype(float), 0.0), 1.0)
            return
        if v.dtype != np.int64:  # (truncated toward zero, as astype does)
            v = v.astype(np.int64)
        if g == "rp":
            a.rp_mode[rows], a.rp_price_level[rows] = self._rp_actions(v)
        elif g == "jc":  # 0 accept (p = 0), 1 check (p = 1), anything else wait (NaN)
            a.jc_check_prob[rows] = _JC_CHECK_PROB.take(v + 1, mode="clip")
        else:
            a.med_collude[rows] = v == 1

    # -- introspection used by experiments ------------------------------------------------------
    def seat_table(self, market: Market | None = None) -> list[tuple[str, str, int, str, str]]:
        """(agent name, group, account, seat kind, policy name) for every seat of ``market``
        (default: the current one; a finished market kept past a reset is another)."""
        mk = self.market if market is None else market
        out = []
        acct = {"rp": mk.rp_acct, "jc": mk.jc_acct, "mediator": mk.med_acct}
        for g in GROUPS:
            learning = set(self.learning_rows[g].tolist())
            for r in range(self.n[g]):
                kind = "learning" if r in learning else "scripted"
                out.append(
                    (
                        f"{g}_{r}",
                        g,
                        int(acct[g][r]),
                        kind,
                        "learner" if kind == "learning" else self.scripted[g].name,
                    )
                )
        return out
