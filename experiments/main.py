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
  (learning shares ignored) and writes the same report: ``config.yaml``, the tables,
  ``summary.json``, ``report.md``, ``report.png``, ``measures.csv`` and ``episodes.jsonl``
  (which ``twin-replay record=<run dir>/episodes.jsonl`` replays; the scripted seats are not
  exposed, so it holds events, not ``action`` records).

Everything goes to Hydra's run directory (``outputs/<run.name>/<time>``). ``run.*`` is
checked before anything runs; a bad value or any other :class:`twin.errors.UserError` is
printed on one line (``twin-run: ...``) and the job exits with status 2.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from twin.config import check_run, register_schemas
from twin.configuration import check_cli_overrides, config_dir, to_config
from twin.errors import user_errors

#: the measures of the ``market`` row that the summary holds too (as ``twin-eval``'s does)
SUMMARY_MEASURES = ("payoff_tokens", "cheat_rate", "check_rate", "collusion_rate",
                    "wrong_accepted_rate", "mediation_rate", "collateral_locked_tokens",
                    "client_surplus_tokens", "protocol_revenue_tokens")  # fmt: skip


def simulate(cfg, out: Path) -> dict:
    """Run the scripted market for ``cfg`` and write its report into ``out``: the files of
    train mode's evaluation (tables, summary, report, ``measures.csv``, ``episodes.jsonl``)
    and the resolved config (``config.yaml``)."""
    import numpy as np

    from experiments.report import to_parquet, write_report
    from experiments.run import run_episodes

    episodes = int(cfg.run.get("episodes", 4))
    out.mkdir(parents=True, exist_ok=True)
    # the resolved config, as agents.train.write_resolved_config writes it in train mode
    (out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    t0 = time.perf_counter()
    res = run_episodes(cfg, episodes=episodes, seed=cfg.seed, with_ids=True, measures=True,
                       record=out / "episodes.jsonl")  # fmt: skip
    elapsed = time.perf_counter() - t0
    summary = dict(res.summary, episodes=episodes, events=res.events, seconds=round(elapsed, 2))
    market = res.measures[res.measures.role == "market"]
    for k in SUMMARY_MEASURES:
        if len(market) and np.isfinite(market[k].iloc[0]):
            summary[f"market_{k}"] = float(market[k].iloc[0])
    paths = write_report(
        out, res.deals, res.agents, summary, f"twin run '{cfg.run.get('name', 'default')}'"
    )
    for name, df in res.tables.items():  # mechanisms' per-record tables (e.g. dual_deals)
        to_parquet(df, out / f"{name}.parquet")
    res.measures.to_csv(out / "measures.csv", index=False)
    print(f"{episodes} episodes, {len(res.deals)} deals, {res.events} events in {elapsed:.1f} s")
    for k, v in res.summary.items():
        print(f"  {k:>22}: {v:.4g}")
    print(f"report: {paths['report']}\nplot:   {paths['plot']}")
    print(f"record: {out / 'episodes.jsonl'}")
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
def _main(dcfg: DictConfig) -> None:
    # SystemExit passes through Hydra's job runner (it catches Exception only): status 2, and
    # no "Error executing job" or traceback
    with user_errors("twin-run"):
        cfg = to_config(dcfg)
        check_run(cfg.run)
        out = Path(HydraConfig.get().runtime.output_dir)
        if cfg.run.get("mode", "train") == "train":
            train_and_report(cfg, out)
        else:
            simulate(cfg, out)


def main() -> None:
    """``twin-run [experiment=...] [key=value ...]`` (the README's main job): the command line is
    checked first (:func:`twin.configuration.check_cli_overrides`), then the Hydra app runs."""
    from agents.hashseed import reexec_with_fixed_hash_seed

    reexec_with_fixed_hash_seed()
    with user_errors("twin-run"):
        check_cli_overrides(sys.argv[1:])
    _main()


if __name__ == "__main__":
    sys.exit(main())
