"""The main job: a default training run and its report (or a scripted simulation).

``python -m experiments.main [hydra overrides]`` (``make run``) composes ``configs/`` and, by
``run.mode``:

- ``train`` (default): trains the learning seats (``policies.<group>.learning_share``) with
  :func:`agents.train.train` on the ``train`` group's budget, then plays ``run.episodes`` greedy
  episodes of the final checkpoint with :func:`agents.evaluate.evaluate`; the run directory
  holds the training artefacts (``checkpoints/``, ``metrics.parquet``, ``training.png``,
  ``train_summary.json``) and the report of the evaluation (``deals.parquet``,
  ``agents.parquet``, CSVs, ``summary.json``, ``report.md``, ``report.png``, ``measures.csv``,
  ``episodes.jsonl``);
- ``simulate``: runs ``run.episodes`` episodes with the scripted policies named in the config
  (learning shares ignored) and writes the same report.

Everything goes to Hydra's run directory (``outputs/<run.name>/<time>``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from twin.config import ConfigError, register_schemas
from twin.configuration import config_dir, to_config

MODES = ("train", "simulate")


def simulate(cfg, out: Path) -> dict:
    """Run the scripted market for ``cfg`` and write its report into ``out``."""
    from experiments.report import to_parquet, write_report
    from experiments.run import run_episodes

    episodes = int(cfg.run.get("episodes", 4))
    t0 = time.perf_counter()
    res = run_episodes(cfg, episodes=episodes, seed=cfg.seed, with_ids=True)
    elapsed = time.perf_counter() - t0
    summary = dict(res.summary, episodes=episodes, events=res.events, seconds=round(elapsed, 2))
    paths = write_report(
        out, res.deals, res.agents, summary, f"twin run '{cfg.run.get('name', 'default')}'"
    )
    for name, df in res.tables.items():  # mechanisms' per-record tables (e.g. dual_deals)
        to_parquet(df, out / f"{name}.parquet")
    print(f"{episodes} episodes, {len(res.deals)} deals, {res.events} events in {elapsed:.1f} s")
    for k, v in res.summary.items():
        print(f"  {k:>22}: {v:.4g}")
    print(f"report: {paths['report']}\nplot:   {paths['plot']}")
    return summary


def train_and_report(cfg, out: Path) -> dict:
    """Train ``cfg``'s learning seats, evaluate the final checkpoint greedily, write the report."""
    from agents.evaluate import evaluate, print_result
    from agents.train import train

    t0 = time.perf_counter()
    tr = train(cfg, out)
    episodes = int(cfg.run.get("episodes", 4))
    print(f"evaluating {tr.checkpoint} greedily for {episodes} episodes ...", flush=True)
    res = evaluate(tr.checkpoint, episodes, tr.run_dir, seed=cfg.seed + 1_000_000)
    summary = dict(res.summary, train_iterations=tr.iterations,
                   train_seconds=round(tr.seconds, 1),
                   total_seconds=round(time.perf_counter() - t0, 1))  # fmt: skip
    (tr.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print_result(res)
    print(f"training curves: {tr.run_dir / 'training.png'}")
    print(f"main job: {summary['total_seconds']:.0f} s", flush=True)
    return summary


register_schemas()


@hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> None:
    cfg = to_config(dcfg)
    mode = cfg.run.get("mode", "train")
    out = Path(HydraConfig.get().runtime.output_dir)
    if mode == "train":
        train_and_report(cfg, out)
    elif mode == "simulate":
        simulate(cfg, out)
    else:
        raise ConfigError(f"run.mode = {mode!r} is not allowed; allowed values: {list(MODES)}")


if __name__ == "__main__":
    sys.exit(main())
