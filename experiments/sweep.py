"""Sweeps of mechanism parameters on a Ray cluster: ``twin-sweep`` and :func:`run_sweep`.

Syntax (Hydra's sweep syntax, parsed with Hydra's own override parser)::

    twin-sweep experiment=cheating_economics \\
        'pricing.results_collateral_multiple=1,2,4,8' \\
        'policies.jc.check_probability=0.05,0.1,0.2' sweep.seeds=3
    twin-sweep 'policies.jc.check_probability=interval(0.01,0.5)' \\
        'pricing.results_collateral_multiple=choice(1,2,4,8,16)' \\
        sweep.search=random sweep.num_samples=20
    twin-sweep ... ray.address=10.0.0.5:6379      # trials on an existing Ray cluster

- A twin override whose value is a sweep (``a,b,c``, ``range(1,9,2)``, ``choice(a,b)``,
  ``interval(0.1,0.5)``, ``tag(log,interval(1,100))``, ``int(interval(1,16))``) is *swept*;
  every other twin override applies to every trial. ``sweep.search=grid`` (default) runs every
  combination of the swept values (``interval`` is not allowed there); ``sweep.search=random``
  draws ``sweep.num_samples`` points (``sweep.sample_seed``): list, ``range`` and ``choice``
  values uniformly, ``interval`` uniformly on ``[a, b)`` (log-uniformly when tagged ``log``;
  integers on ``[a, b]`` when cast with ``int(...)``), rounded to 6 significant digits.
  Each point runs with ``sweep.seeds`` seeds (``seed=first_seed``, ``first_seed + 1``, ...).
- ``sweep.*`` and ``ray.*`` are the sweep's own settings (``configs/sweep.yaml``, schema
  :mod:`experiments.sweep_schema`): retries (``sweep.max_failures``), CPUs per trial,
  concurrency, names, the cluster.
- Every trial is composed and validated (:func:`twin.config.validate` and the RLlib config
  builder) before anything runs: a bad key or value fails at once, naming it.

A trial (:func:`run_trial`) is a training run (:func:`agents.train.train`) and the greedy
evaluation of its final checkpoint (:func:`agents.evaluate.evaluate`, ``run.episodes``
episodes), as in the main job; it returns the evaluation's summary measures plus training
figures (seconds, iterations, the last iteration's learning measures). Trials are scheduled by
Ray Tune on the cluster ``ray.address`` names: by default a lean local Ray started inside the
sweep directory (like :func:`agents.train.ray_session`; ``ray.num_cpus``, 2), so on 2 cores two
trials of one CPU run at once. Tune reuses its trial actors, so each worker process imports
torch and RLlib once; training inside a trial uses the Ray already running in the worker
(``train.num_env_runners`` must be 0). A failed trial is retried ``sweep.max_failures`` times
(Tune's ``FailureConfig``); one that still fails is recorded as ``failed`` with its error and
the sweep goes on.

Outputs, under the sweep directory (``sweep.dir``, default
``multirun/<run.name>/<sweep.name>``):

- ``results/<trial_id>.parquet``: one file per finished trial, written atomically by the
  driver as the trial finishes; together ONE parquet dataset in long format, one row per trial
  and metric, columns ``sweep``, ``trial_id``, ``seed``, one column per swept parameter named by
  its dotted config path (numbers typed as numbers), ``overrides`` (the trial's overrides joined
  by spaces), ``metric``, ``value``, ``node`` (the Ray node id the trial ran on), ``status``
  (``ok`` or ``failed``; a failed trial has one row, metric ``attempts``). Read it with
  :func:`load_results` (or ``pd.read_parquet(<sweep dir>/results)``);
- ``errors/<trial_id>.txt``: the error of every attempt of a failed trial (:func:`load_errors`);
- ``trials/<trial_id>/``: the trial's training run (checkpoints, ``metrics.parquet``,
  ``training.png``) and ``eval/`` its evaluation report, on the node that ran it;
- ``sweep.json``: the sweep's definition, its trials (id, seed, parameters, overrides) and the
  cluster's nodes with their resources; ``tune/``: Ray Tune's own experiment state.

The trial id is a short hash of the trial's full override list (the common overrides, the
swept values, ``seed=<s>``), so it is the same in every run of the same sweep. **Resume**:
re-running the same command finds the same sweep directory and runs only the trials without an
``ok`` result (missing, failed, or interrupted when the sweep was killed), and those whose result
was computed with another resolved config (each result file keeps its trial's config: a changed
experiment file, e.g. a new training budget, makes its trials run again, and the run says so;
:func:`stale_trials`); a trial always restarts from scratch (its seed then reproduces it).
Progress: one line per finished trial (done/total, its parameters, key measures, seconds, node,
time left) and a summary at the end.

On a cluster, every node needs this package and its dependencies (the same Python
environment); results travel back to the driver through Tune, so ``results/`` is complete on
the driver's machine, while each trial's own directory stays on the node that ran it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agents.schema import RayConfig
from experiments.sweep_schema import (
    SweepAppConfig,
    SweepConfig,
    check_sweep_config,
    register_sweep_schema,
)
from twin.config import ConfigError, TwinConfig
from twin.errors import UserError, one_line

RESULTS = "results"
CONFIG_KEY = b"twin_config"  # parquet metadata of a result file: the trial's resolved config
ERRORS = "errors"
TRIALS = "trials"
SPEC = "sweep.json"
TUNE_DIR = "tune"
HEAD_COLUMNS = ("sweep", "trial_id", "seed")  # then one column per swept parameter
TAIL_COLUMNS = ("overrides", "metric", "value", "node", "status")
OK, FAILED = "ok", "failed"
APP_PREFIXES = ("sweep.", "ray.")  # command-line overrides of configs/sweep.yaml
KEY_METRICS = ("learning_rp_cheat_rate", "learning_rp_payoff_tokens", "learning_jc_check_rate",
               "learning_jc_payoff_tokens", "learning_mediator_collusion_rate",
               "market_cheat_rate", "market_check_rate")  # fmt: skip
ID_CHARS = 12


# -- the plan: parsing, expansion, ids, validation -------------------------------------------------
@dataclass(frozen=True)
class Trial:
    """One trial: a point of the sweep with one seed."""

    trial_id: str
    seed: int
    params: tuple[tuple[str, Any], ...]  # (dotted key, value) of every swept parameter
    overrides: tuple[str, ...]  # common overrides, swept values, then seed=<seed>

    @property
    def overrides_text(self) -> str:
        return " ".join(self.overrides)


@dataclass
class SweepPlan:
    """A sweep expanded and validated: its trials and the config each runs."""

    name: str
    base: tuple[str, ...]  # overrides common to every trial
    keys: tuple[str, ...]  # swept parameters (dotted paths), in command-line order
    trials: list[Trial]
    configs: dict[str, TwinConfig]  # trial id -> its validated config
    run_name: str

    def column_types(self) -> dict[str, str]:
        """Arrow type of each parameter column: bool, int64, float64 or string."""
        return {k: _column_type([dict(t.params)[k] for t in self.trials]) for k in self.keys}


def trial_id(overrides: Sequence[str]) -> str:
    """Short hash of a trial's full override list (order included)."""
    return hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:ID_CHARS]


