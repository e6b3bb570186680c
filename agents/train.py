"""Training: the ``twin-train`` Hydra app and the plain :func:`train` it wraps.

``twin-train [experiment=...] [key=value ...]`` composes ``configs/`` (the ``train`` group holds
the budget and PPO knobs, :class:`agents.schema.TrainConfig`) and calls :func:`train`, which

1. starts a lean local Ray inside the run directory (or joins ``train.ray.address``; or uses the
   Ray already running in this process), with its temp and results dirs under the run dir;
2. builds the algorithm from :func:`agents.config_builder.build_algo_config` (sampling and
   learning in the driver unless ``train.num_env_runners`` > 0);
3. runs ``train.iterations`` iterations, printing one line per iteration (key measures and the
   estimated time left), appending one row per iteration and role to ``metrics.parquet``
   (:func:`iteration_rows`: the market measures of :mod:`agents.measures` for all seats and,
   prefixed ``learning_``, for the learning seats, plus RLlib's returns, losses and timings);
4. saves a checkpoint every ``train.checkpoint_every_iters`` iterations and at the end, under
   ``checkpoints/iter_<n>`` (written to a temporary name, then renamed, so a kill never leaves a
   half-written checkpoint), keeping the newest ``train.keep_checkpoints``; each holds the
   resolved twin config (``twin_config.yaml``) and the seat layout (``seats.json``) next to
   RLlib's state, which is all :mod:`agents.policies` and :mod:`agents.evaluate` need;
5. plots the curves (``training.png``) and prints a summary (also ``train_summary.json``).

``train.resume=true`` continues a killed run from its newest checkpoint: the run directory is
the one given as ``hydra.run.dir`` if it holds checkpoints, else the newest run of the same
``run.name``; the algorithm state (weights, optimiser, counters, iteration) is restored and the
metrics table is cut back to the checkpoint's iteration, so nothing before it is lost and no
iteration is counted twice. The config must be the run's own (``config.yaml``): a resume that
changes anything but the keys of :data:`RESUME_MAY_CHANGE` (the budget, the checkpoint schedule,
where Ray runs, ``run.*``) is refused, naming each differing key with its old and new value. A run
that already reached ``train.iterations`` is left as it is (raise ``train.iterations`` to go on).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from agents.hashseed import RUNTIME_ENV
from agents.measures import MEASURES, ROWS, rates
from agents.policies import (
    CHECKPOINTS,
    CheckpointError,
    checkpoint_iteration,
    list_checkpoints,
    restore_algorithm,
)
from agents.ray_address import check_address
from agents.schema import RayConfig
from twin.config import ConfigError, TwinConfig
from twin.configuration import to_config

METRICS = "metrics.parquet"
TWIN_CONFIG = "twin_config.yaml"
SEATS = "seats.json"
MAX_SOCKET_DIR = 40  # Ray's unix sockets live ~65 chars below its temp dir (limit: 107)
#: keys a resumed run may change (a trailing '.' means the whole section): the budget, the
#: checkpoint schedule, where Ray runs and ``run.*`` (its name and what experiments.main does
#: after training); everything else decides what the run learns and must stay as it was
RESUME_MAY_CHANGE = ("train.iterations", "train.resume", "train.checkpoint_every_iters",
                     "train.keep_checkpoints", "train.env_process", "train.ray.",
                     "run.")  # fmt: skip


@dataclass
class TrainResult:
    """What a finished (or resumed and finished) training run left behind."""

    run_dir: Path
    checkpoint: Path
    metrics: pd.DataFrame
    iterations: int
    seconds: float


# -- Ray ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def ray_session(rc: RayConfig, run_dir: Path) -> Iterator[None]:
    """Ray for the run: reuse a running one, join ``rc.address``, or start a lean local one.

    The local Ray binds to 127.0.0.1, has no dashboard, authenticates with a fresh token held in
    the environment (nothing written to ``~/.ray``) and keeps its session files in the run
    directory (or, when that path is too long for Ray's unix sockets, in a short temporary
    directory that is linked from ``run_dir/ray`` and removed afterwards).
    """
    import ray

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if rc.address:
        ray.init(address=rc.address, log_to_driver=False, logging_level=logging.ERROR,
                 runtime_env=RUNTIME_ENV)  # fmt: skip
        try:
            yield
        finally:
            ray.shutdown()
        return
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))  # nothing in ~/.ray
    tmp, link = run_dir / "ray", None
    if len(str(tmp.resolve())) > MAX_SOCKET_DIR:
        link, tmp = tmp, Path(tempfile.mkdtemp(prefix="ray-twin-"))
        with contextlib.suppress(OSError):
            link.unlink(missing_ok=True)
            link.symlink_to(tmp, target_is_directory=True)
    tmp.mkdir(parents=True, exist_ok=True)
    ray.init(
        runtime_env=RUNTIME_ENV,  # a fixed string-hash seed in every worker (agents.hashseed)
        num_cpus=rc.num_cpus,
        object_store_memory=rc.object_store_mb * 2**20,
        include_dashboard=False,
        _temp_dir=str(tmp.resolve()),
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        logging_level=logging.ERROR,
    )
    try:
        yield
    finally:
        ray.shutdown()
        if link is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            with contextlib.suppress(OSError):
                link.unlink(missing_ok=True)


def quiet_rllib() -> None:
    """Keep the console to our progress lines: RLlib's deprecation chatter goes to ERROR."""
    for name in ("ray", "ray.rllib", "ray.tune", "ray._common.deprecation"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*Overriding environment.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="ray")


