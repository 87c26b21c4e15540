"""Population training: members trained as one computation are the runs they would be alone.

Isolation (nothing of member j reaches member i), N-invariance (a member of a population of 4
is bit-identical to a population of 1), per-member endings (divergence, stop_on_return), stop
and resume of a whole population, and the run directories each member writes.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

import rlexp
from rlexp import report, runner
from rlexp.agents import AGENTS, AgentSpec, Member, Transition
from rlexp.checkpoint import load_training_state
from rlexp.config import ConfigError
from rlexp.metrics import read_metrics
from rlexp.populations import check_population
from rlexp.stop import StopSignals
from tests.conftest import (
    REPO,
    TINY,
    TINY_DQN,
    compose_config,
    curves,
    final_weights,
    read_scalars,
    run_cli,
    shrunk,
    sigint_when_learning_at,
)

SPACE = gym.spaces.Box(-1, 1, (3,), np.float32)
ACTIONS = gym.spaces.Discrete(2)
#: A run of a few thousand env steps whose every piece (n-step replay, dueling head, Polyak
#: target, lr decay) is on, small enough for the default suite.
BASE = ["agent=dqn", "env=cartpole", "device=cpu", *TINY_DQN, "total_steps=2400",
        "log.every_steps=200", "eval.every_steps=600", "eval.episodes=2",
        "checkpoint.every_steps=800", "agent.network.dueling=true", "agent.n_step=3"]


def train_runs(tmp_path: Path, name: str, cfgs: list, stop=None) -> list[Path]:
    dirs = [tmp_path / name / f"m{i}" for i in range(len(cfgs))]
    for d in dirs:
        d.mkdir(parents=True)
    runner.run_population(cfgs, dirs, stop)
    return dirs


def population(agent: str, members: list[Member]):
    return AGENTS[agent](AgentSpec(members, SPACE, ACTIONS, partial(torch.optim.Adam, lr=1e-3),
                                   torch.device("cpu"), total_steps=400))


@pytest.mark.parametrize("agent", [name for name in AGENTS if name != "qnet"] + ["qnet"])
def test_perturbing_one_member_leaves_the_others_bit_identical_and_alone_the_same(agent):
    # Updates early and often, where the agent has these settings.
    small = {"learning_starts": 16, "batch_size": 8, "train_freq": 2, "gradient_steps": 2,
             "buffer_size": 200, "rollout_steps": 4, "minibatches": 2, "quantiles": 8,
             "tau_samples": 8, "tau_prime_samples": 8, "quantile_samples": 8}
    fields = {f.name for f in dataclasses.fields(AGENTS[agent].Config)}
    cfg = AGENTS[agent].Config(**{k: v for k, v in small.items() if k in fields})
    cfg.network.hidden = [32, 32]
    alone = [Member(cfg, seed=s, lr=lr) for s, lr in ((0, 1e-3), (1, 2e-3), (2, 5e-4))]
    if not AGENTS[agent].joins_populations(cfg, SPACE, None):  # e.g. noisy networks
        with pytest.raises(ValueError, match="train them one run per process"):
            population(agent, alone)
        return
    # Member 1 differs in everything a member may: seed, learning rate, gamma, epsilon.
    other = dataclasses.replace(cfg, gamma=0.5, epsilon=dataclasses.replace(cfg.epsilon,
                                                                            end=0.9))
    changed = [alone[0], Member(other, seed=7, lr=0.5), alone[2]]
    a, b = population(agent, alone), population(agent, changed)
    one = population(agent, alone[2:])  # member 2 as a population of one: the same run
    rng = np.random.default_rng(0)
    for t in range(200):
        obs = rng.standard_normal((3, 2, 3)).astype(np.float32)
        nxt = rng.standard_normal((3, 2, 3)).astype(np.float32)
        scaled = (obs * np.array([1, 100, 1])[:, None, None]).astype(np.float32)
        acts_a, acts_b, acts_one = a.act(obs), b.act(scaled), one.act(obs[2:])
        np.testing.assert_array_equal(acts_a[[0, 2]], acts_b[[0, 2]], err_msg=str(t))
        np.testing.assert_array_equal(acts_a[2:], acts_one, err_msg=str(t))
        reward, done = rng.standard_normal((3, 2)), rng.random((3, 2)) < 0.1
        truncated = ~done & (t % 7 == 0)
        ma = a.learn(Transition(obs, acts_a, reward, nxt, done, truncated))
        m_one = one.learn(Transition(obs[2:], acts_one, reward[2:], nxt[2:], done[2:],
                                     truncated[2:]))
        assert (ma is None) == (m_one is None)
        for key in ma or ():
            assert torch.equal(ma[key][2:], m_one[key]), (t, key)
        # Member 1's data differs too: other observations, rewards and episode ends.
        mine = np.arange(3)[:, None, None] == 1
        mb = b.learn(Transition(np.where(mine, scaled, obs), acts_b,
                                np.where(mine[..., 0], -50 * reward, reward),
                                np.where(mine, 3 * nxt, nxt).astype(np.float32),
                                np.where(mine[..., 0], ~done, done),
                                np.where(mine[..., 0], done, truncated)))
        assert (ma is None) == (mb is None)
        if ma is not None:
            for key in ma:
                assert torch.equal(ma[key][[0, 2]], mb[key][[0, 2]]), (t, key)
                assert not torch.equal(ma[key][1], mb[key][1])
    for i in (0, 2):
        for (key, x), y in zip(a.state_dict(i)["q_net"].items(),
                               b.state_dict(i)["q_net"].values(), strict=True):
            assert torch.equal(x, y), (i, key)
    for (key, x), y in zip(a.state_dict(2)["q_net"].items(),
                           one.state_dict(0)["q_net"].values(), strict=True):
        assert torch.equal(x, y), key
    assert not torch.equal(a.state_dict(1)["q_net"][a.q_net.names[0]],
                           b.state_dict(1)["q_net"][b.q_net.names[0]])


def test_a_member_of_a_population_of_four_is_bit_identical_to_its_run_alone(tmp_path):
    cfgs = [compose_config([*BASE, f"seed={s}"]) for s in range(4)]
    together = train_runs(tmp_path, "four", cfgs)
    (alone,) = train_runs(tmp_path, "one", [cfgs[2]])
    assert read_metrics(together[2])["population"] == 4 and read_metrics(alone)["population"] == 1
    # Every curve (actions, losses, Q-values, returns, epsilon, lr) and the final weights.
    assert curves(together[2]) == curves(alone)
    assert curves(together[2]) != curves(together[1])
    for key, value in final_weights(alone).items():
        assert torch.equal(value, final_weights(together[2])[key]), key


OWN_SETTINGS = {
    "learning rates": [["optimizer.lr=1e-3"], ["optimizer.lr=3e-3"], ["optimizer.lr=6e-3"]],
    "target updates": [["agent.target_update_interval=10", "agent.tau=0.05"],
                       ["agent.target_update_interval=40", "agent.tau=1.0"],
                       ["agent.target_update_interval=25", "agent.tau=0.5"]],
}


@pytest.mark.parametrize("settings", OWN_SETTINGS.values(), ids=OWN_SETTINGS)
def test_members_with_their_own_settings_are_their_runs_alone(tmp_path, settings):
    # A step is taken at rate 1 and scaled by the member's own rate; a target not due is
    # updated at rate 0: no member's arithmetic depends on another's settings.
    cfgs = [compose_config([*BASE, f"seed={i}", *own]) for i, own in enumerate(settings)]
    together = train_runs(tmp_path, "three", cfgs)
    alone = [train_runs(tmp_path, f"alone{i}", [cfg])[0] for i, cfg in enumerate(cfgs)]
    for t, a in zip(together, alone, strict=True):
        assert curves(t) == curves(a)
        for net in ("q_net", "target_net"):
            ours, theirs = (load_training_state(d / "checkpoints/final.pt")["agent"][net]
                            for d in (t, a))
            for key, value in theirs.items():
                assert torch.equal(ours[key], value), (net, key)
    assert curves(together[0]) != curves(together[1])


def test_a_diverged_member_stops_and_the_others_go_on_as_alone(tmp_path):
    cfgs = [compose_config([*BASE, f"seed={s}"]) for s in range(3)]
    cfgs[1] = dataclasses.replace(cfgs[1], train=dataclasses.replace(cfgs[1].train,
                                                                     max_abs_q=1e-3))
    dirs = train_runs(tmp_path, "pop", cfgs)
    (alone,) = train_runs(tmp_path, "alone", [cfgs[2]])
    diverged = read_metrics(dirs[1])
    assert diverged["status"] == "diverged" and "beyond train.max_abs_q=0.001" in diverged[
        "error"]
    assert not (dirs[1] / "checkpoints/final.pt").exists()
    assert read_metrics(dirs[0])["status"] == read_metrics(dirs[2])["status"] == "completed"
    assert curves(dirs[2]) == curves(alone)
    assert max(step for step, _ in curves(dirs[1])["train/loss"]) < 2400


def test_a_member_that_reaches_its_target_ends_as_its_run_alone_would(tmp_path):
    cfgs = [compose_config([*BASE, f"seed={s}"]) for s in range(2)]
    cfgs[0] = dataclasses.replace(cfgs[0], train=dataclasses.replace(cfgs[0].train,
                                                                     stop_on_return=1.0))
    dirs = train_runs(tmp_path, "pop", cfgs)
    (alone,) = train_runs(tmp_path, "alone", [cfgs[0]])
    solved = read_metrics(dirs[0])
    assert solved["status"] == "completed" and solved["stopped_early"]
    assert solved["env_steps"] == read_metrics(alone)["env_steps"] < 2400
    assert curves(dirs[0]) == curves(alone)
    assert read_metrics(dirs[1])["env_steps"] == 2400
    assert (dirs[0] / "checkpoints/final.pt").is_file()


# DQN's in the default suite; every other agent's with the slow checks (make test-slow).
@pytest.mark.parametrize("agent", [a if a == "dqn" else pytest.param(a, marks=pytest.mark.slow)
                                   for a in sorted(AGENTS)])
def test_a_stopped_population_resumes_exactly(tmp_path, monkeypatch, agent):
    # Every agent's population, its members' envs (CartPoles batched), networks (stacked:
    # noisy, normalised, IQN's) and updates cut short (PQN's), stopped between checkpoints.
    overrides = [*BASE] if agent == "dqn" else shrunk(
        [f"agent={agent}", "env=cartpole", "device=cpu", *TINY, "total_steps=400",
         "eval.every_steps=0", "eval.episodes=1", "checkpoint.every_steps=200",
         "agent.network.hidden=[32,32]"])  # two layers: IQN's fractions enter the second
    cfgs = [compose_config([*overrides, f"seed={s}"]) for s in range(2)]
    stop_at = 1000 if agent == "dqn" else 252  # PQN's: inside a rollout (4 envs x 4 steps)
    sigint_when_learning_at(monkeypatch, AGENTS[agent], stop_at)
    with StopSignals() as stop:
        dirs = train_runs(tmp_path, "pop", cfgs, stop)
    monkeypatch.undo()
    assert [read_metrics(d)["status"] for d in dirs] == ["interrupted"] * 2
    resumed = [dataclasses.replace(c, resume=str(d)) for c, d in zip(cfgs, dirs, strict=True)]
    runner.run_population(resumed, dirs)
    straight = train_runs(tmp_path, "straight", cfgs)
    for d, s in zip(dirs, straight, strict=True):
        assert read_metrics(d)["status"] == "completed"
        assert read_metrics(d)["resumed_from_step"] > stop_at - cfgs[0].env.num_envs
        assert curves(d) == curves(s)
        for key, value in final_weights(s).items():
            assert torch.equal(value, final_weights(d)[key]), key


def test_a_population_writes_runs_the_report_and_load_agent_take_as_they_are(tmp_path):
    # In one process (a split population writes the same runs: the three-launcher test).
    out = run_cli([*BASE, "total_steps=600", "seeds=3", "processes=1", "hydra.run.dir=job"],
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    dirs = [tmp_path / "job" / f"seed{s}" for s in range(3)]
    (group,) = report.group_runs(report.load_runs(tmp_path))
    assert len(group.completed) == 3
    finals = sorted(read_metrics(d)["eval_return_mean"] for d in dirs)
    assert sorted(group.final_returns) == finals
    agent = rlexp.load_agent(dirs[1])
    assert agent.q_values(np.zeros((2, 4), np.float32)).shape == (2, 2)
    expected = final_weights(dirs[1])
    for key, value in agent.agent.q_net.member_state_dict(0).items():
        assert torch.equal(value, expected[key])


def test_a_several_seed_command_splits_its_population_over_processes_changing_no_curve(
        tmp_path):
    for processes in (1, 2):
        out = run_cli([*BASE, "total_steps=1200", "seeds=2", f"processes={processes}",
                       f"hydra.run.dir=p{processes}"], cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
    log = (tmp_path / "p2" / "train.log").read_text()
    for seed in (0, 1):
        one, two = (tmp_path / f"p{n}" / f"seed{seed}" for n in (1, 2))
        assert read_metrics(one)["population"] == 2 and read_metrics(two)["population"] == 1
        assert curves(one) == curves(two)
        assert f"done dqn-cartpole seed {seed} " in log  # the workers' lines, in the job's log


@pytest.mark.parametrize("processes", [1, 2])
def test_several_seeds_of_a_convolutional_network_train_each_alone(tmp_path, processes):
    # They cannot train as one population: one part per run, one per process at a time.
    out = run_cli(["env=minatar", "device=cpu", "seeds=3", f"processes={processes}",
                   "total_steps=200", "agent.learning_starts=100", "agent.train_freq=50",
                   "agent.gradient_steps=1", "agent.batch_size=8", "eval.every_steps=0",
                   "eval.episodes=1", "hydra.run.dir=job"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    for seed in range(3):
        metrics = read_metrics(tmp_path / "job" / f"seed{seed}")
        assert metrics["status"] == "completed" and metrics["population"] == 1
        assert metrics["env_steps"] == 200


def test_runs_that_differ_in_a_shared_setting_cannot_be_one_population():
    a = compose_config([*BASE, *TINY])
    b = compose_config([*BASE, *TINY, "agent.batch_size=16", "seed=3"])
    check_population([a, compose_config([*BASE, *TINY, "seed=3", "optimizer.lr=0.01",
                                         "agent.gamma=0.9", "agent.tau=0.5"])])
    with pytest.raises(ConfigError, match=r"differ in agent.batch_size \(32 and 16\); its "
                                          r"members may differ only in: seed, .*optimizer.lr"):
        check_population([a, b])


# --------------------------------------------------------------- hydra/launcher=population

LAUNCH = ["agent=dqn", "env=cartpole", "device=cpu", *TINY_DQN, "total_steps=600",
          "log.every_steps=100", "eval.every_steps=300", "eval.episodes=2"]


def job_dirs(sweep: Path) -> dict[str, Path]:
    return {p.name: p for p in sweep.iterdir() if (p / ".hydra").is_dir()}


def test_a_population_sweep_writes_the_runs_a_sweep_of_single_runs_writes(tmp_path):
    # In this process, and split over two worker processes (two populations of two): a
    # member's curves are its run's alone either way.
    grid = ["seed=0,1", "optimizer.lr=1e-3,4e-3"]
    launchers = {"basic": ["hydra/launcher=basic"],
                 "one": ["hydra/launcher=population", "hydra.launcher.processes=1"],
                 "two": ["hydra/launcher=population", "hydra.launcher.processes=2"]}
    runs = {}
    for name, launcher in launchers.items():
        out = run_cli(["-m", *launcher, *grid, *LAUNCH, f"hydra.sweep.dir={name}"],
                      cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        runs[name] = job_dirs(tmp_path / name)
    assert len(runs["basic"]) == 4
    for name, size in (("one", 4), ("two", 2)):
        assert sorted(runs[name]) == sorted(runs["basic"])
        for job, alone in runs["basic"].items():
            member = runs[name][job]
            assert read_metrics(member)["population"] == size
            assert read_metrics(alone)["population"] == 1
            assert curves(member) == curves(alone), (name, job)
            assert (member / ".hydra" / "overrides.yaml").read_text() == \
                (alone / ".hydra" / "overrides.yaml").read_text()
            # Its train.log has its setup and its population's training lines, its own too.
            seed = read_metrics(member)["seed"]
            log = (member / "train.log").read_text()
            assert f"training {size} runs as one population" in log
            assert f"done dqn-cartpole seed {seed} " in log and str(member) in log
        log = (tmp_path / name / "population.log").read_text()
        assert log.count(f"training {size} runs as one population") == 4 // size
        assert (tmp_path / name / "summary.md").read_text().count("| optimizer.lr=") == 2


FAULTY = ["agent=qnet", "env=gym", "env.id=tests.faulty_env:Faulty-v0", "device=cpu",
          "seed=0,1,2,3", "eval.episodes=2", "hydra/launcher=population",
          "hydra.launcher.processes=2"]  # two workers: seeds 0 and 1, seeds 2 and 3


def test_a_worker_process_that_dies_leaves_its_runs_failed_and_the_others_complete(tmp_path):
    out = run_cli(["-m", *FAULTY, "+env.kwargs.how=exit", "+env.kwargs.crash_after=50",
                   "total_steps=2000", "eval.every_steps=0", "hydra.sweep.dir=sweep"],
                  cwd=tmp_path, env={"PYTHONPATH": str(REPO)})
    assert out.returncode == 1, out.stderr[-3000:]
    assert "leaked semaphore" not in out.stderr  # the dead worker held none
    metrics = {int(name.split("seed=")[1].split(",")[0]): read_metrics(run)
               for name, run in job_dirs(tmp_path / "sweep").items()}
    for seed in (0, 1):  # seed 1's env ended the process training both
        assert metrics[seed]["status"] == "failed"
        assert metrics[seed]["error"] == "the worker process training it ended with exit code 9"
    for seed in (2, 3):
        assert metrics[seed]["status"] == "completed" and metrics[seed]["env_steps"] == 2000


def test_a_stop_signal_reaches_every_worker_and_the_sweep_resumes(tmp_path):
    # Seed 1's env sends SIGINT to the launcher's process after 1,000 steps: it hands the
    # signal on to both workers, which checkpoint their runs.
    args = ["-m", *FAULTY, "+env.kwargs.how=interrupt_parent", "+env.kwargs.crash_after=1000",
            "total_steps=4000", "eval.every_steps=1000", "hydra.sweep.dir=sweep"]
    out = run_cli(args, cwd=tmp_path, env={"PYTHONPATH": str(REPO)})
    assert out.returncode == 130, out.stderr[-3000:]
    assert "resume=true" in out.stdout + out.stderr
    for name, run in job_dirs(tmp_path / "sweep").items():
        metrics = read_metrics(run)
        assert metrics["status"] == "interrupted", name
        assert 0 < metrics["env_steps"] < 4000 and (run / "checkpoints/last.pt").is_file()
    again = run_cli([*args, "resume=true"], cwd=tmp_path, env={"PYTHONPATH": str(REPO)})
    assert again.returncode == 0, again.stderr[-3000:]
    for name, run in job_dirs(tmp_path / "sweep").items():
        metrics = read_metrics(run)
        assert metrics["status"] == "completed" and metrics["env_steps"] == 4000, name
        steps = [step for step, _ in read_scalars(run)["eval/return_mean"]]
        assert steps == list(range(0, 4001, 1000)), name  # one curve, from start to end


def _on_a_terminal(args: list[str], cwd: Path, timeout: float = 60) -> str:
    """``python -m rlexp.train ARGS`` with stdout and stderr on a pseudo-terminal of 120
    columns, as a user's shell runs it; returns everything written there."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    ours, theirs = pty.openpty()
    fcntl.ioctl(theirs, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "rlexp.train", *args], cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=theirs, stderr=theirs)
    os.close(theirs)
    chunks = []
    try:
        while select.select([ours], [], [], timeout)[0]:  # nothing for `timeout` s: it hangs
            try:
                data = os.read(ours, 65536)
            except OSError:  # EIO: every process writing to it has ended
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(ours)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode(errors="replace")


