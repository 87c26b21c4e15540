"""CartPole-v1 benchmark: rlexp's DQN defaults against Stable-Baselines3 with rl-zoo's tuned
hyperparameters, rlexp's training loop against a bare hand-written loop doing the same work, and
rlexp's start-up cost.

    python scripts/bench_cartpole.py [--seeds 5] [--eval-every 2500] [--skip-sb3]

Results at the full budget: each run trains all 50k steps (as the reference systems do), with a
greedy evaluation of 20 episodes every ``--eval-every`` env steps, each system with its own
evaluation code, one run at a time, one torch thread each. Per system: how many seeds end solved
(the final evaluation >= 475, and the mean of the last 5 >= 475: a result that holds, not a
peak), and the median time to the first evaluation >= 475, from launching the process (imports
included) to that evaluation's end. Needs the bench extra: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = 475.0
BUDGET = 50_000
HOLD_LAST = 5  # evaluations averaged for "the result holds" (as rlexp.report.HOLD_LAST)

# rl-baselines3-zoo's hyperparameters for DQN on CartPole-v1 (hyperparams/dqn.yml).
ZOO = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000,
           gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128,
           exploration_fraction=0.16, exploration_final_eps=0.04,
           policy_kwargs=dict(net_arch=[256, 256]))


def outcome(start: float, evaluations: list[tuple[int, float, float]]) -> dict:
    """What a run's evaluations (step, mean return, wall time) say: when it first solved, and
    whether it ends solved."""
    first = next(((step, t) for step, value, t in evaluations if value >= TARGET), None)
    last = [value for _, value, _ in evaluations[-HOLD_LAST:]]
    return {"solved": first is not None, "steps": first and first[0],
            "seconds": first and first[1] - start, "final": evaluations[-1][1],
            "final_holds": evaluations[-1][1] >= TARGET,
            "last_holds": sum(last) / len(last) >= TARGET}


def rlexp_run(seed: int, eval_every: int, budget: int = BUDGET,
              overrides: tuple[str, ...] = ("agent=dqn", "env=cartpole")) -> dict:
    """One run as a user launches it; its outcome and its env steps per second (the whole
    run's, evaluations included, from metrics.json)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        subprocess.run([sys.executable, "-m", "rlexp.train", *overrides, "device=cpu",
                        f"seed={seed}", f"total_steps={budget}", "train.stop_on_return=null",
                        f"eval.every_steps={eval_every}", "eval.episodes=20",
                        f"hydra.run.dir={tmp}/run"], cwd=REPO, check=True, capture_output=True)
        acc = EventAccumulator(f"{tmp}/run")
        acc.Reload()
        sps = json.loads(Path(f"{tmp}/run/metrics.json").read_text())["sps"]
        return {**outcome(start, [(e.step, e.value, e.wall_time)
                                  for e in acc.Scalars("eval/return_mean")]), "sps": sps}


def sb3_worker(seed: int, eval_every: int, budget: int) -> None:
    """Runs in its own process: SB3 DQN with the zoo hyperparameters, the whole budget."""
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import EvalCallback
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)  # as rlexp; SB3's default (all cores) is slower for these nets
    evaluations = []

    class Record(EvalCallback):
        def _on_step(self) -> bool:
            result = super()._on_step()
            if self.n_calls % self.eval_freq == 0:
                evaluations.append((self.num_timesteps, float(self.last_mean_reward),
                                    time.time()))
            return result

    evaluation = Record(make_vec_env("CartPole-v1", seed=seed + 1_000_003), n_eval_episodes=20,
                        eval_freq=eval_every, deterministic=True, verbose=0)
    model = DQN("MlpPolicy", "CartPole-v1", seed=seed, device="cpu", verbose=0, **ZOO)
    model.learn(total_timesteps=budget, callback=evaluation)
    print(json.dumps(evaluations))


def sb3_run(seed: int, eval_every: int, budget: int = BUDGET) -> dict:
    start = time.time()
    out = subprocess.run([sys.executable, __file__, "--sb3-worker", str(seed), str(eval_every),
                          str(budget)],
                         check=True, capture_output=True, text=True).stdout
    return outcome(start, [tuple(e) for e in json.loads(out.strip().splitlines()[-1])])


