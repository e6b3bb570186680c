"""Typed schema of ``twin-sweep``'s own settings (``configs/sweep.yaml``): ``sweep.*`` and ``ray.*``.

:class:`SweepAppConfig` is the root of ``configs/sweep.yaml`` (registered in Hydra's
ConfigStore as ``sweep_schema``, like ``eval_schema`` for ``twin-eval``): the ``sweep`` node
(:class:`SweepConfig`: search, seeds, retries, resources per trial, where the results go) and the
``ray`` node (:class:`agents.schema.RayConfig`: the cluster the trials run on). The twin config
of every trial is composed separately from the other command-line overrides
(:mod:`experiments.sweep`). A misspelt key fails at composition naming the key;
:func:`check_sweep_config` checks the ranges and choices declared in each field's metadata.
This module imports only the standard library and the other schemas.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.schema import RayConfig
from twin.config_fields import knob

SEARCHES = ("grid", "random")


@dataclass
class SweepConfig:
    """What to sweep over and how to run the trials (``sweep.<key>=value``)."""

    name: str = knob(
        "",
        "name of the sweep (the 'sweep' column; default: the swept keys and a short hash of the "
        "overrides and swept keys, so the same command finds the same sweep again)",
    )
    dir: str = knob(
        "", "sweep directory (default: multirun/<run.name>/<sweep.name>, relative to the cwd)"
    )
    search: str = knob(
        "grid",
        "grid: every combination of the swept values (interval() is not allowed); random: "
        "sweep.num_samples points drawn from the swept values (lists, range() and choice() "
        "uniformly, interval() uniformly or log-uniformly with tag(log, ...))",
        choices=SEARCHES,
    )
    num_samples: int = knob(
        10, "random search: points drawn (duplicates are run once)", lo=1, hi=10**6
    )
    sample_seed: int = knob(
        0, "random search: seed of the draws (the same seed draws the same points)", lo=0,
        hi=2**63 - 1,
    )  # fmt: skip
    seeds: int = knob(1, "seeds per point: trial seeds first_seed, first_seed + 1, ...", lo=1,
                      hi=10**6)  # fmt: skip
    first_seed: int = knob(0, "seed of each point's first trial (the root 'seed')", lo=0,
                           hi=2**63 - 1 - 10**6)  # fmt: skip
    max_failures: int = knob(
        1,
        "retries of a failed trial (Ray Tune's FailureConfig.max_failures); a trial that still "
        "fails is recorded with status 'failed' and its error, and the sweep goes on",
        lo=0, hi=1000,
    )  # fmt: skip
    cpus_per_trial: float = knob(
        1.0, "CPUs Ray reserves for each trial (training samples and learns in the trial)",
        lo=0.01, hi=4096.0,
    )  # fmt: skip
    max_concurrent: int = knob(
        0, "trials running at once (0: as many as the cluster's CPUs allow)", lo=0, hi=10**6
    )
    record: bool = knob(
        False, "write each trial's episode record (episodes.jsonl) in its evaluation directory"
    )
    plots: bool = knob(
        False,
        "draw each trial's training curves and evaluation plot (PNG; matplotlib costs about as "
        "much as a small trial's training, so sweeps skip them by default)",
    )


@dataclass
class SweepAppConfig:
    """The root of ``configs/sweep.yaml``: the sweep settings and the Ray cluster."""

    sweep: SweepConfig = field(default_factory=SweepConfig)
    ray: RayConfig = field(default_factory=RayConfig)


def check_sweep_config(cfg: SweepAppConfig) -> SweepAppConfig:
    """Check every range and choice of ``cfg``; raise :class:`twin.config.ConfigError`
    naming the first bad field and its allowed values."""
    from twin.config import _walk

    _walk(cfg, "")
    return cfg


def register_sweep_schema() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="sweep_schema", node=SweepAppConfig)
