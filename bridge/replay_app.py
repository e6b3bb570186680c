"""`twin-replay`: replay what the twin did on a chain and write the parity report.

A Hydra app over `configs/replay.yaml` (schema `ReplayConfig`, registered as `replay_schema`),
like `twin-eval`:

    twin-replay checkpoint=outputs/default/<time>        # evaluate, then replay the record
    twin-replay record=outputs/eval/<time>/episodes.jsonl
    twin-replay scripted=true overrides='[experiment=deployed_defects]' contracts=deployed_v1_defects
    twin-replay record=... rpc_url=http://127.0.0.1:8545 deployment=deployment.json keys=env
    twin-replay record=... out=outputs/replay/<time>     # resume an interrupted replay

Exactly one source: `checkpoint` (played greedily by `agents.evaluate.evaluate`, which writes the
record), `record` (an existing `episodes.jsonl`), or `scripted=true` (scripted policies of the
twin config `overrides`). Defaults: a fresh local anvil per episode (genesis before the twin's, its
state kept in the episode's directory so that an interrupted replay resumes) and a fresh
deployment of our contracts. `replay(cfg, out)` is the plain function behind the app.
"""

from __future__ import annotations

import signal
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf
from web3 import Web3

from bridge.anvil import DEFAULT_CHAIN_ID, Anvil
from bridge.deploy import Deployment
from bridge.keys import Keys
from bridge.plan import read_plans
from bridge.replay import Replayer, ReplayOptions, ReplayResult
from bridge.report import summary_line, write_run_report
from twin.config import ConfigError

CONTRACTS = {"ours": "", "deployed_v1_defects": "deployed_v1_defects"}
ANVIL_STATE_FILE = "anvil-state.json"
#: a fresh anvil's genesis is this long before the twin's (deployment and funding happen first)
ANVIL_LEAD_S = 3_600


@dataclass
class ReplayConfig:
    """`twin-replay` settings (configs/replay.yaml)."""

    checkpoint: str = ""  # a training run or checkpoint: evaluated greedily, then replayed
    record: str = ""  # an existing episode record (episodes.jsonl)
    scripted: bool = False  # record scripted episodes of the twin config `overrides`
    episodes: int = 1  # episodes to evaluate (checkpoint, scripted)
    select: list[int] = field(default_factory=list)  # episodes of the record to replay ([]: all)
    seed: int = 1_000_000  # first episode's seed (checkpoint, scripted)
    overrides: list[str] = field(default_factory=list)  # twin config overrides
    rpc_url: str = ""  # JSON-RPC endpoint; "" = a fresh local anvil per episode
    deployment: str = ""  # JSON of an existing deployment (addresses + funder); "" = deploy
    contracts: str = "ours"  # fresh deployments: ours, or deployed_v1_defects (reproduction)
    chain_id: int = 0  # expected chain id (0: any, or the deployment's)
    time_mode: str = "auto"  # set (anvil: chain time = twin time), wall (public), auto
    keys: str = "local"  # local (anvil's mnemonic) or env (TWIN_REPLAY_MNEMONIC, ..._FUNDER_KEY)
    strict: bool = False  # stop at the first difference
    send_reverting: bool = True  # send calls that will revert, so the report names their tx
    stop_after_steps: int = -1  # stop (resumably) after this many transactions (-1: all)
    out: str = ""  # output directory ("" = Hydra's run dir); a directory with a journal resumes
    name: str = "replay"


def _check(cfg: ReplayConfig) -> None:
    sources = [n for n in ("checkpoint", "record") if getattr(cfg, n)] + (
        ["scripted"] if cfg.scripted else []
    )
    if len(sources) != 1:
        raise ConfigError(
            "replay: give exactly one of checkpoint=<run dir>, record=<episodes.jsonl> or "
            f"scripted=true (got {sources or 'none'})"
        )
    if cfg.contracts not in CONTRACTS:
        raise ConfigError(f"contracts: {cfg.contracts!r}; allowed: {sorted(CONTRACTS)}")
    if cfg.contracts != "ours" and cfg.deployment:
        raise ConfigError("contracts: only for fresh deployments (leave deployment empty)")
    if cfg.keys not in ("local", "env"):
        raise ConfigError(f"keys: {cfg.keys!r}; allowed: ['env', 'local']")
    if cfg.time_mode not in ("auto", "set", "wall"):
        raise ConfigError(f"time_mode: {cfg.time_mode!r}; allowed: ['auto', 'set', 'wall']")
    if cfg.episodes < 1:
        raise ConfigError(f"episodes: must be >= 1, got {cfg.episodes}")
    if not 0 <= cfg.seed <= 2**31 - 1:  # episode e is seeded seed + e (numpy: non-negative)
        raise ConfigError(f"seed = {cfg.seed} is out of range; allowed range: [0, {2**31 - 1}]")
    if cfg.stop_after_steps < -1:
        raise ConfigError(
            f"stop_after_steps = {cfg.stop_after_steps}: allowed values: -1 (all) or >= 0"
        )
    if cfg.chain_id < 0:
        raise ConfigError(f"chain_id = {cfg.chain_id}: allowed values: 0 (any) or a chain id > 0")
    if any(e < 0 for e in cfg.select):
        raise ConfigError(f"select = {list(cfg.select)}: episode numbers must be >= 0")


