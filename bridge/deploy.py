"""Deploy the full Lilypad contract set wired together, and describe a deployment as a
`Deployment` (JSON-serialisable, so the bridge can attach to an existing deployment).

The contracts take their peers' addresses as immutable constructor arguments; the addresses are
computed in advance from the deployer's nonce (CREATE addresses), and checked after deployment.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.utils.address import get_create_address

from bridge.abi import AbiCodec
from bridge.artifacts import all_abis, load_artifact
from bridge.errors import ErrorDecoder
from bridge.transact import Sender

TOKEN_NAME = "Lilypad"
TOKEN_SYMBOL = "LP"
DEFAULT_INITIAL_SUPPLY_WEI = 10**9 * 10**18  # 1e9 whole tokens
MEDIATION_KINDS = ("v1", "consortium")
MEDIATION_CONTRACTS = {"v1": "LilypadMediation", "consortium": "LilypadMediationConsortium"}
FEE_SPLITS = ("equal", "majority")
#: Contract-set variants: "" is ours (the intended v1); "deployed_v1_defects" is a reproduction of
#: the documented defects of the deployed v1 contracts (spec section 4), for parity checks of the
#: twin's `lilypad_v1_deployed` preset only. Variant -> (controller, payments) contract names.
VARIANTS = {
    "": ("LilypadController", "LilypadPayments"),
    "deployed_v1_defects": (
        "LilypadControllerDeployedV1Defects",
        "LilypadPaymentsDeployedV1Defects",
    ),
}
ZERO_ADDRESS = "0x" + "00" * 20


@dataclass(frozen=True)
class JackpotOptions:
    """Rates of the optional tax / jackpot pool (exact fractions, see docs/contracts.md)."""

    tax_numerator: int = 0  # tax = floor(job payment * tax_numerator / tax_denominator)
    tax_denominator: int = 1
    payout_numerator: int = 1  # payout = floor(pool * payout_numerator / payout_denominator)
    payout_denominator: int = 3


@dataclass(frozen=True)
class ConsortiumOptions:
    """Parameters of the consortium mediation contract: the twin's ``mediation.*`` of the same
    names (``selection=v1_hash``, public votes; docs/contracts.md section 1)."""

    n_mediators: int = 3  # n, mediators drawn per round
    threshold: int = 2  # k, agreeing votes that decide a round (1 <= k <= n)
    max_rounds: int = 1  # rounds at most
    max_nodes: int = 0  # mediators over all rounds at most (0: no cap, else >= n)
    fee_split: str = "equal"  # "equal" (every voter) or "majority" (voters of the verdict)

    def __post_init__(self) -> None:
        if self.fee_split not in FEE_SPLITS:
            raise ValueError(f"fee_split must be one of {FEE_SPLITS}, not {self.fee_split!r}")

    @classmethod
    def from_twin(cls, mediation: dict) -> ConsortiumOptions:
        """The options of a twin config's ``mediation`` group (a dict)."""
        return cls(**{f.name: mediation[f.name] for f in fields(cls) if f.name in mediation})

    def constructor_args(self) -> tuple:
        return (self.n_mediators, self.threshold, self.max_rounds, self.max_nodes,
                self.fee_split == "majority")  # fmt: skip


@dataclass(frozen=True)
class Deployment:
    """Addresses of one deployed contract set (checksummed hex strings)."""

    chain_id: int
    controller: str
    storage: str
    payments: str
    mediation: str
    users: str
    token: str
    owner: str
    funder: str
    slashing_destination: str
    mediation_kind: str = "v1"
    deployer: str = ""
    block_number: int = 0
    jackpot: str = ""  # the tax / jackpot pool ("" = none)
    #: the consortium mediation's parameters (ConsortiumOptions as a dict; empty for v1)
    consortium: dict = field(default_factory=dict)
    variant: str = ""  # "" (ours) or "deployed_v1_defects" (reproduction of the deployed defects)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Deployment:
        data = dict(data)
        if "consortium_threshold" in data:  # a record of the bridge before the round contract
            if data.pop("consortium_threshold") or data.get("mediation_kind") == "consortium":
                raise ValueError(
                    "this deployment's LilypadMediationConsortium is the earlier k-of-n contract "
                    "(field consortium_threshold), which the bridge no longer drives: deploy again "
                    "(bridge.deploy.deploy with consortium=ConsortiumOptions(...))"
                )
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown Deployment fields: {sorted(unknown)}")
        return cls(**data)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Deployment:
        return cls.from_dict(json.loads(Path(path).read_text()))


