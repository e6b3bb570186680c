"""User errors of the command-line tools: one line, exit status 2, the field named (no Ray)."""

from __future__ import annotations

import socket
import time

import pytest

import twin
from agents.ray_address import check_address
from agents.train import train
from twin.config import ConfigError
from twin.errors import UserError


def _closed_port() -> int:
    """A local TCP port where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_ray_address_fails_fast_naming_the_field(tmp_path):
    address = f"127.0.0.1:{_closed_port()}"
    cfg = twin.compose(["train=smoke", f"train.ray.address={address}"])
    t0 = time.perf_counter()
    with pytest.raises(UserError, match=rf"^train.ray.address = '{address}': no Ray cluster"):
        train(cfg, tmp_path / "run")
    assert time.perf_counter() - t0 < 10  # ray.init would retry for minutes
    assert not (tmp_path / "run").exists()  # failed before writing anything


@pytest.mark.parametrize("address", ["localhost", "10.0.0.5:0", "10.0.0.5:70000", "http://x:1"])
def test_malformed_ray_address_lists_the_allowed_forms(address):
    with pytest.raises(ConfigError, match=r"^train.ray.address = .* is not allowed; allowed"):
        check_address(address)


def test_local_and_auto_addresses_are_not_checked():
    check_address("")
    check_address("auto")


def test_bridge_input_errors_are_user_errors_and_findings_are_not():
    from bridge.anvil import AnvilNotFoundError
    from bridge.artifacts import ArtifactsNotBuiltError
    from bridge.keys import KeysError
    from bridge.plan import RecordError, UnsupportedRecordError
    from bridge.replay import (
        ReplayDivergenceError,
        ReplayError,
        ReplayStateError,
        RpcUnreachableError,
        UnderfundedAccountError,
        WrongChainIdError,
    )

    for cls, base in ((RpcUnreachableError, ReplayError), (WrongChainIdError, ReplayError),
                      (UnderfundedAccountError, ReplayError), (RecordError, ValueError),
                      (UnsupportedRecordError, RecordError), (KeysError, ValueError),
                      (AnvilNotFoundError, FileNotFoundError),
                      (ArtifactsNotBuiltError, FileNotFoundError)):  # fmt: skip
        assert issubclass(cls, UserError) and issubclass(cls, base), cls
    assert str(RpcUnreachableError("rpc down", tx="0x1")) == "rpc down; transaction 0x1"
    for cls in (ReplayDivergenceError, ReplayStateError):  # a finding or a bug: a traceback
        assert not issubclass(cls, UserError), cls


def test_twin_train_reports_a_misspelt_key_on_one_line(tmp_path):
    """The command line is composed once before Hydra's own composition (whose message only
    suggests appending the key with "+"): one line with the allowed keys, status 2."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "agents.train", "train=smoke", "train.iteratoins=2",
         f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = proc.stderr.splitlines()
    assert line.startswith("twin-train: train.iteratoins: unknown key; allowed keys of train: [")
    assert line.endswith("did you mean train.iterations?")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("module", "override", "line"),
    [
        ("agents.evaluate", "episodez=3",
         "twin-eval: episodez: unknown key; allowed keys of the root: ['checkpoint', 'episodes',"),
        ("bridge.replay_app", "episodez=3",
         "twin-replay: episodez: unknown key; allowed keys of the root: ['checkpoint', 'record',"),
        ("agents.exploit", "normalizer=payment_collateral",
         "twin-exploit: normalizer: unknown key; allowed keys of the root: ['exploit', 'seed',"),
    ],
)  # fmt: skip
def test_every_hydra_tool_reports_a_misspelt_key_on_one_line(tmp_path, module, override, line):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", module, override, f"hydra.run.dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    (got,) = proc.stderr.splitlines()
    assert got.startswith(line)
    key = override.split("=")[0]
    assert got.endswith("did you mean episodes?" if key == "episodez" else "exploit.normalizer?")


def test_training_tools_run_with_a_fixed_string_hash_seed():
    """RLlib orders a batch's agents by iterating sets of agent ids, so training is the same
    across processes only with one string-hash seed: a tool re-executes itself once with
    PYTHONHASHSEED=0 (agents/hashseed.py), whatever seed it was started with."""
    import subprocess
    import sys

    code = ("from agents.hashseed import reexec_with_fixed_hash_seed as r; r(); import os; "
            "print(os.environ['PYTHONHASHSEED'], sorted({'rp_0', 'rp_1', 'rp_2'}) == "
            "list(dict.fromkeys(sorted({'rp_0', 'rp_1', 'rp_2'}))), list({'rp_0', 'rp_1', 'rp_2'}))")  # fmt: skip
    outs = set()
    for seed in ("5", "7", "0"):
        env = dict(__import__("os").environ, PYTHONHASHSEED=seed)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("0 True")
        outs.add(proc.stdout)
    assert len(outs) == 1  # the same set iteration order in every process
