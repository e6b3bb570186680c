"""experiments.bench runs end to end (tiny sizes): its table, growth, mechanism ratio and JSON;
it and bench_phases, bench_train report bad arguments and overrides on one line (status 2)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest

import twin
from experiments import bench
from twin.config import ConfigError
from twin.errors import one_line


def test_bench_writes_rows_growth_and_mechanism_ratio(tmp_path, capsys):
    out = tmp_path / "bench.json"
    cpus = os.sched_getaffinity(0)
    bench.main(["--agents", "10", "100", "120", "--agent-steps", "1500", "--mechanisms-at", "10",
                "--repeat", "2", "--out", str(out)])  # fmt: skip
    # measured on one core, then the process has its CPUs back (the tests after this one, and
    # the Ray workers they start, would otherwise share one core)
    assert os.sched_getaffinity(0) == cpus
    d = json.loads(out.read_text())
    assert [r["agents"] for r in d["rows"]] == [10, 100, 120]
    assert all(r["steps"] == max(30, 1500 // r["agents"]) for r in d["rows"])
    assert all(r["env_agent_steps_per_s"] > 0 and r["deals"] >= 0 for r in d["rows"])
    g = d["summary"]["growth"]
    assert (g["from_agents"], g["to_agents"]) == (100, 120)
    assert g["ratio"] == d["rows"][2]["us_per_agent_step"] / d["rows"][1]["us_per_agent_step"]
    m = d["summary"]["all_mechanisms"]
    assert m["agents"] == 10 and m["all"]["mechanisms"] == "all" and m["v1"]["mechanisms"] == "v1"
    assert m["ratio"] == m["all"]["us_per_agent_step"] / m["v1"]["us_per_agent_step"]
    # two interleaved (v1, every mechanism) pairs; the fastest of each kind is in the ratio
    assert len(m["pair_ratios"]) == 2 and all(x > 0 for x in m["pair_ratios"])
    assert m["median_pair_ratio"] == sum(m["pair_ratios"]) / 2
    assert m["v1"]["steps"] == m["all"]["steps"] == 150  # 1500 agent-steps / 10 agents
    # the target's calibration at 100 agents (the default size of --reference-at): the bare
    # PettingZoo loop timed here; the twin's figure as a fraction of it, and that fraction of
    # the 320 000 (its bare loop's figure)
    ref = d["summary"]["reference"]
    assert (ref["agents"], ref["steps"]) == (100, 30)  # max(30, 1500 // 100)
    assert ref["agent_steps_per_s"] > 0
    assert ref["twin_agent_steps_per_s"] == d["rows"][1]["env_agent_steps_per_s"]
    assert ref["fraction_of_bare_loop"] == ref["twin_agent_steps_per_s"] / ref["agent_steps_per_s"]
    assert ref["scaled_to_issue_machine"] == ref["fraction_of_bare_loop"] * 320_000
    assert (ref["issue_bare_loop"], ref["issue_target"]) == (320_000, 100_000)
    out = capsys.readouterr().out
    assert "every mechanism on at 10 agents" in out and "bare PettingZoo loop at 100 agents" in out


def test_bare_reference_env_is_a_parallel_env():
    # the calibration's env is a valid PettingZoo ParallelEnv: the API test passes over it
    from pettingzoo.test import parallel_api_test

    parallel_api_test(bench.BareParallelEnv(5), num_cycles=20)
    r = bench.bare_loop(7, 30)
    assert (r["agents"], r["steps"]) == (7, 30) and r["agent_steps_per_s"] > 0


def test_interleaved_steps_both_markets_alike():
    # 25 steps in blocks of 10: 10 + 10 + 5 for each market, timed apart
    a, b = bench.interleaved(10, 25, [], list(bench.ALL_MECHANISMS), block=10)
    assert a["steps"] == b["steps"] == 25
    assert (a["mechanisms"], b["mechanisms"]) == ("v1", "all")
    assert a["env_agent_steps_per_s"] > 0 and b["env_agent_steps_per_s"] > 0
    # the same markets run on their own give the same deals (the interleaving changes no draw)
    assert a["deals"] == bench.run(10, 25)["deals"]
    assert b["deals"] == bench.run(10, 25, list(bench.ALL_MECHANISMS))["deals"]


def test_bench_phases_times_every_part_without_changing_the_market(tmp_path, capsys):
    from experiments import bench_phases
    from twin.market import PHASES

    out = tmp_path / "phases.json"
    bench_phases.main(["--agents", "10", "--steps", "30", "--all-mechanisms", "--out", str(out)])
    d = json.loads(out.read_text())
    rows = {t["part"]: t for t in d["table"]}
    # every env part and phase runs once a step; the phases add up to (a little less than) the
    # tick, the env's parts and the rest to the step
    assert all(rows[f"market.{p}"]["calls_per_step"] == 1 for p in PHASES)
    assert (
        rows["market.step"]["calls_per_step"] == 1 and rows["env.observer"]["calls_per_step"] == 1
    )
    phases = sum(rows[f"market.{p}"]["us_per_step"] for p in PHASES)
    assert 0 < phases <= rows["market.step"]["us_per_step"]
    env = sum(t["us_per_step"] for t in d["table"] if t["kind"] == "env")
    assert env + d["env_rest_us"] == pytest.approx(d["step_us"])
    # a row per implemented hook of each mechanism: e.g. the jackpot's, the LMSR's, the columns
    assert {"taxes.on_deal_end", "prediction.on_tick_end", "reputation.write_features"} <= set(rows)
    assert rows["counter_collusion.takes_over"]["calls_per_step"] > 0
    # the timers change no draw: the same market without them makes the same deals
    assert d["deals"] == bench.run(10, 30, list(bench.ALL_MECHANISMS))["deals"]
    assert "us per env step" in capsys.readouterr().out


# -- bad input: one line on stderr, status 2, nothing measured ---------------------------------
MISSPELT = "policies.jc.check_probabilty=0.3"


def _tool(name: str):
    return importlib.import_module(f"experiments.{name}")


def _usage_error(capsys, tool, args: list[str]) -> tuple[str, str]:
    """Run ``tool.main(args)``, which must exit with status 2; its (stdout, stderr)."""
    with pytest.raises(SystemExit) as e:
        tool.main(args)
    assert e.value.code == 2
    return capsys.readouterr()


@pytest.mark.parametrize(
    ("name", "args"),
    [("bench", ["--agents", "10"]), ("bench_phases", ["--agents", "10"]),
     ("bench_train", ["--nvec", "1"])],
)  # fmt: skip
@pytest.mark.parametrize("override", [MISSPELT, "policies.jc.check_probability=1.5"])
def test_bench_tools_report_a_bad_override_on_one_line(capsys, name, args, override):
    tool = _tool(name)
    with pytest.raises(ConfigError) as expected:
        twin.compose([override])
    out, err = _usage_error(capsys, tool, [*args, "--override", override])
    assert err == f"{tool.PROG}: {one_line(str(expected.value))}\n"
    assert override.split("=")[0] in err
    assert out == ""  # before anything is measured (or Ray started)


@pytest.mark.parametrize("name", ["bench", "bench_phases", "bench_train"])
@pytest.mark.parametrize(
    ("args", "message"),
    [(["--out", "/no/such/dir/x.json"], "--out /no/such/dir/x.json: no such directory '/no/such/dir'"),
     (["--out", "."], "--out .: is a directory; give a file name")],
)  # fmt: skip
def test_bench_tools_check_out_before_running(capsys, name, args, message):
    tool = _tool(name)
    out, err = _usage_error(capsys, tool, args)
    assert err.splitlines()[-1] == f"{tool.PROG}: error: {message}"
    assert out == ""


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [("bench", ["--agents"], "argument --agents: expected at least one argument"),
     ("bench", ["--agents", "0"], "--repeat, --agent-steps and --agents must be >= 1"),
     ("bench", ["--agents", "10", "--reference-at", "100"],
      "--reference-at 100: must be 0 (skip) or one of --agents 10"),
     ("bench_phases", ["--steps", "0"], "--agents and --steps must be >= 1"),
     ("bench_train", ["--nvec", "0"], "--nvec values and --env-steps must be >= 1"),
     ("bench_train", ["--nvec"], "argument --nvec: expected at least one argument"),
     ("bench_train", ["--runners", "stock"],
      "argument --runners: invalid choice: 'stock' (choose from 'process', 'twin', 'rllib')")],
)  # fmt: skip
def test_bench_tools_reject_bad_arguments(capsys, name, args, message):
    _, err = _usage_error(capsys, _tool(name), args)
    assert message in err.splitlines()[-1]


def test_bench_command_line_misspelt_key_no_traceback():
    cmd = [sys.executable, "-m", "experiments.bench", "--override", MISSPELT]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert line.startswith("twin-bench: ") and "policies.jc.check_probabilty" in line


def test_bench_compare_alternates_two_checkouts(tmp_path, capsys):
    """This checkout against itself, given as a directory and as the git revision HEAD (checked
    out into a temporary worktree, removed afterwards): rounds alternate which runs first, each
    run's code is its own checkout's, and the ratio is this / other."""
    from experiments import bench_compare

    out = tmp_path / "compare.json"
    bench_compare.main([str(bench_compare.ROOT), "--agents", "10", "--rounds", "2", "--steps", "30",
                        "--blocks", "1", "--out", str(out)])  # fmt: skip
    d = json.loads(out.read_text())
    assert [r["round"] for r in d["runs"]] == [0, 1] and d["other"] == d["this"]
    assert all(r["ratio"] == r["this"] / r["other"] and r["this"] > 0 for r in d["runs"])
    assert d["median_ratio"] == sum(r["ratio"] for r in d["runs"]) / 2
    assert "this / other: median" in capsys.readouterr().out
    if bench_compare._git("rev-parse", "HEAD") is None:
        pytest.skip("not a git checkout: the revision form needs one")
    before = bench_compare._git("worktree", "list")
    bench_compare.main(["HEAD", "--agents", "10", "--rounds", "1", "--steps", "30", "--blocks", "1",
                        "--out", str(out)])  # fmt: skip
    d = json.loads(out.read_text())
    assert "twin-compare-" in d["other"] and d["runs"][0]["other"] > 0
    assert bench_compare._git("worktree", "list") == before  # the temporary worktree is gone


@pytest.mark.parametrize(
    ("other", "says"),
    [("no-such-revision-xyz", "is neither a directory"), ("docs", "holds no twin/ package")],
)
def test_bench_compare_names_a_bad_other(capsys, other, says):
    from experiments import bench_compare

    root = bench_compare.ROOT
    target = str(root / other) if other == "docs" else other
    out, err = _usage_error(capsys, bench_compare, [target, "--rounds", "1"])
    assert err.startswith("bench_compare: other: ") and says in err and out == ""