def record_path(cfg: ReplayConfig, out: Path) -> Path:
    """The record to replay: given, or written once into `out` (reused when resuming)."""
    if cfg.record:
        return Path(cfg.record)
    if cfg.checkpoint:
        path = out / "eval" / "episodes.jsonl"
        if not path.is_file():
            from agents.evaluate import evaluate

            evaluate(cfg.checkpoint, cfg.episodes, out / "eval", cfg.seed, True,
                     list(cfg.overrides))  # fmt: skip
        return path
    path = out / "scripted" / "episodes.jsonl"
    if not path.is_file():
        import twin
        from experiments.replay_scripted import record_scripted

        record_scripted(twin.compose(list(cfg.overrides)), cfg.episodes, cfg.seed, path)
    return path


def replay(cfg: ReplayConfig, out: str | Path) -> list[ReplayResult]:
    """Replays the selected episodes; writes `out/episode_<e>/...`, `out/summary.json` and
    `out/report.md`; returns the per-episode results."""
    _check(cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plans = read_plans(record_path(cfg, out), list(cfg.select) or None)
    keys = Keys.from_env() if cfg.keys == "env" else Keys()
    attach = Deployment.load(cfg.deployment) if cfg.deployment else None
    deploy_options = {"variant": CONTRACTS[cfg.contracts]} if attach is None else {}
    options = ReplayOptions(
        time_mode=cfg.time_mode, send_reverting=cfg.send_reverting, strict=cfg.strict,
        stop_after_steps=None if cfg.stop_after_steps < 0 else cfg.stop_after_steps,
        chain_id=cfg.chain_id,
    )  # fmt: skip
    results = []
    for plan in plans:
        ep_dir = out / f"episode_{plan.episode}"
        ep_dir.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            url = cfg.rpc_url
            if not url:
                node = Anvil(  # it holds every party's key: it signs for them, one request each
                    chain_id=DEFAULT_CHAIN_ID, accounts=keys.first_party_index + len(plan.accounts),
                    genesis_timestamp_s=plan.first_time_s - ANVIL_LEAD_S,
                    extra_args=("--state", str(ep_dir / ANVIL_STATE_FILE)),
                )  # fmt: skip
                url = stack.enter_context(node).url
            w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
            result = Replayer(plan, w3, ep_dir, keys, attach, deploy_options, options,
                              rpc_url=url).run()  # fmt: skip
        results.append(result)
        print(f"episode {plan.episode}: {summary_line(result.summary)}")
        if not result.complete:
            break
    total = write_run_report(out, results)
    print(summary_line(total))
    print(f"report: {out / 'report.md'}")
    return results


def _terminate(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    raise SystemExit(128 + signum)  # unwinds: the journal closes, anvil dumps its state


def register_replay_schema() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="replay_schema", node=ReplayConfig)


def main() -> None:
    """`twin-replay ...`: the Hydra app over `configs/replay.yaml`."""
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    from twin.configuration import check_cli_overrides, config_dir
    from twin.errors import user_errors

    register_replay_schema()
    with user_errors("twin-replay"):  # a bad override: one line, before Hydra's own composition
        check_cli_overrides(sys.argv[1:], "replay")
    signal.signal(signal.SIGTERM, _terminate)

    @hydra.main(config_path=str(config_dir()), config_name="replay", version_base="1.3")
    def _main(dcfg: DictConfig) -> None:
        with user_errors("twin-replay"):
            cfg: ReplayConfig = OmegaConf.to_object(dcfg)
            out = Path(cfg.out) if cfg.out else Path(HydraConfig.get().runtime.output_dir)
            replay(cfg, out)

    _main()


if __name__ == "__main__":
    sys.exit(main())
