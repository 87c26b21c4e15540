"""Nothing hangs, every signal is honoured, no two runs share a directory, and a whole sweep
resumes where it stopped. Each test injects the fault it is about."""

import csv
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from rlexp import checkpoint, rundir, runner
from rlexp import stop as stop_module
from rlexp.checkpoint import load_training_state
from rlexp.metrics import read_metrics
from rlexp.rundir import RunDirError
from rlexp.stop import StopNow, StopSignals
from tests.conftest import (
    REPO,
    TINY,
    TINY_DQN,
    compose_config,
    curves,
    fake_run,
    read_scalars,
    run_cli,
    run_in_process,
    start_cli,
)

ENDLESS = ["agent=qnet", "env=gym", "env.id=tests.faulty_env:Endless-v0", "device=cpu",
           "log.every_steps=100", "eval.episodes=2"]


# ------------------------------------------------------------------ evaluations always end


def test_an_evaluation_of_a_policy_that_never_ends_is_cut_and_reported(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="rlexp")
    metrics = run_in_process([*ENDLESS, "total_steps=200", "eval.every_steps=100"],
                             tmp_path / "run")
    cap = 27_000  # no time limit of its own: rlexp's documented default cap
    assert metrics.status == "completed"
    assert metrics.eval_truncated == 2 and metrics.eval_return_mean == cap  # reward 1 a step
    scalars = read_scalars(tmp_path / "run")
    assert scalars["eval/truncated"] == [(0, 1.0), (100, 1.0), (200, 1.0)]
    assert scalars["eval/return_mean"] == [(0, cap), (100, cap), (200, cap)]
    log = caplog.text
    assert log.count("has no time limit: training episodes last until the env ends them") == 1
    assert log.count(f"2 of 2 episodes reached eval.max_episode_steps={cap} and were cut") == 3


def test_eval_max_episode_steps_caps_evaluations_and_the_env_limit_is_the_default(tmp_path):
    capped = run_in_process([*ENDLESS, "total_steps=100", "eval.every_steps=0",
                       "eval.max_episode_steps=37"], tmp_path / "capped")
    assert capped.eval_return_mean == 37 and capped.eval_truncated == 2
    # The toy env's own limit (env.max_steps=50): an episode cut there is truncated too.
    toy = run_in_process(["agent=qnet", "env=toy", *TINY, "env.max_steps=3",
                    "env.variant=random"], tmp_path / "toy")
    evaluations = read_scalars(tmp_path / "toy")["eval/truncated"]
    assert all(0.0 <= v <= 1.0 for _, v in evaluations)
    assert toy.eval_truncated == round(evaluations[-1][1] * 2)


# ---------------------------------------------------------- signals, wherever the run is


def test_sigterm_in_the_middle_of_a_long_evaluation_stops_the_run_at_once(tmp_path):
    # The evaluation at step 0 (the untrained agent) would take hours (10**8 steps); the run's
    # first log line comes just before it starts.
    args = [*ENDLESS, "total_steps=1000", "eval.every_steps=100", "checkpoint.every_steps=0",
            "eval.max_episode_steps=100000000", "hydra.run.dir=run"]
    proc = start_cli(args, tmp_path)
    for line in proc.stdout:
        if ", starting -> " in line:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    out, _ = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 10, out  # (the promise is 2 s; CI machines are slow)
    assert proc.returncode == 128 + signal.SIGTERM, out
    metrics = read_metrics(tmp_path / "run")
    assert metrics["status"] == "interrupted"
    assert metrics["error"] == "interrupted by SIGTERM at step 0"
    assert load_training_state(tmp_path / "run" / rundir.LAST)["loop"]["step"] == 0
    scalars = read_scalars(tmp_path / "run")
    assert "eval/return_mean" not in scalars  # the evaluation cut short is not logged


