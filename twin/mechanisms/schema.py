"""Typed configuration of every mechanism (one dataclass per Hydra group), off by default.

Each group's default equals the Lilypad v1 protocol (which has none of these mechanisms except
v1 mediation and slashing to the owner). Units are in the names; ranges in the metadata are
checked by :func:`twin.config.validate`.
"""

from __future__ import annotations

from dataclasses import dataclass

from twin.config_fields import knob

TOKEN = 10**18


@dataclass
class SlashingConfig:
    """Where slashed collateral goes, as shares (normalised; v1: all to the owner)."""

    owner: float = knob(1.0, "share to the protocol owner", lo=0.0, hi=1.0)
    client: float = knob(0.0, "share to the deal's JC", lo=0.0, hi=1.0)
    mediators: float = knob(
        0.0, "share to the deal's voting mediators (equal split)", lo=0.0, hi=1.0
    )
    burn: float = knob(
        0.0, "share burnt (sent to the burn account, out of circulation)", lo=0.0, hi=1.0
    )
    jackpot: float = knob(0.0, "share to the jackpot", lo=0.0, hi=1.0)
    nodes: float = knob(0.0, "share to the other RPs (equal split)", lo=0.0, hi=1.0)


@dataclass
class MediationConfig:
    """Mediation protocol chosen per deal (v1: one mediator by the timestamp-hash rule).

    ``protocol=v1`` takes one mediator: ``n_mediators``, ``threshold`` and ``max_rounds`` stay 1,
    ``selection`` v1_hash and ``commit_reveal`` off (validated). See
    :mod:`twin.mediation.consortium` for the consortium's rules."""

    protocol: str = knob(
        "v1",
        "v1: one mediator decides; consortium: k of n votes decide",
        choices=("v1", "consortium"),
    )
    n_mediators: int = knob(1, "n: mediators asked per round (consortium)", lo=1, hi=1000)
    threshold: int = knob(1, "k: agreeing votes that decide (consortium)", lo=1, hi=1000)
    selection: str = knob("v1_hash", "how mediators are drawn from the mutually trusted set",
                          choices=("v1_hash", "uniform", "auction", "reputation"))  # fmt: skip
    max_rounds: int = knob(1, "rounds of recursive mediation when no consensus", lo=1, hi=100)
    max_nodes: int = knob(0, "cap on mediators drawn over all rounds (0: no cap)", lo=0, hi=100_000)
    fee_split: str = knob("equal", "mediation fee split among voters: equal, or majority voters only",
                          choices=("equal", "majority"))  # fmt: skip
    commit_reveal: bool = knob(
        False, "votes are committed then revealed and paid unlinkably (obfuscation)"
    )
    defect_probability: float = knob(
        0.0, "a scripted colluder breaks the agreement with this probability", lo=0.0, hi=1.0
    )
    ask_markup_max: float = knob(
        1.0,
        "auction: a mediator's fee ask is its re-execution cost x (1 + markup), its markup drawn "
        "once, uniformly in [0, this] (basis-point grid)",
        lo=0.0,
        hi=100.0,
    )
    reputation_prior: float = knob(
        1.0,
        "reputation selection: beta prior pseudo-counts of agreeing and disagreeing votes",
        lo=1e-6,
        hi=1e6,
    )


@dataclass
class CollateralConfig:
    """Collateral variants (Lilypad whitepaper, collateral section; ``twin.mechanisms.collateral``).

    v1: the results collateral ``R = m*C`` is posted with the result, a late result earns the full
    payment until the submit timeout, and every deal is backed by its own collateral."""

    results_timing: str = knob("after_result", "when R is posted: with the result (v1: after_result) "
                               "or at the RP's agree (up_front: m x price x the job class's expected "
                               "work units, settled to m*C at addResult)",
                               choices=("after_result", "up_front"))  # fmt: skip
    late_grace_s: int = knob(
        0,
        "a result submitted more than this many seconds after agree earns a reduced payment, "
        "falling linearly to late_payment_floor x payment at the submit timeout (0: off)",
        lo=0,
        hi=10**9,
    )
    late_payment_floor: float = knob(
        0.0, "share of the payment still earned at (and after) the submit timeout", lo=0.0, hi=1.0
    )
    pooling_ratio: float = knob(
        1.0,
        "collateral pooling: a node posts R / ratio per deal and its pool backs all its open "
        "deals (1: no pooling, v1; 2: one token backs two tokens of obligations)",
        lo=1.0,
        hi=1000.0,
    )


