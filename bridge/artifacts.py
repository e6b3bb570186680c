"""Load the compiled contract artifacts (contracts/out/<Name>.json, built by the set-up)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from twin.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS_DIR = REPO_ROOT / "contracts" / "out"
BUILD_COMMAND = "node scripts/build_contracts.mjs"


class ArtifactsNotBuiltError(UserError, FileNotFoundError):
    """The contracts have not been compiled (or not this contract)."""


@dataclass(frozen=True)
class Artifact:
    """ABI and creation bytecode of one compiled contract."""

    name: str
    abi: tuple[dict, ...]
    bytecode: str
    deployed_bytecode: str


@functools.lru_cache(maxsize=64)
def load_artifact(name: str, directory: Path | None = None) -> Artifact:
    """The artifact of contract `name` (e.g. "LilypadController")."""
    root = directory or ARTIFACTS_DIR
    path = root / f"{name}.json"
    if not path.is_file():
        hint = (
            f"run the set-up (`bash scripts/setup.sh`) or `{BUILD_COMMAND}`"
            if root == ARTIFACTS_DIR
            else "build the contracts into it"
        )
        raise ArtifactsNotBuiltError(f"no compiled artifact {path}: {hint}")
    data = json.loads(path.read_text())
    return Artifact(
        name=data["contractName"],
        abi=tuple(data["abi"]),
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
    )


def all_abis(directory: Path | None = None) -> list[dict]:
    """Every ABI entry of every built artifact (to decode any custom error or event)."""
    root = directory or ARTIFACTS_DIR
    if not root.is_dir():
        raise ArtifactsNotBuiltError(f"no compiled artifacts in {root}: run `{BUILD_COMMAND}`")
    entries: list[dict] = []
    for path in sorted(root.glob("*.json")):
        entries.extend(load_artifact(path.stem, directory).abi)
    return entries