def test_the_same_signal_twice_stops_at_once(tmp_path, monkeypatch):
    from rlexp.agents.qnet import QNetAgent

    learn = QNetAgent.learn

    def signalled_twice(self, batch, should_stop=None):
        if self.env_steps == 150:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(stop_module.REPEAT_AFTER_S)
            os.kill(os.getpid(), signal.SIGTERM)  # raises StopNow here, mid-step
        return learn(self, batch, should_stop)

    monkeypatch.setattr(QNetAgent, "learn", signalled_twice)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = compose_config(["agent=qnet", "env=toy", *TINY, "checkpoint.every_steps=100"])
    with StopSignals() as stop, pytest.raises(StopNow, match="second SIGTERM"), \
            runner.recording_failures([cfg], [run_dir], sweeping=False) as finished:
        runner.run_population([cfg], [run_dir], stop, finished)
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "interrupted"
    assert "stopped at once by a second SIGTERM" in metrics["error"]
    assert "checkpoints/last.pt is the last checkpoint" in metrics["error"]
    # No checkpoint at the stop: the last one written (step 100) is intact.
    assert load_training_state(run_dir / rundir.LAST)["loop"]["step"] == 100


def test_one_signal_delivered_twice_at_once_is_one_request(tmp_path, monkeypatch):
    """A terminal's Ctrl-C reaches a submitit job directly and again through submitit."""
    from rlexp.agents.qnet import QNetAgent

    learn = QNetAgent.learn

    def signalled_twice_at_once(self, batch, should_stop=None):
        if self.env_steps == 150:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return learn(self, batch, should_stop)

    monkeypatch.setattr(QNetAgent, "learn", signalled_twice_at_once)
    with StopSignals() as stop:
        metrics = run_in_process(["agent=qnet", "env=toy", *TINY], tmp_path / "run", stop)
    assert metrics.status == "interrupted" and metrics.env_steps == 151  # stopped gracefully
    assert load_training_state(tmp_path / "run" / rundir.LAST)["loop"]["step"] == 151


