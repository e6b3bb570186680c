"""The chain layer itself: anvil lifecycle, clear errors when tools or artifacts are missing,
deployment descriptions round-tripping through JSON, attaching to an existing deployment, and
revert decoding."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak
from web3 import Web3

from bridge.anvil import Anvil, AnvilNotFoundError, anvil_binary
from bridge.artifacts import ArtifactsNotBuiltError, all_abis, load_artifact
from bridge.contracts import LilypadClient
from bridge.deploy import Deployment
from bridge.errors import ErrorDecoder
from bridge.types import AgreementState
from tests.chain.helpers import default_terms

pytestmark = pytest.mark.chain


def test_anvil_starts_on_a_free_port_and_stops(tmp_path: Path) -> None:
    with Anvil(chain_id=4242) as node:
        assert node.running
        w3 = Web3(Web3.HTTPProvider(node.url))
        assert w3.eth.chain_id == 4242
        port = node.port
    assert not node.running
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):  # nothing listens any more
        s.connect(("127.0.0.1", port))


def test_missing_anvil_binary_names_the_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWIN_ANVIL", "/nonexistent/anvil")
    with pytest.raises(AnvilNotFoundError, match="scripts/setup.sh"):
        anvil_binary()


def test_missing_artifacts_name_the_build(tmp_path: Path) -> None:
    with pytest.raises(ArtifactsNotBuiltError, match="build"):
        load_artifact("LilypadController", tmp_path)


def test_deployment_round_trips_through_json(module_client: LilypadClient, tmp_path: Path) -> None:
    deployment = module_client.deployment
    path = deployment.save(tmp_path / "deployment.json")
    assert Deployment.load(path) == deployment
    data = json.loads(path.read_text())
    with pytest.raises(ValueError, match="unknown"):
        Deployment.from_dict({**data, "typo": 1})
    # JSON of the earlier bridge: a v1 deployment (consortium_threshold 0) still loads; its
    # k-of-n consortium contract is refused by name
    old = {k: v for k, v in data.items() if k != "consortium"}
    assert Deployment.from_dict({**old, "consortium_threshold": 0}) == deployment
    with pytest.raises(ValueError, match="earlier k-of-n contract"):
        Deployment.from_dict({**old, "mediation_kind": "consortium", "consortium_threshold": 2})


def test_attach_to_an_existing_deployment(client, w3, parties, addr, tmp_path: Path) -> None:
    path = client.deployment.save(tmp_path / "deployment.json")
    attached = LilypadClient(w3, Deployment.load(path))
    terms = default_terms(addr)
    attached.agree(parties["rp"], terms)
    assert client.state(terms.deal_id) == AgreementState.DealNegotiating
    controller = client.view("controller", "getStorageAddress")[0]
    assert controller == client.deployment.storage
    wiring = [client.view("controller", f"get{n}Address")[0] for n in ("Payments", "Mediation")]
    assert wiring == [client.deployment.payments, client.deployment.mediation]
    assert client.view("controller", "getUsersAddress")[0] == client.deployment.users


def test_error_decoder_knows_every_custom_error_and_the_builtins() -> None:
    decoder = ErrorDecoder(all_abis())
    data = keccak(text="WrongState(string,uint8,uint8)")[:4] + abi_encode(
        ["string", "uint8", "uint8"], ["d", 1, 2]
    )
    decoded = decoder.decode(data)
    assert decoded.name == "WrongState"
    assert decoded.args == {
        "dealId": "d",
        "expected": AgreementState.DealAgreed,
        "actual": AgreementState.ResultsSubmitted,
    }
    panic = keccak(text="Panic(uint256)")[:4] + abi_encode(["uint256"], [0x11])
    assert decoder.decode(panic).args["meaning"] == "arithmetic overflow or underflow"
    message = keccak(text="Error(string)")[:4] + abi_encode(["string"], ["nope"])
    assert decoder.decode(message).args == {"message": "nope"}
    assert decoder.decode(b"").name == "EmptyRevert"
    assert decoder.decode(b"\x01\x02\x03\x04").name == "UnknownError"
