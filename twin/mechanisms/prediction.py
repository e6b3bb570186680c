"""Prediction (replication) markets: bets on whether a node's next checked result will replicate.

The whitepaper's mechanism 6 (spec section 1): nodes bet on whether a given node's results
would replicate, optionally funded from taxes. Per RP there is one binary market at a time, a
*round*: "the RP's next checked result will replicate". It resolves YES at the first check
verdict on one of the RP's deals after the round opened that accepts the result
(``MediationAccepted``), NO at one that rejects it (``MediationRejected``; a forced error counts
as a failure: the market sees only the public verdict). Timeouts do not resolve it. When a round
settles, the next one opens at the end of the tick.

Market maker: Hanson's logarithmic market scoring rule (Hanson 2003, "Combinatorial information
market design") with liquidity ``b = prediction.liquidity_tokens``. With ``q_yes``, ``q_no`` the
shares sold of each outcome,

    C(q) = b ln(e^{q_yes/b} + e^{q_no/b}),   p_yes = e^{q_yes/b} / (e^{q_yes/b} + e^{q_no/b}),

a trade from ``q`` to ``q'`` costs ``C(q') - C(q)``, and a winning share pays one token. From
``q = (0, 0)`` the maker's loss is at most ``C(0, 0) = b ln 2`` whatever is traded, so each round
is funded at opening with ``ceil(b ln 2)`` wei from ``prediction.funded_from``: the owner (minted
``owner_seed_tokens`` at genesis for this) or the jackpot (needs the taxes mechanism; composing
``funded_from=jackpot`` without it fails with a config error). A funder that cannot pay leaves
the RP without a market until it can.

Money, exact in wei: shares are counted in wei-units of payout (``10**18`` units = one share = one
token), ``b`` in wei. Costs are evaluated in binary fixed point on integers (:mod:`twin.fixedmath`,
192 fractional bits: the same digits on every machine) in the overflow-free form
``max(q) + b ln(1 + e^{-|q_yes - q_no|/b})``, within ``2^-90`` wei of the real value; a round
keeps its ``C(q)`` in that fixed point, each trade is charged ``C(q') - C(q)`` of the kept values
(so a round's charges add up to at least ``C(q_final) - C(0, 0)`` of those values), and every
trade cost is rounded *up* to the wei (the buyer pays the rounding); payouts are the
winning share units, exactly. The maker account (``market_maker``) holds each open round's
subsidy and the bettors' payments; at settlement it pays the winners and returns the rest
(subsidy + payments - payouts >= 0 by the bound above, rounding included) to the funder, whose
net cost per round is thus at most ``ceil(b ln 2)`` wei. Conservation is exact; every movement is
a ``Transfer`` (``MarketSubsidy``, ``MarketBet``, ``MarketPayout``, ``MarketRefund``).

Scripted bettors, every tick while the market is open. A bettor's belief that the result will
replicate is the target RP's public score (:func:`twin.mechanisms.reputation.public_scores`),
except for the RP itself: it knows its own executed, unsettled results and believes the share of
them that is correct. With ``insider_bets`` each RP with results in flight first bets on its own
market (insider betting: a cheater bets against itself and hedges its slashing; an honest node
bets on itself). Then ``bets_per_tick`` bets follow, each by a bettor drawn uniformly from the
RPs and, with staking on, the delegators, on a market drawn uniformly from the open rounds (an
RP drawn for its own market bets as an insider, or not at all without ``insider_bets``). A bettor
buys the side its belief favours over the price, for at most ``bet_tokens`` (and its wallet), and
never past the price that equals its belief. Draws use the market's one generator. When the
market has closed, rounds of RPs with no deal left are voided: bettors get their payments back,
the funder its subsidy.

Seats observe the price of YES (a reputation signal; 0.5 when no round is open): an RP its own
(``own_market_price``), a JC or mediator the price of the focus deal's RP
(``focus_rp_market_price``). Metrics: rounds settled, voided, and failed openings (the funder
could not pay), bets, volume, the funders' net subsidy, the insiders' profit, and the Brier score
of the price at settlement; ``history`` keeps one :class:`SettledRound` per settled round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from twin import fixedmath as fx
from twin.deals import DealState, ExecMode
from twin.events import TransferReason
from twin.ledger import WEI_PER_TOKEN, tokens_to_wei
from twin.mechanisms.base import Mechanism
from twin.mechanisms.reputation import public_scores

ONE = fx.ONE  # 1 in the fixed point of C(q): values are v / 2^fx.Q wei


# -- the LMSR, in wei ---------------------------------------------------------------------------
def cost_fx(q_yes: int, q_no: int, b: int) -> int:
    """``C(q) = b ln(e^{q_yes/b} + e^{q_no/b})`` in wei, times ``2^Q`` (:mod:`twin.fixedmath`),
    as ``max(q) + b ln(1 + e^{-|q_yes - q_no|/b})``. Within ``2^-90`` wei of the real value for
    ``b`` below ``2^80`` wei: ``z = |q_yes - q_no| / b`` is floored to ``2^-Q`` (one unit), then
    ``e^{-z}`` and ``ln(1 + e^{-z})`` add :data:`fx.ERR` units each, and ``b`` multiplies them."""
    hi, lo = (q_yes, q_no) if q_yes >= q_no else (q_no, q_yes)
    return (hi << fx.Q) + b * fx.ln(ONE + fx.exp_neg(((hi - lo) << fx.Q) // b))


def _ceil(v: int) -> int:
    """The smallest integer at least ``v / 2^Q``."""
    return -((-v) >> fx.Q)


def lmsr_cost(q_yes: int, q_no: int, b: int) -> Fraction:
    """``C(q)`` in wei, as the exact fraction :func:`cost_fx` ``/ 2^Q``."""
    return Fraction(cost_fx(q_yes, q_no, b), ONE)


def lmsr_price(q_yes: int, q_no: int, b: int) -> float:
    """Price of YES, ``1 / (1 + e^{(q_no - q_yes)/b})``."""
    z = (q_no - q_yes) / b
    return 1.0 / (1.0 + math.exp(min(700.0, max(-700.0, z))))


def subsidy_wei(b: int) -> int:
    """The maker's worst-case loss from ``q = (0, 0)``, ``b ln 2``, rounded up to the wei."""
    return _ceil(cost_fx(0, 0, b))


