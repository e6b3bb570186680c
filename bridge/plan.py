"""The replay plan of an episode record: the twin's accounts, each deal's terms, and the ordered
list of transactions that reproduce the episode on chain.

`read_plans(path)` reads an episode record written by `twin-eval` (`docs/episode-record.md`) and
returns one `EpisodePlan` per episode. The record holds events, not calls: each deal's events are
split into the v1 calls that emitted them with the exact per-call sequences of
`docs/protocol-flows.md` (a call's events are consecutive in the log and end with its
`DealStateChange`, except `checkResult`, whose `MediationRequested` follows it; the first `agree`
of a deal starts with `DSC(0)`). The caller of each call is the one the twin uses: the RP for
`addResult` and `timeoutJudgeResult`, the JC for `acceptResult`, `checkResult`,
`timeoutSubmitResult` and `timeoutMediateResult`, the requested mediator for its verdict, and
for `timeoutAgree` the JC if it had agreed, else the RP. A `CallReverted` event is a call the
twin's preset made revert: it is sent and must revert. A `Transfer` event (bribes, taxes,
slashing shares: wallet-to-wallet movements outside the v1 contracts) becomes an ERC-20
`transfer` signed by its source.

Steps keep the record's global order (escrow is pooled per address, so order matters) and the
twin's time of each call. Consortium mediation (`selection=v1_hash`, public votes) replays on
`LilypadMediationConsortium`: each `MediationVoted` starts the voter's vote call, which carries the
new round's `MediationRequested` events or the verdict's flows. Records of mechanisms whose flows
the contracts cannot run (the other selection rules, commit-reveal, collateral variants) are
refused with `UnsupportedRecordError`, naming the config key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.types import AgreementState as S
from bridge.types import PaymentDirection as D
from bridge.types import PaymentReason as R
from twin.errors import UserError

#: Mediation protocols the contracts run: v1 (`LilypadMediation`) and the consortium
#: (`LilypadMediationConsortium`, deployed with the record's `mediation.*` parameters).
MEDIATION_PROTOCOLS = ("v1", "consortium")
#: Consortium settings the contract needs (dotted key, allowed value, why).
CONSORTIUM_SETTINGS: tuple[tuple[str, Any, str], ...] = (
    ("mediation.selection", "v1_hash",
     "the contract draws mediators by v1's hash rule; the other rules draw from the twin's "
     "random generator or its off-chain asks and reputations"),
    ("mediation.commit_reveal", False,
     "sealed votes and pooled, unlinkable fee payouts are not part of the contract"),
)  # fmt: skip
#: Config settings (dotted key, allowed value, why) without which the v1 contracts cannot replay a
#: record: the flows would differ from the contracts' (docs/replay.md explains each).
REQUIRED_SETTINGS: tuple[tuple[str, Any, str], ...] = (
    ("collateral.results_timing", "after_result",
     "results collateral up front is not part of the v1 contracts"),
    ("collateral.late_grace_s", 0, "late-payment penalties are not part of the v1 contracts"),
    ("collateral.pooling_ratio", 1.0, "collateral pooling is not part of the v1 contracts"),
)  # fmt: skip

#: The call that ends in each state (DealStateChange of the call's last event).
CALL_OF_STATE = {
    S.ResultsSubmitted: "addResult",
    S.ResultsAccepted: "acceptResult",
    S.ResultsChecked: "checkResult",
    S.MediationAccepted: "mediationAcceptResult",
    S.MediationRejected: "mediationRejectResult",
    S.TimeoutAgree: "timeoutAgree",
    S.TimeoutSubmitResults: "timeoutSubmitResult",
    S.TimeoutJudgeResults: "timeoutJudgeResult",
    S.TimeoutMediateResults: "timeoutMediateResult",
}
#: The state a call requires.
FROM_STATE = {
    "addResult": S.DealAgreed,
    "acceptResult": S.ResultsSubmitted,
    "checkResult": S.ResultsSubmitted,
    "mediationAcceptResult": S.ResultsChecked,
    "mediationRejectResult": S.ResultsChecked,
    "timeoutAgree": S.DealNegotiating,
    "timeoutSubmitResult": S.DealAgreed,
    "timeoutJudgeResult": S.ResultsSubmitted,
    "timeoutMediateResult": S.ResultsChecked,
}
CALLS = ("agree", *FROM_STATE)


class RecordError(UserError, ValueError):
    """The episode record is malformed or its events do not form v1 calls."""


class UnsupportedRecordError(RecordError):
    """The record uses a mechanism whose flows the v1 contracts cannot run."""


@dataclass(frozen=True)
class PlanAccount:
    """One twin account (index into the episode's `accounts`)."""

    account: int
    twin_address: str
    role: str
    agent: str | None
    genesis_wallet_wei: int

    @property
    def label(self) -> str:
        """A readable name: the agent (`rp_3`), else the role and index (`owner#0`)."""
        return self.agent or f"{self.role}#{self.account}"


@dataclass(frozen=True)
class TwinEvent:
    """One protocol event of the twin, accounts as twin account indices (-1: none)."""

    kind: str  # DealStateChange, Payment, MediationRequested, MediationVoted, Transfer
    deal_id: str
    seq: int
    state: int = -1
    payee: int = -1
    amount: int = 0
    reason: int = -1
    direction: int = -1
    source: int = -1
    destination: int = -1
    mediator: int = -1
    vote: int = -1  # MediationVoted: 1 accept, 0 reject


@dataclass(frozen=True)
class DealSpec:
    """The terms of one deal (accounts as twin account indices; amounts in wei)."""

    deal_id: str
    deal_index: int
    solver: int
    job_creator: int
    resource_provider: int
    mediators: tuple[int, ...]
    agree_timeout_s: int
    submit_results_timeout_s: int
    judge_results_timeout_s: int
    mediate_results_timeout_s: int
    submit_results_collateral_wei: int
    judge_results_collateral_wei: int
    instruction_price_wei: int
    payment_collateral_wei: int
    results_collateral_multiple: int
    mediation_fee_wei: int
    module: str
    units: int


@dataclass(frozen=True)
class Step:
    """One transaction of the replay: a v1 call or a token transfer, at the twin's time."""

    index: int
    function: str  # a v1 call (CALLS) or "transfer"
    deal_id: str  # "" for a transfer that names no deal
    caller: int  # twin account that signs
    time_s: int
    tick: int
    events: tuple[TwinEvent, ...]  # what the twin emitted (none for a reverted call)
    reverts: bool = False  # the twin's preset made this call revert
    revert_reason: str = ""
    instruction_count: int = 0  # addResult: the reported count n
    recipient: int = -1  # transfer: destination account
    amount_wei: int = 0  # transfer: amount
    transfer_reason: str = ""  # transfer: the twin's reason (Bribe, Tax, ...)

    @property
    def is_call(self) -> bool:
        return self.function != "transfer"


@dataclass(frozen=True)
class EpisodePlan:
    """Everything needed to replay one episode and to check it against the twin."""

    record_path: str
    record_sha256: str
    episode: int
    seed: int
    salt: str
    genesis_time_s: int
    tick_s: int
    preset: str
    owner: int
    accounts: tuple[PlanAccount, ...]
    deals: dict[str, DealSpec]
    steps: tuple[Step, ...]
    #: per account: (wallet, escrow, locked) at the end of the episode, as the record states them
    final_balances: tuple[tuple[int, int, int], ...]
    config: dict = field(default_factory=dict)

    @property
    def first_time_s(self) -> int:
        return self.steps[0].time_s if self.steps else self.genesis_time_s

    def last_step_of(self) -> dict[str, int]:
        """Index of each deal's last step."""
        out: dict[str, int] = {}
        for s in self.steps:
            if s.deal_id:
                out[s.deal_id] = s.index
        return out


# ------------------------------------------------------------------------------ reading


def read_plans(path: str | Path, episodes: list[int] | None = None) -> list[EpisodePlan]:
    """The plans of the record's episodes (all, or those listed in `episodes`)."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"record: no episode record at {path} (twin-eval writes episodes.jsonl)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    run: dict | None = None
    plans: list[EpisodePlan] = []
    builder: _EpisodeBuilder | None = None
    for line_no, rec in _lines(path):
        kind = rec.get("type")
        if kind == "run":
            if rec.get("schema_version") != 1:
                raise RecordError(
                    f"{path}:{line_no}: schema_version {rec.get('schema_version')!r}; "
                    "this bridge reads version 1"
                )
            run = rec
            check_supported(rec.get("config", {}), path)
        elif run is None:
            raise RecordError(f"{path}:{line_no}: the first record must be the `run` header")
        elif kind == "episode":
            wanted = episodes is None or rec["episode"] in episodes
            builder = _EpisodeBuilder(rec, run, str(path), digest) if wanted else None
        elif kind == "episode_end":
            if builder is not None:
                plans.append(builder.finish(rec, line_no))
            builder = None
        elif builder is not None:
            builder.add(rec, line_no)
    if run is None:
        raise RecordError(f"{path}: empty record (no `run` header)")
    if episodes is not None:
        missing = sorted(set(episodes) - {p.episode for p in plans})
        if missing:
            raise RecordError(
                f"episodes: {missing} not in {path} (it has {_episode_numbers(path)})"
            )
    return plans


def _episode_numbers(path: Path) -> list[int]:
    return [rec["episode"] for _, rec in _lines(path) if rec.get("type") == "episode_end"]


def _lines(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open() as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield i, json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(f"{path}:{i}: not JSON ({e})") from None


def _setting(config: dict, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def mediation_protocol(config: dict) -> str:
    """The record's mediation protocol (v1 when the config omits it)."""
    return _setting(config, "mediation.protocol") or "v1"


def check_supported(config: dict, where: object = "record") -> None:
    """Raises `UnsupportedRecordError` when the record's config needs flows the contracts lack."""
    protocol = mediation_protocol(config)
    if protocol not in MEDIATION_PROTOCOLS:
        raise UnsupportedRecordError(
            f"{where}: mediation.protocol={protocol!r} has no contract (allowed: "
            f"{', '.join(MEDIATION_PROTOCOLS)})"
        )
    settings = REQUIRED_SETTINGS + (CONSORTIUM_SETTINGS if protocol == "consortium" else ())
    for key, allowed, why in settings:
        value = _setting(config, key)
        if value is None:
            continue  # older records may omit a group: it is then at its v1 default
        if value != allowed:
            raise UnsupportedRecordError(
                f"{where}: {key}={value!r} cannot be replayed on the contracts (allowed: "
                f"{allowed!r}): {why}"
            )


class _EpisodeBuilder:
    """Turns one episode's records into steps (the call-splitting state machine)."""

    def __init__(self, ep: dict, run: dict, path: str, digest: str) -> None:
        self.ep, self.run, self.path, self.digest = ep, run, path, digest
        self.accounts = tuple(
            PlanAccount(
                int(a["account"]), a["address"].lower(), a["role"], a.get("agent"),
                int(a["genesis_wallet_wei"]),
            )
            for a in ep["accounts"]
        )  # fmt: skip
        if [a.account for a in self.accounts] != list(range(len(self.accounts))):
            raise RecordError(f"{path}: episode {ep['episode']}: accounts are not 0..n-1 in order")
        self.by_address = {a.twin_address: a.account for a in self.accounts}
        self.deals: dict[str, DealSpec] = {}
        self.state: dict[str, S | None] = {}
        self.agreed: dict[str, set[int]] = {}
        self.mediator: dict[str, int] = {}
        self.steps: list[Step] = []
        self.pending: list[tuple[int, dict]] = []  # events of the current (deal, time) group
        self.consortium = mediation_protocol(run.get("config", {})) == "consortium"

    def _account(self, address: str, line_no: int) -> int:
        try:
            return self.by_address[address.lower()]
        except KeyError:
            raise RecordError(
                f"{self.path}:{line_no}: address {address} is not an account of episode "
                f"{self.ep['episode']}"
            ) from None

    def add(self, rec: dict, line_no: int) -> None:
        kind = rec.get("type")
        if kind == "deal":
            self._deal(rec, line_no)
            return
        if kind != "event":
            return  # actions: the events already carry their effect
        ev = rec["event"]
        if ev == "VoteRevealed" or (ev == "MediationVoted" and rec.get("vote") not in (0, 1)):
            raise UnsupportedRecordError(
                f"{self.path}:{line_no}: {ev} events without a public vote come from commit-reveal "
                "mediation (mediation.commit_reveal=true), which the contracts cannot replay "
                "(allowed: false)"
            )
        if ev == "Transfer":
            self._flush(line_no)
            self._transfer(rec, line_no)
        elif ev == "CallReverted":
            self._flush(line_no)
            self._reverted(rec, line_no)
        elif ev in ("DealStateChange", "Payment", "MediationRequested", "MediationVoted"):
            if self.pending:
                _, first = self.pending[-1]
                if first["deal_id"] != rec["deal_id"] or first["time_s"] != rec["time_s"]:
                    self._flush(line_no)
            self.pending.append((line_no, rec))
        else:
            raise RecordError(f"{self.path}:{line_no}: unknown event {ev!r}")

    def _deal(self, rec: dict, line_no: int) -> None:
        t, p = rec["timeouts"], rec["pricing"]
        a = lambda x: self._account(x, line_no)  # noqa: E731
        spec = DealSpec(
            deal_id=rec["deal_id"], deal_index=int(rec["deal_index"]), solver=a(rec["solver"]),
            job_creator=a(rec["job_creator"]), resource_provider=a(rec["resource_provider"]),
            mediators=tuple(a(m) for m in rec["mediators"]),
            agree_timeout_s=int(t["agree_s"]), submit_results_timeout_s=int(t["submit_results_s"]),
            judge_results_timeout_s=int(t["judge_results_s"]),
            mediate_results_timeout_s=int(t["mediate_results_s"]),
            submit_results_collateral_wei=int(t["submit_results_collateral_wei"]),
            judge_results_collateral_wei=int(t["judge_results_collateral_wei"]),
            instruction_price_wei=int(p["instruction_price_wei"]),
            payment_collateral_wei=int(p["payment_collateral_wei"]),
            results_collateral_multiple=int(p["results_collateral_multiple"]),
            mediation_fee_wei=int(p["mediation_fee_wei"]),
            module=str(rec.get("module", "")), units=int(rec.get("units", 0)),
        )  # fmt: skip
        self.deals[spec.deal_id] = spec
        self.state[spec.deal_id] = None
        self.agreed[spec.deal_id] = set()

    def _event(self, rec: dict, line_no: int) -> TwinEvent:
        kind, did, seq = rec["event"], rec["deal_id"], int(rec["seq"])
        if kind == "DealStateChange":
            return TwinEvent(kind, did, seq, state=int(rec["state"]))
        if kind == "MediationRequested":
            return TwinEvent(kind, did, seq, mediator=int(rec["mediator"]))
        if kind == "MediationVoted":
            return TwinEvent(kind, did, seq, mediator=int(rec["mediator"]), vote=int(rec["vote"]))
        if kind == "Transfer":
            return TwinEvent(kind, did, seq, amount=int(rec["amount_wei"]),
                             source=int(rec["source"]), destination=int(rec["destination"]))  # fmt: skip
        return TwinEvent(
            kind, did, seq, payee=int(rec["payee"]), amount=int(rec["amount_wei"]),
            reason=int(rec["reason_code"]), direction=int(rec["direction_code"]),
            source=int(rec["source"]), destination=int(rec["destination"]),
        )  # fmt: skip

    def _add_step(self, function: str, rec: dict, caller: int, events: list[TwinEvent],
                  **extra: Any) -> None:  # fmt: skip
        self.steps.append(
            Step(
                len(self.steps),
                function,
                rec["deal_id"],
                caller,
                int(rec["time_s"]),
                int(rec["tick"]),
                tuple(events),
                **extra,
            )  # fmt: skip
        )

    def _transfer(self, rec: dict, line_no: int) -> None:
        ev = self._event(rec, line_no)
        self._add_step("transfer", rec, ev.source, [ev], recipient=ev.destination,
                       amount_wei=ev.amount, transfer_reason=str(rec.get("reason", "")))  # fmt: skip

    def _reverted(self, rec: dict, line_no: int) -> None:
        call, did = rec["call"], rec["deal_id"]
        if call not in CALLS:
            raise RecordError(f"{self.path}:{line_no}: CallReverted names unknown call {call!r}")
        d = self._spec(did, line_no)
        extra: dict[str, Any] = {}
        if call == "addResult":
            extra["instruction_count"] = int(rec.get("instruction_count", d.units))
        self._add_step(call, rec, int(rec["caller"]), [], reverts=True,
                       revert_reason=str(rec.get("reason", "")), **extra)  # fmt: skip

    def _spec(self, deal_id: str, line_no: int) -> DealSpec:
        try:
            return self.deals[deal_id]
        except KeyError:
            raise RecordError(
                f"{self.path}:{line_no}: event of deal {deal_id} before its `deal` record"
            ) from None

    # -- splitting a (deal, time) group of events into calls --------------------------------
    def _flush(self, line_no: int) -> None:
        group, self.pending = self.pending, []
        i = 0
        while i < len(group):
            i = self._one_call(group, i)

    def _fail(self, group: list[tuple[int, dict]], i: int, why: str) -> RecordError:
        line_no, rec = group[i] if i < len(group) else group[-1]
        return RecordError(
            f"{self.path}:{line_no}: deal {rec['deal_id']} (seq {rec['seq']}, state "
            f"{self._state_name(rec['deal_id'])}): {why}; the events do not form the v1 calls "
            "of docs/protocol-flows.md"
        )

    def _state_name(self, deal_id: str) -> str:
        s = self.state.get(deal_id)
        return "not created" if s is None else s.name

    def _one_call(self, group: list[tuple[int, dict]], i: int) -> int:
        line_no, rec = group[i]
        did = rec["deal_id"]
        d = self._spec(did, line_no)
        state = self.state[did]
        if state is None or (state == S.DealNegotiating and _is_agree_start(group, i, d)):
            return self._agree(group, i, d)
        if rec["event"] == "MediationVoted":
            return self._vote(group, i, d)
        # any other call: events up to its DealStateChange (checkResult: + MediationRequested)
        j = i
        while j < len(group) and group[j][1]["event"] != "DealStateChange":
            j += 1
        if j == len(group):
            raise self._fail(group, i, "events without the DealStateChange that ends a call")
        new_state = S(int(group[j][1]["state"]))
        call = CALL_OF_STATE.get(new_state)
        if call is None or FROM_STATE[call] != state:
            raise self._fail(group, j, f"no v1 call goes from {state.name} to {new_state.name}")
        end = j + 1
        if call == "checkResult":
            while end < len(group) and group[end][1]["event"] == "MediationRequested":
                end += 1
            if end == j + 1:
                raise self._fail(group, j, "checkResult without MediationRequested")
            if end - j - 1 > 1 and not self.consortium:
                raise self._fail(group, j, "several MediationRequested events under v1 mediation")
        events = [self._event(r, n) for n, r in group[i:end]]
        for ev in events:
            if ev.kind == "MediationRequested" and call != "checkResult":
                raise self._fail(group, i, "MediationRequested outside checkResult")
        extra: dict[str, Any] = {}
        if call == "checkResult":
            self.mediator[did] = events[j + 1 - i].mediator  # v1's one; a consortium's first
        if call == "addResult":
            extra["instruction_count"] = _instruction_count(d, group[j][1], events)
        caller = self._caller(call, d)
        self._add_step(call, rec, caller, events, **extra)
        self.state[did] = new_state
        return end

    def _vote(self, group: list[tuple[int, dict]], i: int, d: DealSpec) -> int:
        """A consortium mediator's vote (`mediationAcceptResult` or `mediationRejectResult` on
        the consortium contract, by the voter): `MediationVoted`, then the `MediationRequested`
        of a new round, or the verdict's payments ending in DSC(5 or 6) (the verdict need not be
        the deciding voter's vote), or nothing."""
        line_no, rec = group[i]
        did = d.deal_id
        if not self.consortium:
            raise self._fail(group, i, "a MediationVoted event under v1 mediation")
        if self.state[did] != S.ResultsChecked:
            raise self._fail(group, i, "a vote on a deal that is not ResultsChecked")
        end = i + 1
        new_state = None
        while end < len(group) and group[end][1]["event"] == "MediationRequested":
            end += 1
        if end == i + 1:  # no new round: the verdict's flows, if this vote closes the case
            j = end
            while j < len(group) and group[j][1]["event"] == "Payment":
                j += 1
            if j < len(group) and group[j][1]["event"] == "DealStateChange":
                dsc = S(int(group[j][1]["state"]))
                if dsc in (S.MediationAccepted, S.MediationRejected):
                    new_state, end = dsc, j + 1
        events = [self._event(r, n) for n, r in group[i:end]]
        call = "mediationAcceptResult" if events[0].vote == 1 else "mediationRejectResult"
        self._add_step(call, rec, events[0].mediator, events)
        if new_state is not None:
            self.state[did] = new_state
        return end

    def _caller(self, call: str, d: DealSpec) -> int:
        if call in ("addResult", "timeoutJudgeResult"):
            return d.resource_provider
        if call in ("mediationAcceptResult", "mediationRejectResult"):
            return self.mediator[d.deal_id]
        if call == "timeoutAgree":
            agreed = self.agreed[d.deal_id]
            return d.job_creator if d.job_creator in agreed else d.resource_provider
        return d.job_creator

    def _agree(self, group: list[tuple[int, dict]], i: int, d: DealSpec) -> int:
        """One or two `agree` calls: [DSC(0)] + deposits of the first party [+ the second
        party's deposits + DSC(1)]. The twin has the RP agree first; a party whose deposits are
        all zero emits no Payment."""
        did = d.deal_id
        first = self.state[did] is None
        if first:
            if not _is_dsc(group[i][1], S.DealNegotiating):
                raise self._fail(group, i, "a deal's first event must be DealStateChange(0)")
            j = i + 1
        else:
            j = i
        runs: list[tuple[int, int, int]] = []  # (payee, start, end) of consecutive PaidIn
        while j < len(group) and _is_paid_in(group[j][1]):
            payee = int(group[j][1]["payee"])
            if runs and runs[-1][0] == payee:
                runs[-1] = (payee, runs[-1][1], j + 1)
            else:
                runs.append((payee, j, j + 1))
            j += 1
        completes = j < len(group) and _is_dsc(group[j][1], S.DealAgreed)
        jc, rp = d.job_creator, d.resource_provider
        if any(p not in (jc, rp) for p, _, _ in runs) or len(runs) > 2:
            raise self._fail(group, i, "agree deposits by someone other than the JC and the RP")
        # who made which call, from the deposits; zero-deposit parties follow the twin's order
        calls: list[tuple[int, int, int]] = []  # (party, start, end)
        start = i
        if first and not completes:  # one agree: the depositor, else the RP (it agrees first)
            party = runs[0][0] if runs else rp
            calls.append((party, start, j))
        elif first:  # both agreed in this group
            if len(runs) == 2:
                calls += [(runs[0][0], start, runs[1][1]), (runs[1][0], runs[1][1], j + 1)]
            elif len(runs) == 1 and runs[0][0] == rp:  # the JC deposited nothing
                calls += [(rp, start, j), (jc, j, j + 1)]
            elif len(runs) == 1:  # the RP deposited nothing and agreed first
                calls += [(rp, start, start + 1), (jc, start + 1, j + 1)]
            else:
                calls += [(rp, start, start + 1), (jc, start + 1, j + 1)]
        else:  # the second agree of a deal created earlier
            if not completes:
                raise self._fail(group, i, "a second agree must end with DealStateChange(1)")
            if len(runs) > 1:
                raise self._fail(group, i, "a second agree deposits for one party only")
            (agreed,) = self.agreed[did] or {rp}
            party = runs[0][0] if runs else (jc if agreed == rp else rp)
            calls.append((party, start, j + 1))
        for party, a, b in calls:
            if party in self.agreed[did]:
                raise self._fail(group, a, f"account {party} agrees twice")
            self.agreed[did].add(party)
            line_no, rec = group[a]
            self._add_step("agree", rec, party, [self._event(r, n) for n, r in group[a:b]])
        self.state[did] = S.DealAgreed if completes else S.DealNegotiating
        return j + 1 if completes else j

    def finish(self, rec: dict, line_no: int) -> EpisodePlan:
        self._flush(line_no)
        final = tuple(
            (int(b["wallet_wei"]), int(b["escrow_wei"]), int(b.get("locked_wei", 0)))
            for b in rec["balances"]
        )
        if len(final) != len(self.accounts):
            raise RecordError(f"{self.path}:{line_no}: episode_end has {len(final)} balances, "
                              f"the episode {len(self.accounts)} accounts")  # fmt: skip
        ep, cfg = self.ep, self.run.get("config", {})
        preset = (cfg.get("protocol") or {}).get("preset", "lilypad_v1")
        owner = self.by_address.get(str(ep.get("owner", "")).lower(), 0)
        return EpisodePlan(
            record_path=self.path, record_sha256=self.digest, episode=int(ep["episode"]),
            seed=int(ep["seed"]), salt=str(ep["salt"]), genesis_time_s=int(ep["genesis_time_s"]),
            tick_s=int(ep["tick_s"]), preset=preset, owner=owner, accounts=self.accounts,
            deals=dict(self.deals), steps=tuple(self.steps), final_balances=final, config=cfg,
        )  # fmt: skip


def _is_dsc(rec: dict, state: S) -> bool:
    return rec["event"] == "DealStateChange" and int(rec["state"]) == state


def _is_paid_in(rec: dict) -> bool:
    return rec["event"] == "Payment" and int(rec["direction_code"]) == D.PaidIn


def _is_agree_start(group: list[tuple[int, dict]], i: int, d: DealSpec) -> bool:
    """In DealNegotiating: a second agree (deposits then DSC(1), or DSC(1) alone), not a timeout."""
    rec = group[i][1]
    return _is_paid_in(rec) or _is_dsc(rec, S.DealAgreed)


def _instruction_count(d: DealSpec, dsc: dict, events: list[TwinEvent]) -> int:
    """The count n the RP reported: the record's `instruction_count` (on the DealStateChange of
    `addResult`), else from its results collateral R = m * price * n, else (R = 0 because m or the
    price is 0) any n gives the same flows as long as min(C, P) does not change: the job units."""
    if "instruction_count" in dsc:
        return int(dsc["instruction_count"])
    unit = d.results_collateral_multiple * d.instruction_price_wei
    for ev in events:
        if ev.kind == "Payment" and ev.reason == R.ResultsCollateral and ev.direction == D.PaidIn:
            if unit and ev.amount % unit == 0:
                return ev.amount // unit
            raise RecordError(
                f"deal {d.deal_id}: results collateral {ev.amount} is not m * price * n for a "
                f"whole n (m * price = {unit})"
            )
    return 0 if unit else d.units
