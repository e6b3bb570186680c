"""The main job: a default run of the market that writes its report.

``python -m experiments.main [hydra overrides]`` (``make run``) composes ``configs/``, runs
``run.episodes`` episodes with the scripted policies named in the config and writes the report
(per-deal and per-agent tables, the mechanisms' own tables, summary, plot) into Hydra's run directory
(``outputs/<run.name>/<time>``), printing the summary.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from twin.config import register_schemas
from twin.configuration import config_dir, to_config


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


register_schemas()


@hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> None:
    cfg = to_config(dcfg)
    simulate(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    sys.exit(main())