# A DQN run on CartPole: evaluations every 250 steps, log points every 100, checkpoints every 250.
DQN_RUN = ["agent=dqn", "env=cartpole", "device=cpu", *TINY, *TINY_DQN, "total_steps=1200",
           "eval.every_steps=250", "checkpoint.every_steps=250"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    run_in_process(DQN_RUN, run_dir)
    return run_dir


@pytest.mark.parametrize("where,step", [
    ("training", 450),      # mid log interval: a partial point at 450
    ("evaluation", 500),    # in the evaluation at 500, after the log point at 500
    ("evaluation", 750),    # in the evaluation at 750, mid log interval
    ("checkpoint", 250),    # while writing the checkpoint at 250, after the evaluation at 250
    ("update", 600),        # between the two gradient steps of the update at 600
])
def test_a_stop_anywhere_resumes_to_the_uninterrupted_curves(tmp_path, monkeypatch,
                                                             uninterrupted, where, step):
    from rlexp.agents.dqn import DQNAgent

    def signal_once():
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    sent = []
    act, learn, save = DQNAgent.act, DQNAgent.learn, checkpoint.save_checkpoint
    if where == "training":
        def hook(self, batch, should_stop=None):
            if self.env_steps == step - 1:
                signal_once()
            return learn(self, batch, should_stop)
        monkeypatch.setattr(DQNAgent, "learn", hook)
    elif where == "evaluation":
        calls = []

        def hook(self, obs, explore=True):
            if not explore and self.env_steps == step:
                calls.append(1)
                if len(calls) == 3:  # the third step of the evaluation's episodes
                    signal_once()
            return act(self, obs, explore)
        monkeypatch.setattr(DQNAgent, "act", hook)
    elif where == "update":
        update = DQNAgent._gradient_update

        def hook(self):
            if self.env_steps == step:
                signal_once()
            return update(self)
        monkeypatch.setattr(DQNAgent, "_gradient_update", hook)
    else:
        def hook(path, state):
            if state["loop"]["step"] == step:
                signal_once()
            return save(path, state)
        monkeypatch.setattr(checkpoint, "save_checkpoint", hook)

    run_dir = tmp_path / "run"
    with StopSignals() as stop:
        stopped = run_in_process(DQN_RUN, run_dir, stop)
    monkeypatch.undo()
    assert stopped.status == "interrupted" and stopped.env_steps == step
    # The stopped run's own curves reach the step it stopped at (the partial interval).
    assert read_scalars(run_dir)["train/epsilon"][-1][0] == step

    resumed = run_in_process([*DQN_RUN, f"resume={run_dir}"], run_dir)
    assert resumed.status == "completed" and resumed.resumed_from_step == step
    assert curves(run_dir) == curves(uninterrupted)
    final = load_training_state(run_dir / rundir.FINAL)["agent"]["q_net"]
    for name, weights in load_training_state(uninterrupted / rundir.FINAL)["agent"][
            "q_net"].items():
        assert torch.equal(final[name], weights)


def test_a_stop_in_an_update_of_a_million_gradient_steps_comes_after_the_current_one(tmp_path,
                                                                                   monkeypatch):
    from rlexp.agents.dqn import DQNAgent

    update, calls = DQNAgent._gradient_update, []

    def counted(self):
        calls.append(self.env_steps)
        if len(calls) == 10:
            os.kill(os.getpid(), signal.SIGTERM)
        return update(self)

    monkeypatch.setattr(DQNAgent, "_gradient_update", counted)
    with StopSignals() as stop:
        metrics = run_in_process([*DQN_RUN, "agent.gradient_steps=1000000"], tmp_path / "run",
                                 stop)
    assert metrics.status == "interrupted" and metrics.env_steps == calls[0]  # the first update
    assert len(calls) == 10  # not a million: the stop came after the current gradient step
    agent = load_training_state(tmp_path / "run" / rundir.LAST)["agent"]
    assert agent["steps_left"] == 1_000_000 - 10 and len(agent["burst"]) == 10


KILLED_AFTER_FIRST_CHECKPOINT = """
import os, signal, sys
import torch
save = torch.save

def save_then_die(obj, path, *args, **kwargs):
    save(obj, path, *args, **kwargs)
    if str(path).endswith(".tmp%d" % os.getpid()):  # last.pt is complete once renamed
        replace = os.replace
        def replace_then_die(src, dst):
            replace(src, dst)
            os.kill(os.getpid(), signal.SIGKILL)
        os.replace = replace_then_die

torch.save = save_then_die
# A slow disk: the event writer's background thread takes a while for each record.
import time
from tensorboard.summary.writer import event_file_writer
write = event_file_writer.RecordWriter.write
def slow_write(self, data):
    time.sleep(0.05)
    write(self, data)
event_file_writer.RecordWriter.write = slow_write
from rlexp.train import main
sys.argv = ["rlexp.train", *sys.argv[1:]]
main()
"""


def test_a_run_killed_right_after_a_checkpoint_resumes_with_every_point_before_it(tmp_path):
    # SummaryWriter buffers points for minutes: unless they are flushed with the checkpoint,
    # a SIGKILL loses points the resumed run will not log again.
    args = ["agent=qnet", "env=toy", *TINY, "checkpoint.every_steps=200", "hydra.run.dir=run"]
    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER_FIRST_CHECKPOINT, *args],
                            cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert load_training_state(tmp_path / "run" / rundir.LAST)["loop"]["step"] == 200
    resumed = run_cli([*args, "resume=run"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    steps = sorted(s for s, _ in read_scalars(tmp_path / "run")["train/epsilon"])
    assert steps == list(range(100, 601, 100))


def test_a_run_shorter_than_a_log_interval_has_its_training_curves(tmp_path):
    run_in_process(["agent=qnet", "env=toy", "total_steps=600", "log.every_steps=1000",
              "eval.every_steps=0", "eval.episodes=2"], tmp_path / "run")
    scalars = read_scalars(tmp_path / "run")
    for tag in ("train/loss", "train/q_mean", "train/epsilon", "train/episode_return"):
        assert [s for s, _ in scalars[tag]] == [600], tag


# ----------------------------------------------------------- one process per directory


def test_runs_started_at_the_same_moment_never_share_a_directory(tmp_path):
    # Every command names the same new run directory, as runs started in the same second do.
    same_name = ("hydra.run.dir='${claim_or_resume_run_dir:${resume},"
                 "outputs/runs/day/12-00-00_qnet-toy_seed9,${hydra.overrides.task}}'")
    commands = [[*TINY, "agent=qnet", "env=toy", "seed=9", f"optimizer.lr={lr}", same_name]
                for lr in ("0.001", "0.001", "0.002")]
    procs = [start_cli(args, tmp_path) for args in commands]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    dirs = sorted((tmp_path / "outputs/runs/day").iterdir())
    assert [d.name for d in dirs] == ["12-00-00_qnet-toy_seed9", "12-00-00_qnet-toy_seed9-2",
                                      "12-00-00_qnet-toy_seed9-3"]
    import yaml

    lrs = []
    for d in dirs:
        overrides = yaml.safe_load((d / ".hydra/overrides.yaml").read_text())
        config = yaml.safe_load((d / "config.yaml").read_text())
        assert f"optimizer.lr={config['optimizer']['lr']}" in overrides  # its own config
        assert len(list(d.glob("events.out.tfevents.*"))) == 1
        assert (d / "train.log").read_text().count("done qnet-toy seed 9") == 1
        assert read_metrics(d)["status"] == "completed"
        lrs.append(config["optimizer"]["lr"])
    assert sorted(lrs) == [0.001, 0.001, 0.002]


def test_a_second_process_aimed_at_a_directory_in_use_refuses_in_one_line(tmp_path):
    args = ["agent=qnet", "env=toy", "total_steps=200000", "log.every_steps=1000",
            "eval.every_steps=0", "eval.episodes=2", "hydra.run.dir=run"]
    first = start_cli(args, tmp_path)
    for line in first.stdout:
        if "starting ->" in line:
            break
    second = run_cli(args, cwd=tmp_path)
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert second.returncode == 2 and len(lines) == 1, second.stderr
    assert f"is in use by process {first.pid}" in lines[0]
    resumed = run_cli([*args, "resume=run"], cwd=tmp_path)  # resuming it now: refused too
    assert resumed.returncode == 2 and "is in use by process" in resumed.stderr
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=60)
    assert first.returncode == 130
    assert read_metrics(tmp_path / "run")["status"] == "interrupted"
    assert len(list((tmp_path / "run").glob("events.out.tfevents.*"))) == 1


def test_resume_true_skips_a_run_in_use_and_refuses_without_another(tmp_path):
    runs = tmp_path / "outputs" / "runs"
    run_dir = runs / "day" / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / rundir.LAST).write_bytes(b"x")
    (run_dir / rundir.HYDRA).mkdir()
    (run_dir / rundir.HYDRA / rundir.OVERRIDES).write_text("- seed=1\n")
    assert rundir.find_unfinished_run(runs, ["seed=1", "resume=true"]) == run_dir
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from rlexp import rundir; rundir.lock(sys.argv[1]); "
        "print('locked', flush=True); time.sleep(60)"), str(run_dir)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert rundir.in_use(run_dir)
        with pytest.raises(RunDirError, match="no unfinished run"):
            rundir.find_unfinished_run(runs, ["seed=1"])
    finally:
        holder.kill()
        holder.wait()
    assert not rundir.in_use(run_dir)  # a killed process holds nothing