@dataclass
class VerificationConfig:
    """How results are verified, per job class (``twin.mechanisms.verification``).

    Methods: ``replication`` (v1: a mediator re-runs the job), ``none`` (no checks: trust and
    reputation only), ``proof`` (a succinct proof of the computation) and ``tee`` (a trusted
    execution environment's attestation). Proofs and TEEs are cost-modelled (a cost and a latency
    for the node, a cheap check, a soundness error), no real cryptography."""

    method: str = knob(
        "replication", "default method", choices=("replication", "none", "proof", "tee")
    )
    per_module: dict[str, str] = knob(
        doc="method per job class (overrides method), e.g. {sdxl: tee, cowsay: none}", factory=dict
    )
    proof_cost_fraction: float = knob(
        0.5, "proof generation cost, as a fraction of the node's honest run cost", lo=0.0, hi=1e6
    )
    proof_latency_s: int = knob(
        60, "seconds proof generation adds to the node's runtime", lo=0, hi=10**9
    )
    proof_soundness_error: float = knob(
        1e-9, "P(a wrong result passes the check of its proof)", lo=0.0, hi=1.0
    )
    tee_cost_fraction: float = knob(
        0.1, "TEE overhead (enclave, attestation), as a fraction of the honest run cost", lo=0.0,
        hi=1e6,
    )  # fmt: skip
    tee_latency_s: int = knob(
        1, "seconds the attestation adds to the node's runtime", lo=0, hi=10**9
    )
    tee_soundness_error: float = knob(
        1e-4, "P(a compromised enclave passes a wrong result)", lo=0.0, hi=1.0
    )
    check_cost_fraction: float = knob(
        0.001,
        "cost of checking a proof or attestation, as a fraction of the mediator's re-run cost",
        lo=0.0,
        hi=1e6,
    )
    check_latency_s: int = knob(1, "seconds a mediator needs to check a proof or attestation",
                                lo=0, hi=10**9)  # fmt: skip
    approx_tolerance: float = knob(
        0.0,
        "approximate agreement on non-deterministic classes: a re-run agrees when its output "
        "distance is within this tolerance (unit: the class's mean honest discrepancy; 0: exact)",
        lo=0.0,
        hi=1e9,
    )
    fake_distance_scale: float = knob(
        1000.0,
        "mean output distance of a fake result from an honest run (same unit as the tolerance)",
        lo=1e-9,
        hi=1e12,
    )
    mediator_runs: int = knob(
        1,
        "Modicum's defence: the mediator runs a non-deterministic job n times and flags it when "
        "the runs differ (treated as honest); 1: v1, one run",
        lo=1,
        hi=100,
    )


@dataclass
class TaxConfig:
    """Taxes and jackpots (after Truebit)."""

    rate: float = knob(
        0.0, "tax on each paid job, as a share of the payment (paid by the JC)", lo=0.0, hi=1.0
    )
    forced_error_rate: float = knob(
        0.0, "share of results the protocol forces to be wrong", lo=0.0, hi=1.0
    )
    payout_cap_share: float = knob(
        1 / 3, "at most this share of the jackpot per forced error", lo=0.0, hi=1.0
    )
    compensation_wei: int = knob(TOKEN, "fair compensation for checking one task", lo=0, hi=10**30)
    challenger_decay: float = knob(
        0.5, "share ratio between successive challengers", lo=0.0, hi=1.0
    )
    seed_jackpot_tokens: float = knob(0.0, "initial jackpot (minted at genesis)", lo=0.0, hi=1e12)


@dataclass
class ReputationConfig:
    score: str = knob("none", "scoring function", choices=("none", "pass_rate", "decayed", "beta"))
    prior_pass: float = knob(1.0, "prior passed checks (pseudo-counts)", lo=0.0, hi=1e6)
    prior_fail: float = knob(1.0, "prior failed checks (pseudo-counts)", lo=0.0, hi=1e6)
    half_life_s: float = knob(86_400.0, "decay half-life of the decayed score", lo=1.0, hi=1e12)
    solver_ranks: bool = knob(False, "solvers prefer higher-scored nodes at equal price")
    min_score: float = knob(0.0, "clients do not deal with nodes scored below this", lo=0.0, hi=1.0)


