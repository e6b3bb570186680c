"""The episode record: every action and every market event of a run, as typed JSON lines.

:class:`EpisodeRecorder` writes one JSON object per line (schema: ``docs/episode-record.md``):
a ``run`` header, then per episode an ``episode`` record (accounts, addresses, genesis
balances), per tick the ``action`` of every agent and the ``event`` records of
``market.log`` (typed fields, deal ids from ``market.deal_id``, addresses from
``market.addresses``), a ``deal`` record (the deal's terms) just before the first event of
each deal, and an ``episode_end`` record with the final balances. A chain bridge replays the
file deal by deal and compares balances. Token amounts are decimal strings of wei (exact in any
JSON reader); everything else is a JSON number, string, bool or null.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from agents.baselines import JC_ACTIONS, MED_ACTIONS, RP_MODES
from twin.deals import DealState
from twin.events import (
    CallReverted,
    DealStateChange,
    MediationRequested,
    MediationVoted,
    Payment,
    Transfer,
    VoteRevealed,
)
from twin.market import ROLE_NAMES

SCHEMA_VERSION = 1


def decode_action(group: str, action: Any, n_levels: int) -> dict:
    """The named meaning of an env action of ``group`` (see :mod:`twin.env`)."""
    if group == "rp":
        mode, level = divmod(int(action), n_levels)
        return {"mode": RP_MODES[mode], "price_level": level}
    if group == "jc":
        if isinstance(action, int | np.integer):
            return {"choice": JC_ACTIONS[int(action)]}
        p = float(np.asarray(action).reshape(-1)[0])
        return {"check_probability": None if math.isnan(p) else p}  # null: wait
    return {"vote": MED_ACTIONS[int(action)]}


def _action_json(action: Any) -> Any:
    if isinstance(action, int | np.integer):
        return int(action)
    return [None if math.isnan(float(x)) else float(x) for x in np.asarray(action).reshape(-1)]


class EpisodeRecorder:
    """Streams the record to ``path`` (one episode in memory at most: nothing is kept)."""

    def __init__(self, path: Path, header: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self._f: IO[str] = self.path.open("w")
        self.lines = 0
        self._episode = -1
        self._market = None
        self._start = 0
        self._seen: set[int] = set()
        self._write({"type": "run", "schema_version": SCHEMA_VERSION, **header})

    def _write(self, obj: dict) -> None:
        self._f.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.lines += 1

    def start_episode(self, episode: int, seed: int, env) -> None:
        """Call right after ``env.reset(seed=seed)``."""
        mk = env.market
        self._episode, self._market, self._seen = episode, mk, set()
        self._n_levels = env.n_levels
        self._acct = {name: acct for name, _g, acct, _k, _p in env.seat_table()}
        seat_of = {acct: (name, kind, pol) for name, _g, acct, kind, pol in env.seat_table()}
        accounts = []
        for a in range(mk.n_accounts):
            name, kind, pol = seat_of.get(a, (None, None, None))
            accounts.append({
                "account": a, "address": mk.addresses[a], "role": ROLE_NAMES[int(mk.role[a])],
                "agent": name, "seat": kind, "policy": pol,
                "genesis_wallet_wei": str(mk.genesis_wallets[a]),
            })  # fmt: skip
        self._write({
            "type": "episode", "episode": episode, "seed": int(seed), "salt": mk.salt,
            "genesis_time_s": int(mk.now), "tick_s": int(mk.cfg.market.tick_s),
            "owner": mk.addresses[mk.owner], "accounts": accounts,
        })  # fmt: skip
        self._start = 0
        self.events(0)

    def actions(self, tick: int, actions: Mapping[str, Any], policy_of: Mapping[str, str]) -> None:
        """The actions applied in ``tick`` (call after ``env.step``; ``tick`` = market.tick)."""
        mk = self._market
        for agent, act in actions.items():
            group = agent.rsplit("_", 1)[0]
            acct = self._acct[agent]
            self._write({
                "type": "action", "episode": self._episode, "tick": int(tick), "time_s": int(mk.now),
                "agent": agent, "account": int(acct), "address": mk.addresses[acct],
                "policy": policy_of.get(agent, ""), "action": _action_json(act),
                "decoded": decode_action(group, act, self._n_levels),
            })  # fmt: skip

    def events(self, tick: int) -> None:
        """Every event appended to ``market.log`` since the last call, stamped with ``tick``."""
        mk = self._market
        rows = mk.log.rows
        addr = mk.addresses
        for seq, ev in enumerate(mk.log.typed(mk.deal_id, self._start), start=self._start):
            d = rows[seq][2]
            if d >= 0 and d not in self._seen:
                self._seen.add(d)
                self._write(self._deal_record(d))
            rec = {"type": "event", "episode": self._episode, "tick": int(tick), "seq": seq,
                   "event": type(ev).__name__, "time_s": int(ev.time_s), "deal_id": ev.deal_id}  # fmt: skip
            if isinstance(ev, DealStateChange):
                rec.update(state=int(ev.state), state_name=DealState(ev.state).name)
                if ev.state == DealState.ResultsSubmitted:  # the RP's reported count n
                    rec["instruction_count"] = int(mk.deals[d].units_reported)
            elif isinstance(ev, Payment):
                rec.update(
                    payee=ev.payee, payee_address=addr[ev.payee], amount_wei=str(ev.amount),
                    reason=ev.reason.name, reason_code=int(ev.reason), direction=ev.direction.name,
                    direction_code=int(ev.direction), source=ev.source,
                    source_address=addr[ev.source], destination=ev.destination,
                    destination_address=addr[ev.destination],
                )  # fmt: skip
            elif isinstance(ev, MediationRequested):
                rec.update(mediator=ev.mediator, mediator_address=addr[ev.mediator])
            elif isinstance(ev, MediationVoted):
                rec.update(mediator=ev.mediator, mediator_address=addr[ev.mediator], vote=ev.vote)
            elif isinstance(ev, VoteRevealed):
                rec.update(vote=ev.vote)
            elif isinstance(ev, Transfer):
                rec.update(
                    source=ev.source, source_address=addr[ev.source], destination=ev.destination,
                    destination_address=addr[ev.destination], amount_wei=str(ev.amount),
                    reason=ev.reason.name, reason_code=int(ev.reason),
                )  # fmt: skip
            elif isinstance(ev, CallReverted):
                rec.update(call=ev.call, caller=ev.caller, caller_address=addr[ev.caller],
                           reason=ev.reason)  # fmt: skip
                if ev.call == "addResult":
                    rec["instruction_count"] = int(mk.deals[d].units_reported)
            self._write(rec)
        self._start = len(rows)

    def _deal_record(self, index: int) -> dict:
        mk = self._market
        d = mk.deals[index]
        addr = mk.addresses
        return {
            "type": "deal", "episode": self._episode, "deal_id": mk.deal_id(index), "deal_index": index,
            "job_offer_id": mk.job_offer_id(d.job_offer), "job_offer": mk.job_offer_record(d.job_offer),
            "resource_offer": int(d.resource_offer),
            "solver": addr[d.solver], "job_creator": addr[d.jc], "resource_provider": addr[d.rp],
            "mediators": [addr[m] for m in d.mediators],
            "job_creator_account": int(d.jc), "resource_provider_account": int(d.rp),
            "timeouts": {"agree_s": d.agree_timeout, "submit_results_s": d.submit_timeout,
                         "judge_results_s": d.judge_timeout, "mediate_results_s": d.mediate_timeout,
                         "submit_results_collateral_wei": str(d.submit_collateral),
                         "judge_results_collateral_wei": str(d.judge_collateral)},
            "pricing": {"instruction_price_wei": str(d.instruction_price),
                        "payment_collateral_wei": str(d.payment_collateral),
                        "results_collateral_multiple": int(d.results_multiple),
                        "mediation_fee_wei": str(d.mediation_fee)},
            "module": mk.module_names[d.module], "units": int(d.units),
            "created_at_s": int(d.created_at),
        }  # fmt: skip

    def end_episode(self) -> None:
        """The final state of the episode: outcomes and every account's balances."""
        mk = self._market
        led = mk.ledger
        self._write({
            "type": "episode_end", "episode": self._episode, "ticks": int(mk.tick),
            "time_s": int(mk.now), "events": len(mk.log), "deals": len(self._seen),
            "balances": [
                {"account": a, "address": mk.addresses[a], "wallet_wei": str(led.wallet[a]),
                 "escrow_wei": str(led.escrow[a]), "locked_wei": str(led.locked[a])}
                for a in range(mk.n_accounts)
            ],
        })  # fmt: skip

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> EpisodeRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_record(path: Path) -> list[dict]:
    """Every record of an episode record file (for tests and small files)."""
    with Path(path).open() as f:
        return [json.loads(line) for line in f]