# ---------------------------------------------------------------- sweeps stop and resume

SWEEP = ["-m", "agent=qnet", "env=toy", "optimizer.lr=0.1,0.2", "seed=0,1",
         "total_steps=800", "log.every_steps=100", "eval.every_steps=400", "eval.episodes=2",
         "checkpoint.every_steps=100", "env.variant=random"]


def summary(sweep: Path) -> list[dict]:
    with open(sweep / "summary.csv") as f:
        return list(csv.DictReader(f))


def only_sweep(cwd: Path) -> Path:
    (sweep,) = cwd.glob("outputs/multirun/*/*")
    return sweep


def test_a_killed_sweep_resumes_to_the_report_of_one_never_interrupted(tmp_path):
    (tmp_path / "a").mkdir()
    straight = run_cli(SWEEP, cwd=tmp_path / "a")
    assert straight.returncode == 0, straight.stdout[-2000:]
    expected = summary(only_sweep(tmp_path / "a"))

    (tmp_path / "b").mkdir()
    proc = start_cli(SWEEP, tmp_path / "b")
    deadline = time.time() + 120
    while True:  # kill it while its third run (or, on a slow poll, its fourth) trains
        done = list((tmp_path / "b").glob("outputs/multirun/*/*/*/metrics.json"))
        started = list((tmp_path / "b").glob(f"outputs/multirun/*/*/*/{rundir.LAST}"))
        if len(started) >= 3 and len(started) > len(done):
            break
        assert proc.poll() is None and time.time() < deadline, "the sweep ended unkilled"
        time.sleep(0.02)
    proc.kill()
    proc.communicate()
    sweep = only_sweep(tmp_path / "b")
    args = [a for a in SWEEP if a != "-m"]
    resumed = run_cli(["-m", *args, f"hydra.sweep.dir={sweep}", "resume=true"],
                      cwd=tmp_path / "b")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    names = sorted(p.name for p in sweep.iterdir() if rundir.is_run(p))
    assert len(names) == 4 and not any("resume" in n for n in names)
    statuses = [read_metrics(sweep / n) for n in names]
    assert all(m["status"] == "completed" for m in statuses)
    assert sum(m["resumed_from_step"] is not None for m in statuses) == 1  # the killed one
    assert summary(sweep) == expected
    for name in names:  # every run's curves, bit for bit
        assert curves(sweep / name) == curves(only_sweep(tmp_path / "a") / name)
    # Nothing left to do: resuming again, typed in another order, keeps every run as it is.
    again = run_cli(["-m", *args[::-1], f"hydra.sweep.dir={sweep}", "resume=true"],
                    cwd=tmp_path / "b")
    assert again.returncode == 0
    assert (again.stdout + again.stderr).count("completed before, kept as it is") == 4
    assert sorted(p.name for p in sweep.iterdir() if rundir.is_run(p)) == names
    assert [read_metrics(sweep / n) for n in names] == statuses