def build_algorithm(cfg: TwinConfig, run_dir: Path, *, env_runner_cls: type | None = None):
    """Build the RLlib algorithm of ``cfg``; its (unused) results dir goes under ``run_dir``.
    ``env_runner_cls`` replaces the config's env runner (benchmarks compare RLlib's own)."""
    import ray.tune.trainable.trainable as trainable

    from agents.config_builder import build_algo_config

    config = build_algo_config(cfg)
    if env_runner_cls is not None:
        config.env_runners(env_runner_cls=env_runner_cls)
    quiet_rllib()  # after ray.rllib's import, which sets its own log level
    saved = trainable.DEFAULT_STORAGE_PATH
    trainable.DEFAULT_STORAGE_PATH = str(run_dir / "ray_results")
    try:
        return config.build_algo()
    finally:
        trainable.DEFAULT_STORAGE_PATH = saved


# -- checkpoints ------------------------------------------------------------------------------
def save_checkpoint(algo, cfg: TwinConfig, run_dir: Path, iteration: int, keep: int) -> Path:
    from agents.config_builder import seat_layout

    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"iter_{iteration:06d}"
    tmp = root / f".tmp_iter_{iteration:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    algo.save_to_path(str(tmp.resolve()))
    (tmp / TWIN_CONFIG).write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    layout = seat_layout(cfg)
    (tmp / SEATS).write_text(json.dumps({
        "iteration": iteration, "policy_of": dict(layout.policy_of),
        "learning": list(layout.learning), "scripted": list(layout.scripted),
    }, indent=2))  # fmt: skip
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def find_resume_dir(run_dir: Path) -> Path:
    """The run to resume: ``run_dir`` if it has checkpoints, else its newest sibling that has."""
    if list_checkpoints(run_dir):
        return run_dir
    parent = run_dir.parent
    siblings = [
        p for p in (parent.iterdir() if parent.is_dir() else ())
        if p.is_dir() and p != run_dir and list_checkpoints(p)
    ]  # fmt: skip
    if not siblings:
        raise CheckpointError(
            f"train.resume=true: no checkpoint under {run_dir / CHECKPOINTS} nor in any other "
            f"run of {run_dir.parent}; expected <run>/{CHECKPOINTS}/iter_<n>/ from an earlier run"
        )
    return max(siblings, key=lambda p: list_checkpoints(p)[-1].stat().st_mtime)


