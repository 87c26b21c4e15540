"""``python -m rlexp.train [overrides]``: compose the config, build the run, train, write results.

The only module that knows about ``@hydra.main``. Examples::

    python -m rlexp.train agent=dqn env=cartpole seed=1
    python -m rlexp.train agent=qnet env=toy optimizer=sgd agent.network.hidden=[]
    python -m rlexp.train -m optimizer=sgd,adam seed=0,1,2
    python -m rlexp.train --help              # groups, options and the composed config

A run directory holds ``.hydra/`` (Hydra's record of the composition), ``config.yaml`` (the
resolved config), the TensorBoard event file, ``train.log``, ``checkpoints/last.pt`` (to resume
from), ``checkpoints/final.pt`` (the trained agent) and ``metrics.json``. Bad input ends the
command with one line naming the bad key or value and what is allowed (exit status 2) before
any training starts; set ``HYDRA_FULL_ERROR=1`` for a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from rlexp import build, checkpoint
from rlexp.checkpoint import CheckpointError
from rlexp.config import CONFIG_DIR, Config, ConfigError, validate
from rlexp.logger import TensorBoardLogger, flatten
from rlexp.loop import LoopSettings, LoopState, train
from rlexp.metrics import FILENAME as METRICS_FILE
from rlexp.metrics import RunMetrics, write_metrics

log = logging.getLogger("rlexp")


def run(cfg: Config, run_dir: Path) -> RunMetrics:
    """Train one run described by a validated config, writing everything into ``run_dir``."""
    resolved = OmegaConf.structured(cfg)
    flat_config = flatten(OmegaConf.to_container(resolved))
    resumed = _check_run_dir(cfg, flat_config, run_dir)
    device = build.resolve_device(cfg.device)
    build.seed_everything(cfg.seed)
    envs = build.make_vector_env(cfg.env, cfg.env.num_envs)
    eval_envs = build.make_vector_env(cfg.env, cfg.eval.episodes)
    agent = build.build_agent(cfg, envs, device)
    loop_state = None
    if resumed is not None:
        agent.load_state_dict(resumed["agent"])
        checkpoint.restore_rng(resumed)
        loop_state = LoopState.from_state_dict(resumed["loop"])

    yaml_text = OmegaConf.to_yaml(resolved)
    (run_dir / build.CONFIG_FILE).write_text(yaml_text)
    # A resumed run hides the points its previous process logged after the checkpoint.
    tb = TensorBoardLogger(run_dir, purge_step=loop_state.step + 1 if loop_state else None)
    if loop_state is None:  # a resumed run has its config and hparams logged already
        tb.config(yaml_text, flat_config)
    start = f"resuming at step {loop_state.step}" if loop_state else "starting"
    log.info("run %s: %s on %s, %d env steps, device %s, %s -> %s", cfg.run_name,
             cfg.agent.name, cfg.env.id, cfg.total_steps, device, start, run_dir)

    def save_last(state: LoopState) -> None:
        checkpoint.save_checkpoint(run_dir / checkpoint.LAST, checkpoint.training_state(
            agent.state_dict(), state.state_dict(), include_replay=cfg.checkpoint.replay))

    try:
        settings = LoopSettings(
            total_steps=cfg.total_steps, seed=cfg.seed, log_every=cfg.log.every_steps,
            eval_every=cfg.eval.every_steps, checkpoint_every=cfg.checkpoint.every_steps,
            stop_on_return=cfg.train.stop_on_return)
        result = train(agent, envs, eval_envs, settings, tb, save_last, loop_state)
    finally:
        tb.close()
        envs.close()
        eval_envs.close()

    state, returns = result.state, result.eval_returns
    save_last(state)
    checkpoint.save_checkpoint(run_dir / checkpoint.FINAL,
                               checkpoint.training_state(agent.state_dict(), state.state_dict(),
                                                         include_replay=False))
    metrics = RunMetrics(
        status="completed",
        eval_return_mean=float(returns.mean()),
        eval_return_std=float(returns.std()),
        eval_episodes=len(returns),
        env_steps=state.step,
        episodes=state.episodes,
        stopped_early=state.stopped_early,
        resumed_from_step=None if resumed is None else int(resumed["loop"]["step"]),
        wall_seconds=round(state.wall_seconds, 3),
        eval_seconds=round(state.eval_seconds, 3),
        sps=round(state.step / state.wall_seconds, 1),
        seed=cfg.seed,
        device=str(device),
    )
    write_metrics(run_dir, metrics)
    log.info("done %s seed %d | eval return %.2f +- %.2f (%d episodes) | %d steps in %.1fs "
             "(%.0f steps/s) | %s", cfg.run_name, cfg.seed, metrics.eval_return_mean,
             metrics.eval_return_std, metrics.eval_episodes, metrics.env_steps,
             metrics.wall_seconds, metrics.sps, run_dir)
    return metrics


def _check_run_dir(cfg: Config, flat_config: dict, run_dir: Path) -> dict | None:
    """Refuse to overwrite a finished run; for ``resume=``, the checkpoint to continue from
    (``flat_config``: this run's resolved config, flattened, to compare with the saved one)."""
    if (run_dir / METRICS_FILE).exists():
        raise ConfigError(f"{run_dir} already holds a finished run; choose another hydra.run.dir")
    if cfg.resume is None:
        if (run_dir / checkpoint.LAST).exists():
            raise ConfigError(f"{run_dir} holds an unfinished run; continue it with "
                              f"resume={run_dir} or choose another hydra.run.dir")
        return None
    saved_config = run_dir / build.CONFIG_FILE
    if not (run_dir / checkpoint.LAST).is_file() or not saved_config.is_file():
        raise ConfigError(f"resume={cfg.resume}: {run_dir} is not an unfinished rlexp run "
                          f"(no {checkpoint.LAST} or {build.CONFIG_FILE})")
    saved = flatten(OmegaConf.to_container(OmegaConf.load(saved_config)))
    differ = sorted(k for k in saved.keys() | flat_config.keys()
                    if k not in ("resume", "run_name") and saved.get(k) != flat_config.get(k))
    if differ:
        shown = ", ".join(f"{k}={saved.get(k)!r} (now {flat_config.get(k)!r})"
                          for k in differ[:4])
        raise ConfigError(f"resume={cfg.resume}: the run was started with a different config: "
                          f"{shown}; resume with the same overrides")
    return checkpoint.load_training_state(run_dir / checkpoint.LAST)


def _discard_unused_run_dir(run_dir: Path) -> None:
    """Remove a run dir that holds nothing but what Hydra wrote before the config was refused,
    so no directory is left looking like a run. Anything else in it is left alone."""
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {".hydra", "train.log"}:
        shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # the day's folder, if this was its only run
            run_dir.parent.rmdir()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        typed = validate(cfg)
        return run(typed, run_dir).eval_return_mean  # what a sweeper (e.g. Optuna) maximises
    except Exception as e:
        _discard_unused_run_dir(run_dir)
        if isinstance(e, INPUT_ERRORS) and hydra_cfg.mode == RunMode.RUN:
            _exit_with_one_line(e)  # raising would make Hydra print a second line
        raise


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].rstrip(".") if text.strip() else ""