@dataclass
class StakingConfig:
    """Staking behind nodes: delegators back RPs, share their fees and their slashing."""

    enabled: bool = knob(False, "delegators stake tokens behind RPs (twin/mechanisms/staking.py)")
    stake_per_node_tokens: float = knob(
        100.0, "stake behind each RP at genesis (minted into the stake pool)", lo=0.0, hi=1e12
    )
    n_delegators: int = knob(
        0, "delegator accounts (0: one per RP); genesis backing: see staking.py", lo=0, hi=1_000_000
    )
    fee_share: float = knob(
        0.1, "share of the RP's job payments paid to its delegators", lo=0.0, hi=1.0
    )
    slash_fraction: float = knob(
        0.1, "share of the stake slashed when the RP is caught", lo=0.0, hi=1.0
    )
    exit_score: float = knob(
        0.3,
        "delegators move stake away from an RP scored below this (0: stake never moves)",
        lo=0.0,
        hi=1.0,
    )
    review_interval_s: int = knob(
        600, "simulated seconds between two reviews of the delegators' positions", lo=1, hi=10**9
    )


@dataclass
class PredictionConfig:
    """Replication markets: per RP, a binary LMSR market on its next checked result."""

    enabled: bool = knob(False, "replication markets with an LMSR market maker, one per RP")
    liquidity_tokens: float = knob(10.0, "LMSR liquidity parameter b", lo=1e-9, hi=1e12)
    bet_tokens: float = knob(1.0, "budget of one scripted bet", lo=0.0, hi=1e12)
    bets_per_tick: int = knob(
        2, "scripted bets per tick, each by a random bettor on a random open market", lo=0, hi=10**6
    )
    insider_bets: bool = knob(True, "an RP may bet on its own market, knowing its pending results")
    funded_from: str = knob(
        "owner", "who funds the market maker's subsidy", choices=("owner", "jackpot")
    )
    owner_seed_tokens: float = knob(
        1000.0,
        "minted to the owner at genesis to fund subsidies (funded_from=owner)",
        lo=0.0,
        hi=1e12,
    )


@dataclass
class AnnounceConfig:
    reward_wei: int = knob(
        0, "paid from the jackpot to a node proving an undetected cheat (0: off)", lo=0, hi=10**30
    )


@dataclass
class StorageConfig:
    window_s: int = knob(
        0, "inputs/outputs kept this long after the result (0: forever, v1)", lo=0, hi=10**9
    )
    fee_wei_per_hour: int = knob(0, "storage fee, paid by the JC to the treasury", lo=0, hi=10**30)


@dataclass
class FeeConfig:
    protocol_fee_wei: int = knob(
        0, "fee per completed deal, paid by the JC to the treasury", lo=0, hi=10**30
    )
    waived_modules: list[str] = knob(doc="public-goods job classes that pay no fee", factory=list)


@dataclass
class CounterCollusionConfig:
    """Dong et al. (CCS 2017): a job outsourced to two nodes under smart contracts
    (:mod:`twin.mechanisms.counter_collusion`)."""

    share: float = knob(
        0.0, "share of matched jobs outsourced to two nodes (0: off)", lo=0.0, hi=1.0
    )
    contracts: list[str] = knob(
        doc="contracts on offer: prisoner (always), colluder, traitor", factory=lambda: ["prisoner"]
    )
    wage_wei: int = knob(TOKEN, "w: paid to each node", lo=0, hi=10**30)
    deposit_wei: int = knob(2 * TOKEN, "d: each node's deposit", lo=0, hi=10**30)
    dispute_cost_wei: int = knob(
        TOKEN // 2, "ch: cost of the trusted third party (at most w + 2d)", lo=0, hi=10**30
    )
    collusion_deposit_wei: int = knob(TOKEN, "t: colluder's-contract deposit", lo=0, hi=10**30)
    bribe_wei: int = knob(TOKEN // 4, "b: leader's bribe to the follower", lo=0, hi=10**30)
    ttp_latency_s: int = knob(60, "seconds the trusted third party takes to decide", lo=0, hi=10**9)