def test_on_a_terminal_the_workers_share_one_progress_bar_with_their_lines_above_it(tmp_path):
    # Two worker processes on one terminal: each drawing its own bar on the same line made it
    # jump between their counts, and their log lines were written into the bar's line.
    out = _on_a_terminal(["seeds=4", "processes=2", *LAUNCH, "hydra.run.dir=job"], tmp_path)
    # tqdm redraws a bar after a carriage return; a line ends with a newline.
    pieces = [p for p in out.replace("\r\n", "\n").replace("\r", "\n").split("\n") if p.strip()]
    bars = [p for p in pieces if "%|" in p]
    assert bars and all(p.lstrip().startswith("4 runs:") and "/2400 [" in p for p in bars)
    counts = [int(re.search(r"(\d+)/2400 \[", p).group(1)) for p in bars]  # of all 4 runs
    assert counts == sorted(counts) and counts[-1] == 4 * 600
    lines = [p for p in pieces if "[rlexp][INFO]" in p]
    assert all(p.startswith("[20") for p in lines), [p for p in lines if not p.startswith("[")]
    for k in (1, 2):  # each worker's lines name its population, on the terminal and in files
        assert any(f"[population {k}/2] - training 2 runs as one population" in p
                   for p in lines)
        assert f"[population {k}/2] - done dqn-cartpole" in (tmp_path / "job/train.log"
                                                              ).read_text()