# -- metrics ----------------------------------------------------------------------------------
def _mean(values: list[float]) -> float:
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def iteration_rows(iteration: int, result: dict, policies: dict[str, str]) -> list[dict]:
    """One row per role (``market``, ``rp``, ``jc``, ``mediator``) of an ``Algorithm.train()``.

    ``policies``: learning policy id -> role. Market measures come from the ``twin/episodes``
    counts of :class:`agents.callbacks.MarketMetricsCallback` (:mod:`agents.measures`: all seats
    of the role, and with the prefix ``learning_`` its learning seats; the ``market`` row pools
    every seat and deal); RLlib's numbers (returns and losses of the role's learning policies,
    steps, times) from the result.
    """
    er = result.get("env_runners", {})
    counts = []  # RLlib flattens each episode's list of counts into the series
    for item in er.get("twin", {}).get("episodes", []):
        counts.extend(item if isinstance(item, list) else [item])
    table = rates(counts)
    returns = er.get("module_episode_returns_mean", {}) or {}
    learners = result.get("learners", {}) or {}
    module_steps = er.get("num_module_steps_sampled", {}) or {}
    timers = result.get("timers", {}) or {}
    rows = []
    for role in ROWS:
        row: dict = {"iteration": iteration, "role": role}
        for kind, prefix in (("all", ""), ("learning", "learning_")):
            sel = table[(table.role == role) & (table.seats == kind)] if len(table) else table
            for m in MEASURES:
                row[prefix + m] = float(sel[m].iloc[0]) if len(sel) else float("nan")
        row["episodes"] = int(table["episodes"].max()) if len(table) else 0
        mids = [p for p, r in policies.items() if r == role]
        row["policies"] = ",".join(mids)
        row["module_return_mean"] = _mean([returns.get(m) for m in mids])
        for key in ("policy_loss", "vf_loss", "entropy", "mean_kl_loss", "vf_explained_var"):
            row[key] = _mean([learners.get(m, {}).get(key) for m in mids])
        row["agent_steps_sampled"] = int(sum(module_steps.get(m, 0) for m in mids))
        row["episode_return_mean"] = float(er.get("episode_return_mean", float("nan")))
        row["env_steps_sampled"] = int(er.get("num_env_steps_sampled", 0))
        row["env_steps_lifetime"] = int(result.get("num_env_steps_sampled_lifetime", 0))
        row["time_this_iter_s"] = float(result.get("time_this_iter_s", float("nan")))
        row["time_total_s"] = float(result.get("time_total_s", float("nan")))
        row["sampling_s"] = float(timers.get("env_runner_sampling_timer", float("nan")))
        row["learning_s"] = float(timers.get("learner_update_timer", float("nan")))
        rows.append(row)
    return rows


def write_metrics(table: pd.DataFrame, run_dir: Path) -> None:
    tmp = run_dir / (METRICS + ".tmp")
    table.to_parquet(tmp, index=False)
    tmp.replace(run_dir / METRICS)


def _fmt_eta(seconds: float) -> str:
    s = int(round(max(0.0, seconds)))
    return f"{s // 60}m{s % 60:02d}s"


def progress_line(rows: list[dict], iteration: int, total: int, iter_s: float, eta_s: float) -> str:
    by = {r["role"]: r for r in rows}
    parts = [f"iter {iteration:>3}/{total} {iter_s:5.1f}s"]
    for role, rate in (("rp", "cheat_rate"), ("jc", "check_rate"), ("mediator", "collusion_rate")):
        r = by[role]
        if not r["policies"]:
            continue
        parts.append(
            f"{role}: return {r['module_return_mean']:7.2f} payoff {r['learning_payoff_tokens']:7.2f}"
            f" {rate.split('_')[0]} {r['learning_' + rate]:.2f}"
        )
    m = by["market"]
    parts.append(
        f"market: cheat {m['cheat_rate']:.2f} check {m['check_rate']:.2f} "
        f"deals/ep {m['deals_per_episode']:.0f}"
    )
    parts.append(f"ETA {_fmt_eta(eta_s)}")
    return " | ".join(parts)


# -- the run ----------------------------------------------------------------------------------
def write_resolved_config(cfg: TwinConfig, run_dir: Path) -> None:
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))


def _flat(tree: object, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        out: dict[str, object] = {}
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): tree}


def config_changes(saved: dict, now: dict) -> dict[str, tuple[object, object]]:
    """``key -> (old, new)`` of every leaf of two config trees that differs (a missing key's
    value is ``<absent>``)."""
    a, b = _flat(saved), _flat(now)
    missing = "<absent>"
    return {k: (a.get(k, missing), b.get(k, missing)) for k in sorted(set(a) | set(b))
            if a.get(k, missing) != b.get(k, missing)}  # fmt: skip