def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def parse_overrides(overrides: Sequence[str]) -> tuple[list[str], list]:
    """Split twin overrides into the common ones (strings) and the swept ones (Hydra
    ``Override`` objects whose value is a sweep)."""
    from hydra.errors import HydraException

    parser = _parser()
    base, swept, seen = [], [], set()
    for text in overrides:
        try:
            (o,) = parser.parse_overrides([text])
        except HydraException as e:
            raise ConfigError(f"override {text!r}: {e}") from None
        key = o.key_or_group
        if key == "seed":
            raise ConfigError(
                f"override {text!r}: trial seeds are set with sweep.seeds=N (seeds "
                "sweep.first_seed, sweep.first_seed + 1, ...), not with seed="
            )
        if key.startswith(APP_PREFIXES):
            raise ConfigError(
                f"override {text!r}: sweep.* and ray.* are twin-sweep settings; pass them as "
                "run_sweep(..., sweep=SweepConfig(...), ray=RayConfig(...))"
            )
        if o.is_sweep_override():
            if key in seen:
                raise ConfigError(f"override {text!r}: {key} is swept twice")
            seen.add(key)
            swept.append(o)
        else:
            base.append(text)
    return base, swept


def _element(value: Any) -> tuple[Any, str]:
    """(python value, override text) of one swept value."""
    from hydra.core.override_parser.types import Override, QuotedString

    if isinstance(value, QuotedString):
        return value.text, value.with_quotes()
    if isinstance(value, bool):
        return value, "true" if value else "false"
    return value, Override._get_value_element_as_str(value)


def _discrete_values(o) -> list[Any]:
    from hydra.core.override_parser.types import Glob, IntervalSweep

    if isinstance(o.value(), IntervalSweep):
        raise ConfigError(
            f"{o.input_line}: interval() is continuous and cannot be a grid; use "
            "sweep.search=random (with sweep.num_samples=N) or list the values"
        )
    if isinstance(o.value(), Glob):
        raise ConfigError(f"{o.input_line}: glob() is not supported; list the options instead")
    values = list(o.sweep_iterator())
    if not values:
        raise ConfigError(f"{o.input_line}: the sweep has no values")
    return values


def _round6(x: float) -> float:
    return float(f"{x:.6g}")


def _draw(o, rng: np.random.Generator) -> Any:
    from hydra.core.override_parser.types import IntervalSweep

    sw = o.value()
    if not isinstance(sw, IntervalSweep):
        values = _discrete_values(o)
        return values[int(rng.integers(len(values)))]
    a, b = sw.start, sw.end
    log = "log" in sw.tags
    if b < a or (log and a <= 0):
        needs = "a <= b and a > 0 with tag(log)" if log else "a <= b"
        raise ConfigError(f"{o.input_line}: interval(a, b) needs {needs}")
    if isinstance(a, int) and isinstance(b, int):  # int(interval(a, b)): integers a..b
        if log:
            return int(min(b, max(a, round(math.exp(rng.uniform(math.log(a), math.log(b)))))))
        return int(rng.integers(a, b + 1))
    x = math.exp(rng.uniform(math.log(a), math.log(b))) if log else rng.uniform(a, b)
    return _round6(float(x))