def deploy(
    w3: Web3,
    deployer: LocalAccount,
    *,
    owner: str | None = None,
    funder: str | None = None,
    slashing_destination: str | None = None,
    initial_supply_wei: int = DEFAULT_INITIAL_SUPPLY_WEI,
    mediation_kind: str = "v1",
    consortium: ConsortiumOptions | None = None,
    jackpot: JackpotOptions | None = None,
    variant: str = "",
) -> Deployment:
    """Deploys Token, Storage, Payments, Mediation, Users, Controller (and the optional jackpot
    pool) from `deployer`.

    Args:
        owner: owner of the payments contract (sets the slashing destination) and of the pool;
            default the deployer.
        funder: receives the whole initial token supply; default the deployer.
        slashing_destination: receives slashed collateral: an address, "jackpot" (the pool), or
            None for the owner.
        initial_supply_wei: total token supply in base units.
        mediation_kind: "v1" (one mediator chosen by block timestamp) or "consortium" (k of n
            in rounds).
        consortium: the consortium's parameters (default `ConsortiumOptions()`: 2 of 3, one
            round, the fee to every voter).
        jackpot: rates of the tax / jackpot pool; None deploys no pool.
        variant: "" deploys our contracts (the intended v1); "deployed_v1_defects" deploys the
            reproduction of the deployed v1 contracts' documented defects (controller and
            payments; contracts/src/reproductions/), to check the twin's `lilypad_v1_deployed`
            preset against it. Never the default.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, not {variant!r}")
    controller_name, payments_name = VARIANTS[variant]
    if mediation_kind not in MEDIATION_KINDS:
        raise ValueError(f"mediation_kind must be one of {MEDIATION_KINDS}, not {mediation_kind!r}")
    if slashing_destination == "jackpot" and jackpot is None:
        raise ValueError('slashing_destination="jackpot" needs a jackpot pool (jackpot=...)')
    owner = Web3.to_checksum_address(owner or deployer.address)
    funder = Web3.to_checksum_address(funder or deployer.address)
    sender = Sender(w3, ErrorDecoder(all_abis()), {deployer.address: "deployer"})
    nonce = w3.eth.get_transaction_count(deployer.address, "pending")
    order = ("token", "storage", "payments", "mediation", "users", "controller", "jackpot")
    at = {name: get_create_address(deployer.address, nonce + i) for i, name in enumerate(order)}
    pool = at["jackpot"] if jackpot is not None else ZERO_ADDRESS
    if slashing_destination == "jackpot":
        slashing = at["jackpot"]
    else:
        slashing = Web3.to_checksum_address(slashing_destination or owner)
    mediation_args: tuple = (at["controller"], at["storage"])
    if mediation_kind == "consortium":
        consortium = consortium or ConsortiumOptions()
        mediation_args += consortium.constructor_args()
    else:
        consortium = None
    plan = [
        ("token", "LilypadToken",
         (TOKEN_NAME, TOKEN_SYMBOL, initial_supply_wei, funder, at["payments"])),
        ("storage", "LilypadStorage", (at["controller"],)),
        ("payments", payments_name, (at["token"], at["controller"], owner, slashing, pool)),
        ("mediation", MEDIATION_CONTRACTS[mediation_kind], mediation_args),
        ("users", "LilypadUsers", ()),
        ("controller", controller_name,
         (at["storage"], at["payments"], at["mediation"], at["users"])),
    ]  # fmt: skip
    if jackpot is not None:
        plan.append(
            ("jackpot", "LilypadJackpot",
             (at["token"], at["payments"], owner, jackpot.tax_numerator, jackpot.tax_denominator,
              jackpot.payout_numerator, jackpot.payout_denominator))
        )  # fmt: skip
    block = 0
    for name, contract_name, args in plan:
        artifact = load_artifact(contract_name)
        data = AbiCodec(artifact.abi).encode_constructor(artifact.bytecode, *args)
        receipt = sender.send(deployer, None, data, f"deploy {contract_name}")
        deployed = Web3.to_checksum_address(receipt["contractAddress"])
        if deployed != at[name]:
            raise RuntimeError(
                f"{contract_name} deployed at {deployed}, expected {at[name]}: "
                "another transaction from the deployer interleaved with the deployment"
            )
        block = int(receipt["blockNumber"], 16)
    return Deployment(
        chain_id=w3.eth.chain_id,
        controller=at["controller"],
        storage=at["storage"],
        payments=at["payments"],
        mediation=at["mediation"],
        users=at["users"],
        token=at["token"],
        owner=owner,
        funder=funder,
        slashing_destination=slashing,
        mediation_kind=mediation_kind,
        deployer=deployer.address,
        block_number=block,
        jackpot=at["jackpot"] if jackpot is not None else "",
        consortium=asdict(consortium) if consortium is not None else {},
        variant=variant,
    )