def check_resume_config(cfg: TwinConfig, run_dir: Path, checkpoint: Path) -> None:
    """A resumed run must keep its config (``run_dir/config.yaml``, else the checkpoint's
    ``twin_config.yaml``) except for the keys of :data:`RESUME_MAY_CHANGE`."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        saved_path = checkpoint / TWIN_CONFIG
    if not saved_path.is_file():
        return  # nothing to compare with (check_layout still compares the seats)
    saved = OmegaConf.to_container(OmegaConf.load(saved_path))
    now = OmegaConf.to_container(OmegaConf.structured(cfg))
    changes = {
        k: v
        for k, v in config_changes(saved, now).items()
        if not any(k == a or (a.endswith(".") and k.startswith(a)) for a in RESUME_MAY_CHANGE)
    }
    if changes:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())
        allowed = ", ".join(a + "*" if a.endswith(".") else a for a in RESUME_MAY_CHANGE)
        raise ConfigError(
            f"train.resume=true: this config differs from the one {run_dir} was trained with "
            f"({saved_path}) in {listed}; a resumed run may change only {allowed}: resume with "
            "the run's own settings, or start a new run without train.resume"
        )


def check_layout(cfg: TwinConfig, checkpoint: Path) -> None:
    """A resumed run must have the same policies as its checkpoint."""
    from agents.config_builder import seat_layout

    saved = json.loads((checkpoint / SEATS).read_text())
    now = dict(seat_layout(cfg).policy_of)
    if saved["policy_of"] != now:
        raise ConfigError(
            f"train.resume=true: the seats of this config {now} differ from those of the "
            f"checkpoint {checkpoint} {saved['policy_of']}; resume with the run's own config "
            f"({checkpoint.parent.parent / 'config.yaml'})"
        )


def default_run_dir(cfg: TwinConfig) -> Path:
    """``outputs/<run.name>/<time>``, as the Hydra apps derive it."""
    return (
        Path("outputs") / str(cfg.run.get("name", "default")) / time.strftime("%Y-%m-%d_%H-%M-%S")
    )


def train(config: TwinConfig, run_dir: Path | str | None = None, *, plots: bool = True
          ) -> TrainResult:  # fmt: skip
    """Train the learning seats of ``config``; write everything under ``run_dir``
    (default: :func:`default_run_dir`); ``plots=False`` skips ``training.png`` (sweeps)."""
    import torch

    from agents.config_builder import group_of, seat_layout

    cfg = to_config(config)
    t = cfg.train
    check_address(t.ray.address, "train.ray.address")  # before anything is written
    # absolute: RLlib hands paths to pyarrow, which reads a relative one as a URI without scheme
    run_dir = (Path(run_dir) if run_dir is not None else default_run_dir(cfg)).resolve()
    layout = seat_layout(cfg)  # fails early, naming the field, when nothing would learn
    if t.resume:
        run_dir = find_resume_dir(run_dir)
        newest = list_checkpoints(run_dir)[-1]
        check_resume_config(cfg, run_dir, newest)
        check_layout(cfg, newest)
        done = checkpoint_iteration(newest)
        if done >= t.iterations:
            return nothing_to_train(run_dir, newest, done, t.iterations)
    elif list_checkpoints(run_dir):
        raise ConfigError(
            f"{run_dir} already holds checkpoints of a run: pass train.resume=true to continue "
            "it, or a new hydra.run.dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    quiet_rllib()
    write_resolved_config(cfg, run_dir)
    policies = {pid: group_of(pid) for pid in layout.learning}
    t0 = time.perf_counter()
    with ray_session(t.ray, run_dir):
        algo = build_algorithm(cfg, run_dir)
        try:
            start, table = 0, pd.DataFrame()
            ckpts = list_checkpoints(run_dir)
            if t.resume and ckpts:
                start = restore_algorithm(algo, ckpts[-1])
                if (run_dir / METRICS).exists():
                    table = pd.read_parquet(run_dir / METRICS)
                    table = table[table.iteration <= start].reset_index(drop=True)
                print(f"resuming {run_dir} from iteration {start}", flush=True)
            ckpt = ckpts[-1] if ckpts and t.resume else None
            durations: list[float] = []
            for it in range(start + 1, t.iterations + 1):
                ti = time.perf_counter()
                result = algo.train()
                rows = iteration_rows(it, result, policies)
                table = pd.concat([table, pd.DataFrame(rows)], ignore_index=True)
                write_metrics(table, run_dir)
                if it % t.checkpoint_every_iters == 0 or it == t.iterations:
                    ckpt = save_checkpoint(algo, cfg, run_dir, it, t.keep_checkpoints)
                durations.append(time.perf_counter() - ti)
                recent = durations[-5:] if len(durations) > 1 else durations
                eta = float(np.mean(recent)) * (t.iterations - it)
                print(progress_line(rows, it, t.iterations, durations[-1], eta), flush=True)
            if ckpt is None:  # nothing left to run: the newest checkpoint is the result
                ckpt = save_checkpoint(algo, cfg, run_dir, algo.iteration, t.keep_checkpoints)
        finally:
            algo.stop()
            _drop_empty_dirs(run_dir / "ray_results")  # RLlib's unused Trainable log dir
    seconds = time.perf_counter() - t0
    from experiments.report import plot_training

    if plots and len(table):
        plot_training(table, run_dir / "training.png", f"training '{cfg.run.get('name', '')}'")
    summary = training_summary(table, seconds, ckpt)
    (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary)
    return TrainResult(run_dir, ckpt, table, int(table.iteration.max()) if len(table) else 0,
                       seconds)  # fmt: skip


def nothing_to_train(run_dir: Path, checkpoint: Path, done: int, iterations: int
                     ) -> TrainResult:  # fmt: skip
    """``train.resume=true`` on a run that already reached ``train.iterations``: say so, train
    nothing and change nothing (no Ray is started)."""
    print(f"nothing left to train: {run_dir} already reached iteration {done} "
          f"(train.iterations={iterations}); raise train.iterations to train on", flush=True)  # fmt: skip
    print(f"checkpoint: {checkpoint}", flush=True)
    table = pd.read_parquet(run_dir / METRICS) if (run_dir / METRICS).exists() else pd.DataFrame()
    return TrainResult(run_dir, checkpoint, table, done, 0.0)


SUMMARY_MARKET = ("cheat_rate", "check_rate", "collusion_rate", "wrong_accepted_rate",
                  "mediation_rate", "collateral_locked_tokens", "client_surplus_tokens",
                  "protocol_revenue_tokens", "deals_per_episode")  # fmt: skip
SUMMARY_LEARNING = ("module_return_mean", "learning_payoff_tokens", "learning_cheat_rate",
                    "learning_check_rate", "learning_collusion_rate", "entropy")  # fmt: skip


def _drop_empty_dirs(root: Path) -> None:
    if root.is_dir() and not any(p.is_file() for p in root.rglob("*")):
        shutil.rmtree(root, ignore_errors=True)


def training_summary(table: pd.DataFrame, seconds: float, checkpoint: Path) -> dict:
    """First and last iteration's market measures, and those of each role that learns."""
    out: dict = {"checkpoint": str(checkpoint), "seconds": round(seconds, 1)}
    if table.empty:
        return out
    out["iterations"] = int(table.iteration.max())
    per_iter = table.groupby("iteration").time_this_iter_s.first()
    out["mean_iteration_s"] = round(float(per_iter.mean()), 2)
    first, last = table.iteration.min(), table.iteration.max()
    for role, g in table.groupby("role", sort=False):
        if role != "market" and not g.policies.iloc[-1]:
            continue
        keys = SUMMARY_MARKET if role == "market" else SUMMARY_LEARNING
        a, b = g[g.iteration == first].iloc[0], g[g.iteration == last].iloc[0]
        out[role] = {k: [_round(a[k]), _round(b[k])] for k in keys if np.isfinite(b[k])}
    return out


