"""Training end to end on one shared Ray cluster: checkpoints, metrics, plots, resume after a
kill, inference without Ray, ``twin-eval`` and its episode record, the main job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import twin
from agents.measures import MEASURES
from agents.policies import list_checkpoints, load
from agents.schema import RayConfig
from agents.train import METRICS, ray_session, train
from experiments.record import read_record
from twin.config import ConfigError

pytestmark = pytest.mark.slow

TINY = (
    "market.n_job_creators=4",
    "market.n_resource_providers=5",
    "market.n_mediators=2",
    "market.episode_ticks=30",
    "policies.rp.learning_share=0.4",
    "policies.rp.policy=cheat_with_probability",
    "train=smoke",
)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    """One local Ray for the whole module; subprocesses join it through train.ray.address."""
    import ray

    with ray_session(RayConfig(), tmp_path_factory.mktemp("ray")):
        yield ray.get_runtime_context().gcs_address


@pytest.fixture(scope="module")
def trained(ray_address, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    res = train(twin.compose(list(TINY)), run_dir)
    return res


def test_tiny_training_writes_checkpoints_metrics_and_plots(trained):
    run = trained.run_dir
    assert trained.iterations == 3
    assert [p.name for p in list_checkpoints(run)] == [f"iter_00000{i}" for i in (1, 2, 3)]
    ckpt = trained.checkpoint
    assert ckpt.name == "iter_000003"
    assert (ckpt / "learner_group/learner/rl_module/rp").is_dir()
    assert json.loads((ckpt / "seats.json").read_text())["policy_of"] == {
        "rp_0": "rp",
        "rp_1": "rp",
    }
    m = pd.read_parquet(run / METRICS)
    assert list(m.groupby("iteration").size()) == [4, 4, 4]
    assert set(m.role) == {"market", "rp", "jc", "mediator"}
    for col in (*MEASURES, *(f"learning_{k}" for k in MEASURES), "module_return_mean",
                "policy_loss", "entropy", "time_this_iter_s", "env_steps_lifetime"):  # fmt: skip
        assert col in m.columns, col
    rp = m[m.role == "rp"]
    assert rp.policies.eq("rp").all() and np.isfinite(rp.module_return_mean).all()
    assert rp.learning_cheat_rate.between(0, 1).all()
    market = m[m.role == "market"]
    assert (market.deals_per_episode > 0).all() and (market.collateral_locked_tokens > 0).all()
    assert market.env_steps_lifetime.is_monotonic_increasing
    assert (run / "training.png").stat().st_size > 20_000
    assert (run / "config.yaml").read_text().count("learning_share: 0.4") == 1
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["iterations"] == 3 and "learning_cheat_rate" in summary["rp"]


def test_same_seed_same_training(trained, tmp_path):
    # every run is reproducible from its seed: a second run of the same config gives the same
    # metrics table, losses included (only the wall-clock columns differ), and the same weights
    again = train(twin.compose(list(TINY)), tmp_path / "again")
    a, b = pd.read_parquet(trained.run_dir / METRICS), pd.read_parquet(again.run_dir / METRICS)
    clocks = ["time_this_iter_s", "time_total_s", "sampling_s", "learning_s"]
    pd.testing.assert_frame_equal(a.drop(columns=clocks), b.drop(columns=clocks))
    assert a.policy_loss.notna().any() and a.entropy.notna().any()  # losses were compared
    wa, wb = _weights(trained.checkpoint), _weights(again.checkpoint)
    assert wa.keys() == wb.keys() and wa
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)


def _weights(checkpoint) -> dict[str, np.ndarray]:
    """Every tensor of every RLModule of ``checkpoint``, by policy id and parameter name."""
    return {
        f"{pid}:{name}": t.detach().numpy()
        for pid, pol in load(checkpoint).items()
        for name, t in pol.module.state_dict().items()
    }


def _wait_for(proc: subprocess.Popen, needle: str, timeout_s: float) -> str:
    out, t0 = "", time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        out += line
        if needle in line:
            return out
    raise AssertionError(f"never saw {needle!r}; output:\n{out}\n{proc.stderr.read()[-3000:]}")


def test_killed_run_resumes_from_its_last_checkpoint(ray_address, tmp_path, capsys):
    run = tmp_path / "run"
    args = [*TINY, "train.iterations=5", "train.checkpoint_every_iters=2"]
    cmd = [sys.executable, "-m", "agents.train", *args, f"hydra.run.dir={run}",
           f"train.ray.address={ray_address}"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        _wait_for(proc, "iter   3/5", 240)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver dies mid-run, as on a node failure
        proc.wait()
    assert [p.name for p in list_checkpoints(run)] == ["iter_000002"]
    before = pd.read_parquet(run / METRICS)
    assert before.iteration.max() == 3  # iteration 3 ran but was never checkpointed
    lifetime_2 = before[(before.iteration == 2) & (before.role == "market")].env_steps_lifetime
    res = train(twin.compose([*args, "train.resume=true"]), tmp_path / "new")
    assert res.run_dir == run  # the newest sibling run with checkpoints
    assert "resuming" in capsys.readouterr().out
    m = pd.read_parquet(run / METRICS)
    assert list(m.groupby("iteration").size().index) == [1, 2, 3, 4, 5]
    assert (m.groupby("iteration").size() == 4).all()
    pd.testing.assert_frame_equal(
        m[m.iteration <= 2].reset_index(drop=True),
        before[before.iteration <= 2].reset_index(drop=True),
    )
    market = m[m.role == "market"].set_index("iteration")
    assert market.loc[3, "env_steps_lifetime"] > lifetime_2.iloc[0]  # counters continued
    assert market.env_steps_lifetime.is_monotonic_increasing
    assert list_checkpoints(run)[-1].name == "iter_000005"


def test_resume_refuses_a_changed_config_and_says_when_nothing_is_left(trained, ray_address,
                                                                      capsys):  # fmt: skip
    run = trained.run_dir
    files = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    changed = twin.compose([*TINY, "train.resume=true", "train.iterations=4", "train.lr=0.001",
                            "policies.jc.check_probability=0.9"])  # fmt: skip
    with pytest.raises(ConfigError) as err:
        train(changed, run)
    msg = str(err.value)  # every differing key, old -> new; the allowed ones are not listed
    assert msg.startswith(f"train.resume=true: this config differs from the one {run} was")
    assert "policies.jc.check_probability: 0.1 -> 0.9; train.lr: 0.0003 -> 0.001;" in msg
    assert "train.iterations:" not in msg and "train.resume:" not in msg
    # only RESUME_MAY_CHANGE keys differ, and the run already has its 3 iterations
    same = twin.compose([*TINY, "train.resume=true", "train.keep_checkpoints=9", "run.name=x",
                         f"train.ray.address={ray_address}"])  # fmt: skip
    capsys.readouterr()
    res = train(same, run)
    out = capsys.readouterr().out
    assert out.startswith(f"nothing left to train: {run} already reached iteration 3 "
                          "(train.iterations=3); raise train.iterations")  # fmt: skip
    assert "trained" not in out.replace("nothing left to train", "")
    assert res.checkpoint == trained.checkpoint and res.iterations == 3
    assert files == {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}  # untouched


def test_policies_load_without_ray_and_respect_masks(trained):
    script = f"""
