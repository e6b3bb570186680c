"""Experiments: running episodes with scripted policies, benchmarks, reports and sweeps.

``run_episodes`` and ``EpisodesResult`` (:mod:`experiments.run`) are imported on first use, not
with the package: the benchmark modules (``python -m experiments.bench`` and the others) set the
BLAS/OpenMP thread counts before they import numpy, which only works if importing the package
has not imported numpy already.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from experiments.run import EpisodesResult, run_episodes

__all__ = ["EpisodesResult", "run_episodes"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from experiments import run

        return getattr(run, name)
    raise AttributeError(f"module 'experiments' has no attribute {name!r}")