def describe_error(e: BaseException) -> str:
    """One line for a config or input error: the bad key or value, and what is allowed."""
    if isinstance(e, MissingConfigException) and e.options is not None:
        # e.g. agent=foo: missing_cfg_file is "agent/foo", options are the group's configs
        group, _, option = (e.missing_cfg_file or "").rpartition("/")
        return f"{group}={option} is not an option of {group}; choose one of: " + ", ".join(
            sorted(e.options))
    # Hydra's composition errors carry the useful part (key, expected type) in their cause.
    composing = isinstance(e, HydraException) and isinstance(e.__cause__, OmegaConfBaseException)
    cause = e.__cause__ if composing else e
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and dataclasses.is_dataclass(
            cause.object_type):
        allowed = ", ".join(f.name for f in dataclasses.fields(cause.object_type))
        return f"unknown key {cause.full_key!r}; allowed here: {allowed}"
    if cause is not e:  # e.g. "Error merging override x=y" caused by a type error
        return f"{_first_line(str(e))}: {_first_line(str(cause))}"
    return _first_line(str(e))


#: Errors that mean "bad input": reported as one line, exit status 2, no traceback.
INPUT_ERRORS = (ConfigError, CheckpointError, HydraException, OmegaConfBaseException)
_SHOW_TRACEBACK = os.environ.get("HYDRA_FULL_ERROR") == "1"


def _exit_with_one_line(e: BaseException) -> None:
    if _SHOW_TRACEBACK:
        raise e
    print(f"rlexp: error: {describe_error(e)}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    """Console entry point: Hydra's run, with input errors reported as one line (exit 2)."""
    # Hydra then re-raises errors instead of printing several lines itself; we print one.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        _hydra_main()
    except INPUT_ERRORS as e:
        _exit_with_one_line(e)


if __name__ == "__main__":
    main()
