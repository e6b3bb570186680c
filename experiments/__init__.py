"""Experiments: running episodes with scripted policies, benchmarks, reports and sweeps."""

from experiments.run import EpisodesResult, run_episodes

__all__ = ["EpisodesResult", "run_episodes"]
