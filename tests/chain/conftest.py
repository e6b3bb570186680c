"""Fixtures of the chain tests: one anvil node per test session (a free loopback port, stopped at
the end), one deployment per module, and an `evm_snapshot` / `evm_revert` around every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from web3 import Web3

from bridge.anvil import Anvil
from bridge.contracts import LilypadClient, parties_from_mnemonic
from bridge.deploy import Deployment, deploy

PARTY_NAMES = (
    "owner", "solver", "jc", "rp", "m1", "m2", "m3", "jc2", "rp2", "outsider", "treasury",
)  # fmt: skip
TOKEN = 10**18
START_TOKENS_WEI = 1_000 * TOKEN  # every party but the owner starts with this


@pytest.fixture(scope="session")
def anvil_node() -> Iterator[Anvil]:
    with Anvil() as node:
        yield node


@pytest.fixture(scope="session")
def w3(anvil_node: Anvil) -> Web3:
    return Web3(Web3.HTTPProvider(anvil_node.url, request_kwargs={"timeout": 60}))


@pytest.fixture(scope="session")
def parties():
    return parties_from_mnemonic(PARTY_NAMES)


@pytest.fixture(scope="session")
def addr(parties) -> dict[str, str]:
    return {name: account.address for name, account in parties.items()}


def deploy_funded(w3: Web3, parties, **options) -> tuple[Deployment, LilypadClient]:
    """A fresh contract set; the owner funds every other party with START_TOKENS_WEI."""
    deployment = deploy(w3, parties["owner"], **options)
    client = LilypadClient(w3, deployment, {a.address: n for n, a in parties.items()})
    for name, account in parties.items():
        if name != "owner":
            client.transfer(parties["owner"], account.address, START_TOKENS_WEI)
    return deployment, client


@pytest.fixture(scope="module")
def module_client(w3: Web3, parties) -> LilypadClient:
    return deploy_funded(w3, parties)[1]


@pytest.fixture
def client(module_client: LilypadClient) -> Iterator[LilypadClient]:
    """The module's deployment, restored to its funded state after the test."""
    snapshot = module_client.snapshot()
    yield module_client
    module_client.revert(snapshot)