def env_step_ms(num_envs: int, steps: int = 3000) -> tuple[float, float]:
    """Milliseconds a vector step of ``num_envs`` training CartPoles takes, random actions:
    gymnasium's SyncVectorEnv of rlexp's per-env envs, and rlexp's batched form (what a run
    steps), alternating over two rounds (best of each)."""
    import numpy as np
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    from rlexp.build import make_env, make_vector_env
    from rlexp.envs import EnvConfig

    cfg = EnvConfig(id="CartPole-v1")
    kinds = [SyncVectorEnv([lambda: make_env(cfg)] * num_envs, copy=False,
                           autoreset_mode=AutoresetMode.SAME_STEP),
             make_vector_env(cfg, num_envs)]
    actions = np.random.default_rng(0).integers(0, 2, (steps, num_envs))
    best = [float("inf")] * 2
    for _ in range(2):
        for k, envs in enumerate(kinds):
            envs.reset(seed=list(range(num_envs)))
            start = time.perf_counter()
            for a in actions:
                envs.step(a)
            best[k] = min(best[k], (time.perf_counter() - start) / steps * 1e3)
    return best[0], best[1]


def startup_seconds(rounds: int) -> tuple[float, float, float]:
    """Median seconds, launch to exit, of a 1-step run (``total_steps=1 eval.episodes=1``), of
    importing torch, gymnasium and hydra alone, and of that plus ``torch._dynamo`` (what a
    plain torch.optim optimizer imports at its first call, and rlexp's avoid), interleaved."""
    def timed(args: list[str]) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=REPO, check=True, capture_output=True)
        return time.perf_counter() - start

    runs, bare, dynamo = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            bare.append(timed(["-c", "import torch, gymnasium, hydra"]))
            dynamo.append(timed(["-c", "import torch, gymnasium, hydra, torch._dynamo"]))
            runs.append(timed(["-m", "rlexp.train", "total_steps=1", "eval.episodes=1",
                               "device=cpu", f"hydra.run.dir={tmp}/run{i}"]))
    return statistics.median(runs), statistics.median(bare), statistics.median(dynamo)