def buy_cost_wei(
    q_yes: int, q_no: int, b: int, shares: int, yes: bool, cost: int | None = None
) -> int:
    """What buying ``shares`` units of one side costs: ``C(q') - C(q)`` rounded up to the wei
    (``cost``: :func:`cost_fx` of ``q`` if already known)."""
    qy, qn = (q_yes + shares, q_no) if yes else (q_yes, q_no + shares)
    c0 = cost_fx(q_yes, q_no, b) if cost is None else cost
    return _ceil(cost_fx(qy, qn, b) - c0)


def shares_for_budget(
    q_yes: int, q_no: int, b: int, budget_wei: int, yes: bool, cost: int | None = None
) -> int:
    """The most units of one side that ``budget_wei`` buys (``cost``: :func:`cost_fx` of ``q``
    if known).

    With ``a`` the bought side's count, ``o`` the other's and ``C`` the current cost,
    ``C(a + x, o) = C + m`` solves to ``x = o - a + b ln(e^u - 1)``, ``u = (C + m - o) / b``,
    evaluated as ``o - a + b (u + ln(1 - e^{-u}))`` and floored, so its cost rounded up is at
    most the budget (the purchase re-checks it on the exact cost it charges)."""
    if budget_wei <= 0:
        return 0
    a, o = (q_yes, q_no) if yes else (q_no, q_yes)
    c0 = cost_fx(q_yes, q_no, b) if cost is None else cost
    u = (c0 + ((budget_wei - o) << fx.Q)) // b  # u 2^Q > 0: C >= max(q) >= o
    w = ONE - fx.exp_neg(u)  # 1 - e^{-u}
    if w <= 0:  # pragma: no cover - u >= 2^Q / b, far above the error of e^{-u}
        return 0
    x = ((o - a) << fx.Q) + b * (u + fx.ln(w))
    return max(0, x >> fx.Q)


def shares_to_price(q_yes: int, q_no: int, b: int, p_yes: float, yes: bool) -> int | None:
    """Units of one side that move the YES price to ``p_yes`` (floored; 0 if it is already
    there or beyond; None: no finite amount, ``p_yes`` is 1 for YES or 0 for NO).
    From ``p_yes = 1 / (1 + e^{(q_no - q_yes)/b})``: ``q_yes - q_no = b logit(p_yes)``, with the
    float ``p_yes`` taken exactly (a ratio of integers)."""
    if (yes and p_yes >= 1.0) or (not yes and p_yes <= 0.0):
        return None
    if p_yes <= 0.0 or p_yes >= 1.0:
        return 0
    num, den = p_yes.as_integer_ratio()
    logit = fx.ln_ratio(num, den - num)  # ln(p / (1 - p)) 2^Q
    x = ((q_no - q_yes) << fx.Q) + b * logit if yes else ((q_yes - q_no) << fx.Q) - b * logit
    return max(0, x >> fx.Q)


