"""Gas of every Lilypad call on our contracts, per call and per lifecycle path, next to the
published Lilypad v1 figures (happy path: agree RP ~710k, agree JC ~300k, addResult ~290k,
acceptResult ~210k, ~1.51M in all).

Deploys on a fresh anvil and runs the happy path, check-accept and check-reject paths twice:
once as the parties' first deal (which also pays one-off storage: the parties' deal-list heads
and first escrow slots) and once more as a later deal (steady state). Prints a markdown table and
writes it to `--out` (default outputs/gas_bench.md). Also measures the calls that the optional
mechanisms (consortium mediation, tax / jackpot pool) change.

Run: python -m experiments.gas_bench
"""

from __future__ import annotations

import argparse
from pathlib import Path

from web3 import Web3

from bridge.anvil import Anvil
from bridge.contracts import LilypadClient, parties_from_mnemonic
from bridge.deploy import ConsortiumOptions, JackpotOptions, deploy
from bridge.types import DealTerms

# Published gas of the deployed Lilypad v1 contracts (happy path; no published check path).
V1_GAS = {
    "agree (RP)": 710_000,
    "agree (JC)": 300_000,
    "addResult": 290_000,
    "acceptResult": 210_000,
}
TOKEN = 10**18
# Realistic ids: CIDv1 base32 strings (59 characters), as the solver and the agents produce.
CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbz{:03d}"

PATHS = {
    "happy path": ("agree (RP)", "agree (JC)", "addResult", "acceptResult"),
    "check, mediator accepts": (
        "agree (RP)", "agree (JC)", "addResult", "checkResult", "mediationAcceptResult",
    ),
    "check, mediator rejects": (
        "agree (RP)", "agree (JC)", "addResult", "checkResult", "mediationRejectResult",
    ),
}  # fmt: skip
# Optional mechanisms (docs/contracts.md): path -> (deployment options, calls).
OPTION_PATHS = {
    "consortium 2-of-3, accepted": (
        {"mediation_kind": "consortium", "consortium": ConsortiumOptions(3, 2)},
        ("checkResult", "vote 1 (accept)", "vote 2 (accept)", "vote 3 (accept, decides)"),
    ),
    "jackpot: happy path, taxed": (
        {"jackpot": JackpotOptions(tax_numerator=1, tax_denominator=10)},
        ("acceptResult",),
    ),
    "jackpot: rejected, slash to pool, payout": (
        {"jackpot": JackpotOptions(), "slashing_destination": "jackpot"},
        ("checkResult", "mediationRejectResult"),
    ),
}


def run_path(client: LilypadClient, parties, path: str, deal_no: int) -> dict[str, int]:
    """Runs one lifecycle path on a new deal; returns gas per call."""
    a = {n: acct.address for n, acct in parties.items()}
    mediators = (a["m1"], a["m2"], a["m3"]) if path.startswith("consortium") else (a["m1"],)
    terms = DealTerms(CID.format(deal_no), a["solver"], a["jc"], a["rp"], mediators)
    deal_id = terms.deal_id
    gas: dict[str, int] = {}
    gas["agree (RP)"] = client.agree(parties["rp"], terms).gas_used
    gas["agree (JC)"] = client.agree(parties["jc"], terms).gas_used
    results, data = CID.format(500 + deal_no), CID.format(900 + deal_no)
    gas["addResult"] = client.add_result(parties["rp"], deal_id, results, data, 1).gas_used
    if path in ("happy path", "jackpot: happy path, taxed"):
        gas["acceptResult"] = client.accept_result(parties["jc"], deal_id).gas_used
        return gas
    gas["checkResult"] = client.check_result(parties["jc"], deal_id).gas_used
    if path.startswith("consortium"):
        # one round of all three: it is tallied when the last of them has voted
        gas["vote 1 (accept)"] = client.mediation_accept_result(parties["m1"], deal_id).gas_used
        gas["vote 2 (accept)"] = client.mediation_accept_result(parties["m2"], deal_id).gas_used
        decide = client.mediation_accept_result(parties["m3"], deal_id)
        gas["vote 3 (accept, decides)"] = decide.gas_used
    elif path == "check, mediator accepts":
        r = client.mediation_accept_result(parties["m1"], deal_id)
        gas["mediationAcceptResult"] = r.gas_used
    else:
        r = client.mediation_reject_result(parties["m1"], deal_id)
        gas["mediationRejectResult"] = r.gas_used
    return gas


def measure() -> dict[str, tuple[dict[str, int], dict[str, int]]]:
    """{path: (gas of the parties' first deal, gas of a later deal)}, each a fresh deployment."""
    parties = parties_from_mnemonic(("owner", "solver", "jc", "rp", "m1", "m2", "m3"))
    out = {}
    with Anvil() as node:
        w3 = Web3(Web3.HTTPProvider(node.url))
        runs = [(p, {}) for p in PATHS] + [(p, o) for p, (o, _) in OPTION_PATHS.items()]
        for path, options in runs:
            client = LilypadClient(w3, deploy(w3, parties["owner"], **options))
            for name in ("jc", "rp"):
                client.transfer(parties["owner"], parties[name].address, 1_000 * TOKEN)
            if client.deployment.jackpot:
                client.transfer(parties["owner"], client.deployment.jackpot, 30 * TOKEN)
            first = run_path(client, parties, path, len(out) * 10)
            later = run_path(client, parties, path, len(out) * 10 + 1)
            out[path] = (first, later)
    return out


def _k(gas: int) -> str:
    return f"{gas / 1000:,.1f}k"


def markdown(results: dict[str, tuple[dict[str, int], dict[str, int]]]) -> str:
    lines = [
        "| path | call | first deal | later deal | published v1 | later / v1 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for path, (first, later) in results.items():
        if path in OPTION_PATHS:
            continue
        for call in PATHS[path]:
            v1 = V1_GAS.get(call)
            ratio = f"{later[call] / v1:.0%}" if v1 else ""
            lines.append(
                f"| {path} | {call} | {_k(first[call])} | {_k(later[call])} | "
                f"{_k(v1) if v1 else 'n/a'} | {ratio} |"
            )
        total_first, total_later = sum(first.values()), sum(later.values())
        v1_total = sum(V1_GAS.values()) if path == "happy path" else None
        ratio = f"{total_later / v1_total:.0%}" if v1_total else ""
        lines.append(
            f"| **{path}** | **total** | **{_k(total_first)}** | **{_k(total_later)}** | "
            f"{'**' + _k(v1_total) + '**' if v1_total else 'n/a'} | {ratio} |"
        )
    lines += [
        "",
        "Optional mechanisms (docs/contracts.md), later deal, the calls that differ from v1:",
        "",
        "| option | call | gas |",
        "|---|---|---:|",
    ]
    for path, (_, calls) in OPTION_PATHS.items():
        if path in results:
            later = results[path][1]
            lines += [f"| {path} | {call} | {_k(later[call])} |" for call in calls]
    lines.append("")
    lines.append(
        "First deal: the parties' first deal on a fresh deployment (pays their first escrow and "
        "deal-list slots). Later deal: the same path again (steady state). Ids are 59-character "
        "CIDs, one mediator, spec default pricing. Published v1: the deployed Lilypad v1 contracts."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/gas_bench.md"))
    args = parser.parse_args(argv)
    table = markdown(measure())
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("# Gas per call and per path\n\n" + table)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
