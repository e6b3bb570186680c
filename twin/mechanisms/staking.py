"""Staking behind nodes: delegated stake that earns a share of a node's fees and is slashed with it.

The whitepaper's mechanism 7 (spec section 1): token holders who do not run nodes back the nodes
they trust with stake; the stake earns a share of the node's income and is lost with the node's
collateral when the node is caught cheating, so delegators have a reason to watch reputations
and nodes a visible bond.

Accounts and genesis
    Delegators are system accounts ``delegator_<i>``, ``i < staking.n_delegators`` (0: one per
    RP). Staked tokens sit in the ``stake_pool`` system account; who owns what is kept as
    *positions* (delegator, RP) in wei, and the pool always holds exactly the sum of the
    positions. At genesis every RP is backed by ``stake_per_node_tokens``, minted straight into
    the pool (a genesis allocation: counted in ``ledger.minted``, no event). RP row ``r`` is
    backed by the delegators ``i`` with ``i mod n_rp == r mod n_delegators``, its stake split
    equally among them (the wei dust to the first): with one delegator per RP, delegator ``r``
    backs RP ``r``; with fewer delegators than RPs, delegator ``i`` backs every RP
    ``r = i (mod n_delegators)`` with the full stake each; with more, delegators
    ``r, r + n_rp, ...`` share RP ``r``'s stake.

Fee share (``fee_share``)
    When a deal is paid (accepted, accepted by mediation, or by the judge timeout) the RP passes
    ``floor(payment * fee_share)`` of its job payment to its delegators, pro rata to their
    positions (each part floored, the dust stays with the RP): one ``Transfer(StakeReward)`` per
    delegator, from the RP's wallet (where the payment just arrived). A wallet that cannot pay
    a part pays nothing for it (counted as ``stake_rewards_unpaid_tokens``).

Slashing (``slash_fraction``)
    When a check of the RP's result is rejected (``MediationRejected``) every position behind the
    RP loses ``floor(position * slash_fraction)``; the total leaves the pool
    (``Transfer(StakeSlash)``) for where the deal's slashed collateral goes: the deal's own
    destination when another mechanism redirected it; with the slashing mechanism on
    (``slashing=...``) split by the same shares as collateral (client = the deal's JC, the
    mediators, burn, jackpot, the other nodes, the owner with the dust); otherwise the protocol's
    slash destination (v1: the owner). A forced error (``taxes.forced_error_rate``) is not the
    node's fault: its collateral is refunded and its delegators are not slashed.

Re-delegation (``exit_score``, ``review_interval_s``)
    Every ``review_interval_s`` simulated seconds the delegators review their positions with the
    score any participant sees (:func:`twin.mechanisms.reputation.public_scores`: the reputation
    mechanism's score when it is on, else the public pass rate with a uniform prior). Every
    position behind an RP scored below ``exit_score`` moves to the best-scored RP at or above it
    (ties: the one with the least stake, then the lowest row) -- an accounting move inside the
    pool, counted in ``stake_redelegations``. If no RP qualifies, the delegator withdraws the
    position to its wallet (``Transfer(StakeWithdraw)``). Withdrawn stake and rewards are not
    staked again; ``exit_score = 0`` keeps every position where it is.

Stake buys no priority in matching: it is what slashing takes and a public signal. Seats observe
it (symlog tokens): an RP the stake behind itself (``own_stake``), a JC or mediator the stake
behind the RP of the deal it decides on (``focus_rp_stake``). Metrics: stake in the pool,
slashed, paid as rewards, withdrawn, re-delegations, and the delegators' return
``(rewards - slashed) / genesis stake``.
"""

from __future__ import annotations

import numpy as np

from twin.deals import DealState
from twin.events import TransferReason
from twin.ledger import WEI_PER_TOKEN, tokens_to_wei
from twin.mechanisms.base import Mechanism
from twin.mechanisms.fees import PAID_STATES
from twin.mechanisms.reputation import public_scores
from twin.mechanisms.taxes import exact_share


def delegator_names(n: int) -> tuple[str, ...]:
    """System-account names of ``n`` delegators (zero-padded: they sort in index order)."""
    width = len(str(max(0, n - 1)))
    return tuple(f"delegator_{i:0{width}d}" for i in range(n))


def genesis_backers(r: int, n_rp: int, n_delegators: int) -> list[int]:
    """Delegators backing RP row ``r`` at genesis: ``{i : i mod n_rp == r mod n_delegators}``."""
    if n_delegators <= n_rp:
        return [r % n_delegators]
    return list(range(r, n_delegators, n_rp))


