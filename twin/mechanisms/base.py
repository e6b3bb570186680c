"""The mechanism interface: one protocol mechanism per module, plugged into the tick schedule.

A mechanism owns its parameters (a config dataclass), its state (arrays or small records it
allocates in :meth:`Mechanism.attach`) and reacts to the market through hooks that the market
calls at fixed points of its phases. A mechanism implements only the hooks it needs; the market
calls a hook only on the mechanisms that override it (no per-tick cost otherwise).

Hooks, in tick order:

- ``on_tick_start(mk)``: before any phase.
- ``on_deal_created(mk, d)``: a match became a deal (before ``agree``).
- ``takes_over(mk, d) -> bool``: in ``agree``, before the parties agree: whether the mechanism
  runs the match ``d`` itself instead of the v1 deal (e.g. a dual deal). ``d`` then never reaches
  the v1 contracts; the mechanism owns the match's capacity hold (``mk._holds``), keeps
  ``d.index`` in ``mk.active`` until it has settled every token of it, and settles within the
  episode. The first mechanism that returns True takes it.
- ``on_executed(mk, d)``: the RP decided how to execute (``d.mode`` set; before the result).
  ``d.ready_at`` (-1: no result) may be delayed here (e.g. proof generation).
- ``on_result_submitted(mk, d)``: ``addResult`` succeeded.
- ``can_check(mk, d) -> bool``: whether the JC may still check ``d`` (e.g. a storage window).
- ``on_checked(mk, d)``: ``checkResult`` succeeded (mediators were requested).
- ``on_deal_end(mk, d)``: the deal reached a terminal state or got stuck; balances of the v1
  flows are final, so a mechanism may now move its own money (taxes, fees, payouts, shares of
  slashed collateral) with :meth:`twin.market.Market.transfer`.
- ``on_tick_end(mk)``: after ``settle``.
- ``action_mask(mk, role, mask)``: when observations are built: open (or close) actions in the
  role's mask, in place, for decisions the mechanism asks of seats (rp: seats x modes x price
  levels; jc: seats x 3; mediator: seats x 2). Mechanisms that ask for decisions read them from
  ``mk.actions``.

Wealth: ``held_wei(mk) -> {account: wei}`` names deposits a mechanism's own contracts hold for
parties that may still get them back (e.g. the counter-collusion deposits of open dual deals);
:meth:`twin.market.Market.wealth_tokens` counts them as the party's wealth, as it counts v1
collateral in the party's escrow, so a reward sees a contract's outcome, not its deposits.

Observations: ``feature_names(role)`` names the columns a mechanism adds to each role's
observation (what a real participant would see: jackpot size, stakes, reputation scores, market
odds). A mechanism fills them in one of two ways: ``public_features(mk, focus)`` returns new
matrices (simple to write); ``write_features(mk, fb)`` writes into the observation's own columns
(:class:`FeatureBlocks`: no allocation, no copy; what the built-in mechanisms do). Implement
either: each one's default derives it from the other.

Metrics: ``metrics(mk) -> dict[str, float]`` adds measures to the run summary;
``tables(mk) -> dict[str, DataFrame]`` adds per-record tables (``run_episodes`` collects them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from twin.deals import Deal
    from twin.market import Market

HOOKS = (
    "on_tick_start",
    "on_deal_created",
    "takes_over",
    "on_executed",
    "on_result_submitted",
    "can_check",
    "on_checked",
    "on_deal_end",
    "on_tick_end",
    "action_mask",
)


class FeatureBlocks:
    """Where mechanisms write their observation columns (:meth:`Mechanism.write_features`).

    ``out[role]``: the mechanism's block of ``role``'s observation matrix (a view; zero on
    entry). ``focus[role]``: seat row -> the deal that seat decides on. :meth:`rows` and
    :meth:`rps` give the same as arrays, computed once per observation for every mechanism."""

    __slots__ = ("mk", "focus", "out", "_rows", "_rps")

    def __init__(self, mk: Market, focus: dict[str, dict[int, int]], out=None) -> None:
        self.mk, self.focus = mk, focus
        self.out: dict[str, np.ndarray] = {} if out is None else out
        self._rows: dict[str, np.ndarray] = {}
        self._rps: dict[str, np.ndarray] = {}

    def rows(self, role: str) -> np.ndarray:
        """The seat rows of ``role`` with a focus deal (int64, in ``focus[role]`` order)."""
        r = self._rows.get(role)
        if r is None:
            f = self.focus.get(role) or {}
            r = self._rows[role] = np.fromiter(f, np.int64, len(f))
        return r

    def rps(self, role: str) -> np.ndarray:
        """The RP account of each focus deal of ``role`` (int64, in :meth:`rows` order)."""
        r = self._rps.get(role)
        if r is None:
            f, deals = self.focus.get(role) or {}, self.mk.deals
            r = self._rps[role] = np.fromiter((deals[di].rp for di in f.values()), np.int64, len(f))
        return r


class Mechanism:
    """Base class: every hook is a no-op; subclasses override what they need."""

    name: ClassVar[str] = ""
    #: system accounts this mechanism needs (names; the market allocates them once, shared)
    accounts: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params) -> None:
        self.params = params

    @classmethod
    def enabled(cls, cfg) -> bool:
        """Whether ``cfg`` switches this mechanism on."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, cfg) -> Mechanism:
        raise NotImplementedError

    @classmethod
    def check_config(cls, cfg) -> None:
        """Raise ``ValueError`` naming the fields when ``cfg`` combines options this mechanism
        cannot run with (called by :func:`twin.config.validate` at composition)."""

    def feature_names(self, role: str) -> tuple[str, ...]:
        """Names of the columns :meth:`public_features` adds to ``role``'s observation."""
        return ()

    def attach(self, mk: Market) -> None:
        """Allocate state once the market's accounts exist."""

    def on_tick_start(self, mk: Market) -> None: ...
    def on_deal_created(self, mk: Market, d: Deal) -> None: ...
    def takes_over(self, mk: Market, d: Deal) -> bool:
        return False

    def on_executed(self, mk: Market, d: Deal) -> None: ...
    def on_result_submitted(self, mk: Market, d: Deal) -> None: ...
    def can_check(self, mk: Market, d: Deal) -> bool:
        return True

    def on_checked(self, mk: Market, d: Deal) -> None: ...
    def on_deal_end(self, mk: Market, d: Deal) -> None: ...
    def on_tick_end(self, mk: Market) -> None: ...
    def action_mask(self, mk: Market, role: str, mask: np.ndarray) -> None: ...

    def public_features(
        self, mk: Market, focus: dict[str, dict[int, int]]
    ) -> dict[str, np.ndarray]:
        """Per role, a matrix (seats x len(feature_names(role))) or a tuple broadcast to every
        seat. ``focus[role]`` maps a seat row to the deal it decides on. The default runs
        :meth:`write_features` on new zero matrices."""
        if not type(self).implements("write_features"):
            return {}
        out = {}
        for role, n in (("rp", mk.n_rp), ("jc", mk.n_jc), ("mediator", mk.n_med)):
            k = len(self.feature_names(role))
            if k:
                out[role] = np.zeros((n, k))
        self.write_features(mk, FeatureBlocks(mk, focus, out))
        return out

    def write_features(self, mk: Market, fb: FeatureBlocks) -> None:
        """Write this mechanism's columns into ``fb.out[role]`` (seats x
        len(feature_names(role)), zero on entry) for each role it has columns for and that
        ``fb.out`` holds: an observer building only some roles (:class:`twin.observe.Observer`'s
        ``build``) leaves the others out. The default writes what :meth:`public_features`
        returns."""
        for role, v in self.public_features(mk, fb.focus).items():
            view = fb.out.get(role)
            if view is None:
                continue
            if isinstance(v, np.ndarray) and v.ndim == 2 and v.shape != view.shape:
                v = v.reshape(view.shape)
            view[...] = v  # a tuple or a row broadcasts to every seat

    def held_wei(self, mk: Market) -> dict[int, int]:
        """Deposits (wei per account) this mechanism's contracts hold for parties that may
        still reclaim them; counted in their wealth (only called when overridden)."""
        return {}

    def metrics(self, mk: Market) -> dict[str, float]:
        return {}

    def tables(self, mk: Market) -> dict:
        """Named per-record DataFrames of one episode (e.g. one row per dual deal)."""
        return {}

    @classmethod
    def implements(cls, hook: str) -> bool:
        return getattr(cls, hook) is not getattr(Mechanism, hook)
