"""Sweeps (``experiments.sweep``): Hydra sweep syntax to trials, trial ids, validation before
anything runs, the long-format results dataset, retries and failures, re-runs that skip finished
trials, and a real two-node Ray cluster whose nodes both run trials."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.schema import RayConfig
from agents.train import ray_session
from experiments.sweep import (
    HEAD_COLUMNS,
    TAIL_COLUMNS,
    SweepPlan,
    check_address,
    config_text,
    expand_trials,
    load_errors,
    load_results,
    parse_args,
    parse_overrides,
    plan_sweep,
    run_sweep,
    stale_trials,
    trial_id,
    trial_rows,
    write_trial,
)
from experiments.sweep_schema import SweepConfig
from twin.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent
TINY = (  # a trial in a few seconds: small market, one small training iteration, one episode
    "market.n_job_creators=4",
    "market.n_resource_providers=5",
    "market.n_mediators=2",
    "market.episode_ticks=30",
    "policies.rp.learning_share=0.4",
    "policies.rp.policy=cheat_with_probability",
    "train=smoke",
    "train.iterations=1",
    "run.episodes=1",
)
MULTIPLE = "pricing.results_collateral_multiple"
CHECK = "policies.jc.check_probability"


def _expand(overrides, **settings):
    base, swept = parse_overrides(overrides)
    return base, swept, expand_trials(base, swept, SweepConfig(**settings))


# -- expansion ---------------------------------------------------------------------------------
def test_grid_runs_every_combination_of_the_swept_values_with_each_seed():
    base, swept, trials = _expand(
        ["experiment=cheating_economics", f"{MULTIPLE}=1,2,4,8", f"{CHECK}=0.05,0.1,0.2",
         "train=smoke"], seeds=3, first_seed=10)  # fmt: skip
    assert base == ["experiment=cheating_economics", "train=smoke"]  # apply to every trial
    assert [o.key_or_group for o in swept] == [MULTIPLE, CHECK]
    assert len(trials) == 4 * 3 * 3
    points = [tuple(v for _, v in t.params) for t in trials[::3]]
    assert points == list(itertools.product([1, 2, 4, 8], [0.05, 0.1, 0.2]))
    assert all(type(m) is int and type(p) is float for m, p in points)  # typed as numbers
    assert [t.seed for t in trials[:6]] == [10, 11, 12, 10, 11, 12]
    assert trials[4].overrides == ("experiment=cheating_economics", "train=smoke",
                                   f"{MULTIPLE}=1", f"{CHECK}=0.1", "seed=11")  # fmt: skip
    assert trials[4].overrides_text == " ".join(trials[4].overrides)


def test_grid_accepts_hydra_range_choice_and_config_groups():
    _, _, trials = _expand(["market.n_mediators=range(2,7,2)", "mediation=choice(v1,consortium)",
                            "train.hidden_sizes=[8],[16,16]"])  # fmt: skip
    assert [t.params for t in trials] == [
        (("market.n_mediators", m), ("mediation", p), ("train.hidden_sizes", h))
        for m, p, h in itertools.product([2, 4, 6], ["v1", "consortium"], [[8], [16, 16]])
    ]
    assert trials[0].overrides == ("market.n_mediators=2", "mediation=v1",
                                   "train.hidden_sizes=[8]", "seed=0")  # fmt: skip


def test_random_search_draws_from_intervals_and_choices():
    overrides = [f"{CHECK}=interval(0.01,0.5)", f"{MULTIPLE}=int(interval(1,16))",
                 "train.lr=tag(log,interval(1e-5,1e-2))", "market.n_mediators=choice(2,3)",
                 "train=smoke"]  # fmt: skip
    _, _, trials = _expand(overrides, search="random", num_samples=200, seeds=2)
    assert len(trials) == 400 and [t.seed for t in trials[:4]] == [0, 1, 0, 1]
    p = pd.DataFrame([dict(t.params) for t in trials[::2]])
    assert p[CHECK].between(0.01, 0.5).all() and p[CHECK].nunique() == 200
    assert p[MULTIPLE].map(type).eq(int).all() and p[MULTIPLE].between(1, 16).all()
    assert set(p[MULTIPLE]) == set(range(1, 17))  # int(interval(a, b)): a..b, both ends
    assert p["train.lr"].between(1e-5, 1e-2).all()
    # log-uniform: log10(lr) is uniform on [-5, -2], so about a third of the draws lie in each
    # decade (a uniform draw would put 99 % of them in [1e-3, 1e-2])
    decade = np.floor(np.log10(p["train.lr"])).value_counts(normalize=True)
    assert decade.between(0.2, 0.47).all() and len(decade) == 3
    assert set(p["market.n_mediators"]) == {2, 3}
    assert all(len(f"{v}".replace(".", "").lstrip("0")) <= 7 for v in p[CHECK])  # 6 digits
    again = _expand(overrides, search="random", num_samples=200, seeds=2)[2]
    assert [t.trial_id for t in again] == [t.trial_id for t in trials]  # same sample_seed
    other = _expand(overrides, search="random", num_samples=200, seeds=2, sample_seed=1)[2]
    assert {t.trial_id for t in other}.isdisjoint(t.trial_id for t in trials)


def test_random_search_runs_each_distinct_point_once():
    _, _, trials = _expand([f"{MULTIPLE}=1,2"], search="random", num_samples=50)
    assert sorted(dict(t.params)[MULTIPLE] for t in trials) == [1, 2]


def test_trial_ids_are_short_hashes_of_the_full_override_list():
    _, _, trials = _expand([*TINY, f"{MULTIPLE}=1,8"], seeds=2)
    t = trials[1]
    expected = hashlib.sha256("\n".join([*TINY, f"{MULTIPLE}=1", "seed=1"]).encode())
    assert t.trial_id == expected.hexdigest()[:12] == trial_id(t.overrides)
    assert len({x.trial_id for x in trials}) == 4  # every point and seed differs
    assert [x.trial_id for x in _expand([*TINY, f"{MULTIPLE}=1,8"], seeds=2)[2]] == [
        x.trial_id for x in trials
    ]  # stable: the same sweep gives the same ids


# -- validation before anything runs -----------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["pricing.results_collateral_multpl=1,2"], "results_collateral_multpl"),
        ([f"{CHECK}=0.1,1.5"], f"{CHECK} = 1.5 is out of range; allowed range: [0.0, 1.0]"),
        ([f"{MULTIPLE}=1,2.5"], MULTIPLE),
        ([f"{CHECK}=interval(0.1,0.2)"], "sweep.search=random"),
        (["mediation=v1,nope"], "Could not find 'mediation/nope'"),
        (["seed=1,2"], "sweep.seeds"),
        (["sweep.seeds=2"], "twin-sweep settings"),
        (["policies.rp.learning_share=0.2,0"], "no learning seats"),
        (["train.num_env_runners=1"], "train.num_env_runners"),
        ([f"{MULTIPLE}=1,2", "train.batch=3"], "batch"),
        ([f"{MULTIPLE}=1,,2"], f"{MULTIPLE}=1,,2"),
    ],
)
def test_a_bad_override_fails_before_anything_runs_naming_it(overrides, needle, tmp_path):
    with pytest.raises(ConfigError) as err:
        run_sweep([*TINY, *overrides], sweep_dir=tmp_path / "sweep")
    assert needle in str(err.value)
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["sweep.seedz=3"], "seedz"),
        (
            ["sweep.search=bayes"],
            "sweep.search = 'bayes' is not allowed; allowed values: ['grid', 'random']",
        ),
        (["sweep.seeds=0"], "sweep.seeds = 0 is out of range"),
        (["ray.adress=x"], "adress"),
        (["--multirun"], "--multirun"),
    ],
)
def test_bad_sweep_settings_fail_naming_the_key(args, needle):
    with pytest.raises(ConfigError) as err:
        parse_args([f"{MULTIPLE}=1,2", *args])
    assert needle in str(err.value)


def test_command_line_splits_twin_overrides_from_sweep_settings():
    overrides, app = parse_args(["experiment=cheating_economics", f"{MULTIPLE}=1,2",
                                 "sweep.seeds=3", "sweep.search=random", "ray.address=auto"])  # fmt: skip
    assert overrides == ["experiment=cheating_economics", f"{MULTIPLE}=1,2"]
    assert (app.sweep.seeds, app.sweep.search, app.ray.address) == (3, "random", "auto")
    assert app.sweep.max_failures == 1 and app.sweep.cpus_per_trial == 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "address, needle",
    [
        ("127.0.0.1:{free}", "no Ray cluster answers there"),
        ("not an address", "allowed values: ''"),
        ("localhost:99999", "is not allowed"),
    ],
)
def test_a_bad_ray_address_fails_at_once_naming_it(address, needle, tmp_path):
    address = address.format(free=_free_port())
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as err:
        run_sweep([*TINY, f"{MULTIPLE}=1,2"], ray=RayConfig(address=address),
                  sweep_dir=tmp_path / "sweep")  # fmt: skip
    assert f"ray.address = {address!r}" in str(err.value) and needle in str(err.value)
    assert time.monotonic() - t0 < 10 and not (tmp_path / "sweep").exists()
    check_address("")  # the local default needs no cluster


# -- the results dataset -------------------------------------------------------------------------
def test_results_of_another_config_are_stale(tmp_path):
    # The trial id hashes the overrides only. Each result file keeps its trial's resolved config,
    # so when a config file changes under the same overrides (here: a new training budget), the
    # re-run tells those results from its own and runs them again.
    plan = plan_sweep([*TINY, f"{MULTIPLE}=1,2"], SweepConfig(seeds=1))
    t1, t2 = plan.trials
    for t in plan.trials:
        write_trial(tmp_path, trial_rows(plan, t, {"cheat_rate": 0.5}, "n", "ok"),
                    plan.configs[t.trial_id])  # fmt: skip
    assert stale_trials(plan, tmp_path, {t1.trial_id, t2.trial_id}) == {}
    changed = dataclasses.replace(plan.configs[t1.trial_id], train=dataclasses.replace(
        plan.configs[t1.trial_id].train, iterations=16))  # fmt: skip
    later = dataclasses.replace(plan, configs={**plan.configs, t1.trial_id: changed})
    assert stale_trials(later, tmp_path, {t1.trial_id, t2.trial_id}) == {
        t1.trial_id: {"train.iterations": (1, 16)}}  # fmt: skip
    # where the trial ran (train.ray.*) does not count; result files without a config are kept
    moved = dataclasses.replace(plan.configs[t1.trial_id], train=dataclasses.replace(
        plan.configs[t1.trial_id].train, ray=dataclasses.replace(
            plan.configs[t1.trial_id].train.ray, num_cpus=7)))  # fmt: skip
    assert stale_trials(dataclasses.replace(plan, configs={**plan.configs, t1.trial_id: moved}),
                        tmp_path, {t1.trial_id}) == {}  # fmt: skip
    # a result file without a config (an earlier version's sweep): the trial's own config.yaml
    # if its run is here, else it is kept
    write_trial(tmp_path, trial_rows(plan, t1, {"cheat_rate": 0.5}, "n", "ok"))
    assert stale_trials(later, tmp_path, {t1.trial_id}) == {}
    run_dir = tmp_path / "trials" / t1.trial_id
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(config_text(plan.configs[t1.trial_id]))
    assert stale_trials(later, tmp_path, {t1.trial_id}) == {
        t1.trial_id: {"train.iterations": (1, 16)}}  # fmt: skip


def test_results_are_one_long_dataset_typed_per_parameter(tmp_path):
    base, swept, trials = _expand([f"{MULTIPLE}=1,8", f"{CHECK}=0.1,1", "mediation=v1,consortium",
                                   "market.n_mediators=3"])  # fmt: skip
    # check_probability 0.1 and 1 (an int) make a float column; mediation a string column
    keys = (MULTIPLE, CHECK, "mediation")
    plan = SweepPlan("demo", tuple(base), keys, trials, {}, "default")
    for i, t in enumerate(trials):
        write_trial(tmp_path, trial_rows(plan, t, {"cheat_rate": i / 4, "trial_seconds": 3.0},
                                         f"node{i % 2}", "ok"))  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == sorted(
        f"{t.trial_id}.parquet" for t in trials
    )  # one file per trial, no temporary left
    df = load_results(tmp_path)
    assert list(df.columns) == [*HEAD_COLUMNS, *keys, *TAIL_COLUMNS]
    assert len(df) == 2 * len(trials) == 16  # one row per trial and metric
    assert str(df[MULTIPLE].dtype) == "int64" and str(df[CHECK].dtype) == "float64"
    assert df.mediation.map(type).eq(str).all() and set(df.mediation) == {"v1", "consortium"}
    assert str(df.seed.dtype) == "int64" and str(df.value.dtype) == "float64"
    same = pd.read_parquet(tmp_path / "results")  # also readable as one parquet dataset
    assert len(same) == len(df) and set(same.columns) == set(df.columns)
    row = df[(df.trial_id == trials[7].trial_id) & (df.metric == "cheat_rate")].iloc[0]
    assert (row[MULTIPLE], row[CHECK], row.mediation, row.value, row.node, row.status) == (
        8, 1.0, "consortium", 7 / 4, "node1", "ok")  # fmt: skip
    assert (
        row.overrides == f"market.n_mediators=3 {MULTIPLE}=8 {CHECK}=1 mediation=consortium seed=0"
    )
    assert row.sweep == "demo" and row.seed == 0 and row.trial_id == trials[7].trial_id
    assert list(load_results(tmp_path / "none").columns) == [*HEAD_COLUMNS, *TAIL_COLUMNS]


# -- sweeps on Ray ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """One lean local Ray (2 CPUs) for the module's sweeps: (its node id, its GCS address for
    subprocesses to join)."""
    import ray

    with ray_session(RayConfig(), tmp_path_factory.mktemp("ray")):
        ctx = ray.get_runtime_context()
        yield ctx.get_node_id(), ctx.gcs_address


@pytest.mark.slow
def test_a_sweep_run_twice_measures_the_same(local_ray, tmp_path):
    # every run is reproducible from its seed, on Tune's workers too: the same sweep run again
    # (in another directory, so nothing is skipped) gives every measure again but the clocks.
    # The trials may run in other worker processes: this holds because every process has the
    # same string-hash seed (agents/hashseed.py; without it, 2 of 3 full-suite runs differed)
    overrides = [*TINY, "train.iterations=2", f"{MULTIPLE}=4"]

    def measures(sweep_dir):
        df = run_sweep(overrides, SweepConfig(), sweep_dir=sweep_dir)
        df = df[~df.metric.str.contains("seconds")]  # wall and CPU clocks
        return df.set_index(["trial_id", "metric"]).value.sort_index()

    a, b = measures(tmp_path / "a"), measures(tmp_path / "b")
    assert {"learning_rp_cheat_rate", "train_rp_learning_payoff_tokens", "deals"} <= set(
        a.index.get_level_values("metric")
    )
    pd.testing.assert_series_equal(a, b)


@pytest.mark.slow
def test_failed_trial_is_retried_recorded_and_rerun_skips_finished_trials(local_ray, tmp_path,
                                                                          capsys):  # fmt: skip
    node, _ = local_ray
    overrides = [*TINY, f"{MULTIPLE}=1,4,8"]
    settings = SweepConfig(max_failures=1)
    plan = plan_sweep(overrides, settings)
    sweep_dir = tmp_path / "sweep"
    bad = plan.trials[1]
    blocker = sweep_dir / "trials" / bad.trial_id
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the trial's directory goes: every attempt fails")

    df = run_sweep(overrides, settings, sweep_dir=sweep_dir, plan=plan)
    out = capsys.readouterr().out
    assert "3 trials (3 points x 1 seeds)" in out and "0 already have results, 3 to run" in out
    assert f"retrying {bad.trial_id} after failure 1" in out
    assert out.count("[") >= 3 and "[3/3]" in out and "2 ok, 1 failed" in out
    status = df.groupby("trial_id").status.first()
    assert status.to_dict() == {t.trial_id: ("failed" if t is bad else "ok") for t in plan.trials}
    failed = df[df.trial_id == bad.trial_id]
    assert failed[["metric", "value"]].values.tolist() == [["attempts", 2.0]]  # 1 + 1 retry
    assert failed.node.iloc[0] == node  # it reported its node before failing
    errors = load_errors(sweep_dir)
    assert list(errors) == [bad.trial_id]
    assert "attempts: 2" in errors[bad.trial_id] and "FileExistsError" in errors[bad.trial_id]
    ok = df[df.status == "ok"]
    assert set(ok.node) == {node} and set(ok.seed) == {0}
    assert sorted(ok[MULTIPLE].unique()) == [1, 8]
    per_trial = ok.pivot(index="trial_id", columns="metric", values="value")
    for col in ("cheat_rate", "learning_rp_cheat_rate", "market_check_rate", "deals",
                "train_seconds", "train_iterations", "eval_seconds", "trial_seconds",
                "train_rp_learning_cheat_rate"):  # fmt: skip
        assert col in per_trial.columns and per_trial[col].notna().all(), col
    assert (per_trial.train_iterations == 1).all() and (per_trial.eval_episodes == 1).all()
    assert (per_trial.deals > 0).all() and per_trial.learning_rp_cheat_rate.between(0, 1).all()
    trial_dir = sweep_dir / "trials" / plan.trials[0].trial_id
    assert (trial_dir / "checkpoints").is_dir() and (trial_dir / "eval" / "summary.json").is_file()
    spec = json.loads((sweep_dir / "sweep.json").read_text())
    assert [t["trial_id"] for t in spec["trials"]] == [t.trial_id for t in plan.trials]

    blocker.unlink()  # the cause is gone: a re-run runs the failed trial only
    stamps = {p.name: p.stat().st_mtime_ns for p in (sweep_dir / "results").iterdir()}
    (sweep_dir / "results" / ".0123456789ab.parquet.tmp").write_bytes(b"half written")
    df2 = run_sweep(overrides, settings, sweep_dir=sweep_dir, plan=plan)
    out = capsys.readouterr().out
    assert "2 already have results, 1 to run" in out and f"[3/3] ok     {bad.trial_id}" in out
    assert set(df2.status) == {"ok"} and df2.trial_id.nunique() == 3 and not load_errors(sweep_dir)
    assert len(pd.read_parquet(sweep_dir / "results")) == len(df2)  # the temporary is no part
    for name, ns in stamps.items():
        if not name.startswith(bad.trial_id):
            assert (sweep_dir / "results" / name).stat().st_mtime_ns == ns  # not run again

    df3 = run_sweep(overrides, settings, sweep_dir=sweep_dir)  # finds it again: nothing to run
    out = capsys.readouterr().out
    assert "3 already have results, 0 to run" in out and "ran 0" in out
    pd.testing.assert_frame_equal(df3, df2)


@pytest.mark.slow
def test_a_killed_sweep_finishes_the_rest_when_run_again(local_ray, tmp_path, capsys):
    _, address = local_ray
    overrides = [*TINY, f"{MULTIPLE}=1,2,4"]
    sweep_dir = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "experiments.sweep", *overrides, f"sweep.dir={sweep_dir}",
           f"ray.address={address}", "sweep.max_concurrent=1"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    seen = ""
    try:
        t0 = time.monotonic()
        while "[1/3] ok" not in seen and time.monotonic() - t0 < 400:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            seen += line
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver dies with trial 2 running
        proc.wait()
    assert "[1/3] ok" in seen, seen + proc.stderr.read()[-3000:]
    assert load_results(sweep_dir).trial_id.nunique() == 1
    df = run_sweep(overrides, SweepConfig(), sweep_dir=sweep_dir)
    out = capsys.readouterr().out
    assert "1 already have results, 2 to run" in out and "[3/3] ok" in out
    assert set(df.status) == {"ok"} and sorted(df[MULTIPLE].unique()) == [1, 2, 4]


# -- a real two-node cluster -----------------------------------------------------------------
def _wait_for_line(log: Path, needle: str, proc: subprocess.Popen, timeout_s: float) -> str:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        text = log.read_text() if log.exists() else ""
        if needle in text:
            return text
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(f"never saw {needle!r} in {log}:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def two_node_cluster() -> Iterator[tuple[str, dict]]:
    """A head and a worker node on this machine (``ray start --block``, 1 CPU each, resources
    ``head_node`` and ``worker_node``); yields (address, environment to join it).

    Each node's processes are stopped through the ``ray start`` process we started (SIGTERM,
    then SIGKILL to its own process group): never ``ray stop``, which would stop every Ray on
    this machine. Session dirs live in a short temporary dir (Ray's unix socket paths under a
    pytest tmp_path would be too long), removed afterwards.
    """
    port = _free_port()
    root = Path(tempfile.mkdtemp(prefix="rt-"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0",
               RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))  # fmt: skip
    ray_bin = str(Path(sys.executable).parent / "ray")
    common = ["--block", "--num-cpus=1", "--object-store-memory=100000000",
              "--disable-usage-stats"]  # fmt: skip
    nodes = {
        "head": ["--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                 "--include-dashboard=false", '--resources={"head_node": 1}'],
        "worker": [f"--address=127.0.0.1:{port}", '--resources={"worker_node": 1}'],
    }  # fmt: skip
    procs: list[subprocess.Popen] = []
    try:
        for name, args in nodes.items():
            log = root / f"{name}.log"
            cmd = [
                ray_bin,
                "start",
                *args,
                *common,
                f"--temp-dir={root / name}",
                f"--dashboard-agent-listen-port={_free_port()}",
            ]  # not the fixed 52365
            with log.open("w") as fh:
                procs.append(subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                              start_new_session=True, cwd=ROOT))  # fmt: skip
            _wait_for_line(log, "Ray runtime started", procs[-1], 180)
        yield f"127.0.0.1:{port}", env
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)  # anything of that node still alive
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_twin_sweep_on_a_two_node_cluster_runs_trials_on_both_nodes(tmp_path):
    sweep_dir = tmp_path / "sweep"
    with two_node_cluster() as (address, env):
        cmd = [sys.executable, "-m", "experiments.sweep", *TINY, f"{MULTIPLE}=1,8",
               f"ray.address={address}", f"sweep.dir={sweep_dir}", "sweep.name=two_nodes"]  # fmt: skip
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = proc.stdout
    assert "Ray: 2 node(s), 2 CPUs: 2 trial(s) of 1 CPU at a time" in out
    assert "[1/2] ok" in out and "[2/2] ok" in out and "2 ok, 0 failed" in out
    nodes = json.loads((sweep_dir / "sweep.json").read_text())["nodes"]
    head = [n for n, v in nodes.items() if "head_node" in v["resources"]]
    worker = [n for n, v in nodes.items() if "worker_node" in v["resources"]]
    assert len(head) == len(worker) == 1
    df = load_results(sweep_dir)
    assert set(df.sweep) == {"two_nodes"} and set(df.status) == {"ok"}
    assert df.groupby("trial_id").node.nunique().eq(1).all()
    assert set(df.node) == {head[0], worker[0]}  # one trial on each node