def _units_estimate(q_yes: int, q_no: int, b: int, cost: float, budget_wei: int, p_yes: float,
                    yes: bool) -> tuple[float, float]:  # fmt: skip
    """Float estimates of (:func:`shares_for_budget`, :func:`shares_to_price`) (inf: no cap),
    to decide which of the two exact computations a purchase needs."""
    a, o = (q_yes, q_no) if yes else (q_no, q_yes)
    u = (cost + budget_wei - o) / b
    budget_units = (o - a) + b * (u + math.log(-math.expm1(-u))) if budget_wei > 0 else 0.0
    if (yes and p_yes >= 1.0) or (not yes and p_yes <= 0.0):
        return budget_units, math.inf
    if p_yes <= 0.0 or p_yes >= 1.0:
        return budget_units, 0.0
    logit = math.log(p_yes / (1.0 - p_yes))
    return budget_units, (o - a) + (b * logit if yes else -b * logit)


@dataclass
class Round:
    """One open market on one RP: shares sold, and who holds and paid what (wei)."""

    rp: int
    opened_at: int
    subsidy: int
    #: C(q) in wei times 2^Q (:func:`cost_fx`), kept so that each purchase evaluates the LMSR
    #: once more
    cost_fx: int
    q_yes: int = 0
    q_no: int = 0
    #: price of YES at (q_yes, q_no) (:func:`lmsr_price`), kept as trades move it
    price: float = 0.5
    collected: int = 0
    yes: dict[int, int] = field(default_factory=dict)
    no: dict[int, int] = field(default_factory=dict)
    paid: dict[int, int] = field(default_factory=dict)

    @property
    def cost(self) -> Fraction:
        """C(q) in wei (the exact value of :attr:`cost_fx`)."""
        return Fraction(self.cost_fx, ONE)


@dataclass(frozen=True, slots=True)
class SettledRound:
    """The record of one settled round (for calibration studies and tests). Wei."""

    rp: int
    deal: int
    replicated: bool
    price: float
    q_yes: int
    q_no: int
    collected: int
    paid_out: int


