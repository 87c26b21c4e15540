"""Atari benchmark: env steps per second of rlexp's DQN with the zoo preset against
Stable-Baselines3's DQN with the same hyperparameters, the replay memory's bytes per transition,
and ale-py's own vector env against gymnasium's for several envs.

    python scripts/bench_atari.py [--game Breakout] [--learning-starts 1000] [--steps 2000]

Training speed: each system trains ``--learning-starts`` random steps, then ``--steps`` steps of
DQN (one gradient step on 32 transitions every 4 env steps, as the zoo's Atari settings); the
figure is env steps per second over the second part, which is what the remaining 99% of a 10M
step run costs. Epsilon is already at its final 0.01 there, as it is after the first 10% of a
real run, so nearly every step runs the network. Each system runs at its default (the preset's
``device.threads=0`` and SB3's: torch's threads, every core), then both with one torch thread. Needs
the bench and atari extras: pip install -e '.[bench,atari]'.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# rl-baselines3-zoo's Atari DQN hyperparameters (hyperparams/dqn.yml, "atari"); the same values
# are rlexp's experiment=zoo_dqn_atari.
ZOO = dict(buffer_size=10_000, learning_rate=1e-4, batch_size=32, target_update_interval=1000,
           train_freq=4, gradient_steps=1, exploration_final_eps=0.01)


def rlexp_sps(game: str, learning_starts: int, steps: int, threads: int) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    total = learning_starts + steps
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "rlexp.train", "experiment=zoo_dqn_atari",
                        f"env.id=ALE/{game}-v5", "device=cpu", f"device.threads={threads}",
                        f"total_steps={total}", f"agent.learning_starts={learning_starts}",
                        f"agent.epsilon.fraction={learning_starts / total}",
                        f"log.every_steps={learning_starts}", "eval.every_steps=0",
                        "eval.episodes=1", "eval.max_episode_steps=1",
                        f"hydra.run.dir={tmp}/run"], cwd=REPO, check=True, capture_output=True)
        acc = EventAccumulator(f"{tmp}/run")
        acc.Reload()
        points = [e for e in acc.Scalars("time/sps") if e.step > learning_starts]
    seconds = sum(learning_starts / e.value for e in points)  # one point per log interval
    return len(points) * learning_starts / seconds


def sb3_worker(game: str, learning_starts: int, steps: int, threads: int) -> None:
    """Runs in its own process: SB3's DQN with the zoo's Atari settings."""
    import ale_py
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    if threads:
        torch.set_num_threads(threads)
    total = learning_starts + steps

    class Clock(BaseCallback):
        started = None

        def _on_step(self) -> bool:
            if self.num_timesteps == learning_starts:
                self.started = time.perf_counter()
            return True

    env = VecFrameStack(make_atari_env(f"{game}NoFrameskip-v4", n_envs=1, seed=0), 4)
    model = DQN("CnnPolicy", env, learning_starts=learning_starts, seed=0, device="cpu",
                exploration_fraction=learning_starts / total, optimize_memory_usage=True,
                replay_buffer_kwargs=dict(handle_timeout_termination=False), **ZOO)
    clock = Clock()
    model.learn(total_timesteps=total, callback=clock)
    print(json.dumps({"sps": steps / (time.perf_counter() - clock.started)}))


def sb3_sps(game: str, learning_starts: int, steps: int, threads: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--sb3-worker", game, str(learning_starts),
                          str(steps), str(threads)], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["sps"]


def replay_bytes() -> None:
    import numpy as np

    from rlexp.replay import FrameReplayBuffer

    memory = FrameReplayBuffer(10_000, (4, 84, 84), np.uint8, 4, "cpu")
    per = memory.nbytes / memory.capacity
    print(f"replay memory, 84x84 frame stacks of 4: {per:.0f} bytes per transition, "
          f"{per / memory.raw_bytes_per_transition:.3f}x the raw bytes (target <= 1.1); "
          f"1M transitions: {per * 1e6 / 1e9:.2f} GB (obs + next_obs stacks: "
          f"{2 * 4 * 84 * 84 * 1e6 / 1e9:.1f} GB)")


def vector_env_sps(game: str, num_envs: int, steps: int) -> tuple[float, float]:
    """Random-action env steps per second with the DQN preprocessing: ale-py's AtariVectorEnv
    (C++ threads) against gymnasium's SyncVectorEnv of rlexp's wrapped envs."""
    import ale_py
    import numpy as np

    from rlexp.build import make_vector_env
    from rlexp.config import compose

    rng = np.random.default_rng(0)
    native = ale_py.AtariVectorEnv(game=game.lower(), num_envs=num_envs, frameskip=4,
                                   stack_num=4, img_height=84, img_width=84, grayscale=True,
                                   maxpool=True, noop_max=30, episodic_life=True,
                                   reward_clipping=True, use_fire_reset=True,
                                   repeat_action_probability=0.25)
    ours = make_vector_env(compose(["env=atari", f"env.id=ALE/{game}-v5"]).env, num_envs)
    rates = []
    for envs in (native, ours):
        envs.reset(seed=0)
        start = time.perf_counter()
        for _ in range(steps // num_envs):
            envs.step(rng.integers(envs.single_action_space.n, size=num_envs))
        rates.append(steps // num_envs * num_envs / (time.perf_counter() - start))
        envs.close()
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="Breakout")
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--vector-steps", type=int, default=4000,
                        help="random env steps per vector-env measurement")
    parser.add_argument("--skip-sb3", action="store_true")
    parser.add_argument("--only-default-threads", action="store_true",
                        help="measure at the default threads only (not with one thread too)")
    parser.add_argument("--sb3-worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sb3_worker:
        game, *numbers = args.sb3_worker
        sb3_worker(game, *map(int, numbers))
        return

    replay_bytes()
    for n in (4, 8):
        native, ours = vector_env_sps(args.game, n, args.vector_steps)
        print(f"{n} envs stepped together, random actions: ale-py's AtariVectorEnv "
              f"{native:.0f} steps/s, gymnasium's SyncVectorEnv {ours:.0f} steps/s "
              f"(ratio {native / ours:.2f})")
    sizes = (args.game, args.learning_starts, args.steps)
    print(f"{args.game}, DQN with the zoo's Atari settings: env steps/s over {args.steps} "
          f"training steps after {args.learning_starts} random ones", flush=True)
    # Like for like: each system at its default threads (both: every core), then both at one.
    ours = rlexp_sps(*sizes, threads=0)
    print(f"  rlexp (preset default, torch's threads):       {ours:.0f} steps/s", flush=True)
    theirs = None if args.skip_sb3 else sb3_sps(*sizes, threads=0)
    if theirs:
        print(f"  SB3 (its default, torch's threads):            {theirs:.0f} steps/s; ratio "
              f"rlexp / SB3 {ours / theirs:.2f} (goal >= 1.5)", flush=True)
    if args.only_default_threads:
        return
    ours_1 = rlexp_sps(*sizes, threads=1)
    print(f"  rlexp (1 torch thread):                        {ours_1:.0f} steps/s", flush=True)
    if not args.skip_sb3:
        theirs_1 = sb3_sps(*sizes, threads=1)
        print(f"  SB3 (1 torch thread):                          {theirs_1:.0f} steps/s; ratio "
              f"rlexp / SB3 {ours_1 / theirs_1:.2f}", flush=True)

if __name__ == "__main__":
    main()