def test_resuming_a_sweep_restarts_failed_runs_only_when_asked(tmp_path):
    args = ["-m", "agent=qnet", "env=gym", "env.id=tests.faulty_env:Faulty-v0", "seed=0,1",
            "total_steps=300", "log.every_steps=100", "eval.every_steps=0", "eval.episodes=2"]
    env = {"PYTHONPATH": str(REPO)}
    first = run_cli(args, cwd=tmp_path, env=env)
    assert first.returncode == 1
    sweep = only_sweep(tmp_path)
    failed = next(p for p in sweep.iterdir() if "seed=1" in p.name)
    ok = next(p for p in sweep.iterdir() if "seed=0" in p.name)
    ok_bytes = (ok / "metrics.json").read_bytes()
    kept = run_cli([*args, f"hydra.sweep.dir={sweep}", "resume=true"], cwd=tmp_path, env=env)
    assert kept.returncode == 1 and read_metrics(failed)["status"] == "failed"
    assert not (failed / rundir.ATTEMPTS).exists()
    retried = run_cli([*args, f"hydra.sweep.dir={sweep}", "resume=true", "retry_failed=true"],
                      cwd=tmp_path, env=env)
    assert retried.returncode == 1  # seed 1 crashes again: the env always does
    (attempt,) = (failed / rundir.ATTEMPTS).iterdir()  # the first attempt, kept
    assert read_metrics(attempt)["status"] == "failed"
    assert (ok / "metrics.json").read_bytes() == ok_bytes  # the completed run untouched