def expand_points(swept: list, sweep: SweepConfig) -> list[tuple[tuple[str, Any], ...]]:
    """The sweep's points (swept key -> value), grid or random, without duplicates."""
    import itertools

    keys = [o.key_or_group for o in swept]
    if sweep.search == "grid":
        combos = itertools.product(*(_discrete_values(o) for o in swept))
    else:
        rng = np.random.default_rng(sweep.sample_seed)
        combos = ([_draw(o, rng) for o in swept] for _ in range(sweep.num_samples))
    points, seen = [], set()
    for combo in combos:
        point = tuple(zip(keys, combo, strict=True))
        marker = tuple((k, _element(v)[1]) for k, v in point)
        if marker not in seen:
            seen.add(marker)
            points.append(point)
    return points


def expand_trials(base: Sequence[str], swept: list, sweep: SweepConfig) -> list[Trial]:
    """The trials of a sweep (points x seeds), without composing anything.

    ``base`` and ``swept``: the common overrides and the swept ``Override`` objects of
    :func:`parse_overrides`. A trial's overrides are the common ones, then ``key=value`` of
    each swept parameter in command-line order, then ``seed=<seed>``.
    """
    trials = []
    for point in expand_points(swept, sweep):
        swept_text = []
        params = []
        for o, (k, v) in zip(swept, point, strict=True):
            value, text = _element(v)
            swept_text.append(f"{o.get_key_element()}={text}")
            params.append((k, value))
        for i in range(sweep.seeds):
            seed = sweep.first_seed + i
            ov = (*base, *swept_text, f"seed={seed}")
            trials.append(Trial(trial_id(ov), seed, tuple(params), ov))
    return trials


def _is_group(o) -> bool:
    from hydra.core.override_parser.types import OverrideType

    from twin.configuration import config_dir

    return (
        o.package is not None
        or o.type != OverrideType.CHANGE
        or (config_dir() / o.key_or_group.replace(".", "/")).is_dir()
    )


