"""Promises the README makes that no other test exercises; each test can fail."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rlexp import evaluate, evaluator, rundir, runner
from rlexp.checkpoint import load_training_state
from rlexp.config import CONFIG_DIR
from rlexp.metrics import read_metrics
from rlexp.nets import ACTIVATIONS, functional_forward, q_network
from rlexp.stop import StopSignals
from tests.conftest import (
    REPO,
    TINY,
    TINY_DQN,
    compose_config,
    curves,
    read_scalars,
    run_in_process,
)

DQN = ["agent=dqn", "env=cartpole", "device=cpu", *TINY, *TINY_DQN, "total_steps=1200",
       "eval.every_steps=300", "checkpoint.every_steps=300"]


def interrupted_at(step: int, overrides: list[str], run_dir: Path, monkeypatch):
    """Run until a real SIGINT at ``step`` (sent from inside the agent's learn)."""
    from rlexp.agents import AGENTS

    agent_cls = AGENTS[compose_config(overrides).agent.name]
    learn = agent_cls.learn

    def hook(self, batch, should_stop=None):
        if step - batch.obs.shape[1] <= self.env_steps < step:
            os.kill(os.getpid(), signal.SIGINT)
        return learn(self, batch, should_stop)

    monkeypatch.setattr(agent_cls, "learn", hook)
    with StopSignals() as stop:
        metrics = run_in_process(overrides, run_dir, stop)
    monkeypatch.undo()
    assert metrics.status == "interrupted" and metrics.env_steps == step
    return metrics


# ------------------------------------------------------------------------------ divergence


def test_a_q_value_beyond_max_abs_q_counts_as_divergence_with_the_value_named(tmp_path):
    # Finite all along (so only the |Q| limit can catch it): CartPole's returns pass 5 quickly.
    metrics = run_in_process([*DQN, "train.max_abs_q=5", "train.stop_on_return=null"],
                       tmp_path / "run")
    assert metrics.status == "diverged"
    assert "train/q_mean is " in metrics.error and "beyond train.max_abs_q=5;" in metrics.error
    value = float(metrics.error.split("train/q_mean is ")[1].split(" ")[0])
    assert 5 < abs(value) < 1e3  # the logged value, finite
    q_curve = read_scalars(tmp_path / "run")["train/q_mean"]
    assert q_curve[-1] == (metrics.env_steps, pytest.approx(value, rel=1e-2))
    assert not (tmp_path / "run" / rundir.FINAL).exists()


# --------------------------------------------------------------------------------- resume


@pytest.mark.parametrize("overrides", [
    ["agent=qnet", "env=toy", *TINY, "total_steps=1200", "checkpoint.every_steps=300"],
    [*DQN, "env.num_envs=4"],
], ids=["toy", "four-envs"])
def test_resume_is_exact_for_the_toy_env_and_for_several_envs(tmp_path, monkeypatch, overrides):
    straight = run_in_process(overrides, tmp_path / "straight")
    interrupted_at(500 if "env=toy" in overrides else 504, overrides, tmp_path / "run",
                   monkeypatch)
    resumed = run_in_process([*overrides, f"resume={tmp_path / 'run'}"], tmp_path / "run")
    assert resumed.status == "completed"
    assert curves(tmp_path / "run") == curves(tmp_path / "straight")
    assert resumed.eval_return_mean == straight.eval_return_mean


def test_resume_without_the_replay_buffer_refills_it_before_training(tmp_path, monkeypatch):
    from rlexp.agents.dqn import DQNAgent

    overrides = [*DQN, "checkpoint.replay=false"]
    interrupted_at(600, overrides, tmp_path / "run", monkeypatch)
    state = load_training_state(tmp_path / "run" / rundir.LAST)["agent"]
    assert "replay" not in state and state["env_steps"] == 600
    updates_at = []
    update = DQNAgent._gradient_update

    def record(self):
        updates_at.append(self.env_steps)
        return update(self)

    monkeypatch.setattr(DQNAgent, "_gradient_update", record)
    resumed = run_in_process([*overrides, f"resume={tmp_path / 'run'}"], tmp_path / "run")
    assert resumed.status == "completed"
    # learning_starts=100 transitions are collected again before the first update.
    assert min(updates_at) >= 600 + 100


class OpaqueState(gym.Wrapper):
    """A wrapper holding an object that is not plain data (a renderer's, say). Above the env it
    cannot be rebuilt by replaying the env's episode (rlexp.envs.snapshot.EpisodeReplay)."""

    def __init__(self, env):
        super().__init__(env)
        self.engine = threading.Lock()


def test_an_env_whose_state_can_be_neither_saved_nor_replayed_resumes_with_new_episodes(
        tmp_path, monkeypatch, caplog):
    overrides = [*DQN, "env=cartpole", "env.wrappers=[tests.test_promises.OpaqueState]"]
    interrupted_at(450, overrides, tmp_path / "run", monkeypatch)
    assert load_training_state(tmp_path / "run" / rundir.LAST)["loop"]["env_state"] is None
    caplog.set_level("INFO", logger="rlexp")
    resumed = run_in_process([*overrides, f"resume={tmp_path / 'run'}"], tmp_path / "run")
    assert resumed.status == "completed" and resumed.env_steps == 1200
    assert "the envs' state was not saved or does not fit them: resuming with new episodes" \
        in caplog.text


def test_a_failed_run_can_be_resumed_from_its_last_checkpoint(tmp_path, monkeypatch):
    from rlexp.agents.dqn import DQNAgent

    learn = DQNAgent.learn

    def crash(self, batch, should_stop=None):
        if self.env_steps == 700:
            raise RuntimeError("a bug that was fixed afterwards")
        return learn(self, batch, should_stop)

    monkeypatch.setattr(DQNAgent, "learn", crash)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfgs = [compose_config(DQN)]
    with runner.recording_failures(cfgs, [run_dir], sweeping=True) as finished:
        runner.run_population(cfgs, [run_dir], StopSignals(), finished)
    (failed,) = finished.values()
    monkeypatch.undo()
    assert failed.status == "failed" and read_metrics(run_dir)["status"] == "failed"
    resumed = run_in_process([*DQN, f"resume={run_dir}"], run_dir)
    assert resumed.status == "completed" and resumed.resumed_from_step == 600


def test_resume_true_picks_the_latest_unfinished_run_with_the_same_overrides(tmp_path):
    runs = tmp_path / "runs"

    def fake(name: str, overrides: list[str], mtime: float, status: str | None = None) -> Path:
        run_dir = runs / "day" / name
        (run_dir / "checkpoints").mkdir(parents=True)
        (run_dir / rundir.LAST).write_bytes(b"x")
        (run_dir / rundir.HYDRA).mkdir()
        (run_dir / rundir.HYDRA / rundir.OVERRIDES).write_text(json.dumps(overrides))
        if status:
            (run_dir / rundir.METRICS).write_text(json.dumps({"status": status}))
        os.utime(run_dir / rundir.LAST, (mtime, mtime))
        return run_dir

    fake("old", ["seed=1"], 1_000)
    newest = fake("new", ["seed=1"], 2_000, status="interrupted")
    fake("done", ["seed=1"], 3_000, status="completed")
    fake("other", ["seed=2"], 4_000)
    fake("more", ["seed=1", "agent=qnet"], 5_000)
    assert rundir.find_unfinished_run(runs, ["seed=1", "resume=true"]) == newest


# ------------------------------------------------------------------------ configs, names


def presets() -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("preset", presets())
def test_presets_train_their_whole_budget(preset):
    cfg = compose_config([f"experiment={preset}"])
    assert cfg.train.stop_on_return is None, preset


def hydra_config(overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=["run_name=x", *overrides], return_hydra_config=True)


def test_rlexp_jobs_sets_the_parallel_launchers_job_count(monkeypatch):
    monkeypatch.setenv("RLEXP_JOBS", "3")
    cfg = hydra_config(["hydra/launcher=parallel"])
    assert cfg.hydra.launcher.n_jobs == 3 and cfg.hydra.launcher.backend == "loky"
    monkeypatch.delenv("RLEXP_JOBS")
    assert hydra_config(["hydra/launcher=parallel"]).hydra.launcher.n_jobs == -1


def test_the_slurm_launcher_config_composes_with_its_documented_fields():
    cfg = hydra_config(["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                        "hydra.launcher.timeout_min=30"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["partition"] == "gpu" and launcher["timeout_min"] == 30
    assert launcher["signal_delay_s"] == 120 and launcher["max_num_timeout"] == 5


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_the_functional_acting_forward_equals_the_module_forward(activation):
    torch.manual_seed(0)
    net = q_network(gym.spaces.Box(-1, 1, (4,)), 3, [16, 8], activation, bias=True)
    obs = torch.randn(5, 4)
    torch.testing.assert_close(functional_forward(net)(obs), net(obs), rtol=0, atol=0)


# ----------------------------------------------------------------------------- evaluation


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    run_in_process(["agent=qnet", "env=toy", *TINY, "env.variant=random"], run_dir)
    return run_dir


def test_evaluate_with_a_seed_plays_episodes_from_that_seed(finished_run, capsys):
    from rlexp.build import load_run, make_vector_env

    evaluate.main([f"run_dir={finished_run}", "episodes=4", "seed=123"])
    data = json.loads((finished_run / rundir.EVAL_JSON).read_text())
    assert data["seed"] == 123
    cfg, agent = load_run(finished_run)
    (expected,) = evaluator.evaluate(agent, make_vector_env(cfg.env, 4), [123])
    assert data["returns"] == expected.returns.tolist()
    assert "(seed 123)" in capsys.readouterr().out


def test_video_without_a_renderer_says_which_extra_to_install(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    run_in_process(["agent=qnet", "env=cartpole", *TINY], run_dir)
    monkeypatch.setitem(sys.modules, "pygame", None)  # as if the video extra were missing
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([f"run_dir={run_dir}", "episodes=1", "video=true"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "pip install -e '.[video]'" in err
    assert not (run_dir / "eval.gif").exists()


# ---------------------------------------------------------------------------- make bench
# The benchmark scripts start a dozen processes each: with the slow checks (make test-slow).


@pytest.mark.slow
def test_the_benchmark_runs_end_to_end_on_a_tiny_budget():
    result = subprocess.run(
        [sys.executable, "scripts/bench_cartpole.py", "--seeds", "1", "--budget", "600",
         "--eval-every", "300", "--overhead-steps", "600", "--overhead-rounds", "1",
         "--startup-rounds", "1", "--skip-sb3"], cwd=REPO, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rlexp = next(ln for ln in result.stdout.splitlines() if ln.strip().startswith("rlexp:"))
    assert "final eval >= 475 in 0/1" in rlexp and "first solved in 0/1" in rlexp  # 600 steps
    start = next(ln for ln in result.stdout.splitlines() if ln.startswith("start-up"))
    run, bare = (float(start.split(word)[1].split("s")[0]) for word in ("takes ", "hydra "))
    assert run > 0 and bare > 0  # not their order: one round each, timed on a shared machine
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("training loop"))
    ratios = [float(part.split(" ")[0]) for part in line.split("ratio ")[1:]]
    assert len(ratios) == 2 and all(np.isfinite(r) and r > 0 for r in ratios)


@pytest.mark.slow
def test_the_atari_benchmark_runs_end_to_end_on_a_tiny_budget():
    result = subprocess.run(
        [sys.executable, "scripts/bench_atari.py", "--learning-starts", "100", "--steps", "100",
         "--vector-steps", "200", "--skip-sb3", "--only-default-threads"], cwd=REPO,
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    ratio = float(result.stdout.split("x the raw bytes")[0].split(", ")[-1])
    assert ratio <= 1.1
    sps = [float(line.split(": ")[1].split()[0]) for line in result.stdout.splitlines()
           if line.strip().startswith("rlexp")]
    assert len(sps) == 1 and sps[0] > 0
