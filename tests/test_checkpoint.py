"""Checkpoints: atomic writes, weights-only loading, a full round trip, and resume."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from rlexp import checkpoint, rundir
from rlexp.checkpoint import CheckpointError, load_checkpoint, load_training_state
from rlexp.config import AdamConfig
from rlexp.metrics import read_metrics
from rlexp.rundir import RunDirError
from tests.conftest import (
    TINY,
    TINY_DQN,
    compose_config,
    crash_run_at,
    read_scalars,
    run_cli,
    run_in_process,
)


class Payload:
    """Unpickling this runs code: what weights-only loading must refuse."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_weights_only_loading_refuses_pickled_objects(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "agent": Payload(), "loop": {}}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_training_state(path)
    assert not (tmp_path / "pwned").exists()


def test_corrupt_truncated_and_foreign_files_give_clear_errors(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"format": checkpoint.FORMAT, "agent": {}, "loop": {}}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not an rlexp checkpoint"):
        load_training_state(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "last.pt"
    checkpoint.save_checkpoint(path, {"step": torch.tensor(1)})

    def failing_write(tmp):
        tmp.write_bytes(b"half a fi")
        raise OSError("disk full")

    with pytest.raises(OSError):
        rundir.atomic_write(path, failing_write)
    assert load_checkpoint(path)["step"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_round_trip_restores_networks_optimizer_replay_and_rngs(tmp_path):
    from rlexp.agents import Transition
    from rlexp.build import make_agent, make_vector_env
    from rlexp.checkpoint import save_checkpoint, training_state

    cfg = compose_config(["agent=dqn", "env=cartpole", "device=cpu", *TINY, *TINY_DQN])
    envs = make_vector_env(cfg.env, 1)
    spaces = (envs.single_observation_space, envs.single_action_space)
    agent = make_agent([cfg], *spaces, torch.device("cpu"))
    rng = np.random.default_rng(0)
    for _ in range(300):  # train it: replay, optimizer state, counters and RNGs all move
        obs = rng.normal(size=(1, 1, 4)).astype(np.float32)
        agent.learn(Transition(obs, agent.act(obs), np.ones((1, 1)), obs + 0.1,
                               np.zeros((1, 1), bool), np.zeros((1, 1), bool)))
    save_checkpoint(tmp_path / "last.pt", training_state(agent.state_dict(0), {"step": 300}))
    restored = make_agent([cfg], *spaces, torch.device("cpu"))
    restored.load_state_dicts([load_training_state(tmp_path / "last.pt")["agent"]])
    # 3-step transitions: the last two steps wait for theirs (and are in the state too).
    assert restored.env_steps == agent.env_steps == 300
    assert len(restored.replay) == len(agent.replay) == 298
    for name in ("q_net", "target_net"):
        for a, b in zip(getattr(agent, name).parameters(), getattr(restored, name).parameters(),
                        strict=True):
            assert torch.equal(a, b), name
    assert agent.optimizer.optimizer.state_dict()["state"][0]["step"] > 0
    for a, b in zip(agent.optimizer.optimizer.state_dict()["state"].values(),
                    restored.optimizer.optimizer.state_dict()["state"].values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    # The restored agent goes on exactly as the original: same actions, same samples.
    obs = rng.normal(size=(1, 64, 4)).astype(np.float32)
    np.testing.assert_array_equal(agent.act(obs), restored.act(obs))
    assert torch.equal(agent.replay.sample(32, [1.0]).obs, restored.replay.sample(32, [1.0]).obs)


RESUMABLE = ["agent=dqn", "env=cartpole", "device=cpu", *TINY, *TINY_DQN, "total_steps=1200",
             "checkpoint.every_steps=400"]


def test_resume_continues_the_step_count_and_the_curves(tmp_path):
    from rlexp.agents.dqn import DQNAgent

    run_dir = tmp_path / "run"
    crash_run_at(RESUMABLE, run_dir, DQNAgent, 1000)
    assert load_training_state(run_dir / rundir.LAST)["loop"]["step"] == 800
    assert not (run_dir / "metrics.json").exists()
    # Points up to step 1000 were logged before the crash; 900 and 1000 are after the checkpoint.
    assert read_scalars(run_dir)["train/epsilon"][-1][0] == 1000

    metrics = run_in_process([*RESUMABLE, f"resume={run_dir}"], run_dir)
    assert metrics.env_steps == 1200 and metrics.resumed_from_step == 800
    assert read_metrics(run_dir)["resumed_from_step"] == 800
    scalars = read_scalars(run_dir)
    steps = [s for s, _ in scalars["train/epsilon"]]
    assert steps == list(range(100, 1300, 100))  # no step repeated, none missing
    uninterrupted = run_in_process(RESUMABLE, tmp_path / "straight")
    assert uninterrupted.env_steps == 1200 and metrics.eval_return_mean == \
        uninterrupted.eval_return_mean
    # Every series, after the resume too, is the uninterrupted run's (points the dead process
    # logged after its checkpoint are hidden).
    straight = read_scalars(tmp_path / "straight")
    for tag, points in scalars.items():
        if not tag.startswith("time/"):
            assert sorted(points) == sorted(straight[tag]), tag


def test_resume_refuses_a_different_config_or_a_non_run(tmp_path):
    run_dir = tmp_path / "run"
    run_in_process(["agent=qnet", "env=toy", *TINY, "checkpoint.every_steps=100"], run_dir)
    (run_dir / "metrics.json").unlink()  # as if it had been killed at the end
    with pytest.raises(RunDirError,
                       match=rf"different config: optimizer.lr={AdamConfig.lr} \(now 0.5\)"):
        run_in_process(["agent=qnet", "env=toy", *TINY, "checkpoint.every_steps=100",
                        "optimizer.lr=0.5", f"resume={run_dir}"], run_dir)
    with pytest.raises(RunDirError, match="is not an unfinished rlexp run"):
        run_in_process(["agent=qnet", "env=toy", *TINY, f"resume={tmp_path}"], tmp_path)


def test_a_finished_run_resumed_with_a_larger_budget_trains_on_as_one_long_run(tmp_path):
    # Constant schedules (epsilon, qnet's learning rate), so 600 steps then 600 more are the
    # 1,200-step run: the same curves, nothing logged twice, the extension recorded.
    args = ["agent=qnet", "env=toy", *TINY, "agent.epsilon.start=0.3", "agent.epsilon.end=0.3"]
    straight = run_in_process([*args, "total_steps=1200"], tmp_path / "straight")
    run_dir = tmp_path / "run"
    first = run_in_process(args, run_dir)
    assert first.status == "completed" and first.env_steps == 600
    with pytest.raises(RunDirError, match=r"already holds a finished run; .* resume=.* "
                       r"total_steps=N \(more than its 600\)"):
        run_in_process(args, run_dir)
    with pytest.raises(RunDirError, match=r"total_steps=N \(more than its 600\)"):
        run_in_process([*args, "total_steps=300", f"resume={run_dir}"], run_dir)
    with pytest.raises(RunDirError,
                       match=rf"optimizer.lr={AdamConfig.lr} \(now 0.5\); .*only a larger"):
        run_in_process([*args, "total_steps=1200", "optimizer.lr=0.5", f"resume={run_dir}"],
                       run_dir)
    longer = run_in_process([*args, "total_steps=1200", f"resume={run_dir}"], run_dir)
    assert longer.status == "completed" and longer.env_steps == 1200
    assert longer.extended_from_steps == 600 and longer.resumed_from_step == 600
    assert longer.eval_return_mean == straight.eval_return_mean
    ours, theirs = read_scalars(run_dir), read_scalars(tmp_path / "straight")
    assert [s for s, _ in ours["eval/return_mean"]] == [0, 300, 600, 900, 1200]
    for tag, points in theirs.items():
        if not tag.startswith("time/"):
            assert sorted(ours[tag]) == sorted(points), tag
    assert "total_steps: 1200" in (run_dir / "config.yaml").read_text()


def test_resume_true_finds_the_killed_run_from_the_command_line(tmp_path):
    args = ["agent=qnet", "env=toy", "device=cpu", "total_steps=2000", "log.every_steps=125",
            "checkpoint.every_steps=250", "eval.episodes=2"]
    proc = subprocess.Popen([sys.executable, "-m", "rlexp.train", *args], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not list(tmp_path.glob(f"outputs/runs/*/*/{rundir.LAST}")):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (run_dir,) = tmp_path.glob("outputs/runs/*/*")
    assert not (run_dir / "metrics.json").exists()

    result = run_cli([*args, "resume=true"], cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.glob("outputs/runs/*/*")) == [run_dir]  # no new run dir
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["env_steps"] == 2000
    assert metrics["resumed_from_step"] >= 250
    steps = [s for s, _ in read_scalars(run_dir)["train/epsilon"]]
    assert steps == list(range(125, 2125, 125))
    # Nothing left to resume now.
    again = run_cli([*args, "resume=true"], cwd=tmp_path, timeout=120)
    assert again.returncode == 2 and "no unfinished run" in again.stderr


def test_resume_with_the_run_directory_alone_continues_with_the_runs_own_config(tmp_path):
    """A run of a preset, a wrapper and overrides, killed: ``resume=RUN_DIR`` alone finishes
    it with its own config; a larger total_steps extends it; another value is refused."""
    from rlexp.agents.dqn import DQNAgent

    overrides = ["experiment=blog_dqn_cartpole", *TINY, *TINY_DQN, "total_steps=800",
                 "checkpoint.every_steps=400", "agent.gamma=0.95", "device=cpu",
                 "env.wrappers=[gymnasium.wrappers.TimeAwareObservation]"]
    run_dir = tmp_path / "run"
    crash_run_at(overrides, run_dir, DQNAgent, 600)

    def saved_config():
        import yaml

        config = yaml.safe_load((run_dir / rundir.CONFIG).read_text())
        config.pop("resume")  # the resumed run records where it resumed
        return config

    saved = saved_config()

    refused = run_cli([f"resume={run_dir}", "agent.gamma=0.5"], cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert f"resume={run_dir}: the run was started with agent.gamma=0.95 (now 0.5)" \
        in refused.stderr
    result = run_cli([f"resume={run_dir}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["env_steps"] == 800
    assert metrics["resumed_from_step"] == 400
    assert saved_config() == saved  # its wrapper, gamma and preset
    assert saved["env"]["wrappers"] == ["gymnasium.wrappers.TimeAwareObservation"]
    uninterrupted = run_in_process(overrides, tmp_path / "straight")
    assert metrics["eval_return_mean"] == uninterrupted.eval_return_mean

    longer = run_cli([f"resume={run_dir}", "total_steps=1000"], cwd=tmp_path)
    assert longer.returncode == 0, longer.stderr
    assert read_metrics(run_dir)["env_steps"] == 1000