@contextlib.contextmanager
def _hydra() -> Iterator[None]:
    """Hydra initialised on ``configs/`` (or as it already is)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from twin.config import register_schemas
    from twin.configuration import config_dir

    register_schemas()
    register_sweep_schema()
    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        yield


def _hydra_compose(config_name: str, overrides: Sequence[str]):
    from hydra import compose

    try:
        return compose(config_name=config_name, overrides=list(overrides))
    except Exception as e:  # Hydra's message names the key
        raise ConfigError(f"{' '.join(overrides)}: {e}") from None


def compose_trials(base: Sequence[str], swept: list, trials: list[Trial],
                   cpus_per_trial: float = 1.0) -> dict[str, TwinConfig]:  # fmt: skip
    """Compose and validate the config of every trial (raises :class:`ConfigError` on the first
    bad one, naming the key, the value and the trial's overrides).

    Common overrides are composed by Hydra once; a swept plain value is then set on a copy of
    that config (the schema checks its type), while a swept config group (``mediation=...``)
    or ``+key``/``~key`` is composed by Hydra for each point. The seed is set last.
    """
    from omegaconf import OmegaConf

    from agents.config_builder import build_algo_config
    from twin.config import validate
    from twin.configuration import to_config

    per_point_hydra = any(_is_group(o) for o in swept)
    configs: dict[str, TwinConfig] = {}
    by_point: dict[tuple, TwinConfig] = {}
    with _hydra():
        base_cfg = None if per_point_hydra else _hydra_compose("config", base)
        for t in trials:
            point = t.params
            marker = tuple(t.overrides[:-1])
            cfg = by_point.get(marker)
            if cfg is None:
                try:
                    if per_point_hydra:
                        cfg = to_config(_hydra_compose("config", t.overrides[:-1]))
                    else:
                        dc = copy.deepcopy(base_cfg)
                        for key, value in point:
                            OmegaConf.update(dc, key, value, merge=False)
                        obj = OmegaConf.to_object(dc)  # typed by the schema Hydra merged
                        cfg = validate(obj) if isinstance(obj, TwinConfig) else to_config(dc)
                    if cfg.train.num_env_runners:
                        raise ConfigError(
                            f"train.num_env_runners = {cfg.train.num_env_runners}: a trial "
                            "trains inside its Ray Tune actor, so it must be 0 (give a trial "
                            "more CPUs with sweep.cpus_per_trial)"
                        )
                    if cfg.train.resume:
                        raise ConfigError(
                            "train.resume=true: a sweep resumes by itself (re-run the same "
                            "command); trials always start from scratch"
                        )
                    build_algo_config(cfg)  # the RLlib side: seats, batch sizes, modules
                except Exception as e:  # ours, OmegaConf's and Hydra's errors name the key
                    raise ConfigError(f"trial {t.overrides_text!r}: {e}") from None
                if cfg.train.env_process and cpus_per_trial < 2:  # no core for an env process
                    cfg = dataclasses.replace(
                        cfg, train=dataclasses.replace(cfg.train, env_process=False)
                    )
                by_point[marker] = cfg
            configs[t.trial_id] = dataclasses.replace(cfg, seed=t.seed)
    return configs


def default_name(base: Sequence[str], keys: Sequence[str], search: str) -> str:
    """``<last part of each swept key>-<hash of the common overrides, swept keys, search>``."""
    digest = hashlib.sha256("\n".join([*base, "|", *keys, "|", search]).encode()).hexdigest()
    stem = "-".join(k.rsplit(".", 1)[-1] for k in keys) or "seeds"
    stem = re.sub(r"[^A-Za-z0-9_.=-]+", "_", stem)[:80]
    return f"{stem}-{digest[:6]}"


def plan_sweep(overrides: Sequence[str], sweep: SweepConfig | None = None) -> SweepPlan:
    """Expand ``overrides`` (Hydra sweep syntax) into trials and validate every trial's config.

    Nothing runs and Ray is not started: a bad override, key or value raises
    :class:`twin.config.ConfigError` naming it.
    """
    sweep = sweep or SweepConfig()
    check_sweep_config(SweepAppConfig(sweep=sweep))
    base, swept = parse_overrides(overrides)
    keys = [o.key_or_group for o in swept]
    trials = expand_trials(base, swept, sweep)
    configs = compose_trials(base, swept, trials, sweep.cpus_per_trial)
    run_name = str(next(iter(configs.values())).run.get("name", "default")) if configs else ""
    name = sweep.name or default_name(base, keys, sweep.search)
    return SweepPlan(name, tuple(base), tuple(keys), trials, configs, run_name)


# -- one trial -------------------------------------------------------------------------------------
_TRIALS_IN_PROCESS = 0  # trials run by this process (the first one also imports torch and RLlib)


def run_trial(cfg: TwinConfig, trial_dir: Path | str, record: bool = False,
              plots: bool = False) -> dict[str, float]:  # fmt: skip
    """Train ``cfg`` in ``trial_dir`` and evaluate its final checkpoint greedily in
    ``trial_dir/eval`` (``run.episodes`` episodes, seeds from ``seed + 1_000_000``), with the
    episode record if ``record`` and the PNG plots if ``plots``.

    Returns the evaluation's summary measures (``eval_episodes``, ``eval_seconds`` for its
    ``episodes`` and ``seconds``), ``train_seconds``, ``train_iterations``,
    ``train_iteration_seconds`` (the iterations alone), ``train_setup_seconds`` (building the
    algorithm, checkpoints, plots), the last iteration's measures of each learning role
    (``train_<role>_<measure>``), ``trial_seconds``, ``trial_cpu_seconds`` (CPU time of the
    trial's process) and ``process_trial_number`` (1 for the first trial of a worker process,
    which also pays for importing torch and RLlib; Tune reuses the process for the next ones).
    Anything already in ``trial_dir`` is removed first: a trial starts from scratch, so its
    seed reproduces it.
    """
    global _TRIALS_IN_PROCESS
    _TRIALS_IN_PROCESS += 1
    t0, c0 = time.perf_counter(), time.process_time()
    trial_dir = Path(trial_dir)
    if trial_dir.is_dir():
        shutil.rmtree(trial_dir)
    trial_dir.mkdir(parents=True)  # before the heavy imports: a bad directory fails at once

    from agents.evaluate import evaluate
    from agents.train import SUMMARY_LEARNING, train

    tr = train(cfg, trial_dir, plots=plots)
    t1 = time.perf_counter()
    episodes = int(cfg.run.get("episodes", 4))
    ev = evaluate(tr.checkpoint, episodes, trial_dir / "eval", seed=cfg.seed + 1_000_000,
                  record=record, plots=plots)  # fmt: skip
    out: dict[str, float] = {}
    for k, v in ev.summary.items():
        name = {"episodes": "eval_episodes", "seconds": "eval_seconds"}.get(k, k)
        with contextlib.suppress(TypeError, ValueError):
            out[name] = float(v)
    m = tr.metrics
    iter_s = float(m.groupby("iteration").time_this_iter_s.first().sum()) if len(m) else 0.0
    out.update(train_seconds=float(tr.seconds), train_iterations=float(tr.iterations),
               train_iteration_seconds=iter_s, train_setup_seconds=float(tr.seconds) - iter_s,
               evaluate_seconds=time.perf_counter() - t1)  # fmt: skip
    if len(m):
        last = m[m.iteration == m.iteration.max()]
        for _, row in last.iterrows():
            if row.role == "market" or not row.policies:
                continue
            for k in SUMMARY_LEARNING:
                if np.isfinite(row[k]):
                    out[f"train_{row.role}_{k}"] = float(row[k])
    out["trial_seconds"] = time.perf_counter() - t0
    out["trial_cpu_seconds"] = time.process_time() - c0
    out["process_trial_number"] = float(_TRIALS_IN_PROCESS)
    return out


def _tune_trial(config: dict, specs: dict) -> None:
    """The Ray Tune function trainable: runs the trial ``config['trial_id']`` of ``specs``."""
    import ray
    from ray import tune

    cfg, trial_dir, record, plots = specs[config["trial_id"]]
    node = ray.get_runtime_context().get_node_id()
    tune.report({"node": node, "phase": "started"})  # so that a failure knows its node
    measures = run_trial(cfg, trial_dir, record, plots)
    tune.report({"node": node, "phase": "done", "measures": measures})


# -- results -------------------------------------------------------------------------------------
def _column_type(values: list[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "float64"
    return "string"


def _param_value(v: Any, kind: str) -> Any:
    if kind == "string":
        return v if isinstance(v, str) else _element(v)[1]
    return v


def trial_rows(plan: SweepPlan, trial: Trial, measures: dict[str, float], node: str,
               status: str) -> pd.DataFrame:  # fmt: skip
    """The long-format rows of one trial (one per metric), typed as the dataset's schema."""
    import pyarrow as pa

    types = plan.column_types()
    params = dict(trial.params)
    metrics = sorted(measures)
    n = len(metrics)
    arrow = {"bool": pa.bool_(), "int64": pa.int64(), "float64": pa.float64(),
             "string": pa.string()}  # fmt: skip
    cols: dict[str, pa.Array] = {
        "sweep": pa.array([plan.name] * n, pa.string()),
        "trial_id": pa.array([trial.trial_id] * n, pa.string()),
        "seed": pa.array([trial.seed] * n, pa.int64()),
    }
    for k in plan.keys:
        cols[k] = pa.array([_param_value(params[k], types[k])] * n, arrow[types[k]])
    cols["overrides"] = pa.array([trial.overrides_text] * n, pa.string())
    cols["metric"] = pa.array(metrics, pa.string())
    cols["value"] = pa.array([float(measures[m]) for m in metrics], pa.float64())
    cols["node"] = pa.array([node] * n, pa.string())
    cols["status"] = pa.array([status] * n, pa.string())
    return pa.table(cols)


