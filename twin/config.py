"""Typed configuration schema (dataclasses registered in Hydra's ConfigStore) and validation.

Every knob is declared here with its unit in its name and its allowed range in the field's
metadata. Composition (:func:`twin.compose`) merges ``configs/`` into these schemas, so a
misspelt key fails at load with the key's full name, and :func:`validate` then checks every range
and choice, raising :class:`ConfigError` naming the field and the allowed values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from agents.schema import TrainConfig
from twin.config_fields import knob
from twin.errors import UserError
from twin.hardware import CATALOGUE
from twin.mechanisms.schema import (
    AnnounceConfig,
    CollateralConfig,
    CounterCollusionConfig,
    FeeConfig,
    MediationConfig,
    PredictionConfig,
    ReputationConfig,
    SlashingConfig,
    StakingConfig,
    StorageConfig,
    TaxConfig,
    VerificationConfig,
)
from twin.modules import MODULES
from twin.protocol import PRESETS

TOKEN = 10**18


class ConfigError(UserError, ValueError):
    """A configuration value is out of range or not one of the allowed choices."""


@dataclass
class MarketConfig:
    """Population sizes, time, and job demand."""

    n_job_creators: int = knob(12, "job creators (clients)", lo=1, hi=1_000_000)
    n_resource_providers: int = knob(10, "resource providers (compute nodes)", lo=1, hi=1_000_000)
    n_mediators: int = knob(3, "mediators", lo=1, hi=100_000)
    solvers: list[str] = knob(
        doc="solvers (by kind: v1, surplus); parties are spread round-robin over them",
        factory=lambda: ["v1"],
    )
    tick_s: int = knob(60, "simulated seconds per tick", lo=1, hi=86_400)
    episode_ticks: int = knob(
        120, "ticks per episode (then open deals are settled)", lo=1, hi=10_000_000
    )
    job_rate_per_tick: float = knob(
        0.2, "probability that a JC posts a job offer in a tick", lo=0.0, hi=1.0
    )
    max_open_jobs_per_jc: int = knob(
        3, "a JC posts no new job while this many are open", lo=1, hi=1000
    )
    offer_ttl_s: int = knob(
        1800, "a job offer not matched within this time expires", lo=1, hi=10**9
    )
    fixed_price_share: float = knob(
        0.0, "share of job offers priced fixed (the rest: market)", lo=0.0, hi=1.0
    )
    bid_multiple_low: float = knob(
        1.0, "a JC's max instruction price, low end, x base price", lo=0.0, hi=1000.0
    )
    bid_multiple_high: float = knob(
        2.0, "a JC's max instruction price, high end, x base price", lo=0.0, hi=1000.0
    )
    module_shares: dict[str, float] = knob(
        doc="job-class mix of demand (normalised)",
        factory=lambda: {
            "cowsay": 0.2,
            "sdxl": 0.35,
            "llama3_8b": 0.25,
            "whisper": 0.1,
            "ffmpeg_transcode": 0.05,
            "duckdb_query": 0.05,
        },
    )
    modules: list[str] = knob(
        doc="job classes in demand (empty: every class with a positive share); a list, so an override replaces it",
        factory=list,
    )
    trusted_mediators_per_party: int = knob(
        0, "mediators each party trusts (0: all)", lo=0, hi=100_000
    )
    jc_wallet_tokens: float = knob(1000.0, "genesis wallet of a JC, tokens", lo=0.0, hi=1e12)
    rp_wallet_tokens: float = knob(200.0, "genesis wallet of an RP, tokens", lo=0.0, hi=1e12)
    mediator_wallet_tokens: float = knob(
        20.0, "genesis wallet of a mediator, tokens", lo=0.0, hi=1e12
    )
    token_usd: float = knob(
        0.02, "USD per token (converts hardware prices to tokens)", lo=1e-12, hi=1e12
    )
    settle_at_end: bool = knob(
        True, "at episode end, run the clock on until every deal is terminal"
    )


@dataclass
class HardwareConfig:
    shares: dict[str, float] = knob(
        doc="share of each hardware class among RPs (and mediators)",
        factory=lambda: {
            "cpu_server": 0.3,
            "consumer_gpu_small": 0.2,
            "consumer_gpu": 0.3,
            "datacenter_gpu": 0.15,
            "datacenter_gpu_h100": 0.05,
        },
    )


@dataclass
class ProtocolConfig:
    preset: str = knob("lilypad_v1", "deal state machine rules", choices=tuple(PRESETS))
    slash_destination: str = knob("owner", "where slashed collateral goes", choices=("owner",))


@dataclass
class PricingConfig:
    """An RP's default deal pricing (v1: the deal takes the RP's pricing)."""

    instruction_price_wei: int = knob(
        3 * 10**16, "base price per work unit (see twin.modules)", lo=0, hi=2**63 - 1
    )
    payment_collateral_wei: int = knob(
        20 * TOKEN, "P: JC's payment collateral; the RP is paid min(C, P)", lo=0, hi=10**30
    )
    results_collateral_multiple: int = knob(2, "m: results collateral R = m * C", lo=0, hi=10**6)
    mediation_fee_wei: int = knob(
        TOKEN, "F: paid by a checking JC to the mediator", lo=0, hi=10**30
    )
    price_levels: list[float] = knob(
        doc="instruction-price multiples an RP chooses from",
        factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5],
    )
    default_price_level: int = knob(
        2, "index into price_levels used by scripted RPs", lo=0, hi=1000
    )


@dataclass
class TimeoutsConfig:
    """The four v1 timeouts. agree and mediateResults collateral are forced to 0 by the protocol."""

    enabled: bool = knob(True, "parties call timeouts when they can (pull-based)")
    agree_s: int = knob(3600, "", lo=0, hi=10**9)
    submit_results_s: int = knob(3600, "", lo=0, hi=10**9)
    judge_results_s: int = knob(3600, "", lo=0, hi=10**9)
    mediate_results_s: int = knob(3600, "", lo=0, hi=10**9)
    submit_results_collateral_wei: int = knob(TOKEN, "Ts: RP's deposit at agree", lo=0, hi=10**30)
    judge_results_collateral_wei: int = knob(TOKEN, "Tj: JC's deposit at agree", lo=0, hi=10**30)


@dataclass
class ExecutionConfig:
    cheat_cost_fraction: float = knob(
        0.0, "a fake result costs this fraction of an honest run", lo=0.0, hi=1.0
    )
    cheat_runtime_s: int = knob(1, "seconds to produce a fake result", lo=1, hi=10**9)
    inflate_factor: int = knob(
        2, "an inflating RP reports this multiple of the true count", lo=1, hi=10**6
    )
    mediator_reexecutes: bool = knob(
        True, "mediators pay the cost and latency of re-running the job"
    )


@dataclass
class CollusionConfig:
    """Collusion rings: mediators that take bribes from the RPs (or JCs) of their ring."""

    n_rings: int = knob(0, "number of rings (0: no collusion agreements)", lo=0, hi=100_000)
    mediators_per_ring: int = knob(1, "", lo=1, hi=100_000)
    rps_per_ring: int = knob(1, "", lo=0, hi=1_000_000)
    jcs_per_ring: int = knob(0, "", lo=0, hi=1_000_000)
    bribe_wei: int = knob(
        TOKEN // 2, "paid by the ring member to the mediator per colluding verdict", lo=0, hi=10**30
    )


@dataclass
class GroupConfig:
    """How the seats of one population group are filled."""

    policy: str = knob("honest", "scripted policy of the group's scripted seats (agents.baselines)")
    learning_share: float = knob(
        0.0, "share of the group's seats that are learning seats", lo=0.0, hi=1.0
    )
    cheat_probability: float = knob(
        0.5, "RP policy cheat_with_probability: P(fake result)", lo=0.0, hi=1.0
    )
    check_probability: float = knob(
        0.1, "JC policy check_with_probability: P(check)", lo=0.0, hi=1.0
    )
    price_level: int = knob(
        -1, "RP policies: price level index (-1: pricing.default_price_level)", lo=-1, hi=1000
    )


@dataclass
class PoliciesConfig:
    rp: GroupConfig = field(default_factory=lambda: GroupConfig("honest"))
    jc: GroupConfig = field(default_factory=lambda: GroupConfig("check_with_probability"))
    mediator: GroupConfig = field(default_factory=lambda: GroupConfig("honest_mediator"))


@dataclass
class EnvConfig:
    expose: str = knob(
        "learning",
        "which seats are PettingZoo agents: learning seats, or all seats",
        choices=("learning", "all"),
    )
    jc_action: str = knob(
        "discrete",
        "JC action: accept/check/wait, or a check probability",
        choices=("discrete", "probability"),
    )
    recent_window_ticks: int = knob(30, "window of the public 'recent' aggregates", lo=1, hi=10**6)


@dataclass
class TwinConfig:
    """The whole configuration of a run."""

    seed: int = knob(0, "seed of the single numpy Generator", lo=0, hi=2**63 - 1)
    market: MarketConfig = field(default_factory=MarketConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    pricing: PricingConfig = field(default_factory=PricingConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    collusion: CollusionConfig = field(default_factory=CollusionConfig)
    policies: PoliciesConfig = field(default_factory=PoliciesConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    # mechanisms (twin/mechanisms/): each off by default unless Lilypad v1 has it
    slashing: SlashingConfig = field(default_factory=SlashingConfig)
    mediation: MediationConfig = field(default_factory=MediationConfig)
    collateral: CollateralConfig = field(default_factory=CollateralConfig)
    verification: VerificationConfig = field(default_factory=VerificationConfig)
    taxes: TaxConfig = field(default_factory=TaxConfig)
    reputation: ReputationConfig = field(default_factory=ReputationConfig)
    staking: StakingConfig = field(default_factory=StakingConfig)
    prediction: PredictionConfig = field(default_factory=PredictionConfig)
    announce: AnnounceConfig = field(default_factory=AnnounceConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    fees: FeeConfig = field(default_factory=FeeConfig)
    counter_collusion: CounterCollusionConfig = field(default_factory=CounterCollusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    #: run settings read by the apps (episodes, output names, training budgets); free-form
    run: dict[str, Any] = field(default_factory=dict)


def validate(cfg: TwinConfig) -> TwinConfig:
    """Check every range and choice of ``cfg``; raise :class:`ConfigError` on the first bad field."""
    _walk(cfg, "")
    m = cfg.market
    if m.bid_multiple_high < m.bid_multiple_low:
        raise ConfigError(
            f"market.bid_multiple_high ({m.bid_multiple_high}) must be >= market.bid_multiple_low ({m.bid_multiple_low})"
        )
    from twin.solvers import SOLVERS

    if not m.solvers or any(x not in SOLVERS for x in m.solvers):
        raise ConfigError(
            f"market.solvers = {list(m.solvers)}: each must be one of {sorted(SOLVERS)} (at least one)"
        )
    _check_shares("market.module_shares", m.module_shares, MODULES)
    for k in m.modules:
        if k not in MODULES:
            raise ConfigError(
                f"market.modules: unknown job class {k!r}; allowed: {sorted(MODULES)}"
            )
    _check_shares("hardware.shares", cfg.hardware.shares, CATALOGUE)
    p = cfg.pricing
    if not p.price_levels or any(x <= 0 for x in p.price_levels):
        raise ConfigError(
            f"pricing.price_levels must be a non-empty list of positive multiples, got {p.price_levels}"
        )
    for group in ("rp",):
        lvl = getattr(cfg.policies, group).price_level
        if lvl >= len(p.price_levels):
            raise ConfigError(
                f"policies.{group}.price_level must be in [-1, {len(p.price_levels) - 1}], got {lvl}"
            )
    if not 0 <= p.default_price_level < len(p.price_levels):
        raise ConfigError(
            f"pricing.default_price_level must be in [0, {len(p.price_levels) - 1}], got {p.default_price_level}"
        )
    if max(p.price_levels) * p.instruction_price_wei * max(m.bid_multiple_high, 1) >= 2**63:
        raise ConfigError("pricing.instruction_price_wei x price level must stay below 2**63 wei")
    c = cfg.collusion
    if c.n_rings:
        for fld, n, name in (
            ("mediators_per_ring", m.n_mediators, "market.n_mediators"),
            ("rps_per_ring", m.n_resource_providers, "market.n_resource_providers"),
            ("jcs_per_ring", m.n_job_creators, "market.n_job_creators"),
        ):
            if c.n_rings * getattr(c, fld) > n:
                raise ConfigError(
                    f"collusion.{fld}: n_rings x {fld} = {c.n_rings * getattr(c, fld)} exceeds {name} = {n}"
                )
    _check_mediation(cfg.mediation)
    cc = cfg.counter_collusion
    bad = [k for k in cc.contracts if k not in ("prisoner", "colluder", "traitor")]
    if bad or "prisoner" not in cc.contracts:
        raise ConfigError(
            f"counter_collusion.contracts = {list(cc.contracts)}: each must be one of "
            "['prisoner', 'colluder', 'traitor'], and 'prisoner' must be on offer"
        )
    if cc.dispute_cost_wei > cc.wage_wei + 2 * cc.deposit_wei:
        raise ConfigError(
            f"counter_collusion.dispute_cost_wei ({cc.dispute_cost_wei}) must be at most "
            f"wage_wei + 2 * deposit_wei ({cc.wage_wei + 2 * cc.deposit_wei})"
        )
    v = cfg.verification
    for k, meth in v.per_module.items():
        if k not in MODULES:
            raise ConfigError(
                f"verification.per_module: unknown job class {k!r}; allowed: {sorted(MODULES)}"
            )
        if meth not in ("replication", "none", "proof", "tee"):
            raise ConfigError(
                f"verification.per_module.{k} = {meth!r} is not allowed; allowed values: "
                "['replication', 'none', 'proof', 'tee']"
            )
    from twin.mechanisms import mechanism_classes

    for mech in mechanism_classes():
        try:
            mech.check_config(cfg)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    t = cfg.train
    if t.minibatch_size > t.train_batch_size:
        raise ConfigError(
            f"train.minibatch_size = {t.minibatch_size} must be <= train.train_batch_size = "
            f"{t.train_batch_size} (RLlib cuts each iteration's batch into minibatches)"
        )
    check_run(cfg.run)
    from agents.baselines import check_policy  # scripted policy names and parameters

    for group in ("rp", "jc", "mediator"):
        g = getattr(cfg.policies, group)
        try:
            check_policy(group, g.policy)
        except ValueError as e:
            raise ConfigError(f"policies.{group}: {e}") from None
    return cfg


#: what ``run.mode`` may be: train the learning seats (then a greedy evaluation), or run the
#: scripted policies only
RUN_MODES = ("train", "simulate")


def check_run(run: dict[str, Any]) -> None:
    """The keys of ``run`` the apps read (the block is free-form: other keys pass): checked at
    composition, so a bad ``run.episodes`` fails before a training run, not after it."""
    if "mode" in run and run["mode"] not in RUN_MODES:
        raise ConfigError(
            f"run.mode = {run['mode']!r} is not allowed; allowed values: {list(RUN_MODES)}"
        )
    if "episodes" in run:
        n = run["episodes"]
        if isinstance(n, bool) or not isinstance(n, int):
            raise ConfigError(f"run.episodes = {n!r} must be an integer; allowed range: >= 1")
        if n < 1:
            raise ConfigError(f"run.episodes = {n} is out of range; allowed range: >= 1")
    if "name" in run:
        name = run["name"]
        if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
            raise ConfigError(
                f"run.name = {name!r} must be a non-empty name without '/' (it names the "
                "output directory outputs/<run.name>/)"
            )


def _check_mediation(md: MediationConfig) -> None:
    if md.protocol == "v1":  # one mediator, by the v1 rule: the consortium's knobs must stay off
        for fld, v1 in (("n_mediators", 1), ("threshold", 1), ("max_rounds", 1),
                        ("selection", "v1_hash"), ("commit_reveal", False)):  # fmt: skip
            if getattr(md, fld) != v1:
                raise ConfigError(
                    f"mediation.{fld} = {getattr(md, fld)!r} needs mediation.protocol=consortium "
                    f"(v1 has one mediator: {fld} = {v1!r})"
                )
        return
    if md.threshold > md.n_mediators:
        raise ConfigError(
            f"mediation.threshold (k = {md.threshold}) must be <= mediation.n_mediators (n = {md.n_mediators})"
        )
    if md.max_nodes and md.max_nodes < md.n_mediators:
        raise ConfigError(
            f"mediation.max_nodes = {md.max_nodes} must be 0 (no cap) or >= mediation.n_mediators = {md.n_mediators}"
        )


def _check_shares(name: str, shares: dict[str, float], allowed: dict) -> None:
    for k, v in shares.items():
        if k not in allowed:
            raise ConfigError(f"{name}: unknown key {k!r}; allowed: {sorted(allowed)}")
        if v < 0:
            raise ConfigError(f"{name}.{k} must be >= 0, got {v}")
    if sum(shares.values()) <= 0:
        raise ConfigError(f"{name}: shares must not all be 0")


def _walk(obj: Any, prefix: str) -> None:
    known = [f.name for f in dataclasses.fields(obj)]
    extra = sorted(set(vars(obj)) - set(known))
    if extra:
        raise ConfigError(
            f"{prefix}{extra[0]}: unknown key; allowed keys of {prefix.rstrip('.') or 'the root'}: {known}"
        )
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _walk(value, path + ".")
            continue
        meta = f.metadata
        lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(f"{path} = {value!r} is not allowed; allowed values: {list(choices)}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"{path} = {value!r} is out of range; allowed range: [{lo}, {hi}]")


def register_schemas() -> None:
    """Register the schema in Hydra's ConfigStore (``configs/config.yaml`` lists ``twin_schema``)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="twin_schema", node=TwinConfig)