class Staking(Mechanism):
    name = "staking"

    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.staking.enabled

    @classmethod
    def from_config(cls, cfg) -> Staking:
        m = cls(cfg.staking)
        m.n_delegators = cfg.staking.n_delegators or cfg.market.n_resource_providers
        m.accounts = ("stake_pool", *delegator_names(m.n_delegators))
        return m

    def attach(self, mk) -> None:
        p = self.params
        self.pool = mk.system["stake_pool"]
        self.delegators = np.array([mk.system[n] for n in delegator_names(self.n_delegators)])
        stake = tokens_to_wei(p.stake_per_node_tokens)
        #: per RP row: {delegator index: wei}; the pool holds exactly the sum of every position
        self.pos: list[dict[int, int]] = []
        for r in range(mk.n_rp):
            backers = genesis_backers(r, mk.n_rp, self.n_delegators)
            each, dust = divmod(stake, len(backers))
            parts = {i: each + (dust if k == 0 else 0) for k, i in enumerate(backers)}
            self.pos.append({i: w for i, w in parts.items() if w})
        self.stake = [stake] * mk.n_rp  # wei behind each RP row
        self.stake_tokens = np.full(mk.n_rp, stake / WEI_PER_TOKEN)  # float mirror (features)
        self._stake_feature: np.ndarray | None = None  # symlog of stake_tokens, when current
        self.genesis_stake = stake * mk.n_rp
        if self.genesis_stake:
            mk.ledger.mint(self.pool, self.genesis_stake)
        self.rewards = self.unpaid = self.slashed = self.withdrawn = 0
        self.redelegations = 0
        self.next_review = mk.now + p.review_interval_s
        self.slashing = next((m for m in mk.mechanisms if m.name == "slashing"), None)

    # -- money --------------------------------------------------------------------------------
    def on_deal_end(self, mk, d) -> None:
        if d.state in PAID_STATES:
            self.share_fees(mk, d)
        elif d.state == DealState.MediationRejected and not d.forced_error:
            self.slash(mk, d)

    def share_fees(self, mk, d) -> int:
        """Pay ``floor(payment * fee_share)`` from the RP to its delegators, pro rata (floored);
        returns the wei paid."""
        r = int(mk.row[d.rp])
        total = self.stake[r]
        cut = exact_share(d.payment, self.params.fee_share)
        if not cut or not total:
            return 0
        paid = 0
        for i, w in self.pos[r].items():
            part = cut * w // total
            if mk.transfer(
                d.rp, int(self.delegators[i]), part, TransferReason.StakeReward, d.index
            ):
                paid += part
            else:
                self.unpaid += part
        self.rewards += paid
        return paid

    def slash(self, mk, d) -> int:
        """Slash ``floor(position * slash_fraction)`` of every position behind the deal's RP and
        send the total where the deal's slashed collateral goes; returns the wei slashed."""
        r = int(mk.row[d.rp])
        pos = self.pos[r]
        lost = {i: exact_share(w, self.params.slash_fraction) for i, w in pos.items()}
        amount = sum(lost.values())
        if not amount:
            return 0
        for i, x in lost.items():
            pos[i] -= x
            if not pos[i]:
                del pos[i]
        self._set_stake(r, self.stake[r] - amount)
        for acct, wei in self.destinations(mk, d, amount):
            if not mk.transfer(self.pool, acct, wei, TransferReason.StakeSlash, d.index):
                raise RuntimeError(f"stake pool cannot pay {wei} wei: positions out of sync")
        self.slashed += amount
        return amount

    def destinations(self, mk, d, amount: int) -> list[tuple[int, int]]:
        """(account, wei) parts of ``amount`` slashed stake: where the deal's collateral goes."""
        dst = d.slash_to if d.slash_to >= 0 else mk.flows.slash_to
        s = self.slashing
        if s is not None and dst == s.pool:
            return s.split(mk, d, amount, d.rp)
        return [(dst, amount)]

    def _set_stake(self, r: int, wei: int) -> None:
        self.stake[r] = wei
        self.stake_tokens[r] = wei / WEI_PER_TOKEN
        self._stake_feature = None

    # -- delegators' rule ---------------------------------------------------------------------
    def on_tick_end(self, mk) -> None:
        p = self.params
        if mk.now < self.next_review or p.exit_score <= 0:
            return
        self.next_review = mk.now + p.review_interval_s
        self.review(mk, public_scores(mk, mk.rp_acct))

    def review(self, mk, scores: np.ndarray) -> None:
        """Move every position behind an RP scored below ``exit_score`` to the best RP at or
        above it (ties: least stake, then lowest row), or withdraw it if there is none."""
        bar = self.params.exit_score
        good = np.flatnonzero(scores >= bar)
        for r in np.flatnonzero(scores < bar):
            r = int(r)
            for i, w in list(self.pos[r].items()):
                del self.pos[r][i]
                self._set_stake(r, self.stake[r] - w)
                if len(good):
                    t = int(min(good, key=lambda g: (-scores[g], self.stake[g], g)))
                    self.pos[t][i] = self.pos[t].get(i, 0) + w
                    self._set_stake(t, self.stake[t] + w)
                    self.redelegations += 1
                else:
                    a = int(self.delegators[i])
                    if not mk.transfer(self.pool, a, w, TransferReason.StakeWithdraw):
                        raise RuntimeError(f"stake pool cannot pay {w} wei: positions out of sync")
                    self.withdrawn += w

    # -- views --------------------------------------------------------------------------------
    def feature_names(self, role: str) -> tuple[str, ...]:
        return ("own_stake",) if role == "rp" else ("focus_rp_stake",)

    def write_features(self, mk, fb) -> None:
        from twin.observe import symlog

        st = self._stake_feature  # kept until a stake changes (_set_stake)
        if st is None:
            st = self._stake_feature = symlog(self.stake_tokens)
        out = fb.out
        if "rp" in out:
            out["rp"][:, 0] = st
        for role in ("jc", "mediator"):
            rows = fb.rows(role)
            if len(rows) and role in out:
                out[role][rows, 0] = st[mk.row[fb.rps(role)]]

    def metrics(self, mk) -> dict[str, float]:
        T = WEI_PER_TOKEN
        return {
            "stake_tokens": sum(self.stake) / T,
            "stake_slashed_tokens": self.slashed / T,
            "stake_rewards_tokens": self.rewards / T,
            "stake_rewards_unpaid_tokens": self.unpaid / T,
            "stake_withdrawn_tokens": self.withdrawn / T,
            "stake_redelegations": float(self.redelegations),
            "delegator_return": (self.rewards - self.slashed) / self.genesis_stake
            if self.genesis_stake
            else 0.0,
        }