class PredictionMarkets(Mechanism):
    name = "prediction"

    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.prediction.enabled

    @classmethod
    def check_config(cls, cfg) -> None:
        from twin.mechanisms.taxes import TaxesAndJackpot

        p = cfg.prediction
        if p.enabled and p.funded_from == "jackpot" and not TaxesAndJackpot.enabled(cfg):
            raise ValueError(
                "prediction.funded_from = 'jackpot' needs the jackpot, but the taxes mechanism is "
                "off (taxes.rate, taxes.forced_error_rate and taxes.seed_jackpot_tokens are all 0): "
                "add taxes=jackpot, or set prediction.funded_from=owner"
            )

    @classmethod
    def from_config(cls, cfg) -> PredictionMarkets:
        cls.check_config(cfg)
        m = cls(cfg.prediction)
        jackpot = cfg.prediction.funded_from == "jackpot"
        m.accounts = ("market_maker", *(("jackpot",) if jackpot else ()))
        return m

    def attach(self, mk) -> None:
        p = self.params
        self.maker = mk.system["market_maker"]
        if p.funded_from == "jackpot":
            self.funder = mk.system["jackpot"]
        else:
            self.funder = mk.owner
            seed = tokens_to_wei(p.owner_seed_tokens)
            if seed:
                mk.ledger.mint(mk.owner, seed)
        self.b = tokens_to_wei(p.liquidity_tokens)
        self.cost0 = cost_fx(0, 0, self.b)
        self.subsidy = subsidy_wei(self.b)
        self.bet_wei = tokens_to_wei(p.bet_tokens)
        staking = next((m for m in mk.mechanisms if m.name == "staking"), None)
        delegators = staking.delegators if staking is not None else np.zeros(0, np.int64)
        self.bettors = np.concatenate([mk.rp_acct, delegators]).astype(np.int64)
        self._bettors = self.bettors.tolist()  # (each bet picks one: a list gives a Python int)
        self.rounds: dict[int, Round] = {}  # RP account -> its open round
        self._rps = mk.rp_acct.tolist()
        self._row = mk.row
        #: price of YES per RP row (0.5 where no round is open), kept as rounds open, trade, close
        self._prices = np.full(mk.n_rp, 0.5)
        self.pending: dict[int, bool] = {}  # executed, unsettled deal -> its result is wrong
        #: per account: its executed, unsettled results, and how many of them are wrong (lists:
        #: every execution and every deal's end counts one, a numpy scalar update costs more)
        self.n_pending = [0] * mk.n_accounts
        self.n_wrong = [0] * mk.n_accounts
        self.settled = self.voided = self.bets = self.unfunded = 0
        self.volume = self.net_subsidy = self.insider_profit = 0
        self.brier = 0.0
        self.history: list[SettledRound] = []

    # -- rounds -------------------------------------------------------------------------------
    def open_round(self, mk, rp: int) -> Round | None:
        if not mk.transfer(self.funder, self.maker, self.subsidy, TransferReason.MarketSubsidy):
            self.unfunded += 1
            return None
        rnd = self.rounds[rp] = Round(rp, mk.now, self.subsidy, self.cost0)  # price 0.5
        self._prices[self._row[rp]] = rnd.price
        return rnd

    def price(self, rnd: Round) -> float:
        """Price of YES of an open round."""
        return rnd.price

    def buy(self, mk, rnd: Round, bettor: int, yes: bool, budget_wei: int, belief: float) -> int:
        """``bettor`` buys one side for at most ``budget_wei``, never past the price ``belief``;
        returns the units bought. The binding limit is chosen on float estimates, then computed
        exactly; the charge is ``C(q') - C(q)`` rounded up."""
        b, qy, qn, c0 = self.b, rnd.q_yes, rnd.q_no, rnd.cost_fx
        certain = (belief >= 1.0) if yes else (belief <= 0.0)  # most insiders: no price stops them
        if certain:
            by_price = False
        else:
            by_budget, by_belief = _units_estimate(qy, qn, b, c0 / ONE, budget_wei, belief, yes)
            by_price = by_belief < by_budget * (1 - 1e-9)
        if by_price:
            n = shares_to_price(qy, qn, b, belief, yes) or 0
        else:
            n = shares_for_budget(qy, qn, b, budget_wei, yes, c0)
        while n > 0:
            q1 = (qy + n, qn) if yes else (qy, qn + n)
            c1 = cost_fx(*q1, b)
            cost = _ceil(c1 - c0)  # C(q') - C(q), rounded up
            if cost <= budget_wei:
                break
            n -= 1  # guards the last wei: the floored inverse already fits the budget
        if n <= 0 or not mk.transfer(bettor, self.maker, cost, TransferReason.MarketBet):
            return 0
        rnd.q_yes, rnd.q_no = q1
        rnd.cost_fx = c1
        rnd.price = self._prices[self._row[rnd.rp]] = lmsr_price(*q1, b)
        side = rnd.yes if yes else rnd.no
        side[bettor] = side.get(bettor, 0) + n
        rnd.paid[bettor] = rnd.paid.get(bettor, 0) + cost
        rnd.collected += cost
        self.bets += 1
        self.volume += cost
        return n

    def settle(self, mk, rnd: Round, replicated: bool, deal: int = -1) -> None:
        """Pay the winning units 1 wei each, return the rest to the funder, close the round."""
        p = self.price(rnd)
        winners = rnd.yes if replicated else rnd.no
        paid_out = 0
        for bettor, units in winners.items():
            if not mk.transfer(self.maker, bettor, units, TransferReason.MarketPayout, deal):
                raise RuntimeError(f"market maker cannot pay {units} wei: LMSR bound violated")
            paid_out += units
        rest = rnd.subsidy + rnd.collected - paid_out
        if not mk.transfer(self.maker, self.funder, rest, TransferReason.MarketSubsidy, deal):
            raise RuntimeError(f"market maker cannot return {rest} wei to the funder")
        self.net_subsidy += rnd.subsidy - rest
        self.insider_profit += winners.get(rnd.rp, 0) - rnd.paid.get(rnd.rp, 0)
        self.brier += (p - float(replicated)) ** 2
        self.history.append(
            SettledRound(rnd.rp, deal, replicated, p, rnd.q_yes, rnd.q_no, rnd.collected, paid_out)
        )
        self.settled += 1
        del self.rounds[rnd.rp]
        self._prices[self._row[rnd.rp]] = 0.5

    def void(self, mk, rnd: Round) -> None:
        """Cancel a round that can no longer resolve: refund every payment and the subsidy."""
        for bettor, cost in rnd.paid.items():
            mk.transfer(self.maker, bettor, cost, TransferReason.MarketRefund)
        mk.transfer(self.maker, self.funder, rnd.subsidy, TransferReason.MarketSubsidy)
        self.voided += 1
        del self.rounds[rnd.rp]
        self._prices[self._row[rnd.rp]] = 0.5

    # -- hooks --------------------------------------------------------------------------------
    def on_executed(self, mk, d) -> None:
        if d.mode != ExecMode.Skip and not d.failed:
            wrong = not d.correct
            self.pending[d.index] = wrong
            self.n_pending[d.rp] += 1
            self.n_wrong[d.rp] += wrong

    def on_deal_end(self, mk, d) -> None:
        wrong = self.pending.pop(d.index, None)
        if wrong is not None:
            self.n_pending[d.rp] -= 1
            self.n_wrong[d.rp] -= wrong
        rnd = self.rounds.get(d.rp)
        if rnd is None or not d.checked:
            return
        if d.state == DealState.MediationAccepted:
            self.settle(mk, rnd, True, d.index)
        elif d.state == DealState.MediationRejected:
            self.settle(mk, rnd, False, d.index)

    def on_tick_end(self, mk) -> None:
        if mk.tick >= mk.cfg.market.episode_ticks:  # closed: no new rounds or bets
            for rp in [rp for rp in self.rounds if mk.open_deals[rp] == 0]:
                self.void(mk, self.rounds[rp])
            return
        if len(self.rounds) < len(self._rps):
            wallet, rounds = mk.ledger.wallet, self.rounds
            for rp in self._rps:
                if rp in rounds:
                    continue
                if wallet[self.funder] < self.subsidy:  # (as open_round would find, one by one)
                    # every RP before this one has its round now: the rest of those without one
                    # are all that is left unfunded
                    self.unfunded += len(self._rps) - len(rounds)
                    break
                self.open_round(mk, rp)
        if self.rounds and self.bet_wei:
            self.place_bets(mk)

    def belief(self, mk, bettor: int, rp: int, scores: np.ndarray) -> float:
        """P(the RP's next checked result replicates) as ``bettor`` sees it."""
        if bettor == rp:
            pending = self.n_pending[rp]
            if pending:
                return 1.0 - self.n_wrong[rp] / pending
        return float(scores[mk.row[rp]])

    def place_bets(self, mk) -> None:
        """Insiders first (each RP with results in flight, on its own market), then
        ``bets_per_tick`` bets by random bettors on random markets."""
        rng, p = mk.rng, self.params
        scores = public_scores(mk, mk.rp_acct)
        markets = sorted(self.rounds)
        if p.insider_bets:
            pending = self.n_pending
            for rp in markets:
                if pending[rp]:
                    self.bet(mk, rp, rp, scores)
        for _ in range(p.bets_per_tick):
            bettor = self._bettors[rng.integers(len(self._bettors))]
            rp = markets[int(rng.integers(len(markets)))]
            if bettor != rp or p.insider_bets:
                self.bet(mk, bettor, rp, scores)

    def bet(self, mk, bettor: int, rp: int, scores: np.ndarray) -> int:
        """``bettor`` buys the side of ``rp``'s market its belief favours over the price, with
        at most ``bet_tokens`` (and its wallet); returns the units bought."""
        rnd = self.rounds[rp]
        belief, price = self.belief(mk, bettor, rp, scores), self.price(rnd)
        if belief == price:
            return 0
        budget = min(self.bet_wei, mk.ledger.wallet[bettor])
        return self.buy(mk, rnd, bettor, belief > price, budget, belief)

    # -- views --------------------------------------------------------------------------------
    def prices(self, mk) -> np.ndarray:
        """Price of YES per RP row (0.5 where no round is open)."""
        return self._prices.copy()

    def feature_names(self, role: str) -> tuple[str, ...]:
        return ("own_market_price",) if role == "rp" else ("focus_rp_market_price",)

    def write_features(self, mk, fb) -> None:
        prices, out = self._prices, fb.out
        if "rp" in out:
            out["rp"][:, 0] = prices
        for role in ("jc", "mediator"):
            col = out.get(role)
            if col is None:
                continue
            col[:] = 0.5  # no focus deal: the price of a market not yet open
            rows = fb.rows(role)
            if len(rows):
                col[rows, 0] = prices[mk.row[fb.rps(role)]]

    def metrics(self, mk) -> dict[str, float]:
        T = WEI_PER_TOKEN
        return {
            "market_rounds_settled": float(self.settled),
            "market_rounds_voided": float(self.voided),
            "market_rounds_unfunded": float(self.unfunded),
            "market_bets": float(self.bets),
            "market_volume_tokens": self.volume / T,
            "market_net_subsidy_tokens": self.net_subsidy / T,
            "market_insider_profit_tokens": self.insider_profit / T,
            "market_brier": self.brier / self.settled if self.settled else float("nan"),
        }