import numpy as np, ray
from agents.policies import load_run
r = load_run({str(trained.run_dir)!r})
assert not ray.is_initialized()
from twin.env import MarketEnv
env = MarketEnv(r.config)
obs, _ = env.reset(seed=3)
n = 0
while env.agents:
    acts = {{a: r.policies[r.policy_of[a]](obs[a]) for a in env.agents}}
    for a, v in acts.items():
        assert isinstance(v, int) and obs[a]["action_mask"][v] == 1, (a, v)
        n += 1
    obs, *_ = env.step(acts)
assert not ray.is_initialized()
print("OK", sorted(r.policies), n)
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("OK ['rp']")


def test_loaded_policy_is_greedy(trained):
    pol = load(trained.checkpoint)["rp"]
    assert set(load(trained.run_dir / "checkpoints")) == {"rp"}  # a run's newest checkpoint
    cfg = twin.compose(list(TINY))
    env = twin.make_env(cfg)
    obs, _ = env.reset(seed=0)
    while not any(obs[a]["observation"][9] for a in env.agents):
        obs, *_ = env.step({a: 0 for a in env.agents})
    o = obs[next(a for a in env.agents if obs[a]["observation"][9])]
    assert len({pol(o) for _ in range(20)}) == 1  # exploration off: always the same action
    assert pol.batch([o, o]) == [pol(o)] * 2


