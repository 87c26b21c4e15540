"""The random scores of rlexp's suites' tasks that no publication gives under rlexp's protocol:
the mean return of a uniform random policy over EPISODES episodes (seeds 0..EPISODES-1), with
each env's evaluation settings (as `python -m rlexp.evaluate` plays).

    python scripts/random_scores.py [--episodes 100] [--suite classic minatar]

Prints one CSV row per task (task, random, its standard error); the values are kept in
rlexp/suites/scores.csv with this command as their source.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from rlexp import build, suites


def random_score(env_cfg, episodes: int) -> tuple[float, float]:
    env = build.make_env(env_cfg, evaluation=True)
    returns = []
    try:
        for seed in range(episodes):
            env.reset(seed=seed)
            env.action_space.seed(seed)
            total, done = 0.0, False
            while not done:
                _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return float(np.mean(returns)), float(np.std(returns, ddof=1) / math.sqrt(len(returns)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--suite", nargs="+", default=["classic", "minatar"])
    args = parser.parse_args()
    print("task,random,standard_error")
    for name in args.suite:
        suite = suites.load(name)
        for value in suite.values:
            env = suite.task_config(value).env
            mean, sem = random_score(env, args.episodes)
            print(f"{env.id},{mean:.2f},{sem:.2f}", flush=True)


if __name__ == "__main__":
    main()
