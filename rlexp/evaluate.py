"""Greedy evaluation of a finished run (the episodes are played by :mod:`rlexp.evaluator`).

    python -m rlexp.evaluate PATH [episodes=20] [seed=S] [video=true] [device=cpu]

(``run_dir=PATH`` works too)
prints the mean +- std return of ``episodes`` greedy episodes, writes them to ``eval.json`` in
the run dir and, with ``video=true``, saves the first episode as ``eval.gif`` (needs the env to
render ``rgb_array`` frames; CartPole's renderer is in the ``video`` extra). Without ``seed`` the
episodes start from the same seeds as the run's own evaluations.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from rlexp import rundir
from rlexp.build import episode_limit, load_run, make_env, make_eval_envs
from rlexp.checkpoint import CheckpointError
from rlexp.config import ConfigError
from rlexp.evaluator import EVAL_SEED_OFFSET, evaluate, record_episode
from rlexp.runtime import skip_exit_collection
from rlexp.trackers import send_to_finished_run


@dataclass
class EvaluateArgs:
    #: The run directory of a finished run.
    run_dir: str = MISSING
    #: Greedy episodes to play.
    episodes: int = 20
    #: Env seed of the first episode (the others use seed+1, ...); null: the run's eval seeds.
    seed: int | None = None
    #: Also save the first episode as eval.gif in the run dir.
    video: bool = False
    #: Where to run the network.
    device: str = "cpu"


def _quoted(value: str) -> str:
    """A value for OmegaConf's dotlist, kept as one string (a sweep dir has "=" and ",")."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The run directory given as it is, as rlexp.report takes it (a sweep's job directories
    # have "=" in their names).
    if argv and ("=" not in argv[0] or Path(argv[0]).is_dir()):
        argv[0] = f"run_dir={_quoted(argv[0])}"
    try:
        args = OmegaConf.to_object(OmegaConf.merge(
            OmegaConf.structured(EvaluateArgs), OmegaConf.from_dotlist(argv)))
        if args.episodes <= 0:
            raise ConfigError(f"episodes={args.episodes} must be positive")
        run_dir = Path(args.run_dir)
        cfg, agent = load_run(run_dir, args.device)
        seed = cfg.seed + EVAL_SEED_OFFSET if args.seed is None else args.seed
        env_limit = episode_limit(cfg.env)
        envs, eval_cap = make_eval_envs(
            cfg.env, dataclasses.replace(cfg.eval, episodes=args.episodes), env_limit)
        (evaluation,) = evaluate(agent, envs, [seed], epsilon=cfg.eval.epsilon)
        returns, cap = evaluation.returns, env_limit if eval_cap is None else eval_cap
        modes = envs.metadata.get("render_modes") or []  # the envs' own, as gymnasium made them
        envs.close()
        gif = video_return = None
        if args.video:
            if "rgb_array" not in modes:
                raise ConfigError(f"video=true: {cfg.env.id} cannot render frames (its render "
                                  f"modes: {', '.join(modes) or 'none'}; a video needs "
                                  "rgb_array)")
            # SDL (pygame, which draws classic-control envs) complains on stderr without one.
            os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="rlexp-xdg-"))
            try:
                env = make_env(cfg.env, cap, evaluation=True, render_mode="rgb_array")
                gif = run_dir / rundir.EVAL_GIF
                video_return = record_episode(agent, env, seed, gif, cfg.eval.epsilon)
            except (gym.error.DependencyNotInstalled, ImportError) as e:
                raise ConfigError(f"video=true: rendering {cfg.env.id} needs a package that is "
                                  f"not installed ({_first_line(e)}); for classic-control envs "
                                  "(CartPole): pip install -e '.[video]'") from e
    except (OmegaConfBaseException, ConfigError, CheckpointError) as e:
        message = _first_line(e)
        if isinstance(e, MissingMandatoryValue):
            message = f"{e.full_key} is required, e.g. {e.full_key}=outputs/runs/DATE/RUN"
        elif isinstance(e, OmegaConfBaseException) and e.full_key:
            message = f"{e.full_key}: {message}"
        print(f"rlexp.evaluate: error: {message}", file=sys.stderr)
        sys.exit(2)

    result = {"episodes": len(returns), "seed": seed, "return_mean": float(returns.mean()),
              "return_std": float(returns.std()), "returns": returns.tolist(),
              "truncated": int(evaluation.truncated.sum()),
              "video": None if gif is None else gif.name, "video_return": video_return}
    text = json.dumps(result, indent=2) + "\n"
    rundir.atomic_write(run_dir / rundir.EVAL_JSON, lambda tmp: tmp.write_text(text))
    print(f"{run_dir}: eval return {returns.mean():.2f} +- {returns.std():.2f} over "
          f"{len(returns)} greedy episodes (seed {seed})" + (f"; video: {gif}" if gif else ""))
    if gif is not None:  # the video goes to the run's trackers too (logger=wandb, mlflow)
        send_to_finished_run(cfg, run_dir, rundir.status(run_dir), [gif])


if __name__ == "__main__":
    skip_exit_collection()
    main()
