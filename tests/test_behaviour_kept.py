"""Reshaping the code keeps behaviour bit for bit: a handful of tiny runs end with the same
final weights and log the same curves (every scalar but the wall-clock ``time/`` ones) as they
did before the reshaping. The fingerprints were recorded before it; a change that means to
alter behaviour records them again with ``python -m tests.test_behaviour_kept``, and says why.

Float results depend on the CPU's kernels (torch's AVX2 and AVX-512 paths, and the math
libraries' paths for each vendor, may round differently), so fingerprints are kept per kind of
CPU (:func:`cpu_kind`); a kind with none recorded skips with how to record them."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

from rlexp.checkpoint import load_training_state
from rlexp.runner import run_population
from tests.conftest import TINY, TINY_DQN, compose_config, read_scalars

CASES = {
    "qnet toy": ["agent=qnet", "env=toy", *TINY],
    "dqn cartpole": ["agent=dqn", "env=cartpole", *TINY, *TINY_DQN],
    # The support as recorded (conf/tuned/c51_cartpole.yaml has set CartPole's since).
    "c51 n-step prioritized": ["agent=c51", "env=cartpole", *TINY, *TINY_DQN, "agent.n_step=3",
                               "agent.prioritized=true", "agent.v_min=-10", "agent.v_max=10"],
    "dqn minatar": ["agent=dqn", "env=minatar", *TINY, *TINY_DQN, "agent.n_step=3"],
    "dqn population of 4": ["agent=dqn", "env=cartpole", *TINY, *TINY_DQN],
    # Recorded before the optimizers stepped all parameters as one tensor: PQN (RAdam, clipped,
    # LayerNorm), Rainbow (noisy) and a QR-DQN population (SGD with momentum). PQN's again
    # when its LayerNorm network moved to the population kernel (its products are batched
    # products, which round otherwise): the CartPoles batched for training changed none.
    # Rainbow's again when noisy networks moved there too (each member's noise its own).
    # The QR-DQN population's again when the clipping norm summed each member's squares over
    # the flat gradient's rows (one op for every parameter; its limit of 1 clips every step).
    "pqn cartpole": ["experiment=pqn_cartpole", *TINY, "env.num_envs=4", "agent.rollout_steps=8",
                     "agent.minibatches=4", "agent.network.hidden=[32]"],
    # Their tuned settings as recorded (conf/tuned/ has changed them since).
    "rainbow cartpole": ["agent=rainbow", "env=cartpole", *TINY, *TINY_DQN,
                         "agent.epsilon.end=0.0", "agent.epsilon.fraction=0.0"],
    "qrdqn population of 3": ["agent=qrdqn", "env=cartpole", *TINY, *TINY_DQN,
                              "optimizer=sgd", "optimizer.momentum=0.9", "agent.max_grad_norm=1",
                              "agent.quantiles=50"],
}
POPULATION = {"dqn population of 4": 4, "qrdqn population of 3": 3}

#: {kind of CPU: {case: [final weights' sha256, curves' sha256] (one pair a member)}}
RECORDED: dict[str, dict[str, list[list[str]]]] = {
    "AVX512 AuthenticAMD": {  # recorded on an AMD EPYC before the reshaping (issue 28)
        "c51 n-step prioritized": [
            ["d99cf545fef4725e3b89c0cdabfa368d16a49ebdd7b94e79b20367364d93b203",
             "d54c9352686003849357aaab03f56598cf0f75d04a8165b1f93bdc8b6e5c0db1"],
        ],
        "dqn cartpole": [
            ["f873727ed14cb1b4f8e4865071e6d08af6bdbc4eccededfa315499c93c6681f0",
             "9f5df9f3d94ebcd9af78666e5ea8782a03f76d1bcff9dee4e333899301aeb9ca"],
        ],
        "dqn minatar": [
            ["fa7ebd481c994825e0091f63bcdf5328a6b3b832fadce1dbc4f4bcc0a3bf627a",
             "5022ed703cdf265e9b5cd2154d0c41b22dbd1a542513568af3a3f1f2e47daee5"],
        ],
        "dqn population of 4": [
            ["f873727ed14cb1b4f8e4865071e6d08af6bdbc4eccededfa315499c93c6681f0",
             "9f5df9f3d94ebcd9af78666e5ea8782a03f76d1bcff9dee4e333899301aeb9ca"],
            ["2b1e7950cd05330c459e90e0c1612d905072118ee4775e8aed0d0786e6fef7f4",
             "70865f0dc9769a294b31cbf054b48f5061d3fc3fb90c79ab109bfcd4c2f2d432"],
            ["2623340e90310e9220fb401e94dd79fb88684b570aa167f4c313ce2ed4d821f4",
             "ed75fb5824e1f68e72d5e4b197a3d3f682c7c7a6d5cb869e3022ee20e0d3eb40"],
            ["ad5bae35992b75e21c47da5bc5409c2afefca9cb7c5b3e312f4a0466ad9c1e88",
             "85f520693c6cc2bb1067a69e6f303825207518de35032adacb2c3a6ae58f4c5d"],
        ],
        "qnet toy": [
            ["7142a5803d2039b4055e6f37ea6ded153c477c3e24805d66f7be0550eb5e61f2",
             "bf9cd90f22fbb554b656a7181950089218342094aa8fb2516f2f9e3ed0709ec4"],
        ],
        "pqn cartpole": [
            ["ae7eb9b43abdf6eef9e87a980fb0ceee602f9e972b058de0155760bd5e8162eb",
             "1424295bf145ee09fd85c714bc39cb828f97df7226e696dc4b43edfd8814c4e7"],
        ],
        "qrdqn population of 3": [
            ["9984ade39483786de8cac5c8609166dfac7136e2d8912332a80be916f1ec5e18",
             "9f11960e2df9975c6d99f9962382b95d4ef8e41f4666529c5b1c66187b382020"],
            ["33be822857a9ad2b971db3c415297c7a1f69b43dd1b2f205f4eba5be34a5e1b0",
             "695cd02ede7e9020ba2c7f2249e4e395cdd6a3c228e3e2b2ca3d91ba12a81da2"],
            ["df35f0624c426eec0199fb23dd225c7941ac069a4e0bdca5261d4434938c6b1d",
             "3593fd4bcfbd0a0a9bd15b87949526c0584c55bed0bd2142b81c487c78a84a82"],
        ],
        "rainbow cartpole": [
            ["a0b6153e90e2947a65a59bd4fe170c21d272f1a82c2635d43fb6656a8cae7a69",
             "4c704fc4992ed4af990e40f55822f95015fa95fac7c28c8e3fb23102c5cba542"],
        ],
    },
}


def cpu_kind() -> str:
    """torch's CPU capability (AVX2, AVX512, ...) and the CPU's vendor."""
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.is_file() else ""
    vendor = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                   if line.startswith("vendor_id")), "unknown")
    return f"{torch.backends.cpu.get_cpu_capability()} {vendor}"


def fingerprints(case: str, tmp_path: Path) -> list[list[str]]:
    seeds = POPULATION.get(case, 1)
    cfgs = [compose_config([*CASES[case], f"seed={s}"]) for s in range(seeds)]
    dirs = [tmp_path / f"m{s}" for s in range(seeds)]
    for d in dirs:
        d.mkdir(parents=True)
    run_population(cfgs, dirs)
    prints = []
    for d in dirs:
        weights = load_training_state(d / "checkpoints/final.pt")["agent"]["q_net"]
        blob = b"".join(k.encode() + v.numpy().tobytes() for k, v in sorted(weights.items()))
        curves = {tag: points for tag, points in sorted(read_scalars(d).items())
                  if not tag.startswith("time/")}
        prints.append([hashlib.sha256(blob).hexdigest(),
                       hashlib.sha256(json.dumps(curves).encode()).hexdigest()])
    return prints


@pytest.mark.parametrize("case", sorted(CASES))
def test_tiny_runs_end_with_the_weights_and_curves_recorded_before(case, tmp_path):
    kind = cpu_kind()
    if case not in RECORDED.get(kind, {}):
        pytest.skip(f"no fingerprints recorded for {kind} CPUs: "
                    "python -m tests.test_behaviour_kept")
    assert fingerprints(case, tmp_path) == RECORDED[kind][case]


if __name__ == "__main__":  # prints the fingerprints of this machine, to paste into RECORDED
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        found = {case: fingerprints(case, Path(tmp) / str(i)) for i, case in
                 enumerate(sorted(CASES))}
    json.dump({cpu_kind(): found}, sys.stdout, indent=1)