def test_twin_eval_writes_tables_and_a_replayable_record(trained, tmp_path):
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "agents.evaluate", f"checkpoint={trained.run_dir}", "episodes=2",
           f"hydra.run.dir={out}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    deals = pd.read_parquet(out / "deals.parquet")
    agents = pd.read_parquet(out / "agents.parquet")
    assert len(deals) > 0 and set(agents.episode) == {0, 1}
    assert set(agents[agents.seat == "learning"].agent) == {"rp_0", "rp_1"}
    recs = read_record(out / "episodes.jsonl")
    assert recs[0]["type"] == "run" and recs[0]["schema_version"] == 1
    for ep in (0, 1):
        mine = [r for r in recs if r.get("episode") == ep]
        head, end = mine[0], mine[-1]
        assert head["type"] == "episode" and end["type"] == "episode_end"
        addr = {a["account"]: a["address"] for a in head["accounts"]}
        wallet = {a["account"]: int(a["genesis_wallet_wei"]) for a in head["accounts"]}
        escrow = dict.fromkeys(wallet, 0)
        seen, n_actions = set(), 0
        for r in mine:
            if r["type"] == "deal":
                seen.add(r["deal_id"])
                assert r["job_creator"] == addr[r["job_creator_account"]]
            elif r["type"] == "action":
                n_actions += 1
                assert r["address"] == addr[r["account"]]
            elif r["type"] == "event":
                assert r["deal_id"] in seen  # its terms came first: replayable deal by deal
                if r["event"] == "Payment":
                    amt, d = int(r["amount_wei"]), r["direction"]
                    if d == "PaidIn":
                        wallet[r["payee"]] -= amt
                        escrow[r["payee"]] += amt
                    elif d == "Refunded":
                        escrow[r["payee"]] -= amt
                        wallet[r["payee"]] += amt
                    else:
                        escrow[r["source"]] -= amt
                        wallet[r["destination"]] += amt
                elif r["event"] == "Transfer":
                    wallet[r["source"]] -= int(r["amount_wei"])
                    wallet[r["destination"]] += int(r["amount_wei"])
        assert n_actions == end["ticks"] * len(agents[agents.episode == ep])
        assert end["deals"] == len(deals[deals.episode == ep]) == len(seen)
        for b in end["balances"]:  # the record alone rebuilds every final balance, to the wei
            assert int(b["wallet_wei"]) == wallet[b["account"]]
            assert int(b["escrow_wei"]) == escrow[b["account"]]
    assert (out / "report.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "extra,modules",
    [
        (("train.scripted_seats=modules", "train.policy_mapping=per_agent"),
         {"rp_0", "rp_1", "rp_scripted", "jc_scripted", "mediator_scripted"}),
        (("policies.rp.learning_share=0", "policies.jc.learning_share=0.5",
          "env.jc_action=probability"), {"jc"}),
    ],
)  # fmt: skip
def test_scripted_modules_and_probability_actions_train(ray_address, tmp_path, extra, modules):
    cfg = twin.compose([*TINY, "train.iterations=1", *extra])
    res = train(cfg, tmp_path)
    pols = load(res.checkpoint)
    assert set(pols) == modules
    env = twin.make_env(cfg, expose="all")
    obs, _ = env.reset(seed=0)
    for _ in range(15):
        obs, *_ = env.step({})
    for pid, pol in pols.items():
        agent = {"rp_scripted": "rp_4", "jc_scripted": "jc_0", "mediator_scripted": "mediator_0",
                 "jc": "jc_0"}.get(pid, pid)  # fmt: skip
        act = pol(obs[agent])
        if pid == "jc":
            assert act.shape == (1,) and 0.0 <= float(act[0]) <= 1.0
        else:
            assert obs[agent]["action_mask"][act] == 1
    m = pd.read_parquet(res.run_dir / METRICS)
    assert len(m) == 4


def test_main_job_trains_then_reports(ray_address, tmp_path):
    out = tmp_path / "main"
    cmd = [sys.executable, "-m", "experiments.main", *TINY, "train.iterations=2", "run.episodes=1",
           f"hydra.run.dir={out}", f"train.ray.address={ray_address}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "iter   2/2" in proc.stdout and "report:" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_iterations"] == 2 and summary["deals"] > 0
    for name in ("metrics.parquet", "training.png", "deals.parquet", "agents.parquet",
                 "report.md", "report.png", "episodes.jsonl", "measures.csv"):  # fmt: skip
        assert (out / name).exists(), name


def test_bench_result_a_splits_a_trial_into_its_phases(ray_address, tmp_path, capsys):
    # one tiny trial of Result A in the module's Ray: CPU seconds per phase, their total, and
    # the env's part of sampling (the timers are read as Timers.seconds)
    from experiments import bench_result_a

    out = tmp_path / "a.json"
    bench_result_a.main(["--budget", "tiny", "--cells", "1", "--out", str(out)])
    (row,) = json.loads(out.read_text())
    phases = ("imports", "build", "sampling", "learning", "checkpoint", "evaluation")
    assert all(row[k] > 0 for k in phases) and 0 < row["env"] <= row["sampling"]
    assert row["total"] == pytest.approx(sum(row[k] for k in phases))
    assert "mean CPU seconds per trial" in capsys.readouterr().out