def test_resume_true_in_a_sweep_needs_the_sweep_dir(tmp_path):
    result = run_cli(["-m", "seed=0,1", "resume=true"], cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "name its directory with hydra.sweep.dir=" in result.stderr
    assert not (tmp_path / "outputs").exists()


def interrupt_group_at_20_percent(args: list[str], cwd: Path) -> tuple[int, str]:
    """As a terminal's Ctrl-C does: SIGINT to every process of the command's group."""
    proc = subprocess.Popen([sys.executable, "-m", "rlexp.train", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.time() + 120
    # submitit's jobs log into their own files only, so look there too.
    while not any("(20%)" in line for line in list(lines)) and not any(
            "(20%)" in log.read_text() for log in cwd.glob("outputs/multirun/*/*/*/train.log")):
        assert proc.poll() is None and time.time() < deadline, "".join(lines)
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=120)
    reader.join(timeout=10)
    out = "".join(lines)
    return proc.returncode, out


# The parallel launcher's Ctrl-C in the default suite: test_population (while its workers
# start); here in the slow checks, with the local cluster's.
@pytest.mark.parametrize("launcher", [
    "basic", pytest.param("parallel", marks=pytest.mark.slow),
    pytest.param("local_cluster", marks=pytest.mark.slow)])
def test_ctrl_c_on_a_sweep_ends_with_how_to_resume_it_and_resuming_finishes_it(tmp_path,
                                                                             launcher):
    args = ["-m", "agent=qnet", "env=toy", "seed=0,1,2", "total_steps=1500",
            "log.every_steps=150", "eval.every_steps=0", "eval.episodes=2"]
    if launcher == "parallel":
        args += ["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"]
    if launcher == "local_cluster":
        args += ["hydra/launcher=local_cluster", "total_steps=6000", "log.every_steps=600"]
    returncode, out = interrupt_group_at_20_percent(args, tmp_path)
    assert returncode == 130, out
    assert "Traceback" not in out and "leaked" not in out, out
    sweep = only_sweep(tmp_path)
    assert "the sweep was stopped by SIGINT; continue it with:" in out
    command = out.split("continue it with:\n")[1].splitlines()[0].strip()
    assert command.endswith(f"hydra.sweep.dir={sweep.relative_to(tmp_path)} resume=true")
    # Every run that did not complete is listed, with its status.
    runs = {p.name.split("seed=")[1].split(",")[0]: p for p in sweep.iterdir() if rundir.is_run(p)}
    for seed, run in runs.items():
        status = rundir.status(run) or "unfinished"
        assert status in ("interrupted", "unfinished"), (seed, status)
        assert f"{run.name}: {status}" in out
    interrupted = [r for r in runs.values() if rundir.status(r) == "interrupted"]
    assert interrupted and all((r / rundir.LAST).is_file() for r in interrupted)
    assert not (sweep / rundir.SWEEP_STOP).exists()

    resumed = run_cli(shlex.split(command)[3:], cwd=tmp_path)  # after "python -m rlexp.train"
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    for run in sweep.iterdir():
        if rundir.is_run(run):
            assert read_metrics(run)["status"] == "completed"
    assert all(read_metrics(r)["resumed_from_step"] > 0 for r in interrupted)


def test_a_report_that_fails_makes_the_sweep_fail_in_one_line(tmp_path):
    # summary.md cannot be written: a directory is in its way.
    sweep = tmp_path / "sweep"
    (sweep / "summary.md").mkdir(parents=True)
    result = run_cli(["-m", "agent=qnet", "env=toy", "seed=0", *TINY,
                      f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert result.returncode == 1
    assert "rlexp: error: the sweep report failed: " in result.stderr
    assert "Traceback" not in result.stderr


def test_the_report_reads_a_run_whose_first_record_is_missing(tmp_path):
    from rlexp import report

    run = fake_run(tmp_path, "a", ["seed=0", "optimizer.lr=0.1"], final=3.0)
    resume_record = run / ".hydra" / "resume_2026-01-01_00-00-00"
    resume_record.mkdir()
    (run / ".hydra" / "overrides.yaml").rename(resume_record / "overrides.yaml")
    (loaded,) = report.load_runs(tmp_path)
    assert loaded.overrides == ["seed=0", "optimizer.lr=0.1"]
