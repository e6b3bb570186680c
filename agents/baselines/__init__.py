"""Scripted baseline policies that can sit in any seat of their role.

Every policy has one interface: ``act(obs, rng)`` for one seat (``obs`` is the seat's
observation dict ``{"observation", "action_mask"}``; the return value is an action of the env's
action space for that role) and ``act_batch(obs, mask, rng)`` for many seats at once (rows of
the observation and mask matrices; returns one action row per seat). The same objects drive the
scripted seats inside the env, stand in for agents in tests and notebooks, and back the
never-trained RLModules of the training code.

Action encodings (see :mod:`twin.env`): RP ``mode * n_price_levels + price_level`` with mode
0 honest, 1 cheat, 2 inflate, 3 skip; JC discrete 0 accept, 1 check, 2 wait, or ``[check_probability]``; mediator
0 honest, 1 collude. In a dual deal of the counter-collusion contracts
(:mod:`twin.mechanisms.counter_collusion`) the same RP modes mean: at the sign stage 1 (or 2)
agree to collude, 0 or 3 refuse; at the compute stage 0 honest, 1 the agreed wrong answer (or an
own one), 2 betray (where the traitor's contract allows it, else honest), 3 skip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

RP_MODES = ("honest", "cheat", "inflate", "skip")
JC_ACTIONS = ("accept", "check", "wait")
MED_ACTIONS = ("honest", "collude")


@dataclass(frozen=True)
class PolicyContext:
    """What a scripted policy needs to know about the action space."""

    n_price_levels: int = 5
    default_price_level: int = 2
    jc_action: str = "discrete"  # or "probability"
    #: a scripted colluder breaks its ring's agreement with this probability per decision
    #: (``mediation.defect_probability``)
    defect_probability: float = 0.0
    #: (role, column names of that role's observation) pairs, for policies that read features
    features: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def names(self, role: str) -> tuple[str, ...]:
        """The column names of ``role``'s observation (empty when not given)."""
        return dict(self.features).get(role, ())


