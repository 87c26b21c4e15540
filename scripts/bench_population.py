"""Population training benchmark: a sweep trained as populations against the same sweep of
separate runs, and how a population's wall time grows with its size.

    python scripts/bench_population.py [--steps 50000] [--scale-steps 10000]
                                       [--sizes 1,4,16,64] [--rounds 2] [--device cpu]

1. A 16-run CartPole sweep (4 learning rates x 4 seeds, DQN defaults, ``--steps`` env steps
   each): wall time, launch to exit, with ``hydra/launcher=population`` (split over one worker
   process per core) over ``hydra/launcher=parallel`` (joblib, one job per core), side by side
   on this machine: ``--rounds`` times each, alternating, and the ratio of the totals.
2. Scaling: one command ``seeds=N`` (a population of N) for each size, ``--scale-steps`` env
   steps, in one process (``processes=1``) and split over one worker process per core (the
   default): wall time and time per member, as a table and ``population_scaling.png``.
3. The batched gradient step alone: time per member of one DQN gradient step (batch 256,
   128-128 dueling MLP) for populations of 1, 4, 16 and 64, and the page faults per step (none
   once the memory freed by a step is kept for the next: ``rlexp.runtime.keep_freed_memory``).

4. PQN (``experiment=pqn_cartpole``, ``--pqn-steps`` env steps per run): ``seeds=16`` as one
   population split over one worker process per core, against sixteen times one run alone
   (launch to exit), and its env steps per second in all. For reference, purejaxql's 16
   vmapped seeds at 500k steps took ~206 s on this machine (issue 29). ``--pqn-steps 0``
   skips it.

With ``--device cuda`` the runs train on the GPU (the joblib comparison is skipped).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LRS = "1e-3,2e-3,4e-3,8e-3"


def timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rlexp.train", *args], cwd=cwd, check=True,
                   capture_output=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def sweep(steps: int, device: str, rounds: int) -> dict[str, list[float]]:
    """The sweep's wall times per launcher, ``rounds`` times each, in the order P J J P ...
    (this machine's speed drifts by a tenth within minutes: each launcher meets the drift
    alike)."""
    common = ["-m", "agent=dqn", "env=cartpole", f"device={device}", f"total_steps={steps}",
              "seed=range(0,4)", f"optimizer.lr={LRS}"]
    cores = os.cpu_count() or 1
    variants = {f"population ({cores} worker processes)": ["hydra/launcher=population"]}
    if device == "cpu":
        variants[f"parallel (joblib, {cores} jobs)"] = ["hydra/launcher=parallel"]
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                run_dir = f"hydra.sweep.dir={tmp}/s{len(times[name])}-{names.index(name)}"
                times[name].append(timed([*common, *variants[name], run_dir], Path(tmp)))
    return times


def scaling(sizes: list[int], steps: int, device: str, out: Path
            ) -> list[tuple[int, float, float]]:
    """For each size: the wall time of ``seeds=N`` as one population in one process
    (``processes=1``) and split over the default worker processes (one per core)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            common = ["agent=dqn", "env=cartpole", f"device={device}", f"total_steps={steps}",
                      f"seeds={n}"]
            rows.append((n, timed([*common, "processes=1", f"hydra.run.dir={tmp}/n{n}"],
                                  Path(tmp)),
                         timed([*common, f"hydra.run.dir={tmp}/n{n}-split"], Path(tmp))))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [n for n, _, _ in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(sizes, [t for _, t, _ in rows], marker="o", label="one population, one process")
    ax.plot(sizes, [t for _, _, t in rows], marker="s",
            label=f"split over {os.cpu_count()} processes (the default)")
    ax.plot(sizes, [rows[0][1] * n for n in sizes], linestyle="--",
            label="N separate runs, one after another (N x one run)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.set_yscale("log")
    ax.set_xlabel("members (seeds=N)")
    ax.set_ylabel("wall time, launch to exit (s)")
    ax.set_title(f"DQN on CartPole-v1, {steps} env steps per member, {device}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "population_scaling.png", dpi=100)
    return rows


def pqn_population(steps: int, device: str, members: int = 16) -> tuple[float, float]:
    """Launch-to-exit wall times of one PQN run alone and of ``seeds=members`` (split over
    the default worker processes), ``steps`` env steps each."""
    common = ["experiment=pqn_cartpole", f"device={device}", f"total_steps={steps}"]
    with tempfile.TemporaryDirectory() as tmp:
        alone = timed([*common, f"hydra.run.dir={tmp}/alone"], Path(tmp))
        together = timed([*common, f"seeds={members}", f"hydra.run.dir={tmp}/population"],
                         Path(tmp))
    return alone, together


def gradient_step(device: str) -> list[tuple[int, float, float]]:
    import numpy as np
    import torch

    from rlexp import build, runtime
    from rlexp.config import compose

    rows = []
    for size in (1, 4, 16, 64):
        cfg = compose(["agent=dqn", "env=cartpole", f"device={device}"])
        runtime.resolve_device(cfg.device)  # as a run sets the process up: one thread, malloc
        cfgs = [dataclasses.replace(cfg, seed=s) for s in range(size)]
        envs = build.make_vector_env(cfg.env, 1)
        agent = build.make_agent(cfgs, envs.single_observation_space,
                                 envs.single_action_space, torch.device(device))
        rng = np.random.default_rng(0)
        shape = (size, 1)
        for _ in range(2000):
            obs = rng.standard_normal((*shape, 4)).astype(np.float32)
            agent.replay.add(obs, np.zeros(shape, np.int64), np.ones(shape), obs,
                             np.zeros(shape, bool), np.zeros(shape, bool))
        for _ in range(20):
            agent._gradient_update()
        faults, start, n = _page_faults(), time.perf_counter(), 200
        for _ in range(n):
            agent._gradient_update()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        rows.append((size, (time.perf_counter() - start) / n / size * 1e3,
                     (_page_faults() - faults) / n))
    return rows


def _page_faults() -> int:
    """This process's page faults so far (a step that reuses its memory adds none)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--scale-steps", type=int, default=10_000)
    parser.add_argument("--sizes", default="1,4,16,64")
    parser.add_argument("--rounds", type=int, default=2,
                        help="times each launcher trains the sweep (alternating)")
    parser.add_argument("--pqn-steps", type=int, default=500_000,
                        help="env steps of each PQN run (0: no PQN population)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    print("== the batched gradient step: ms per member (DQN defaults, batch 256) ==")
    for size, ms, faults in gradient_step(args.device):
        print(f"  population of {size:>2}: {ms:.2f} ms per member, {faults:.0f} page faults "
              "per step")

    print(f"\n== scaling: seeds=N, {args.scale_steps} env steps per member ==")
    rows = scaling([int(n) for n in args.sizes.split(",")], args.scale_steps, args.device,
                   args.out)
    print(f"  {'members':>7}  {'wall s':>7}  {'s per member':>12}  {'vs N x one run':>14}  "
          f"{'split over cores: wall s':>24}  {'vs N x one run':>14}")
    for n, t, split in rows:
        one = rows[0][1] * n
        print(f"  {n:>7}  {t:>7.1f}  {t / n:>12.2f}  {t / one:>14.2f}  {split:>24.1f}  "
              f"{split / one:>14.2f}")
    print(f"  plot: {args.out / 'population_scaling.png'}")

    print(f"\n== a 16-run sweep (4 learning rates x 4 seeds), {args.steps} env steps each, "
          f"{args.rounds} rounds ==")
    times = sweep(args.steps, args.device, args.rounds)
    for name, ts in times.items():
        print(f"  {name:<36} {'  '.join(f'{t:6.1f}' for t in ts)} s   total {sum(ts):7.1f} s")
    if len(times) == 2:
        (_, ours), (_, theirs) = times.items()
        pairs = "  ".join(f"{a / b:.2f}" for a, b in zip(ours, theirs, strict=True))
        print(f"  ratio population / parallel: {sum(ours) / sum(theirs):.2f} over the rounds "
              f"(each round: {pairs}; goal <= 0.5)")

    if args.pqn_steps:
        print(f"\n== PQN (experiment=pqn_cartpole), {args.pqn_steps} env steps a run ==")
        alone, together = pqn_population(args.pqn_steps, args.device)
        print(f"  one run alone: {alone:.1f} s; seeds=16 split over the cores: {together:.1f} s "
              f"= {together / (16 * alone):.2f} x sixteen runs alone (goal <= 0.5), "
              f"{16 * args.pqn_steps / together:,.0f} env steps/s in all (purejaxql's 16 "
              "vmapped seeds at 500k steps: ~206 s, ~39,600 env steps/s)")


if __name__ == "__main__":
    main()