def _round(x: float) -> float | None:
    return round(float(x), 4) if np.isfinite(x) else None


def print_summary(summary: dict) -> None:
    print(f"trained {summary.get('iterations', 0)} iterations in {summary['seconds']:.0f} s "
          f"(mean {summary.get('mean_iteration_s', float('nan'))} s per iteration)")  # fmt: skip
    for role in ROWS:
        if role not in summary:
            continue
        what = "market" if role == "market" else f"learning {role} seats"
        print(f"  {what} (first -> last iteration):")
        if not summary[role]:
            print("    no episode has finished yet: raise train.train_batch_size")
        for k, (a, b) in summary[role].items():
            print(f"    {k:>26}: {a if a is not None else 'nan':>10} -> {b}")
    print(f"checkpoint: {summary['checkpoint']}", flush=True)


def _hydra_main() -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    from twin.config import register_schemas
    from twin.configuration import config_dir
    from twin.errors import user_errors

    register_schemas()

    @hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")
    def _main(dcfg: DictConfig) -> None:
        with user_errors("twin-train"):
            train(to_config(dcfg), Path(HydraConfig.get().runtime.output_dir))

    _main()


def main() -> None:
    """``twin-train``: the Hydra app (``twin-train experiment=... key=value``); the command line
    is checked first (:func:`twin.configuration.check_cli_overrides`)."""
    from agents.hashseed import reexec_with_fixed_hash_seed
    from twin.configuration import check_cli_overrides
    from twin.errors import user_errors

    reexec_with_fixed_hash_seed()
    with user_errors("twin-train"):
        check_cli_overrides(sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    sys.exit(main())
