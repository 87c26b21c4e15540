"""Greedy evaluation, inside training and of a finished run.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium.vector import SyncVectorEnv
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from rlexp import rundir
from rlexp.agents import Agent
from rlexp.build import episode_limit, load_run, make_env, make_eval_envs
from rlexp.checkpoint import CheckpointError
from rlexp.config import ConfigError
from rlexp.shutdown import skip_exit_collection

# Greedy evaluations use env seeds far from the training envs' (seed, seed + 1, ...).
EVAL_SEED_OFFSET = 1_000_003


@dataclass
class Evaluation:
    #: The return of each greedy episode.
    returns: np.ndarray
    #: Which episodes were cut by a time limit (the env's, or ``eval.max_episode_steps``).
    truncated: np.ndarray


def evaluate(agent: Agent, envs: gym.vector.VectorEnv, seeds: Sequence[int],
             should_stop: Callable[[], bool] | None = None, epsilon: float = 0.0
             ) -> list[Evaluation] | None:
    """Each member's evaluation: one episode per sub-env of ``envs`` (``episodes`` for each
    member, member-major), those of member ``i`` reset with seeds ``seeds[i]``,
    ``seeds[i] + 1``, ...; None if ``should_stop()`` became true before they all ended (it is
    asked after every step). ``envs``: a SyncVectorEnv, or a batched vector env whose
    ``reset(seed=[...])`` seeds each sub-env as its own env would be (as
    :func:`rlexp.build.make_eval_envs` makes them).

    Actions are greedy, or with probability ``epsilon`` uniformly random (``eval.epsilon``,
    as the Atari literature evaluates), drawn from a generator seeded with the member's seed:
    the same seeds at every evaluation of a run make its evaluations comparable over time, and
    training draws nothing for them. The envs' time limit (:func:`rlexp.build.make_eval_envs`)
    makes every episode end.
    """
    members = len(seeds)
    episodes = envs.num_envs // members
    obs, _ = envs.reset(seed=[seed + j for seed in seeds for j in range(episodes)])
    explore = [_Exploration(epsilon, envs.single_action_space.n, seed) for seed in seeds]
    returns = np.zeros(envs.num_envs)
    cut = np.zeros(envs.num_envs, dtype=bool)
    running = np.ones(envs.num_envs, dtype=bool)
    while running.any():
        greedy = agent.act(obs.reshape(members, episodes, *obs.shape[1:]), explore=False)
        actions = np.concatenate([e(a) for e, a in zip(explore, greedy, strict=True)])
        if isinstance(envs, SyncVectorEnv):
            # Only the episodes still running are stepped (the vector env's own step would
            # step and reset every sub-env: most of a population's evaluation time, as its
            # members' episodes end at different steps). An ended episode's row keeps its
            # last observation.
            for k in np.flatnonzero(running):
                obs[k], reward, terminated, truncated, _ = envs.envs[k].step(actions[k])
                returns[k] += reward
                if terminated or truncated:
                    running[k] = False
                    cut[k] = truncated and not terminated
        else:  # one step for every episode; the rows of ended ones are no longer read
            obs, rewards, terminated, truncated, _ = envs.step(actions)
            returns[running] += rewards[running]
            ended = running & (terminated | truncated)
            cut[ended] = truncated[ended] & ~terminated[ended]
            running &= ~ended
        if should_stop is not None and should_stop():
            return None
    return [Evaluation(r, c) for r, c in zip(returns.reshape(members, episodes),
                                             cut.reshape(members, episodes), strict=True)]


class _Exploration:
    """Greedy actions -> epsilon-greedy ones, from the evaluation's own generator."""

    def __init__(self, epsilon: float, n_actions: int, seed: int):
        self.epsilon, self.n_actions = epsilon, int(n_actions)
        self.rng = np.random.default_rng(seed)

    def __call__(self, greedy: np.ndarray) -> np.ndarray:
        if self.epsilon == 0.0:
            return greedy
        random = self.rng.random(len(greedy)) < self.epsilon
        return np.where(random, self.rng.integers(self.n_actions, size=len(greedy)), greedy)


#: Rendered frames are shrunk to at most this many pixels on their longer side.
VIDEO_MAX_SIZE = 400


def record_episode(agent: Agent, env: gym.Env, seed: int, path: Path, epsilon: float = 0.0
                   ) -> float:
    """Play one evaluation episode in ``env`` (render_mode="rgb_array"), save it as a GIF."""
    from PIL import Image  # tensorboard's dependency; only needed here

    explore = _Exploration(epsilon, env.action_space.n, seed)
    obs, _ = env.reset(seed=seed)
    frames, total, done = [], 0.0, False
    while not done:
        frames.append(env.render())
        action = explore(agent.act(np.asarray(obs)[None, None], explore=False)[0])[0]
        obs, reward, terminated, truncated, _ = env.step(int(action))
        total += float(reward)
        done = terminated or truncated
    frames.append(env.render())
    images = [Image.fromarray(f) for f in frames]
    shrink = max(1, -(-max(images[0].size) // VIDEO_MAX_SIZE))
    images = [image.reduce(shrink) for image in images]
    fps = env.metadata.get("render_fps") or 30
    images[0].save(path, save_all=True, append_images=images[1:], duration=1000 / fps, loop=0)
    return total


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
                gif = run_dir / "eval.gif"
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


if __name__ == "__main__":
    skip_exit_collection()
    main()
