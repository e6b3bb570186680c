"""The market: every actor's state and the one tick schedule that advances it.

Accounts are laid out as ``[owner, solvers..., job creators..., resource providers...,
mediators...]``; ``jc_acct``, ``rp_acct`` and ``med_acct`` map a seat's row within its group to
its account. Hot per-account state lives in numpy arrays (struct of arrays); deals are
:class:`~twin.deals.Deal` records; money is in the :class:`~twin.ledger.Ledger`; every change is
an event in the :class:`~twin.events.EventLog`.

One tick (``tick_s`` simulated seconds) runs the phases of :data:`PHASES` in order:

1. ``post_offers``: expire old job offers; RPs re-price their resource offer; JCs post new jobs
   (once the market has closed, they cancel their unmatched ones instead).
2. ``match``: each solver matches the offers that name it (capacity is reserved).
3. ``agree``: both parties of a new match call ``agree`` (as the shipped agents do) if they can
   fund their deposits; a lone agreement is settled later by ``timeoutAgree``. A mechanism may
   take a match over instead (hook ``takes_over``: e.g. a dual deal of two nodes).
4. ``execute``: RPs decide how to produce the results of deals agreed before this tick.
5. ``submit``: results that are ready are submitted (``addResult``); capacity is freed.
6. ``judge``: JCs accept, check or wait on results submitted before this tick.
7. ``mediate``: votes that are due are cast and may decide their deals (or open a new round of
   a consortium); requested mediators decide (re-execute honestly, or collude).
8. ``timeouts``: the party entitled to a timeout calls it as soon as it is callable.
9. ``settle``: terminal deals leave the active set, capacity is released, counters updated.

Decisions are taken on what the previous observation showed: a deal that needs a party's
decision in tick ``k`` (agreed, submitted, checked) is decided at tick ``k + 1`` or later.
After ``episode_ticks`` the market closes: no new offers, the schedule keeps running until every
deal is terminal (bounded by the sum of the timeouts), so that each episode settles its money.
"""

from __future__ import annotations

import heapq
import json
import math
from dataclasses import dataclass

import numpy as np

from twin.collusion import CollusionRings
from twin.config import TwinConfig
from twin.deals import CallRejected, Deal, DealFlows, DealState, ExecMode
from twin.events import EventLog, TransferReason
from twin.execution import plan
from twin.hardware import CATALOGUE, draw_fleet
from twin.ids import account_address, content_id, content_id_of_json
from twin.ledger import WEI_PER_TOKEN, Ledger, tokens_to_wei
from twin.mechanisms import HOOKS, build_mechanisms
from twin.mediation import PROTOCOLS
from twin.mediation.base import Vote
from twin.modules import MODULES, JobClass
from twin.orderbook import FIXED, MARKET, JobOffers, ResourceOffers, Trust
from twin.protocol import preset
from twin.queues import SeatQueues
from twin.solvers import SOLVERS

PHASES: tuple[str, ...] = (
    "post_offers",
    "match",
    "agree",
    "execute",
    "submit",
    "judge",
    "mediate",
    "timeouts",
    "settle",
)

ROLE_OWNER, ROLE_SOLVER, ROLE_JC, ROLE_RP, ROLE_MEDIATOR = 0, 1, 2, 3, 4
ROLE_NAMES = ("owner", "solver", "jc", "rp", "mediator")
GENESIS_TIME_S = 1_700_000_000  # unix seconds of tick 0
_EXEC_MODES = {int(m): m for m in ExecMode}  # action value -> mode, without an enum lookup
#: open result kind (0 honest, 1 fake, 2 skipped) -> its row of Market.open_results_tokens
_OPEN_ROW = (1, 0, 2)
MEDIATOR_HARDWARE = "datacenter_gpu"  # mediators re-run any job class on an A100 server
# the first job-offer columns, in the order _deal_json unpacks a row
_OFFER_HEAD = ("jc", "module", "units", "cpu", "gpu", "vram", "ram", "disk", "mode", "price", "solver",
               "posted_at")  # fmt: skip
assert tuple(name for name, _ in JobOffers.FIELDS[: len(_OFFER_HEAD)]) == _OFFER_HEAD


@dataclass
class Actions:
    """One tick's decisions of every seat, by group row.

    ``rp_mode``: :class:`~twin.deals.ExecMode` value for the RP's pending deals;
    ``rp_price_level``: index into ``pricing.price_levels``; ``jc_check_prob``: probability of
    checking each pending result now (NaN: wait; 0: accept); ``med_collude``: honour collusion
    agreements on pending checks.
    """

    rp_mode: np.ndarray
    rp_price_level: np.ndarray
    jc_check_prob: np.ndarray
    med_collude: np.ndarray

    @classmethod
    def default(cls, market: Market) -> Actions:
        return cls(
            np.zeros(market.n_rp, np.int64),
            np.full(market.n_rp, market.cfg.pricing.default_price_level, np.int64),
            np.zeros(market.n_jc),
            np.zeros(market.n_med, bool),
        )


