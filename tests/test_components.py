"""Content ids, the v1 mediator choice, hardware populations, job classes and execution plans."""

from __future__ import annotations

import numpy as np
import pytest
from Crypto.Hash import keccak

from twin.deals import Deal, ExecMode
from twin.execution import plan, reexecute
from twin.hardware import CATALOGUE, draw_fleet
from twin.ids import base32_lower, content_id, content_id_reference
from twin.mediation import v1_mediator_index
from twin.modules import MODULES, draw_work_units, runtime_s


@pytest.mark.parametrize(
    "record", [{}, {"a": 1}, {"jobCreator": "0xabc", "spec": {"cpu": 1000}, "n": [1, 2, 3]}]
)
def test_cid_fast_path_equals_library(record):
    assert content_id(record) == content_id_reference(record)
    assert content_id(record).startswith("bafkrei")  # CIDv1, raw, sha2-256, base32


def test_base32_matches_stdlib():
    import base64

    rng = np.random.default_rng(0)
    for n in range(0, 50):
        raw = rng.bytes(n)
        assert base32_lower(raw) == base64.b32encode(raw).decode().lower().rstrip("=")


def test_v1_mediator_index_is_keccak_of_packed_timestamp_and_deal_id():
    # computed independently with pycryptodome: keccak256(uint256(ts) ++ utf8(dealId)) mod n
    ts, did = 1_700_000_060, "bafkreiexample"
    h = keccak.new(digest_bits=256, data=ts.to_bytes(32, "big") + did.encode()).digest()
    assert v1_mediator_index(ts, did, 7) == int.from_bytes(h, "big") % 7
    picks = {v1_mediator_index(t, did, 3) for t in range(1_700_000_000, 1_700_000_050)}
    assert picks == {0, 1, 2}  # the timestamp steers the choice


def test_fleet_follows_shares_exactly():
    rng = np.random.default_rng(0)
    f = draw_fleet(10, {"cpu_server": 0.3, "consumer_gpu": 0.7}, rng)
    names = [f.classes[i].name for i in f.class_index]
    assert names.count("cpu_server") == 3 and names.count("consumer_gpu") == 7
    assert (f.gpu_count[np.array(names) == "cpu_server"] == 0).all()


def test_hardware_cost_in_wei_per_second():
    # RTX 4090 at $0.40/h and $0.02 per token: 20 tokens per hour = 20e18 / 3600 wei per second
    assert CATALOGUE["consumer_gpu"].cost_wei_per_s(0.02) == 20 * 10**18 // 3600


def test_work_and_runtime():
    rng = np.random.default_rng(0)
    w = draw_work_units(MODULES["sdxl"], rng, 10_000)
    assert w.min() >= 1 and 7 <= np.median(w) <= 9  # median 8 units
    assert runtime_s(10, 2.0) == 5 and runtime_s(11, 2.0) == 6 and runtime_s(1, 100.0) == 1
    with pytest.raises(ValueError):
        runtime_s(5, 0.0)


def _deal(units=10):
    d = Deal(0, 1, 2, 0, (3,), 0, units, 5, 100, 2, 1, (10, 10, 10, 10), 1, 1, 0, 0, 0)
    return d


def test_execution_plans():
    rng = np.random.default_rng(0)
    job = MODULES["cowsay"]
    # honest on a machine with speed 2 and 7 wei/s: runtime ceil(10/2) = 5 s, cost 35 wei
    p = plan(ExecMode.Honest, job, 10, 2.0, 7, 0.0, 1, 2, rng)
    assert (p.ready_in_s, p.cost_wei, p.units_reported, p.correct) in (
        (5, 35, 10, True),
        (-1, 35, 10, True),
    )
    p = plan(ExecMode.Cheat, job, 10, 2.0, 7, 0.1, 3, 2, rng)
    assert (p.ready_in_s, p.cost_wei, p.units_reported, p.correct) == (
        3,
        3,
        10,
        False,
    )  # int(35 * 0.1)
    p = plan(ExecMode.Inflate, job, 10, 2.0, 7, 0.0, 1, 4, rng)
    assert (p.cost_wei, p.units_reported, p.correct) == (35, 40, True)
    p = plan(ExecMode.Skip, job, 10, 2.0, 7, 0.0, 1, 2, rng)
    assert p.ready_in_s == -1 and p.cost_wei == 0


def test_reexecution_detects_fakes_inflation_and_nondeterminism():
    rng = np.random.default_rng(0)
    d = _deal()
    d.correct, d.units_reported = True, 10
    assert reexecute(d, MODULES["cowsay"], 1.0, 1, rng).data_matches
    d.correct = False
    assert not reexecute(d, MODULES["cowsay"], 1.0, 1, rng).data_matches
    d.correct, d.units_reported = True, 20
    assert not reexecute(d, MODULES["cowsay"], 1.0, 1, rng).count_matches
    d.units_reported = 10
    lora = MODULES["lora_finetune"]  # honest runs differ with probability 0.9
    rate = np.mean([not reexecute(d, lora, 1.0, 1, rng).data_matches for _ in range(4000)])
    assert abs(rate - lora.nondeterminism_prob) < 0.03
