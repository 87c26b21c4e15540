"""A tracker's cost: the same 50k-step CartPole DQN run (the defaults, seed 0) with TensorBoard
alone and with ``logger=mlflow`` against a local MLflow server (SQLite backend, started here),
alternating, ``--rounds`` times each; wall time launch to exit, and the ratio of the totals.

    python scripts/bench_trackers.py [--steps 50000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
         f"sqlite:///{root / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=1):
                return server, uri
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("mlflow server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server, uri = start_server(root)
        try:
            totals = {"tensorboard": 0.0, "mlflow": 0.0}
            for r in range(args.rounds):
                for logger in totals:
                    extra = [] if logger == "tensorboard" else [
                        "logger=mlflow", f"logger.mlflow.tracking_uri={uri}"]
                    start = time.perf_counter()
                    subprocess.run([sys.executable, "-m", "rlexp.train", "device=cpu",
                                    f"total_steps={args.steps}", *extra,
                                    f"hydra.run.dir={root / f'{logger}{r}'}"], check=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    took = time.perf_counter() - start
                    totals[logger] += took
                    print(f"round {r + 1}, {logger}: {took:.1f} s", flush=True)
        finally:
            os.killpg(server.pid, signal.SIGKILL)
    print(f"logger=mlflow / TensorBoard alone, {args.steps} CartPole steps: "
          f"{totals['mlflow'] / totals['tensorboard']:.3f}")


if __name__ == "__main__":
    main()