class Market:
    """The whole simulated market. Build with a validated :class:`TwinConfig` and a seed."""

    def __init__(self, cfg: TwinConfig, seed: int | None = None) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed if seed is None else seed)
        m, pr, to = cfg.market, cfg.pricing, cfg.timeouts
        self.rules = preset(cfg.protocol.preset)
        self.n_solver, self.n_jc, self.n_rp, self.n_med = (
            len(m.solvers),
            m.n_job_creators,
            m.n_resource_providers,
            m.n_mediators,
        )
        self.mechanisms = build_mechanisms(cfg)
        system = sorted({a for mech in self.mechanisms for a in mech.accounts})
        n_agents = 1 + self.n_solver + self.n_jc + self.n_rp + self.n_med
        n = n_agents + len(system)
        self.n_accounts = n
        #: system accounts of the mechanisms (burn, jackpot, treasury, ...), after the agents
        self.system: dict[str, int] = {name: n_agents + i for i, name in enumerate(system)}
        self.owner = 0
        self.solver_acct = np.arange(1, 1 + self.n_solver)
        self.jc_acct = np.arange(self.solver_acct[-1] + 1, self.solver_acct[-1] + 1 + self.n_jc)
        self.rp_acct = np.arange(self.jc_acct[-1] + 1, self.jc_acct[-1] + 1 + self.n_rp)
        self.med_acct = np.arange(self.rp_acct[-1] + 1, n_agents)
        self.role = np.zeros(n, np.int8)
        self.role[self.solver_acct], self.role[self.jc_acct] = ROLE_SOLVER, ROLE_JC
        self.role[self.rp_acct], self.role[self.med_acct] = ROLE_RP, ROLE_MEDIATOR
        # each group's accounts are contiguous: slices index them without copying
        self._jc_slice = slice(int(self.jc_acct[0]), int(self.jc_acct[-1]) + 1)
        self._rp_slice = slice(int(self.rp_acct[0]), int(self.rp_acct[-1]) + 1)
        self.row = np.zeros(n, np.int64)  # row of an account within its group
        for g in (self.solver_acct, self.jc_acct, self.rp_acct, self.med_acct):
            self.row[g] = np.arange(len(g))
        self.salt = f"twin-{cfg.seed if seed is None else seed}"
        self.addresses = [account_address(a, self.salt) for a in range(n)]

        # job classes and machines
        self.module_names = tuple(MODULES)
        self.job_classes: tuple[JobClass, ...] = tuple(MODULES.values())
        shares = np.array([m.module_shares.get(k, 0.0) for k in self.module_names])
        if m.modules:  # restrict demand to the listed classes (equal shares where none is given)
            listed = np.array([k in m.modules for k in self.module_names])
            shares = np.where(listed, np.where(shares > 0, shares, 1.0), 0.0)
        self.module_p = shares / shares.sum()
        self._module_cdf = np.cumsum(self.module_p)
        self._module_cdf[-1] = 1.0
        jcs_ = self.job_classes
        self._mod_attr = {
            f: np.array([getattr(j, f) for j in jcs_], np.int64)
            for f in ("cpu_milli", "gpu_count", "vram_mb", "ram_mb", "disk_mb")
        }
        self._mod_log_median = np.log([j.work_median_units for j in jcs_])
        self._mod_sigma = np.array([j.work_sigma for j in jcs_])
        self._mod_log_median_list = self._mod_log_median.tolist()
        self._mod_sigma_list = self._mod_sigma.tolist()
        # (milli-CPU, GPUs, VRAM MB, RAM MB, disk MB) of each job class, in job-offer field order
        self._mod_spec_list = [
            tuple(int(self._mod_attr[f][i]) for f in ("cpu_milli", "gpu_count", "vram_mb", "ram_mb", "disk_mb"))
            for i in range(len(jcs_))
        ]  # fmt: skip
        self.fleet = draw_fleet(self.n_rp, cfg.hardware.shares, self.rng, m.token_usd)
        self._cpu_speed, self._gpu_speed = (
            self.fleet.cpu_speed.tolist(),
            self.fleet.gpu_speed.tolist(),
        )
        self._cost_wei_per_s = self.fleet.cost_wei_per_s.tolist()
        self._med_class = CATALOGUE[MEDIATOR_HARDWARE]
        self._med_cost = self._med_class.cost_wei_per_s(m.token_usd)

        # money
        self.ledger = Ledger(n)
        self.log = EventLog()
        self.flows = DealFlows(self.ledger, self.log, self.rules, self.owner)
        for accts, tokens in (
            (self.jc_acct, m.jc_wallet_tokens),
            (self.rp_acct, m.rp_wallet_tokens),
            (self.med_acct, m.mediator_wallet_tokens),
        ):
            wei = tokens_to_wei(tokens)
            for a in accts:
                self.ledger.mint(int(a), wei)

        # orderbook, solvers, trust, mediation, collusion
        self.base_price = pr.instruction_price_wei
        self.price_levels = np.array(pr.price_levels)
        self._level_prices = np.rint(self.base_price * self.price_levels).astype(np.int64)
        solver_of_rp = np.arange(self.n_rp) % self.n_solver
        self.solver_of_jc = np.arange(self.n_jc) % self.n_solver
        self._solver_of_jc_list = self.solver_of_jc.tolist()
        self.res = ResourceOffers(
            self.fleet.cpu_milli,
            self.fleet.gpu_count,
            self.fleet.vram_mb,
            self.fleet.ram_mb,
            self.fleet.disk_mb,
            solver_of_rp,
            np.full(self.n_rp, self._level_price(pr.default_price_level)),
        )
        self.jobs = JobOffers()
        self.solvers = [SOLVERS[name]() for name in m.solvers]
        self.trust = Trust(
            n,
            self.med_acct,
            m.trusted_mediators_per_party,
            np.concatenate([self.jc_acct, self.rp_acct]),
            self.rng,
        )
        # the mediation protocol; one that is also a mechanism (hooks, features) is built with them
        proto = PROTOCOLS[cfg.mediation.protocol]
        self.mediation = next((x for x in self.mechanisms if isinstance(x, proto)), None) or proto()
        c = cfg.collusion
        self.collusion = CollusionRings(n, c.n_rings, self.med_acct, c.mediators_per_ring, self.rp_acct, c.rps_per_ring,
                                        self.jc_acct, c.jcs_per_ring, c.bribe_wei, self.rng)  # fmt: skip
        self.mediator_reexecutes = cfg.execution.mediator_reexecutes
        self.cheap_latency_s = 1

        # deals and schedules
        self.deals: list[Deal] = []
        self.active: dict[int, None] = {}  # non-terminal deals on chain (insertion-ordered)
        self._holds: dict[
            int, tuple[int, int, int, int, int]
        ] = {}  # deal -> (rp row, cpu, gpu, ram, disk)
        self.exec_q = SeatQueues(n)  # RP account -> agreed deals awaiting its execution decision
        self.judge_q = SeatQueues(n)  # JC account -> submitted results awaiting its judgement
        self.med_q = SeatQueues(n)  # mediator account -> checks awaiting its vote
        self._requested: dict[int, tuple[int, ...]] = {}  # deal -> mediators asked
        self._votes: dict[int, list[Vote]] = {}  # deal -> votes taken, not yet cast
        self._cast_votes: dict[int, list[Vote]] = {}  # deal -> votes cast, in cast order
        self._ready: list[tuple[int, int, int]] = []  # heap (time, seq, deal): results ready
        self._due_votes: list[tuple[int, int, int, int]] = []  # heap (time, seq, deal, mediator)
        self._timeouts: list[
            tuple[int, int, int, int]
        ] = []  # heap (first callable time, seq, deal, state)
        self._seq = 0
        self._deal_ids: dict[int, str] = {}
        self._job_cids: dict[int, str] = {}
        # canonical JSON of the strings in deal records (see _deal_json)
        self._address_json = [json.dumps(a, ensure_ascii=False) for a in self.addresses]
        self._module_json = [json.dumps(k, ensure_ascii=False) for k in self.module_names]
        self._salt_json = json.dumps(self.salt, ensure_ascii=False)
        self._mediators_json: dict[tuple[int, ...], str] = {}  # mediator list -> its JSON

        # per-account counters (struct of arrays)
        self.cost_wei = [0] * n
        self.cost_tokens = np.zeros(n)
        self.open_deals = np.zeros(n, np.int64)
        self.open_jobs = np.zeros(n, np.int64)
        self.n_deals = np.zeros(n, np.int64)
        self.n_cheats = np.zeros(n, np.int64)
        self.n_caught = np.zeros(n, np.int64)
        self.n_checks = np.zeros(n, np.int64)  # JC: checks requested
        self.n_mediations = np.zeros(n, np.int64)  # mediator: votes cast
        self.n_collusive = np.zeros(n, np.int64)  # mediator: collusive votes
        # RP: job cost (wei) of its own results on their way (executed, deal not yet ended),
        # faked or inflated / honest, and the submit collateral of its deals it chose never to
        # submit (skipped: slashed at the submit timeout): what a node knows it has at stake;
        # deal -> (rp, kind 0 honest / 1 fake / 2 skipped, wei)
        self.open_fake_wei = [0] * n
        self.open_honest_wei = [0] * n
        self.open_skipped_wei = [0] * n
        self._open_results: dict[int, tuple[int, int, int]] = {}
        # the three lists by open result kind (0 honest, 1 fake, 2 skipped)
        self._open_wei = (self.open_honest_wei, self.open_fake_wei, self.open_skipped_wei)
        #: the three, in tokens (float64; rows: fake, honest, skipped; columns: accounts), kept
        #: up to date for the observations (converting the lists every step cost more)
        self.open_results_tokens = np.zeros((3, n))
        # public reputation ledger per node (kept from the chain's outcomes)
        self.rep_completed = np.zeros(n, np.int64)
        self.rep_checked = np.zeros(n, np.int64)
        self.rep_failed = np.zeros(n, np.int64)
        # recent public aggregates: ring buffer of per-tick counts (submitted, checked, rejected,
        # accepted-by-mediator), and their sums over the window
        w = cfg.env.recent_window_ticks
        self.recent = [[0, 0, 0, 0] for _ in range(w)]
        self.recent_totals = [0, 0, 0, 0]
        self._recent_row = self.recent[0]

        self.tick = 0
        self.now = GENESIS_TIME_S
        self.closing = False
        self.close_cap_ticks = (
            -(
                -(to.agree_s + to.submit_results_s + to.judge_results_s + to.mediate_results_s)
                // m.tick_s
            )
            + 3
        )
        self._acts: Actions | None = None

        # hook dispatch: each hook calls only the mechanisms that implement it
        self._hooks = {h: [m for m in self.mechanisms if type(m).implements(h)] for h in HOOKS}
        #: mechanisms holding parties' deposits in contracts of their own (see ``held_wei``)
        self._holders = [m for m in self.mechanisms if type(m).implements("held_wei")]
        for mech in self.mechanisms:
            mech.attach(self)
        self.genesis_wealth = self.ledger.wealth_tokens().copy()
        self.genesis_wallets = list(self.ledger.wallet)

    # -- helpers ------------------------------------------------------------------------------
    def _level_price(self, level: int) -> int:
        return int(round(self.base_price * float(self.price_levels[level])))

    def _arm_timeout(self, d: Deal) -> None:
        if not self.cfg.timeouts.enabled:
            return
        deadline = self.flows.timeout_deadline(d)
        if deadline is not None:
            self._seq += 1
            heapq.heappush(self._timeouts, (deadline + 1, self._seq, d.index, int(d.state)))

    def _add_cost(self, account: int, wei: int) -> None:
        if wei:
            self.cost_wei[account] += wei
            self.cost_tokens[account] += wei / WEI_PER_TOKEN

    def _release(self, deal: int) -> None:
        h = self._holds.pop(deal, None)
        if h is not None:
            self.res.release(h[0], h[1], self.now)

    def transfer(self, src: int, dst: int, amount: int, reason: int, deal: int = -1) -> bool:
        """Move ``amount`` wei wallet to wallet (mechanism money: taxes, fees, payouts, shares),
        with a ``Transfer`` event. Returns False, moving nothing, when ``src`` cannot pay."""
        if amount <= 0:
            return amount == 0
        if self.ledger.wallet[src] < amount:
            return False
        self.ledger.transfer(src, dst, amount)
        self.log.transfer(self.now, deal, src, dst, amount, reason)
        return True

    def mediator_machine(self, mediator: int, job: JobClass) -> tuple[float, int]:
        hw = self._med_class
        return (hw.gpu_speed if job.kind == "gpu" else hw.cpu_speed), self._med_cost

    def deal_record(self, index: int) -> dict:
        """The canonical record of deal ``index`` (its CID is the v1 deal id)."""
        d = self.deals[index]
        addr = self.addresses.__getitem__
        return {
            "jobOffer": self.job_offer_record(d.job_offer),
            "resourceOffer": int(d.resource_offer),
            "members": {"solver": addr(d.solver), "jobCreator": addr(d.jc), "resourceProvider": addr(d.rp),
                        "mediators": [addr(x) for x in d.mediators]},
            "timeouts": [d.agree_timeout, d.submit_timeout, d.judge_timeout, d.mediate_timeout,
                         d.submit_collateral, d.judge_collateral],
            "pricing": [d.instruction_price, d.payment_collateral, d.results_multiple, d.mediation_fee],
            "salt": self.salt,
        }  # fmt: skip

    def deal_id(self, index: int) -> str:
        """The deal's v1 id: CID of its canonical record (cached)."""
        did = self._deal_ids.get(index)
        if did is None:
            did = self._deal_ids[index] = content_id_of_json(self._deal_json(self.deals[index]))
        return did

    def _deal_json(self, d: Deal) -> bytes:
        """``canonical_json(self.deal_record(d.index))``, assembled from strings encoded once
        (addresses, salt, module names, each mediator list) in the canonical key order: 10x
        cheaper than encoding the record, and the v1 mediator choice hashes the id of every
        checked deal."""
        aj, jo, j = self._address_json, self.jobs, d.job_offer
        meds = self._mediators_json.get(d.mediators)
        if meds is None:  # one encoding per mediator list (every deal shares it without trust)
            meds = self._mediators_json[d.mediators] = (
                "[" + ",".join([aj[x] for x in d.mediators]) + "]"
            )
        row = jo.table[j].tolist()
        jc, module, _, cpu, gpu, vram, ram, disk, mode, price, _, posted_at = row[:12]
        mode = "FixedPrice" if mode == FIXED else "MarketPrice"
        job_offer = (
            f'{{"createdAt":{posted_at},"instructionPrice":{price},'
            f'"jobCreator":{aj[jc]},"mode":"{mode}","module":{self._module_json[module]},'
            f'"nonce":{int(j)},"salt":{self._salt_json},"spec":{{"cpu":{cpu},'
            f'"disk":{disk},"gpu":{gpu},"ram":{ram},"vram":{vram}}}}}'
        )  # fmt: skip
        return (
            f'{{"jobOffer":{job_offer},"members":{{"jobCreator":{aj[d.jc]},"mediators":{meds},'
            f'"resourceProvider":{aj[d.rp]},"solver":{aj[d.solver]}}},'
            f'"pricing":[{d.instruction_price},{d.payment_collateral},{d.results_multiple},{d.mediation_fee}],'
            f'"resourceOffer":{int(d.resource_offer)},"salt":{self._salt_json},'
            f'"timeouts":[{d.agree_timeout},{d.submit_timeout},{d.judge_timeout},{d.mediate_timeout},'
            f'{d.submit_collateral},{d.judge_collateral}]}}'
        ).encode()  # fmt: skip

    def job_offer_record(self, j: int) -> dict:
        """The canonical record of job offer ``j`` (its CID is the v1 offer id)."""
        jo = self.jobs
        return {
            "jobCreator": self.addresses[int(jo.jc[j])], "module": self.module_names[int(jo.module[j])],
            "spec": {"cpu": int(jo.cpu[j]), "gpu": int(jo.gpu[j]), "vram": int(jo.vram[j]), "ram": int(jo.ram[j]), "disk": int(jo.disk[j])},
            "mode": "FixedPrice" if jo.mode[j] == FIXED else "MarketPrice", "instructionPrice": int(jo.price[j]),
            "createdAt": int(jo.posted_at[j]), "nonce": int(j), "salt": self.salt,
        }  # fmt: skip

    def job_offer_id(self, j: int) -> str:
        cid = self._job_cids.get(j)
        if cid is None:
            cid = self._job_cids[j] = content_id(self.job_offer_record(j))
        return cid

    @property
    def actions(self) -> Actions | None:
        """This tick's decisions of every seat (mechanisms that ask seats for decisions read them)."""
        return self._acts

    def address(self, account: int) -> str:
        return self.addresses[account]

    @property
    def done(self) -> bool:
        """The episode is over: the market has closed and every deal has settled (or the cap hit)."""
        if self.tick < self.cfg.market.episode_ticks:
            return False
        if not self.cfg.market.settle_at_end:
            return True
        return not self.active or self.tick >= self.cfg.market.episode_ticks + self.close_cap_ticks

    # -- the tick -----------------------------------------------------------------------------
    def step(self, actions: Actions) -> None:
        """Advance one tick: run every phase of :data:`PHASES` in order with ``actions``."""
        self.tick += 1
        self.now += self.cfg.market.tick_s
        self.closing = self.tick > self.cfg.market.episode_ticks
        self._acts = actions
        self._slot = self.tick % len(self.recent)
        row, tot = self.recent[self._slot], self.recent_totals
        for k in range(4):
            tot[k] -= row[k]
            row[k] = 0
        self._recent_row = row
        for mech in self._hooks["on_tick_start"]:
            mech.on_tick_start(self)
        self.post_offers()
        new = self.match()
        self.agree(new)
        self.execute()
        self.submit()
        self.judge()
        self.mediate()
        self.timeouts()
        self.settle()

    def post_offers(self) -> None:
        a, m = self._acts, self.cfg.market
        for j in self.jobs.expire(self.now):
            self.open_jobs[int(self.jobs.jc[j])] -= 1
        self.res.set_prices(self._level_prices[a.rp_price_level], self.now)
        ts = self.cfg.timeouts.submit_results_collateral_wei / WEI_PER_TOKEN
        wt = self.ledger.wallet_tokens
        self.res.offering = (wt[self._rp_slice] >= ts) & self.res.eligible
        if self.closing:  # the market has closed: clients withdraw their unmatched job offers
            for j in self.jobs.cancel():
                self.open_jobs[int(self.jobs.jc[j])] -= 1
            return
        rng = self.rng
        need = (
            self.cfg.pricing.payment_collateral_wei + self.cfg.timeouts.judge_results_collateral_wei
        ) / WEI_PER_TOKEN
        want = rng.random(self.n_jc) < m.job_rate_per_tick
        jc = self._jc_slice
        post = np.flatnonzero(
            want & (self.open_jobs[jc] < m.max_open_jobs_per_jc) & (wt[jc] >= need)
        )
        k = len(post)
        if not k:
            return
        mods = np.minimum(
            np.searchsorted(self._module_cdf, rng.random(k), side="right"),
            len(self.job_classes) - 1,
        ).tolist()
        # log-normal work, drawn as rng.lognormal(median, sigma) draws it (exp(mu + sigma * z),
        # same draws, same values) without its slow array-parameter path
        lm, sg = self._mod_log_median_list, self._mod_sigma_list
        units = [max(1, math.ceil(math.exp(lm[i] + sg[i] * z)))
                 for i, z in zip(mods, rng.standard_normal(k).tolist(), strict=True)]  # fmt: skip
        base = self.base_price  # bids: rounded half to even, as np.rint
        # (``rng.uniform(low, high, k)`` draws ``low + (high - low) * random()``: the same values,
        # without its slower parameter handling)
        lo, span = m.bid_multiple_low, m.bid_multiple_high - m.bid_multiple_low
        bids = [round(base * (lo + span * u)) for u in rng.random(k).tolist()]
        share = m.fixed_price_share
        modes = [FIXED if u < share else MARKET for u in rng.random(k).tolist()]
        jc0, spec, solver_of = self._jc_slice.start, self._mod_spec_list, self._solver_of_jc_list
        now, expires, status = self.now, self.now + m.offer_ttl_s, JobOffers.OPEN
        self.jobs.post_rows([(jc0 + p, i, u, *spec[i], mode, bid, solver_of[p], now, expires, status)
                             for p, i, u, mode, bid in zip(post.tolist(), mods, units, modes, bids, strict=True)])  # fmt: skip
        self.open_jobs[post + jc0] += 1

    def match(self) -> list[Deal]:
        if not self.jobs.live or self.closing:  # a closed market makes no new deals
            return []
        new: list[Deal] = []
        pr, to = self.cfg.pricing, self.cfg.timeouts
        timeouts = (to.agree_s, to.submit_results_s, to.judge_results_s, to.mediate_results_s)
        for sid, solver in enumerate(self.solvers):
            for mt in solver.match(self.jobs, self.res, self.trust, self.rp_acct, sid, self.now):
                j, r = mt.job_offer, mt.rp_row
                jc, rp = int(self.jobs.jc[j]), int(self.rp_acct[r])
                mediators = self.trust.common(jc, rp)
                d = Deal(len(self.deals), jc, rp, int(self.solver_acct[sid]), mediators, int(self.jobs.module[j]),
                         int(self.jobs.units[j]), mt.price, pr.payment_collateral_wei, pr.results_collateral_multiple,
                         pr.mediation_fee_wei, timeouts, to.submit_results_collateral_wei,
                         to.judge_results_collateral_wei, j, mt.resource_offer, self.now)  # fmt: skip
                self.deals.append(d)
                self._holds[d.index] = (r, self.jobs.need(j))
                self.open_jobs[jc] -= 1
                new.append(d)
                for mech in self._hooks["on_deal_created"]:
                    mech.on_deal_created(self, d)
        return new

    def agree(self, new: list[Deal]) -> None:
        t = self.now
        taken = self._hooks["takes_over"]
        for d in new:
            if taken and any(mech.takes_over(self, d) for mech in taken):
                continue  # a mechanism runs this match itself (it never reaches the v1 contracts)
            for party in (d.rp, d.jc):  # shipped agents agree to every match they can fund
                try:
                    self.flows.agree(t, d, party)
                except CallRejected:
                    pass
            if d.state == DealState.DealAgreed:
                self.exec_q.push(d.rp, d.index, self.tick)
            elif not (d.rp_agreed_at or d.jc_agreed_at):
                self._release(d.index)  # nobody could agree: the match never reaches the chain
                continue
            self.active[d.index] = None
            self.open_deals[d.jc] += 1
            self.open_deals[d.rp] += 1
            self.n_deals[d.jc] += 1
            self.n_deals[d.rp] += 1
            self._arm_timeout(d)

    def execute(self) -> None:
        if not self.exec_q:
            return
        a, ex, q = self._acts, self.cfg.execution, self.exec_q
        rp0 = self._rp_slice.start
        for rp in q.seats():
            r = rp - rp0
            mode = int(a.rp_mode[r])
            mode = _EXEC_MODES[mode] if mode in _EXEC_MODES else ExecMode(mode)
            speeds = (self._cpu_speed[r], self._gpu_speed[r])
            cost_s = self._cost_wei_per_s[r]
            for di in q.pop_due(rp, self.tick):
                d = self.deals[di]
                if d.state != DealState.DealAgreed:
                    self._release(di)
                    continue
                job = self.job_classes[d.module]
                p = plan(mode, job, d.units, speeds[job.kind == "gpu"], cost_s, ex.cheat_cost_fraction,
                         ex.cheat_runtime_s, ex.inflate_factor, self.rng)  # fmt: skip
                d.mode, d.units_reported, d.correct, d.failed = (
                    mode,
                    p.units_reported,
                    p.correct,
                    p.failed,
                )
                d.exec_cost, d.decided_tick = p.cost_wei, self.tick
                d.ready_at = -1 if p.ready_in_s < 0 else self.now + p.ready_in_s
                d.cheated = mode in (ExecMode.Cheat, ExecMode.Inflate)
                if d.cheated:
                    self.n_cheats[rp] += 1
                self._add_cost(rp, p.cost_wei)
                for mech in self._hooks["on_executed"]:  # may add cost and delay ``d.ready_at``
                    mech.on_executed(self, d)
                if d.ready_at < 0:
                    self._release(di)
                    stake = d.submit_collateral
                    self._open_results[di] = (rp, 2, stake)
                    self._add_open_result(2, rp, stake)
                else:
                    self._seq += 1
                    heapq.heappush(self._ready, (d.ready_at, self._seq, di))
                    cost = d.job_cost
                    self._open_results[di] = (rp, int(d.cheated), cost)
                    self._add_open_result(int(d.cheated), rp, cost)

    def submit(self) -> None:
        q, t = self._ready, self.now
        while q and q[0][0] <= t:
            self._submit_one(heapq.heappop(q)[2])

    def _submit_one(self, di: int) -> None:
        self._release(di)
        d = self.deals[di]
        if d.state != DealState.DealAgreed:
            return
        try:
            self.flows.add_result(self.now, d)
        except CallRejected:
            return  # cannot fund R: the JC will time the deal out
        self._recent_row[0] += 1
        self.recent_totals[0] += 1
        self.judge_q.push(d.jc, di, self.tick)
        self._arm_timeout(d)
        for mech in self._hooks["on_result_submitted"]:
            mech.on_result_submitted(self, d)

    def judge(self) -> None:
        if not self.judge_q:
            return
        a, rng, t, q = self._acts, self.rng, self.now, self.judge_q
        jc0 = self._jc_slice.start
        for jc in q.seats():
            p = float(a.jc_check_prob[jc - jc0])
            if p != p:  # NaN: the JC waits on all its results
                continue
            for di in q.pop_due(jc, self.tick):
                d = self.deals[di]
                if d.state != DealState.ResultsSubmitted:
                    continue
                check = p >= 1.0 or (p > 0.0 and rng.random() < p)
                if check and self._hooks["can_check"]:
                    check = all(mech.can_check(self, d) for mech in self._hooks["can_check"])
                if check and self.ledger.wallet[jc] + d.judge_collateral >= d.mediation_fee:
                    mediators = self.mediation.select(self, d, t)
                    if not self.flows.check_result(t, d, mediators[0]):
                        continue  # reverted (a preset defect drained the JC's escrow): deal stuck
                    self.flows.request_mediators(t, d, mediators[1:])  # consortium: the rest
                    self.n_checks[jc] += 1
                    self._recent_row[1] += 1
                    self.recent_totals[1] += 1
                    self._requested[di] = mediators
                    for med in mediators:
                        self.med_q.push(med, di, self.tick)
                    self._arm_timeout(d)
                    for mech in self._hooks["on_checked"]:
                        mech.on_checked(self, d)
                else:
                    self.flows.accept_result(t, d)

    def mediate(self) -> None:
        q, t = self._due_votes, self.now
        while q and q[0][0] <= t:
            _, _, di, med = heapq.heappop(q)
            self._cast(di, med)
        if not self.med_q:
            return
        a, rng, q = self._acts, self.rng, self.med_q
        med0 = int(self.med_acct[0])
        for med in q.seats():
            collude = bool(a.med_collude[med - med0])
            for di in q.pop_due(med, self.tick):
                d = self.deals[di]
                if d.state != DealState.ResultsChecked:
                    continue
                vote = self.mediation.vote(self, d, med, collude, rng)
                if vote.collusive and vote.bribe_from >= 0:
                    if self.ledger.wallet[vote.bribe_from] >= vote.bribe_wei:
                        if vote.bribe_wei:
                            self.ledger.transfer(vote.bribe_from, med, vote.bribe_wei)
                            self.log.transfer(
                                t, di, vote.bribe_from, med, vote.bribe_wei, TransferReason.Bribe
                            )
                    else:  # the briber cannot pay: the mediator votes on its re-execution
                        vote = self.mediation.vote(self, d, med, False, rng)
                self._add_cost(med, vote.cost_wei)
                self._votes.setdefault(di, []).append(vote)
                self._seq += 1
                heapq.heappush(self._due_votes, (t + max(1, vote.latency_s), self._seq, di, med))

    def _cast(self, di: int, med: int) -> None:
        d = self.deals[di]
        if d.state != DealState.ResultsChecked:
            return
        taken = self._votes.get(di, [])
        k = next((i for i, v in enumerate(taken) if v.mediator == med), -1)
        if k < 0:
            return
        vote = taken.pop(k)
        self.n_mediations[med] += 1
        if vote.collusive:
            self.n_collusive[med] += 1
            d.collusive = True
            d.bribe += vote.bribe_wei
        cast = self._cast_votes.setdefault(di, [])
        cast.append(vote)
        verdict = self.mediation.decide(self, d, cast)
        if verdict is None:
            return
        self._forget(di)
        self.mediation.settle(self, d, verdict, cast)
        k = 3 if verdict else 2
        self._recent_row[k] += 1
        self.recent_totals[k] += 1

    def _forget(self, di: int) -> None:
        self._votes.pop(di, None)
        self._cast_votes.pop(di, None)
        self._requested.pop(di, None)

    def request_mediators(self, d: Deal, mediators: tuple[int, ...]) -> None:
        """Ask more mediators to vote on the checked deal ``d`` now (a new round of a
        consortium): a ``MediationRequested`` event each; they vote from the next tick on."""
        if not mediators:
            return
        self.flows.request_mediators(self.now, d, mediators)
        self._requested[d.index] = self._requested.get(d.index, ()) + tuple(mediators)
        for med in mediators:
            self.med_q.push(med, d.index, self.tick)

    def timeouts(self) -> None:
        q, t = self._timeouts, self.now
        while q and q[0][0] <= t:
            _, _, di, state = heapq.heappop(q)
            d = self.deals[di]
            if d.state != state or d.stuck:
                continue
            if state == DealState.DealNegotiating:
                self.flows.timeout_agree(t, d, d.jc if d.jc_agreed_at else d.rp)
            elif state == DealState.DealAgreed:
                self.flows.timeout_submit(t, d, d.jc)
                self.exec_q.remove(d.rp, di)
            elif state == DealState.ResultsSubmitted:
                self.flows.timeout_judge(t, d, d.rp)
                self.judge_q.remove(d.jc, di)
            elif state == DealState.ResultsChecked:
                self.flows.timeout_mediate(t, d, d.jc)
                for med in self._requested.get(di, ()):
                    self.med_q.remove(med, di)
                self._forget(di)

    def settle(self) -> None:
        ended = self.flows.ended
        if ended:
            for d in ended:
                if self.active.pop(d.index, False) is None:
                    self._on_end(d)
            ended.clear()
        for mech in self._hooks["on_tick_end"]:
            mech.on_tick_end(self)

    def _add_open_result(self, kind: int, rp: int, wei: int) -> None:
        """Add ``wei`` (negative: remove) to node ``rp``'s open results of ``kind`` (0 honest,
        1 faked or inflated, 2 skipped collateral), and update its mirror in tokens (as numpy
        converts the int and divides: bit for bit the value of converting the whole list)."""
        lst = self._open_wei[kind]
        lst[rp] += wei
        self.open_results_tokens[_OPEN_ROW[kind], rp] = float(lst[rp]) / WEI_PER_TOKEN

    def _on_end(self, d: Deal) -> None:
        if d.mode == ExecMode.Pending:
            self._release(d.index)
        self.open_deals[d.jc] -= 1
        self.open_deals[d.rp] -= 1
        res = self._open_results.pop(d.index, None)
        if res is not None:
            self._add_open_result(res[1], res[0], -res[2])
        s = d.state
        if s in (
            DealState.ResultsAccepted,
            DealState.MediationAccepted,
            DealState.TimeoutJudgeResults,
        ):
            self.rep_completed[d.rp] += 1
        if d.checked:
            self.rep_checked[d.rp] += 1
            if s == DealState.MediationRejected:
                self.rep_failed[d.rp] += 1
                if d.cheated:
                    self.n_caught[d.rp] += 1
        for mech in self._hooks["on_deal_end"]:
            mech.on_deal_end(self, d)

    # -- views --------------------------------------------------------------------------------
    def total_tokens(self) -> int:
        return self.ledger.total()

    def wealth_tokens(self) -> np.ndarray:
        """Per account: wallet, escrow it can still reclaim, and its deposits that a mechanism's
        contracts still hold for it (``Mechanism.held_wei``), in tokens (a fresh array)."""
        w = self.ledger.wealth_tokens()
        for mech in self._holders:
            for acct, wei in mech.held_wei(self).items():
                w[acct] += wei / WEI_PER_TOKEN
        return w