def bare_loop_sps(steps: int, vector_env: bool, seed: int = 0) -> float:
    """rlexp's default DQN written out by hand: nn.Sequential, Adam, a replay tensor of n-step
    transitions (made as they complete), Polyak or hard target updates, the learning-rate
    decay; no logging, no config, no framework. With ``vector_env`` it steps CartPole through
    gymnasium's SyncVectorEnv (one env, same-step autoreset, episode statistics) as rlexp does;
    without, it calls the plain env. Returns env steps per second."""
    import gymnasium as gym
    import numpy as np
    import torch
    from torch import nn

    from rlexp.config import compose

    cfg = compose(["agent=dqn", "env=cartpole", "device=cpu"])
    a, lr = cfg.agent, cfg.optimizer.lr
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if vector_env:
        env = gym.wrappers.vector.RecordEpisodeStatistics(gym.vector.SyncVectorEnv(
            [lambda: gym.make("CartPole-v1")], copy=False,
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP))
    else:
        env = gym.make("CartPole-v1")
    class Q(nn.Module):  # an MLP with a linear or dueling head
        def __init__(self):
            super().__init__()
            layers, width = [], 4
            for h in a.network.hidden:
                layers += [nn.Linear(width, h), nn.ReLU()]
                width = h
            self.torso = nn.Sequential(*layers)
            self.head = nn.Linear(width, 2)
            self.value = nn.Linear(width, 1) if a.network.dueling else None

        def forward(self, x, functional=False):
            if functional:  # acting: plain calls, without nn.Module's call machinery
                for m in self.torso:
                    x = torch.relu(x) if isinstance(m, nn.ReLU) else \
                        nn.functional.linear(x, m.weight, m.bias)
            else:
                x = self.torso(x)
            advantage = nn.functional.linear(x, self.head.weight, self.head.bias)
            if self.value is None:
                return advantage
            value = nn.functional.linear(x, self.value.weight, self.value.bias)
            return value + advantage - advantage.mean(dim=1, keepdim=True)

    q, target = Q(), Q()
    target.load_state_dict(q.state_dict())
    opt = torch.optim.Adam(q.parameters(), lr=lr)
    table = torch.zeros(a.buffer_size, 11)  # obs, next obs, action, n-step reward, discount
    size, written = 0, 0
    pending = deque()  # the last (obs, action, reward) of the episode, up to n_step of them
    obs, _ = env.reset(seed=seed)
    obs = obs[0].copy() if vector_env else obs
    started = time.perf_counter()
    for t in range(1, steps + 1):
        eps = max(a.epsilon.end, a.epsilon.start - (a.epsilon.start - a.epsilon.end)
                  * t / (a.epsilon.fraction * BUDGET))
        if rng.random() < eps:
            action = int(rng.integers(2))
        else:
            with torch.inference_mode():
                action = int(q(torch.as_tensor(obs)[None], functional=True).argmax())
        if vector_env:
            next_obs, reward, terminated, truncated, info = env.step(np.array([action]))
            reset_obs = next_obs[0].copy()
            next_obs = info["final_obs"][0] if "final_obs" in info else reset_obs
            reward, terminated, truncated = reward[0], terminated[0], truncated[0]
        else:
            next_obs, reward, terminated, truncated, _ = env.step(action)
            reset_obs = env.reset()[0] if terminated or truncated else next_obs
        pending.append((obs, action, reward))
        ended = terminated or truncated
        while pending and (len(pending) == a.n_step or ended):  # n-step transitions complete
            ret = sum(a.gamma ** k * r for k, (_, _, r) in enumerate(pending))
            discount = 0.0 if terminated else a.gamma ** len(pending)
            first_obs, first_action, _ = pending.popleft()
            table[written % a.buffer_size] = torch.from_numpy(np.concatenate(
                [first_obs, next_obs, [first_action, ret, discount]]).astype(np.float32))
            written += 1
            size = min(size + 1, a.buffer_size)
            if not ended:
                break
        obs = reset_obs
        if size >= a.learning_starts and t % a.train_freq == 0:
            for group in opt.param_groups:  # the learning rate's linear decay
                group["lr"] = lr * (1 - (1 - a.lr_final_fraction) * min(t / BUDGET, 1.0))
            for _ in range(a.gradient_steps):
                b = table[torch.randint(size, (a.batch_size,))]
                if a.double_q:  # next action by the online net, valued by the target net
                    q_now = q(b[:, :4])
                    with torch.no_grad():
                        best = q(b[:, 4:8]).argmax(1, True)
                        next_q = target(b[:, 4:8]).gather(1, best).squeeze(1)
                else:
                    q_now = q(b[:, :4])
                    with torch.no_grad():
                        next_q = target(b[:, 4:8]).max(1).values
                y = b[:, 9] + b[:, 10] * next_q
                pred = q_now.gather(1, b[:, 8:9].long()).squeeze(1)
                loss = nn.functional.smooth_l1_loss(pred, y)
                opt.zero_grad()
                loss.backward()
                if a.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(q.parameters(), a.max_grad_norm)
                opt.step()
        if t % a.target_update_interval == 0:
            with torch.no_grad():
                for p, p_online in zip(target.parameters(), q.parameters(), strict=True):
                    p.lerp_(p_online, a.tau)
    return steps / (time.perf_counter() - started)