def _importing_workers_of(pid: int) -> list[int]:
    """The worker processes of ``pid`` (spawned by multiprocessing, or joblib's loky) whose
    Python is up (it catches SIGINT: Python's own handler) and importing (Linux's /proc)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (proc / "cmdline").read_bytes()
            spawned = b"multiprocessing" in command or b"popen_loky" in command
            caught = next(int(line.split()[1], 16) for line in
                          (proc / "status").read_text().splitlines() if line.startswith("SigCgt"))
        except (OSError, StopIteration):  # it has just ended
            continue
        if parent == pid and spawned and caught & (1 << (signal.SIGINT - 1)):
            found.append(int(proc.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads Linux's /proc")
@pytest.mark.parametrize("launcher", ["population", "parallel"])
def test_a_ctrl_c_while_the_workers_start_stops_the_sweep_cleanly_and_it_resumes(tmp_path,
                                                                                launcher):
    # A terminal's Ctrl-C reaches its whole foreground process group: here while the workers
    # are still importing (before they have handlers, or process groups of their own).
    workers = {"population": "hydra.launcher.processes=2", "parallel": "hydra.launcher.n_jobs=2"}
    args = ["-m", f"hydra/launcher={launcher}", workers[launcher], "seed=0,1",
            *LAUNCH, "hydra.sweep.dir=sweep"]
    sweep = subprocess.Popen([sys.executable, "-m", "rlexp.train", *args], cwd=tmp_path,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while len(_importing_workers_of(sweep.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(sweep.pid, signal.SIGINT)
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    runs = job_dirs(tmp_path / "sweep")
    assert len(runs) == 2
    # The signal waited for the workers' handlers, which stop before training begins.
    assert not any((run / "metrics.json").exists() for run in runs.values())
    assert "resume=true" in out + err
    if launcher == "parallel":  # resuming finds what the population case's resume finds
        return
    again = run_cli([*args, "resume=true"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    for run in runs.values():
        assert read_metrics(run)["status"] == "completed"


def test_jobs_that_cannot_train_together_form_populations_of_their_own(tmp_path):
    out = run_cli(["-m", "hydra/launcher=population", "hydra.launcher.processes=1", "seed=0,1",
                   "agent.double_q=true,false", *LAUNCH, "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = job_dirs(tmp_path / "sweep")
    assert len(runs) == 4
    for name, run in runs.items():
        metrics = read_metrics(run)
        assert metrics["status"] == "completed" and metrics["population"] == 2, name


def test_optuna_drives_the_population_launcher(tmp_path):
    out = run_cli(["hparams_search=dqn_cartpole", "hydra/launcher=population",
                   "hydra.launcher.processes=1", "hydra.sweeper.n_trials=2",
                   "hydra.sweeper.n_jobs=2", "seeds=2",
                   *LAUNCH, "eval.every_steps=0", "hydra.sweep.dir=study"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    sweep = tmp_path / "study"
    means = []
    for trial in ("trial_0", "trial_1"):
        finals = [read_metrics(sweep / trial / f"seed{s}") for s in (0, 1)]
        assert all(m["status"] == "completed" and m["population"] >= 2 for m in finals)
        means.append(sum(m["eval_return_mean"] for m in finals) / 2)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(means))


def test_the_launcher_takes_each_jobs_config_composed_for_the_sweepers_check():
    from omegaconf import OmegaConf

    from hydra_plugins.rlexp_population_launcher.population_launcher import composed_once

    class Loader:  # Hydra's config loader: a new config per call
        calls = 0

        def load_sweep_config(self, master_config, sweep_overrides):
            self.calls += 1
            return OmegaConf.create({"job": list(sweep_overrides), "call": self.calls})

    loader, master = Loader(), OmegaConf.create({})
    configs = composed_once(loader)
    assert composed_once(loader) is configs  # a second launcher wraps nothing more
    checked = [loader.load_sweep_config(master, [f"seed={s}"]) for s in range(3)]  # sweeper
    checked[0].job.append("changed by the sweeper")
    launched = [configs.take(master, [f"seed={s}"]) for s in range(3)]
    assert loader.calls == 3
    assert [OmegaConf.to_container(c) for c in launched] == [
        {"job": [f"seed={s}"], "call": s + 1} for s in range(3)]
    # A job no check composed (Optuna's sweeper checks none) is composed when taken, and
    # nothing is kept: taken again, it is composed anew.
    assert configs.take(master, ["seed=0"]).call == 4
    assert configs.take(master, ["seed=0"]).call == 5
    assert configs._kept == {}


def test_a_population_of_convolutional_networks_is_refused_with_what_to_do_instead():
    from rlexp.build import make_agent, make_vector_env

    cfgs = [compose_config(["env=minatar", "device=cpu", f"seed={s}"]) for s in range(2)]
    envs = make_vector_env(cfgs[0].env, 1)
    spaces = (envs.single_observation_space, envs.single_action_space)
    make_agent(cfgs[:1], *spaces, torch.device("cpu"))  # a population of one trains
    with pytest.raises(ConfigError, match="population training batches MLP Q-networks.*"
                                          "hydra/launcher=parallel"):
        make_agent(cfgs, *spaces, torch.device("cpu"))


def test_a_member_whose_loss_is_not_finite_stops_and_so_does_a_population_of_it_alone(tmp_path):
    # SGD at lr 1e6 makes the loss overflow to inf/nan within a few updates (no max_abs_q).
    ok, bad = (compose_config([*BASE, "optimizer=sgd", f"optimizer.lr={lr}", "seed=0",
                               "train.max_abs_q=null"]) for lr in (0.01, 1e6))
    dirs = train_runs(tmp_path, "pop", [ok, dataclasses.replace(bad, seed=1)])
    (alone,) = train_runs(tmp_path, "alone", [bad])
    assert read_metrics(dirs[0])["status"] == "completed"
    for run in (dirs[1], alone):
        metrics = read_metrics(run)
        assert metrics["status"] == "diverged" and " is " in metrics["error"], metrics
        assert metrics["env_steps"] < 2400


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_each_members_torch_draws_resume_from_its_own_state(agent):
    # Noisy networks' noise and IQN's fractions come from each member's own torch generator,
    # saved in its state: a population loaded from its members' states draws on as it would.
    fields = {f.name for f in dataclasses.fields(AGENTS[agent].Config)}
    cfg = AGENTS[agent].Config(**{k: v for k, v in {"learning_starts": 4}.items() if k in fields})
    members = [Member(cfg, seed=s, lr=1e-3) for s in (3, 4)]
    first = population(agent, members)
    if not getattr(first, "torch_rngs", None):
        pytest.skip(f"{agent} makes no torch draws")
    obs = np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32)
    for _ in range(3):
        first.act(obs)
    second = population(agent, members)
    second.load_state_dicts([first.state_dict(i) for i in range(2)])
    for _ in range(5):
        np.testing.assert_array_equal(first.act(obs), second.act(obs))
        assert all(torch.equal(x.get_state(), y.get_state())
                   for x, y in zip(first.torch_rngs, second.torch_rngs, strict=True))
    assert not torch.equal(first.torch_rngs[0].get_state(), first.torch_rngs[1].get_state())
