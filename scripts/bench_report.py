"""The report of a study across tasks: a fake sweep of TASKS x AGENTS x SEEDS runs (MinAtar's
five games, two agents, ten seeds; each run a config, a metrics.json and an event file of 21
evaluations, as a real run writes them), then ``python -m rlexp.report`` on it, figures
included: wall time, launch to exit, and the part spent building and writing the report.

    python scripts/bench_report.py [--seeds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

TASKS = ["asterix", "breakout", "freeway", "seaquest", "space_invaders"]
AGENTS = ["dqn", "c51"]
STEPS, EVALS = 1_000_000, 21


def fake_sweep(root: Path, seeds: int) -> None:
    from torch.utils.tensorboard import SummaryWriter

    rng = np.random.default_rng(0)
    for agent in AGENTS:
        for game in TASKS:
            for seed in range(seeds):
                overrides = [f"agent={agent}", f"env.game={game}", f"seed={seed}"]
                run = root / ",".join(overrides)
                (run / ".hydra").mkdir(parents=True)
                (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
                curve = np.cumsum(rng.exponential(1.0, EVALS))
                (run / "config.yaml").write_text(yaml.safe_dump({
                    "agent": {"name": agent}, "seed": seed, "total_steps": STEPS,
                    "env": {"id": f"MinAtar/{game}", "solved_return": None},
                    "suite": {"name": "minatar"}}))
                (run / "metrics.json").write_text(json.dumps(
                    {"status": "completed", "error": None, "eval_return_mean": curve[-1]}))
                writer = SummaryWriter(str(run))
                for i, value in enumerate(curve):
                    writer.add_scalar("eval/return_mean", value, i * STEPS // (EVALS - 1))
                writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp)
        fake_sweep(sweep, args.seeds)
        runs = len(TASKS) * len(AGENTS) * args.seeds
        for r in range(args.rounds):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "rlexp.report", str(sweep)], check=True,
                           stdout=subprocess.DEVNULL)
            print(f"round {r + 1}: report of {len(TASKS)} tasks x {len(AGENTS)} agents x "
                  f"{args.seeds} seeds ({runs} runs), figures included: "
                  f"{time.perf_counter() - start:.1f} s, launch to exit", flush=True)


if __name__ == "__main__":
    main()