def config_text(cfg: TwinConfig) -> str:
    """The resolved config of a trial as YAML (what its result file keeps)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def write_trial(sweep_dir: Path, table, config: TwinConfig | None = None) -> Path:
    """Write one trial's table to ``results/<trial_id>.parquet`` (temporary name, then rename),
    with the trial's resolved ``config`` in the file's metadata (key :data:`CONFIG_KEY`), so that
    a re-run can tell results of another config from its own (:func:`stale_trials`)."""
    import pyarrow.parquet as pq

    root = sweep_dir / RESULTS
    root.mkdir(parents=True, exist_ok=True)
    if config is not None:
        meta = dict(table.schema.metadata or {})
        meta[CONFIG_KEY] = config_text(config).encode()
        table = table.replace_schema_metadata(meta)
    tid = table.column("trial_id")[0].as_py()
    tmp = root / f".{tid}.parquet.tmp"  # a leading dot: never read as part of the dataset
    pq.write_table(table, tmp)
    final = root / f"{tid}.parquet"
    os.replace(tmp, final)
    return final


def _empty_results() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64" if c == "value" else "object")
                         for c in (*HEAD_COLUMNS, *TAIL_COLUMNS)})  # fmt: skip


def load_results(sweep_dir: Path | str) -> pd.DataFrame:
    """Every trial's rows of the sweep in ``sweep_dir`` (long format, see the module docstring);
    an empty frame with the fixed columns when no trial has finished."""
    root = Path(sweep_dir) / RESULTS
    files = sorted(root.glob("*.parquet")) if root.is_dir() else []
    if not files:
        return _empty_results()
    frames = [pd.read_parquet(f) for f in files]
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    params = [c for c in df.columns if c not in HEAD_COLUMNS and c not in TAIL_COLUMNS]
    return df[[*HEAD_COLUMNS, *params, *TAIL_COLUMNS]]


def load_errors(sweep_dir: Path | str) -> dict[str, str]:
    """trial id -> the recorded errors of each failed trial of the sweep in ``sweep_dir``."""
    root = Path(sweep_dir) / ERRORS
    if not root.is_dir():
        return {}
    return {p.stem: p.read_text() for p in sorted(root.glob("*.txt"))}


def stale_trials(plan: SweepPlan, sweep_dir: Path, ids: set[str]) -> dict[str, dict]:
    """Trials of ``ids`` whose result was computed with another config than the plan's now (the
    config files changed since, e.g. an experiment's training budget): trial id -> ``{key:
    (then, now)}``. The trial id hashes the overrides only, so without this check a re-run would
    keep such results. ``train.ray.*`` (where the trial ran) does not count. A result file without
    a config (a sweep of an earlier version) is checked against its trial's ``config.yaml`` when
    the trial's run is on this machine, and kept otherwise."""
    import pyarrow.parquet as pq
    from omegaconf import OmegaConf

    from agents.train import config_changes

    out: dict[str, dict] = {}
    for tid in sorted(ids & set(plan.configs)):
        meta = pq.read_schema(sweep_dir / RESULTS / f"{tid}.parquet").metadata or {}
        if CONFIG_KEY in meta:
            text = meta[CONFIG_KEY].decode()
        elif (sweep_dir / TRIALS / tid / "config.yaml").is_file():  # the trial's run, if here
            text = (sweep_dir / TRIALS / tid / "config.yaml").read_text()
        else:
            continue
        saved = OmegaConf.to_container(OmegaConf.create(text))
        now = OmegaConf.to_container(OmegaConf.structured(plan.configs[tid]))
        changes = {k: v for k, v in config_changes(saved, now).items()
                   if not k.startswith("train.ray.")}  # fmt: skip
        if changes:
            out[tid] = changes
    return out