def rlexp_train_sps(steps: int, seed: int = 0) -> float:
    """rlexp's own loop on the same work (training only: its final evaluation excluded)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "rlexp.train", "agent=dqn", "env=cartpole",
                        "device=cpu", f"seed={seed}", f"total_steps={steps}",
                        "eval.every_steps=0", "checkpoint.every_steps=0",
                        # (capped at 1: a smoke-test budget under 8,000 steps)
                        f"agent.epsilon.fraction={min(1.0, 0.16 * BUDGET / steps)}",
                        f"hydra.run.dir={tmp}/run"], cwd=REPO, check=True, capture_output=True)
        m = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
    return m["env_steps"] / (m["wall_seconds"] - m["eval_seconds"])


def summarize(name: str, results: list[dict]) -> tuple[float | None, list[dict]]:
    solved = [r for r in results if r["solved"]]
    median = statistics.median(r["seconds"] for r in solved) if solved else None
    steps = statistics.median(r["steps"] for r in solved) if solved else None
    per_seed = ", ".join((f"{r['seconds']:.1f}s/{r['steps']}" if r["solved"] else "unsolved")
                         + f" -> {r['final']:.0f}" for r in results)
    n = len(results)
    print(f"{name:>6}: final eval >= {TARGET:g} in {sum(r['final_holds'] for r in results)}/{n}, "
          f"mean of the last {HOLD_LAST} >= {TARGET:g} in "
          f"{sum(r['last_holds'] for r in results)}/{n}; first solved in {len(solved)}/{n}, "
          f"median time to first solve "
          f"{median if median is None else f'{median:.1f}s'}, median steps {steps}  "
          f"[first solve -> final eval: {per_seed}]", flush=True)
    return median, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--eval-every", type=int, default=2500)
    parser.add_argument("--overhead-steps", type=int, default=20_000)
    parser.add_argument("--overhead-rounds", type=int, default=3)
    parser.add_argument("--startup-rounds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=BUDGET,
                        help="env steps each run takes (a small one only checks that the "
                             "benchmark runs)")
    parser.add_argument("--skip-sb3", action="store_true")
    parser.add_argument("--pqn-seeds", type=int, default=1,
                        help="runs of experiment=pqn_cartpole (500k steps each, ~40 s)")
    parser.add_argument("--sb3-worker", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sb3_worker:
        sb3_worker(*args.sb3_worker)
        return

    print(f"CartPole-v1, the whole budget of {args.budget} steps, greedy eval of 20 episodes "
          f"every {args.eval_every} steps, seeds 0..{args.seeds - 1}")
    rlexp_median, _ = summarize("rlexp", [rlexp_run(s, args.eval_every, args.budget)
                                          for s in range(args.seeds)])
    if not args.skip_sb3:
        sb3_median, _ = summarize("SB3", [sb3_run(s, args.eval_every, args.budget)
                                          for s in range(args.seeds)])
        if rlexp_median and sb3_median:
            print(f"ratio rlexp / SB3 median time to first solve: "
                  f"{rlexp_median / sb3_median:.2f} (target <= 0.3)")

    # purejaxql's configuration: 32 envs, 500k steps, eval every 25k; on one core (the
    # preset's device.threads=1, as a sweep runs it) and on all of them.
    for threads in sorted({1, os.cpu_count() or 1}) if args.pqn_seeds else ():
        pqn = [rlexp_run(s, 25_000, 500_000, ("experiment=pqn_cartpole",
                                              f"device.threads={threads}"))
               for s in range(args.pqn_seeds)]
        summarize(f"PQN, {threads} thread(s)", pqn)
        print(f"PQN (experiment=pqn_cartpole device.threads={threads}): "
              f"{statistics.median(r['sps'] for r in pqn):,.0f} env steps/s over the whole run, "
              "evaluations included, median over seeds (target >= 26,000)", flush=True)

    for n in (32, 256):  # PQN's envs; a population of 8 of them
        per_env, batched = env_step_ms(n)
        print(f"{n} training CartPoles: {per_env:.3f} ms a vector step through SyncVectorEnv, "
              f"{batched:.3f} ms batched (rlexp.envs.cartpole)", flush=True)

    run, bare, dynamo = startup_seconds(args.startup_rounds)
    print(f"start-up, median of {args.startup_rounds}: a 1-step run (total_steps=1 "
          f"eval.episodes=1) takes {run:.2f}s, importing torch, gymnasium and hydra {bare:.2f}s: "
          f"rlexp adds {run - bare:.2f}s (target <= 0.6); torch._dynamo, which a plain "
          f"torch.optim optimizer would import, would add {dynamo - bare:.2f}s", flush=True)

    # Interleaved rounds, medians: one 20k-step measurement varies by a few percent.
    rounds = [(rlexp_train_sps(args.overhead_steps),
               bare_loop_sps(args.overhead_steps, vector_env=True),
               bare_loop_sps(args.overhead_steps, vector_env=False))
              for _ in range(args.overhead_rounds)]
    ours, bare_vector, bare_plain = (statistics.median(r[i] for r in rounds) for i in range(3))
    print(f"training loop, {args.overhead_steps} steps of the default DQN, median of "
          f"{args.overhead_rounds} interleaved rounds: rlexp {ours:.0f} "
          f"steps/s; bare hand-written loop on gymnasium's vector env {bare_vector:.0f} steps/s, "
          f"ratio {ours / bare_vector:.2f} (target >= 0.95); bare loop on the plain env "
          f"{bare_plain:.0f} steps/s, ratio {ours / bare_plain:.2f}")


if __name__ == "__main__":
    main()