class Policy:
    role: str = ""
    name: str = ""
    #: whether :meth:`act_batch` reads the observation's features (the ``obs`` matrix's columns)
    #: or only its number of rows and the masks. The env builds the feature matrix of a group of
    #: scripted seats only for a policy that reads it (else ``obs`` has zero columns). A subclass
    #: that overrides ``act_batch`` without saying is taken to read them.
    reads_features: bool = True

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "act_batch" in cls.__dict__ and "reads_features" not in cls.__dict__:
            cls.reads_features = True

    def __init__(self, ctx: PolicyContext, **params: float) -> None:
        self.ctx = ctx
        self.params = params

    def act(self, obs: dict, rng: np.random.Generator | None = None):
        """The action of one seat, in that role's env action space."""
        rng = rng if rng is not None else np.random.default_rng()
        row = self.act_batch(
            np.asarray(obs["observation"])[None, :], np.asarray(obs["action_mask"])[None, :], rng
        )[0]
        if self.role == "rp" or (self.role == "jc" and self.ctx.jc_action == "probability"):
            return row
        return int(row[0])

    def act_batch(self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def fixed_batch(self, n: int) -> np.ndarray | None:
        """The rows :meth:`act_batch` returns for ``n`` seats whatever their observations and
        masks, if it always returns the same rows and draws nothing from the generator; else
        None. The env computes the market actions of seats with such a policy once, not every
        step (``tests/test_env.py`` checks every policy that returns rows here)."""
        return None


# -- resource providers ---------------------------------------------------------------------
class _RPMode(Policy):
    role = "rp"
    mode = 0
    reads_features = False

    def _modes(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.full(n, self.mode, np.int64)

    def _level(self) -> int:
        """The price level of the seat's offer: ``price_level``, or the market's default."""
        lvl = int(self.params.get("price_level", -1))
        return self.ctx.default_price_level if lvl < 0 else lvl

    def fixed_batch(self, n):
        # mode 0 (honest) for every seat: the masked and the unmasked choice are both the level
        cls = type(self)
        if self.mode == 0 and cls._modes is _RPMode._modes and cls.act_batch is _RPMode.act_batch:
            return np.full((n, 1), self._level(), np.int64)
        return None

    def act_batch(self, obs, mask, rng):
        n = len(obs)
        L = self.ctx.n_price_levels
        lvl = self._level()
        if type(self)._modes is _RPMode._modes:  # one mode for every seat (no draws)
            c = self.mode * L + lvl
            if mask.shape[1] == 4 * L:  # as below: the mode where allowed, else "honest"
                return np.where(mask[:, c] == 1, c, lvl)[:, None]
            return np.full((n, 1), c, np.int64)
        flat = self._modes(n, rng) * L + lvl
        if mask.shape[1] == 4 * L:  # nothing to decide: the mode is a no-op, say "honest"
            flat = np.where(mask[np.arange(n), flat] == 1, flat, lvl)
        return flat[:, None]


class HonestRP(_RPMode):
    """Always runs jobs honestly at the default price."""

    name, mode = "honest", 0


class AlwaysCheatRP(_RPMode):
    """Always returns a fake result."""

    name, mode = "always_cheat", 1


class InflateRP(_RPMode):
    """Runs honestly but always inflates its instruction count."""

    name, mode = "always_inflate", 2


class SkipRP(_RPMode):
    """Takes jobs and never submits."""

    name, mode = "always_skip", 3


class CheatWithProbabilityRP(_RPMode):
    """Cheats on each decision with probability ``cheat_probability`` (else honest)."""

    name = "cheat_with_probability"

    def _modes(self, n, rng):
        q = float(self.params.get("cheat_probability", 0.5))
        return (rng.random(n) < q).astype(np.int64)


class AlwaysColludeRP(AlwaysCheatRP):
    """Always mode 1: in a dual deal, agrees to collude (signs the colluder's contract when it is
    on offer) and submits the pair's agreed wrong answer; in a v1 deal, a fake result."""

    name = "always_collude"


class ColludeThenBetrayRP(_RPMode):
    """Agrees to collude, then betrays the partner wherever the traitor's contract allows it
    (mode 2 allowed by the mask), else colludes. Meant for dual deals: where the seat also
    decides a v1 deal in the same tick, mode 2 there means inflating the instruction count."""

    name = "collude_then_betray"
    reads_features = False

    def act_batch(self, obs, mask, rng):
        n, L = len(obs), self.ctx.n_price_levels
        lvl = self._level()
        if mask.shape[1] != 4 * L:
            return np.full((n, 1), L + lvl, np.int64)
        flat = np.where(mask[:, 2 * L + lvl] == 1, 2, 1) * L + lvl
        flat = np.where(mask[np.arange(n), flat] == 1, flat, lvl)  # nothing to decide: honest
        return flat[:, None].astype(np.int64)


class RationalDualRP(_RPMode):
    """Best response to the analytic payoffs of the counter-collusion contracts: the
    subgame-perfect strategy of spec section 3 (:func:`twin.mechanisms.counter_collusion.
    rational_mode`) against a partner of the same cost; honest in v1 deals. Reads the
    ``ccc_*`` columns of the RP observation, found by name in ``ctx.features``."""

    name = "ccc_rational"

    def act_batch(self, obs, mask, rng):
        from twin.mechanisms.counter_collusion import FEATURES, rational_modes

        names = self.ctx.names("rp")
        wanted = [f"counter_collusion.{f}" for f in FEATURES]
        missing = [f for f in wanted if f not in names]
        if missing:
            raise ValueError(
                f"policy {self.name!r} reads the counter_collusion features {missing} of the RP "
                f"observation, which has only {list(names)}"
            )
        cols = obs[:, [names.index(f) for f in wanted]]
        L = self.ctx.n_price_levels
        lvl = self._level()
        return (rational_modes(cols) * L + lvl)[:, None].astype(np.int64)


class RandomRP(Policy):
    """Uniformly random valid action (used by the benchmark)."""

    role, name = "rp", "random"
    reads_features = False

    def act_batch(self, obs, mask, rng):
        return _random_multidiscrete(mask, (len(RP_MODES) * self.ctx.n_price_levels,), rng)


# -- job creators -----------------------------------------------------------------------------
class _JC(Policy):
    role = "jc"
    reads_features = False

    def _p(self, n: int, rng: np.random.Generator) -> np.ndarray | float:
        """Each seat's probability of checking (an array, or one float for every seat)."""
        raise NotImplementedError

    def act_batch(self, obs, mask, rng):
        n = len(obs)
        p = self._p(n, rng)
        if self.ctx.jc_action == "probability":
            if isinstance(p, np.ndarray):
                return p[:, None].astype(np.float32)
            return np.full((n, 1), p, np.float32)
        return _allowed_checks(rng.random(n) < p, mask)


def _allowed_checks(check: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """:func:`_allowed_jc` of the choices ``check`` (bool: check, else accept), in fewer steps:
    check where drawn and allowed, else accept where allowed, else wait."""
    if mask.shape[1] != 3:
        return check.astype(np.int64)[:, None]
    return np.where(check & (mask[:, 1] == 1), 1, np.where(mask[:, 0] == 1, 0, 2))[:, None]


def _allowed_jc(choice: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Keep each JC's choice where its mask allows it; else accept if allowed, else wait (a JC
    with nothing to judge, or that cannot afford the fee, does not ask for a check)."""
    choice = np.asarray(choice, np.int64)
    if mask.shape[1] == 3:
        ok = mask[np.arange(len(choice)), choice] == 1
        choice = np.where(ok, choice, np.where(mask[:, 0] == 1, 0, 2))
    return choice[:, None]


class AlwaysAcceptJC(_JC):
    """Accepts every result without checking (the shipped agents' behaviour)."""

    name = "always_accept"

    def _p(self, n, rng):
        return 0.0


class AlwaysCheckJC(_JC):
    name = "always_check"

    def _p(self, n, rng):
        return 1.0


class CheckWithProbabilityJC(_JC):
    """Checks each result with probability ``check_probability``, else accepts it at once."""

    name = "check_with_probability"

    def _p(self, n, rng):
        return float(self.params.get("check_probability", 0.1))


class ModicumAttackerJC(_JC):
    """Modicum's client attack: checks every result of a non-deterministic job class (an honest
    re-run disagrees with some probability, and a failed check refunds the whole payment: the
    result comes free) and accepts every other result at once. Reads the observation's
    ``focus_nondeterminism`` column."""

    name = "modicum_attacker"

    def __init__(self, ctx: PolicyContext, **params: float) -> None:
        super().__init__(ctx, **params)
        from twin.observe import JC_FEATURES

        self._col = JC_FEATURES.index("focus_nondeterminism")

    def act_batch(self, obs, mask, rng):
        nondet = np.asarray(obs)[:, self._col] > 0
        if self.ctx.jc_action == "probability":
            return nondet.astype(np.float32)[:, None]
        return _allowed_jc(nondet.astype(np.int64), mask)


class NeverJudgeJC(Policy):
    """Never accepts nor checks: lets the judge timeout run."""

    role, name = "jc", "never_judge"
    reads_features = False

    def act_batch(self, obs, mask, rng):
        if self.ctx.jc_action == "probability":
            return np.full((len(obs), 1), np.nan, np.float32)
        return np.full((len(obs), 1), 2, np.int64)


class RandomJC(Policy):
    role, name = "jc", "random"
    reads_features = False

    def act_batch(self, obs, mask, rng):
        if self.ctx.jc_action == "probability":
            return rng.random((len(obs), 1)).astype(np.float32)
        return _random_multidiscrete(mask, (len(JC_ACTIONS),), rng)


# -- mediators --------------------------------------------------------------------------------
class HonestMediator(Policy):
    """Re-executes and votes on the comparison."""

    role, name = "mediator", "honest_mediator"
    reads_features = False

    def act_batch(self, obs, mask, rng):
        return np.zeros((len(obs), 1), np.int64)

    def fixed_batch(self, n):
        return (
            np.zeros((n, 1), np.int64) if type(self).act_batch is HonestMediator.act_batch else None
        )


class ColludingMediator(Policy):
    """Honours its ring's collusion agreement whenever a ring member is a party, except that
    each seat's decision defects (votes on its honest re-execution) with the context's
    ``defect_probability``."""

    role, name = "mediator", "colluding_mediator"
    reads_features = False

    def act_batch(self, obs, mask, rng):
        collude = mask[:, 1:2].astype(np.int64)
        p = self.ctx.defect_probability
        if p > 0:
            collude &= (rng.random((len(obs), 1)) >= p).astype(np.int64)
        return collude


class RandomMediator(Policy):
    role, name = "mediator", "random"
    reads_features = False

    def act_batch(self, obs, mask, rng):
        return _random_multidiscrete(mask, (len(MED_ACTIONS),), rng)


def _random_multidiscrete(
    mask: np.ndarray, nvec: tuple[int, ...], rng: np.random.Generator
) -> np.ndarray:
    """One uniformly random allowed choice per component (mask is the concatenation per component)."""
    n = len(mask)
    out = np.empty((n, len(nvec)), np.int64)
    start = 0
    for k, size in enumerate(nvec):
        m = mask[:, start : start + size].astype(float)
        m = m / m.sum(axis=1, keepdims=True)
        u = rng.random(n)[:, None]
        out[:, k] = (u > np.cumsum(m, axis=1)).sum(axis=1).clip(0, size - 1)
        start += size
    return out


REGISTRY: dict[str, dict[str, tuple[type[Policy], tuple[str, ...]]]] = {
    "rp": {
        "honest": (HonestRP, ("price_level",)),
        "always_cheat": (AlwaysCheatRP, ("price_level",)),
        "always_inflate": (InflateRP, ("price_level",)),
        "always_skip": (SkipRP, ("price_level",)),
        "cheat_with_probability": (CheatWithProbabilityRP, ("cheat_probability", "price_level")),
        "always_collude": (AlwaysColludeRP, ("price_level",)),
        "collude_then_betray": (ColludeThenBetrayRP, ("price_level",)),
        "ccc_rational": (RationalDualRP, ("price_level",)),
        "random": (RandomRP, ()),
    },
    "jc": {
        "always_accept": (AlwaysAcceptJC, ()),
        "always_check": (AlwaysCheckJC, ()),
        "check_with_probability": (CheckWithProbabilityJC, ("check_probability",)),
        "modicum_attacker": (ModicumAttackerJC, ()),
        "never_judge": (NeverJudgeJC, ()),
        "random": (RandomJC, ()),
    },
    "mediator": {
        "honest_mediator": (HonestMediator, ()),
        "colluding_mediator": (ColludingMediator, ()),
        "random": (RandomMediator, ()),
    },
}

_PROBS = {"cheat_probability", "check_probability"}


def check_policy(group: str, name: str, params: dict[str, float] | None = None) -> None:
    """Raise ``ValueError`` naming the allowed names/parameters when ``name``/``params`` are bad."""
    params = params or {}
    if group not in REGISTRY:
        raise ValueError(f"unknown group {group!r}; allowed: {sorted(REGISTRY)}")
    if name not in REGISTRY[group]:
        raise ValueError(
            f"policy {name!r} is not a {group} policy; allowed: {sorted(REGISTRY[group])}"
        )
    allowed = REGISTRY[group][name][1]
    for k, v in params.items():
        if k not in allowed:
            raise ValueError(f"policy {name!r} has no parameter {k!r}; allowed: {list(allowed)}")
        if k in _PROBS and not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"params.{k} = {v} is out of range; allowed range: [0, 1]")


def make_policy(group: str, name: str, params: dict[str, float] | None = None,
                ctx: PolicyContext | None = None) -> Policy:  # fmt: skip
    params = dict(params or {})
    check_policy(group, name, params)
    return REGISTRY[group][name][0](ctx or PolicyContext(), **params)


PolicyFactory = Callable[..., Policy]
__all__ = [
    "JC_ACTIONS",
    "MED_ACTIONS",
    "Policy",
    "PolicyContext",
    "REGISTRY",
    "RP_MODES",
    "check_policy",
    "make_policy",
]


def policy_from_config(group: str, gc, ctx: PolicyContext) -> Policy:
    """The scripted policy of a population group's config (``twin.config.GroupConfig``)."""
    allowed = REGISTRY[group][gc.policy][1] if gc.policy in REGISTRY.get(group, {}) else ()
    params = {k: getattr(gc, k) for k in allowed}
    return make_policy(group, gc.policy, params, ctx)