def finished_ids(sweep_dir: Path) -> set[str]:
    """Trial ids with an ``ok`` result in ``sweep_dir`` (read from the files' status column)."""
    import pyarrow.parquet as pq

    root = sweep_dir / RESULTS
    done = set()
    for f in root.glob("*.parquet") if root.is_dir() else []:
        status = pq.read_table(f, columns=["status"]).column("status")
        if len(status) and all(s == OK for s in status.to_pylist()):
            done.add(f.stem)
    return done


# -- Ray -----------------------------------------------------------------------------------------
ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once, naming ``ray.address``, when it is malformed or nothing answers there
    (:func:`agents.ray_address.check_address`, also while Ray runs in this process)."""
    from agents.ray_address import check_address as check

    check(address, "ray.address", timeout_s, skip_if_running=False)


def cluster_nodes() -> dict[str, dict]:
    """Alive nodes of the connected Ray cluster: node id -> address and resources."""
    import ray

    return {n["NodeID"]: {"address": n.get("NodeManagerAddress", ""),
                          "resources": dict(n.get("Resources", {}))}
            for n in ray.nodes() if n.get("Alive")}  # fmt: skip


# -- progress ------------------------------------------------------------------------------------
def _fmt_s(seconds: float) -> str:
    s = int(round(max(0.0, seconds)))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)}


class Progress:
    """Counts finished trials and formats their progress lines (done/total, time left)."""

    def __init__(self, plan: SweepPlan, total: int, skipped: int) -> None:
        self.plan, self.total, self.done = plan, total, skipped
        self.ran = 0
        self.t0 = time.perf_counter()
        self.short = _short_keys(plan.keys)

    def _point(self, trial: Trial) -> str:
        parts = [f"{self.short[k]}={_element(v)[1]}" for k, v in trial.params]
        return " ".join([*parts, f"seed={trial.seed}"])

    def line(self, trial: Trial, status: str, measures: dict[str, float], node: str,
             note: str = "") -> str:  # fmt: skip
        self.done += 1
        self.ran += 1
        elapsed = time.perf_counter() - self.t0
        left = self.total - self.done
        eta = elapsed / self.ran * left
        width = len(str(self.total))
        parts = [f"[{self.done:>{width}}/{self.total}] {status:<6} {trial.trial_id} "
                 f"{self._point(trial)}"]  # fmt: skip
        if status == OK:
            shown = [f"{k} {measures[k]:.3g}" for k in KEY_METRICS if k in measures][:4]
            parts.append(" ".join(shown) or "no measures")
            parts.append(f"{measures.get('trial_seconds', float('nan')):.1f} s")
        else:
            parts.append(note)
        parts.append(f"node {node[:8] or '?'}")
        parts.append(f"ETA {_fmt_s(eta)}" if left else f"elapsed {_fmt_s(elapsed)}")
        return " | ".join(parts)


def summary_text(plan: SweepPlan, results: pd.DataFrame, errors: dict[str, str], ran: int,
                 seconds: float, sweep_dir: Path) -> str:  # fmt: skip
    """The end-of-sweep summary: counts, nodes, failures, key measures per point."""
    ids = {t.trial_id for t in plan.trials}
    res = results[results.trial_id.isin(ids)]
    status = res.groupby("trial_id").status.first()
    ok, failed = int((status == OK).sum()), int((status == FAILED).sum())
    lines = [
        f"sweep {plan.name}: {len(plan.trials)} trials, {ok} ok, {failed} failed, "
        f"{len(plan.trials) - ok - failed} missing; ran {ran} in {_fmt_s(seconds)}",
    ]
    if ok:
        secs = res[(res.metric == "trial_seconds") & (res.status == OK)].value
        nodes = res[res.status == OK].groupby("node").trial_id.nunique()
        lines.append(f"  mean trial {secs.mean():.1f} s; trials per node: "
                     + ", ".join(f"{n[:8]} {c}" for n, c in nodes.items()))  # fmt: skip
    for tid in status[status == FAILED].index:
        err = errors.get(tid, "").strip().splitlines()
        msg = next((ln for ln in reversed(err) if ln.strip()), "no error recorded")
        lines.append(f"  failed {tid}: {msg[:200]}")
    shown = [k for k in KEY_METRICS if k in set(res.metric)][:4]
    if ok and shown:
        keys = list(plan.keys)
        ok_rows = res[(res.status == OK) & res.metric.isin(shown)]
        if keys:
            table = ok_rows.pivot_table(index=keys, columns="metric", values="value",
                                        aggfunc="mean")  # fmt: skip
        else:
            table = ok_rows.groupby("metric").value.mean().to_frame().T
        table = table[[k for k in shown if k in table.columns]]
        lines.append(f"  mean over seeds of {', '.join(shown)}:")
        with pd.option_context("display.width", 160, "display.max_rows", 60):
            lines.extend("    " + ln for ln in table.round(3).to_string().splitlines())
    if ok < len(plan.trials):
        lines.append(f"  re-run the same command to run the {len(plan.trials) - ok} trials "
                     "without an ok result")  # fmt: skip
    lines.append(f"results: {sweep_dir / RESULTS} (experiments.sweep.load_results)")
    return "\n".join(lines)


# -- the sweep -----------------------------------------------------------------------------------
@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _make_writer(plan: SweepPlan, sweep_dir: Path, progress: Progress):
    from ray import tune

    by_id = {t.trial_id: t for t in plan.trials}

    class ResultWriter(tune.Callback):
        """Driver side: writes each trial's rows as it finishes, prints its progress line."""

        def __init__(self) -> None:
            self.node: dict[str, str] = {}

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            if "node" in result:
                self.node[trial.config["trial_id"]] = str(result["node"])

        def on_trial_recover(self, iteration, trials, trial, **info) -> None:
            tid = trial.config["trial_id"]
            print(f"  retrying {tid} after failure {trial.num_failures}: "
                  f"{_last_error_line(trial)}", flush=True)  # fmt: skip

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            tid = trial.config["trial_id"]
            result = trial.last_result or {}
            measures = result.get("measures")
            if not isinstance(measures, dict):  # finished without its final report
                self._failed(trial, "the trial ended without reporting its measures")
                return
            measures = {k: float(v) for k, v in measures.items()}
            node = str(result.get("node", self.node.get(tid, "")))
            rows = trial_rows(plan, by_id[tid], measures, node, OK)
            write_trial(sweep_dir, rows, plan.configs.get(tid))
            (sweep_dir / ERRORS / f"{tid}.txt").unlink(missing_ok=True)
            print(progress.line(by_id[tid], OK, measures, node), flush=True)

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self._failed(trial, _error_text(trial))

        def _failed(self, trial, error: str) -> None:
            tid = trial.config["trial_id"]
            attempts = max(1, int(trial.num_failures))
            node = self.node.get(tid, "")
            (sweep_dir / ERRORS).mkdir(parents=True, exist_ok=True)
            (sweep_dir / ERRORS / f"{tid}.txt").write_text(
                f"trial {tid}: {by_id[tid].overrides_text}\nattempts: {attempts}\n\n{error}\n"
            )
            rows = trial_rows(plan, by_id[tid], {"attempts": float(attempts)}, node, FAILED)
            write_trial(sweep_dir, rows, plan.configs.get(tid))
            note = f"after {attempts} attempts: {_last_line(error)[:120]}"
            print(progress.line(by_id[tid], FAILED, {}, node, note), flush=True)

    return ResultWriter()


def _error_text(trial) -> str:
    path = trial.error_file
    if path and Path(path).is_file():
        return Path(path).read_text()
    err = trial.get_error() if hasattr(trial, "get_error") else None
    return str(err or "unknown error")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _last_error_line(trial) -> str:
    return _last_line(_error_text(trial))[:160]


def write_spec(plan: SweepPlan, sweep: SweepConfig, rc: RayConfig, sweep_dir: Path,
               nodes: dict) -> None:  # fmt: skip
    spec = {
        "name": plan.name,
        "base_overrides": list(plan.base),
        "swept": list(plan.keys),
        "settings": dataclasses.asdict(sweep),
        "ray": dataclasses.asdict(rc),
        "trials": [
            {
                "trial_id": t.trial_id,
                "seed": t.seed,
                "params": {k: _element(v)[1] for k, v in t.params},
                "overrides": list(t.overrides),
            }
            for t in plan.trials
        ],
        "nodes": nodes,
        "written": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    tmp = sweep_dir / (SPEC + ".tmp")
    tmp.write_text(json.dumps(spec, indent=2, default=str))
    os.replace(tmp, sweep_dir / SPEC)


def default_sweep_dir(plan: SweepPlan) -> Path:
    return Path("multirun") / (plan.run_name or "default") / plan.name


def run_sweep(overrides: Sequence[str], sweep: SweepConfig | None = None,
              ray: RayConfig | None = None, sweep_dir: Path | str | None = None,
              plan: SweepPlan | None = None) -> pd.DataFrame:  # fmt: skip
    """Run the sweep of ``overrides`` (Hydra sweep syntax) and return its results.

    ``sweep``: the sweep settings (:class:`experiments.sweep_schema.SweepConfig`); ``ray``: the
    cluster (:class:`agents.schema.RayConfig`: an address, or a local Ray's CPUs); ``sweep_dir``:
    where everything goes (default ``sweep.dir``, else ``multirun/<run.name>/<sweep name>``);
    ``plan``: a plan from :func:`plan_sweep` of the same overrides and settings (saves composing
    the trials again). Trials with an ``ok`` result in ``sweep_dir`` are skipped. Returns the
    long-format rows of every trial of this sweep (see the module docstring), the skipped ones
    included; a Ray already initialised in this process is used as it is.
    """
    from agents.train import quiet_rllib, ray_session

    sweep = sweep or SweepConfig()
    rc = ray or RayConfig()
    check_sweep_config(SweepAppConfig(sweep=sweep, ray=rc))
    check_address(rc.address)
    plan = plan or plan_sweep(overrides, sweep)
    sweep_dir = Path(sweep_dir or sweep.dir or default_sweep_dir(plan)).resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    finished = finished_ids(sweep_dir)
    stale = stale_trials(plan, sweep_dir, finished)
    finished -= set(stale)
    todo = [t for t in plan.trials if t.trial_id not in finished]
    skipped = len(plan.trials) - len(todo)
    print(f"sweep {plan.name}: {len(plan.trials)} trials ({len(plan.trials) // sweep.seeds} "
          f"points x {sweep.seeds} seeds) in {sweep_dir}; {skipped} already have results, "
          f"{len(todo)} to run", flush=True)  # fmt: skip
    if stale:
        keys = sorted({k for changes in stale.values() for k in changes})
        first = stale[next(iter(stale))]
        example = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(first.items())[:3])
        print(f"  {len(stale)} of them have results of another config (the config files "
              f"changed since: {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}; e.g. "
              f"{example}): they run again", flush=True)  # fmt: skip
    t0 = time.perf_counter()
    ran = 0
    if todo:
        quiet_rllib()
        progress = Progress(plan, len(plan.trials), skipped)
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(ray_session(rc, sweep_dir))
            except ConnectionError as e:
                raise ConfigError(
                    f"ray.address = {rc.address!r}: could not join a Ray cluster there ({e})"
                ) from None
            nodes = cluster_nodes()
            write_spec(plan, sweep, rc, sweep_dir, nodes)
            cpus = sum(n["resources"].get("CPU", 0.0) for n in nodes.values())
            at_once = int(cpus // sweep.cpus_per_trial)
            if sweep.max_concurrent:
                at_once = min(at_once, sweep.max_concurrent)
            print(f"Ray: {len(nodes)} node(s), {cpus:g} CPUs: {at_once} trial(s) of "
                  f"{sweep.cpus_per_trial:g} CPU at a time", flush=True)  # fmt: skip
            _tune(plan, todo, sweep, sweep_dir, progress, at_once)
            ran = progress.ran
    results = load_results(sweep_dir)
    ids = {t.trial_id for t in plan.trials}
    results = results[results.trial_id.isin(ids)].reset_index(drop=True)
    print(summary_text(plan, results, load_errors(sweep_dir), ran, time.perf_counter() - t0,
                       sweep_dir), flush=True)  # fmt: skip
    return results


def _tune(plan: SweepPlan, todo: list[Trial], sweep: SweepConfig, sweep_dir: Path,
          progress: Progress, at_once: int) -> None:  # fmt: skip
    from ray import tune

    specs = {t.trial_id: (plan.configs[t.trial_id], str(sweep_dir / TRIALS / t.trial_id),
                          sweep.record, sweep.plots) for t in todo}  # fmt: skip
    trainable = tune.with_resources(tune.with_parameters(_tune_trial, specs=specs),
                                    {"cpu": sweep.cpus_per_trial})  # fmt: skip
    shutil.rmtree(sweep_dir / TUNE_DIR, ignore_errors=True)  # a fresh Tune experiment each run
    # no CSV/JSON/TensorBoard loggers per trial (results go to our dataset); placement groups
    # requested ahead only for the trials that can run next (Tune's default asks for 200)
    with _env(TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="1", RAY_AIR_NEW_OUTPUT="0",
              TUNE_MAX_PENDING_TRIALS_PG=str(max(2, at_once + 2))):  # fmt: skip
        tuner = tune.Tuner(
            trainable,
            param_space={"trial_id": tune.grid_search([t.trial_id for t in todo])},
            tune_config=tune.TuneConfig(
                reuse_actors=True,
                max_concurrent_trials=sweep.max_concurrent or None,
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name,
            ),
            run_config=tune.RunConfig(
                name=TUNE_DIR,
                storage_path=str(sweep_dir),
                failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
                callbacks=[_make_writer(plan, sweep_dir, progress)],
                verbose=0,
            ),
        )
        tuner.fit()


def _trial_name(trial) -> str:
    return str(trial.config["trial_id"])


# -- the command ---------------------------------------------------------------------------------
def parse_args(argv: Sequence[str]) -> tuple[list[str], SweepAppConfig]:
    """Split ``twin-sweep``'s arguments into twin overrides and the composed sweep settings."""
    from omegaconf import OmegaConf

    twin_args, app_args = [], []
    for a in argv:
        if a.startswith("-"):
            raise ConfigError(
                f"{a}: twin-sweep takes only overrides (key=value, Hydra sweep syntax), "
                "sweep.* and ray.* settings; see `python -m experiments.sweep --help`"
            )
        (app_args if a.lstrip("+~").startswith(APP_PREFIXES) else twin_args).append(a)
    with _hydra():
        dcfg = _hydra_compose("sweep", app_args)
    try:
        app = OmegaConf.to_object(dcfg)
    except Exception as e:
        raise ConfigError(f"{' '.join(app_args)}: {e}") from None
    return twin_args, check_sweep_config(app)


def main(argv: Sequence[str] | None = None) -> int:
    """``twin-sweep [twin overrides with sweep syntax] [sweep.*=...] [ray.*=...]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    try:
        overrides, app = parse_args(argv)
        check_address(app.ray.address)
        plan = plan_sweep(overrides, app.sweep)
        run_sweep(overrides, app.sweep, app.ray, plan=plan)
    except UserError as e:  # bad input (ConfigError among them): one line, as twin.errors does
        print(f"twin-sweep: {one_line(str(e))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
