"""Fault injection: signals, SIGKILL mid-write, divergence, bad files, unwritable or full disks
and malformed command lines. Each test causes the fault and checks that nothing already written
is lost, that the error says what happened, and that the run can be picked up again."""

import contextlib
import errno
import io
import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlexp import rundir, runner, train
from rlexp.checkpoint import load_training_state
from rlexp.metrics import read_metrics
from rlexp.stop import StopSignals
from tests import zygote
from tests.conftest import (
    REPO,
    TINY,
    TINY_DQN,
    compose_config,
    curves,
    options,
    read_scalars,
    run_cli,
    start_cli,
)

# A DQN run on CartPole that learns from step 100 and checkpoints every 400 steps.
DQN_RUN = ["agent=dqn", "env=cartpole", "device=cpu", *TINY, *TINY_DQN, "total_steps=1200",
           "checkpoint.every_steps=400"]


def interrupt_at_20_percent(args: list[str], cwd: Path, signum: int = signal.SIGINT
                            ) -> tuple[int, str]:
    """Start ``python -m rlexp.train ARGS``, send ``signum`` once its plain progress lines (one
    every 10% of the run) reach 20%, and return its exit status and output."""
    proc = start_cli(args, cwd)
    for line in proc.stdout:
        if "(20%)" in line:
            proc.send_signal(signum)
            break
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline
        time.sleep(0.01)


# ------------------------------------------------------------------------------ interruption


# SIGTERM takes the same path: tests/test_reliability.py sends it in the middle of an evaluation.
@pytest.mark.parametrize("signum", [signal.SIGINT])
def test_a_signal_stops_the_run_with_its_checkpoint_and_resume_finishes_it(tmp_path, signum):
    args = ["agent=qnet", "env=toy", "device=cpu", "total_steps=2000", "log.every_steps=100",
            "eval.every_steps=0", "eval.episodes=2", "checkpoint.every_steps=0",
            "hydra.run.dir=run"]
    returncode, out = interrupt_at_20_percent(args, tmp_path, signum)
    assert returncode == 128 + signum, out
    run_dir = tmp_path / "run"
    metrics = read_metrics(run_dir)
    stopped_at = metrics["env_steps"]
    name = signal.Signals(signum).name
    assert metrics["status"] == "interrupted" and 400 <= stopped_at < 2000
    assert metrics["error"] == f"interrupted by {name} at step {stopped_at}"
    assert f"resume={run_dir}" in out  # the log says how to continue
    assert load_training_state(run_dir / rundir.LAST)["loop"]["step"] == stopped_at
    # TensorBoard was flushed: every log point up to the stop is there, and the point of the
    # partial interval when the stop fell between two (the signal lands a few steps after the
    # 20% line, more on a loaded machine).
    steps = [s for s, _ in read_scalars(run_dir)["train/epsilon"]]
    assert steps == list(range(100, stopped_at + 1, 100)) + (
        [stopped_at] if stopped_at % 100 else [])

    resumed = run_cli([*args, "resume=run"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["resumed_from_step"] == stopped_at
    assert metrics["env_steps"] == 2000
    steps = [s for s, _ in read_scalars(run_dir)["train/epsilon"]]
    assert steps == list(range(100, 2001, 100))


def test_resume_after_a_signal_at_a_random_step_reproduces_the_uninterrupted_curves(
        tmp_path, monkeypatch):
    """Bit for bit, on CPU: replay buffer, RNGs, optimizer, loop counters and the envs' state
    (the episodes in progress) are all in the checkpoint."""
    from rlexp.agents.dqn import DQNAgent

    straight = tmp_path / "straight"
    straight.mkdir()
    expected = runner.run(compose_config(DQN_RUN), straight)
    learn = DQNAgent.learn
    for step in random.Random(0).sample(range(1, 1200), 2):
        run_dir = tmp_path / f"stopped_at_{step}"
        run_dir.mkdir()

        def interrupt_at(self, batch, should_stop=None, step=step):
            if self.env_steps == step - 1:
                os.kill(os.getpid(), signal.SIGINT)  # a real signal, handled by StopSignals
            return learn(self, batch, should_stop)

        monkeypatch.setattr(DQNAgent, "learn", interrupt_at)
        with StopSignals() as stop:
            stopped = runner.run(compose_config(DQN_RUN), run_dir, stop)
        monkeypatch.setattr(DQNAgent, "learn", learn)
        assert stopped.status == "interrupted" and stopped.env_steps == step
        assert load_training_state(run_dir / rundir.LAST)["loop"]["env_state"] is not None

        resumed = runner.run(compose_config([*DQN_RUN, f"resume={run_dir}"]), run_dir)
        assert resumed.status == "completed" and resumed.resumed_from_step == step
        assert curves(run_dir) == curves(straight)
        assert resumed.eval_return_mean == expected.eval_return_mean
        final = load_training_state(run_dir / rundir.FINAL)["agent"]["q_net"]
        for name, weights in load_training_state(straight / rundir.FINAL)["agent"][
                "q_net"].items():
            assert torch.equal(final[name], weights)


KILLED_MID_WRITE = """
import os, signal, sys
import torch
save, calls = torch.save, []

def save_then_die(obj, path, *args, **kwargs):
    calls.append(path)
    if len(calls) == 3:  # the third checkpoint: half a file, then SIGKILL
        save(obj, path)
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    save(obj, path, *args, **kwargs)

torch.save = save_then_die
from rlexp.train import main
sys.argv = ["rlexp.train", *sys.argv[1:]]
main()
"""


def test_sigkill_during_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    args = ["agent=dqn", "env=cartpole", "device=cpu", *TINY, *TINY_DQN, "total_steps=1500",
            "checkpoint.every_steps=300", "hydra.run.dir=run"]
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, *args], cwd=tmp_path,
                            capture_output=True, text=True, env={**os.environ,
                                                                 "PYTHONPATH": str(REPO)})
    assert killed.returncode == -signal.SIGKILL
    run_dir = tmp_path / "run"
    (partial,) = (run_dir / "checkpoints").glob(".last.pt.tmp*")  # the half-written file
    assert load_training_state(run_dir / rundir.LAST)["loop"]["step"] == 600
    assert not (run_dir / "metrics.json").exists()

    resumed = run_cli([*args, "resume=run"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["resumed_from_step"] == 600
    assert not partial.exists()
    steps = [s for s, _ in read_scalars(run_dir)["train/epsilon"]]
    assert steps == list(range(100, 1600, 100))


def test_sigkill_at_random_moments_leaves_a_loadable_checkpoint(tmp_path):
    args = ["agent=dqn", "env=cartpole", "device=cpu", *TINY, *TINY_DQN, "total_steps=400000",
            "checkpoint.every_steps=100", "hydra.run.dir=run", "train.stop_on_return=null"]
    rng = random.Random(1)
    last = tmp_path / "run" / rundir.LAST
    steps = []
    for attempt in range(3):
        proc = start_cli(args if attempt == 0 else [*args, "resume=run"], tmp_path)
        # Every kill lands after this attempt wrote a checkpoint of its own.
        before = last.stat().st_mtime_ns if last.exists() else 0
        wait_for(lambda before=before: last.exists() and last.stat().st_mtime_ns > before, proc)
        time.sleep(rng.uniform(0.0, 1.0))
        proc.kill()
        proc.communicate()
        state = load_training_state(last)  # whatever the moment, the checkpoint loads
        steps.append(state["loop"]["step"])
    assert steps == sorted(steps) and steps[0] > 0 and steps[-1] > steps[0]  # each went on


# -------------------------------------------------------------------------------- divergence


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    # Learning starts at step 500; checkpoints at 200 and 400 are from before it.
    args = ["agent=dqn", "env=cartpole", "device=cpu", "optimizer=sgd", "optimizer.lr=1e6",
            "agent.learning_starts=500", "agent.train_freq=4", "agent.batch_size=32",
            "agent.n_step=1",  # the first update at step 500 exactly
            "total_steps=3000", "checkpoint.every_steps=200", "eval.every_steps=0",
            "log.every_steps=100", "eval.episodes=2", "hydra.run.dir=run"]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 1
    metrics = read_metrics(tmp_path / "run")
    assert metrics["status"] == "diverged"
    step = metrics["env_steps"]
    assert 500 <= step <= 700
    assert f"at step {step}" in metrics["error"]
    assert "likely cause: optimizer.lr=1e+06 is too high" in metrics["error"]
    assert "checkpoints/last.pt is the last good checkpoint" in metrics["error"]
    assert f"run diverged: {metrics['error']}" in result.stdout + result.stderr
    state = load_training_state(tmp_path / "run" / rundir.LAST)
    assert state["loop"]["step"] == (step - 1) // 200 * 200  # the last checkpoint before it
    assert all(torch.isfinite(w).all() for w in state["agent"]["q_net"].values())
    assert not (tmp_path / "run" / rundir.FINAL).exists()
    # The partial interval up to the divergence is logged, the non-finite update left out.
    scalars = read_scalars(tmp_path / "run")
    assert scalars["train/epsilon"][-1][0] == step
    assert all(torch.isfinite(torch.tensor(v)) for _, v in scalars.get("train/loss", []))


# --------------------------------------------------------------------------------- bad files


@pytest.fixture
def unfinished_run(tmp_path) -> Path:
    """A run dir whose process was killed after its checkpoint at step 400."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    runner.run(compose_config([*DQN_RUN, "total_steps=400"]), run_dir)
    (run_dir / "metrics.json").unlink()
    (run_dir / rundir.FINAL).unlink()
    return run_dir


def snapshot_files(run_dir: Path) -> dict:
    return {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def assert_unchanged(before: dict) -> None:
    """Every file that was there is still there, byte for byte (a refused resume may add
    Hydra's record of its own launch, and a line to train.log)."""
    for path, data in before.items():
        assert path.read_bytes() == data, path


def resume_cli(run_dir: Path, extra: list[str] = ()) -> subprocess.CompletedProcess:
    return run_cli([*DQN_RUN, "total_steps=400", *extra, f"resume={run_dir}"],
                   cwd=run_dir.parent)


def assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("rlexp: error: "), result.stderr
    assert fragment in lines[0], lines[0]


def test_a_truncated_checkpoint_is_refused_and_left_as_it_is(unfinished_run):
    last = unfinished_run / rundir.LAST
    last.write_bytes(last.read_bytes()[:1000])
    before = snapshot_files(unfinished_run)
    assert_one_line_error(resume_cli(unfinished_run), "is truncated or corrupt")
    assert_unchanged(before)


def test_a_corrupted_checkpoint_is_refused(unfinished_run):
    last = unfinished_run / rundir.LAST
    data = bytearray(last.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = os.urandom(64)
    last.write_bytes(bytes(data))
    before = snapshot_files(unfinished_run)
    result = resume_cli(unfinished_run)
    assert_one_line_error(result, "is truncated or corrupt")
    assert_unchanged(before)


def test_a_checkpoint_of_another_network_is_refused(unfinished_run, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    runner.run(compose_config([*DQN_RUN, "total_steps=400", "agent.network.hidden=[64]"]), other)
    (unfinished_run / rundir.LAST).write_bytes((other / rundir.LAST).read_bytes())
    before = snapshot_files(unfinished_run)
    assert_one_line_error(resume_cli(unfinished_run), "does not fit this config's agent")
    assert_unchanged(before)


def test_a_directory_that_is_not_a_run_is_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    result = run_cli([*DQN_RUN, f"resume={tmp_path / 'notes'}"], cwd=tmp_path)
    assert_one_line_error(result, "is not an unfinished rlexp run")
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["todo.txt"]
    evaluation = zygote.run("rlexp.evaluate", [f"run_dir={tmp_path / 'notes'}"], REPO)
    assert evaluation.returncode == 2 and "is not an rlexp run directory" in evaluation.stderr


# ----------------------------------------------------------------------- disks that say no


@pytest.mark.parametrize("where", ["/proc/rlexp-run", "file/run"])
def test_an_unwritable_output_dir_fails_before_training(tmp_path, where):
    (tmp_path / "file").write_text("a file where a directory would go")
    result = run_cli(["agent=qnet", "env=toy", *TINY, f"hydra.run.dir={where}"], cwd=tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("rlexp: error: cannot write the output directory")
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


def test_a_full_disk_during_the_run_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save, calls = torch.save, []

    def disk_full_on_third_save(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            Path(path).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full_on_third_save)
    with pytest.raises(rundir.WriteError, match=r"could not write \S+last.pt: No space left on "
                       r"device \(.* free on its disk\); the previous last.pt, if any, is kept"):
        runner.run(compose_config(DQN_RUN), run_dir)
    assert load_training_state(run_dir / rundir.LAST)["loop"]["step"] == 800
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.pt"]
    monkeypatch.setattr(torch, "save", save)  # the disk has room again: the run resumes
    resumed = runner.run(compose_config([*DQN_RUN, f"resume={run_dir}"]), run_dir)
    assert resumed.status == "completed" and resumed.resumed_from_step == 800


@pytest.mark.parametrize("writer", ["metrics", "report"])
def test_a_full_disk_while_writing_metrics_or_a_report_names_the_file_and_free_space(
        tmp_path, monkeypatch, writer):
    from rlexp.metrics import RunMetrics, write_metrics

    (tmp_path / "metrics.json").write_text("{}")  # what was there before stays

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", no_space)
    with pytest.raises(rundir.WriteError) as caught:
        if writer == "metrics":
            write_metrics(tmp_path, RunMetrics(status="completed"))
        else:
            rundir.atomic_write(tmp_path / "summary.md", lambda tmp: tmp.write_text("table"))
    name = "metrics.json" if writer == "metrics" else "summary.md"
    assert re.fullmatch(rf"could not write {tmp_path}/{name}: No space left on device "
                        rf"\([0-9.]+ [kMG]?B(ytes)? free on its disk\); the previous {name}, if "
                        "any, is kept", str(caught.value))
    assert (tmp_path / "metrics.json").read_bytes() == b"{}"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left


def test_a_full_disk_is_reported_in_one_line_and_in_metrics(tmp_path):
    """A real write failure: the process may not write files over 100 kB (RLIMIT_FSIZE), so the
    checkpoint with a growing replay buffer (48 bytes a transition) fails part way through."""
    import resource

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of dying
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    args = ["agent=dqn", "env=cartpole", "device=cpu", *TINY, *TINY_DQN, "total_steps=20000",
            "agent.buffer_size=20000", "checkpoint.every_steps=500", "eval.every_steps=0",
            "hydra.run.dir=run", "train.stop_on_return=null"]
    result = subprocess.run([sys.executable, "-m", "rlexp.train", *args], cwd=tmp_path,
                            capture_output=True, text=True, preexec_fn=limit_file_size)
    assert result.returncode == 1
    log = result.stdout + result.stderr
    # One line on the console, naming the file and its disk's free space; the traceback is in
    # train.log only.
    assert "Traceback" not in log
    assert re.search(r"run failed: could not write \S+/checkpoints/last.pt: .* free on its "
                     r"disk\); the previous last.pt, if any, is kept", log)
    assert "Traceback" in (tmp_path / "run" / "train.log").read_text()
    metrics = read_metrics(tmp_path / "run")
    assert metrics["status"] == "failed" and "could not write" in metrics["error"]
    step = load_training_state(tmp_path / "run" / rundir.LAST)["loop"]["step"]
    assert 500 <= step < 20000


@pytest.fixture
def small_disk(tmp_path):
    """A 150 kB tmpfs mounted at ``tmp_path / "disk"`` (root only), unmounted after the test;
    yields a function that grows it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=150k", "tmpfs", str(disk)],
            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (the injected-error tests above cover it)")

    def grow():
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)

    try:
        yield disk, grow
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_real_full_disk_fails_in_one_line_and_the_run_resumes_once_it_has_room(small_disk):
    """A run dir on a 150 kB tmpfs, which the replay memory in the checkpoints (52 bytes a
    transition) outgrows. One console line names the file and the free space; the exit is
    non-zero; the traceback is in train.log; once the disk has room, ``resume=RUN_DIR``
    finishes the run from the last checkpoint that was written."""
    disk, grow = small_disk
    run_dir = disk / "run"
    args = ["agent=dqn", "env=cartpole", "device=cpu", *TINY, *TINY_DQN, "total_steps=3000",
            "agent.buffer_size=3000", "checkpoint.every_steps=500", "eval.every_steps=0",
            "train.stop_on_return=null"]
    result = run_cli([*args, f"hydra.run.dir={run_dir}"], cwd=disk.parent)
    assert result.returncode == 1
    console = result.stdout + result.stderr
    lines = [ln for ln in console.splitlines() if "could not write" in ln]
    assert len(lines) == 1 and "Traceback" not in console, console[-3000:]
    # torch's writer says "the write failed part way", a plain write "No space left on device"
    assert re.search(r"could not write \S+/last.pt: .* \([0-9.]+ \w+ free on its "
                     r"disk\); the previous last.pt, if any, is kept", lines[0]), lines[0]
    assert "Traceback" in (run_dir / "train.log").read_text()
    step = load_training_state(run_dir / rundir.LAST)["loop"]["step"]
    assert 500 <= step < 3000
    grow()
    resumed = run_cli([f"resume={run_dir}"], cwd=disk.parent)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["resumed_from_step"] == step


# ------------------------------------------------------------------------ bad command lines

BAD_COMMAND_LINES = [
    # (arguments, a fragment the one error line must contain)
    (["agent=foo"], "agent=foo is not an option of agent; choose one of: "
     + ", ".join(options("agent"))),
    (["env=nope"], "env=nope is not an option of env"),
    (["optimizer=rmsdrop"], "optimizer=rmsdrop is not an option of optimizer"),
    (["device=tpu"], "device=tpu is not an option of device"),
    (["experiment=nope"], "experiment=nope is not an option of experiment"),
    (["hparams_search=nope"], "hparams_search=nope is not an option of hparams_search"),
    (["agent="], "agent= is not an option of agent"),
    (["agent.foo=1"], "unknown key 'agent.foo'; allowed here: name, gamma"),
    (["+agent.foo=1"], "unknown key 'agent.foo'"),
    (["+bogus=1"], "unknown key 'bogus'; allowed here: agent, checkpoint"),
    (["--foo"], "unknown option --foo"),
    (["optimizer.lr=abc"], "optimizer.lr=abc: Value 'abc' of type 'str' could not be converted"),
    (["optimizer.lr=[1,2]"], "optimizer.lr=[1,2]: Value '[1, 2]' of type 'list'"),
    (["optimizer.lr=-1"], "optimizer.lr=-1.0 must be > 0"),
    (["optimizer.lr=0"], "optimizer.lr=0.0 must be > 0"),
    (["optimizer.lr=inf"], "optimizer.lr=inf must be > 0 and finite"),
    (["optimizer.betas=[0.9]"], "optimizer.betas=[0.9] must be two values in [0, 1)"),
    (["agent.gamma=1.5"], "agent.gamma=1.5 must be in [0, 1]"),
    (["agent.gamma=nan"], "agent.gamma=nan must be in [0, 1]"),
    (["agent.gamma="], "agent.gamma=: Value '' of type 'str' could not be converted to Float"),
    (["agent.tau=2"], "agent.tau=2.0 must be in (0, 1]"),
    (["agent.batch_size=0"], "agent.batch_size=0 must be positive"),
    (["agent.network.hidden=[0]"], "agent.network.hidden=[0]: widths must be positive"),
    (["agent.network.activation=foo"], "agent.network.activation='foo' is not one of"),
    (["agent.loss=l3"], "agent.loss='l3' is not one of mse, huber"),
    (["agent.epsilon.start=2"], "agent.epsilon.start=2.0 must be in [0, 1]"),
    (["agent.buffer_size=1000000000000"], "agent does not fit in cpu memory "
                                          "(agent.buffer_size=1000000000000)"),
    (["total_steps=0"], "total_steps=0 must be between 1 and 1e+12"),
    (["total_steps=1e999"], "total_steps=1e999: Value 'inf' of type 'float' could not be "
                            "converted to Integer"),
    (["total_steps=99999999999999999999999"], "total_steps=99999999999999999999999 must be"),
    (["seed=-1"], "seed=-1 must be >= 0"),
    (["seed=abc"], "seed=abc: Value 'abc' of type 'str' could not be converted to Integer"),
    (["eval.episodes=0"], "eval.episodes=0 must be positive"),
    (["eval.every_steps=-1"], "eval.every_steps=-1 must be >= 0"),
    (["log.every_steps=0"], "log.every_steps=0 must be positive"),
    (["checkpoint.every_steps=-1"], "checkpoint.every_steps=-1 must be >= 0"),
    (["train.max_abs_q=0"], "train.max_abs_q=0.0 must be > 0 or null"),
    (["device.threads=-1"], "device.threads=-1 must be >= 0"),
    (["env.num_envs=0"], "env.num_envs=0 must be positive"),
    (["env.max_steps=0"], "env.max_steps=0 must be positive or null"),
    (["env=toy", "env.variant=foo"], "env.variant='foo' is not one of chain, random"),
    (["env=gym"], "env.id is required"),
    (["env=gym", "env.id=NoSuchEnv-v0"], "env.id='NoSuchEnv-v0' could not be made"),
    (["env=gym", "env.id=Pendulum-v1"],
     "rlexp's agents choose among discrete actions: Discrete(n) only"),
    (["optimizer._target_=builtins.eval"], "optimizer._target_='builtins.eval' is not allowed"),
    (["optimizer._target_=os.system"], "optimizer._target_='os.system' is not allowed"),
    (["optimizer._target_=torch.optim.lr_scheduler.StepLR"], "is not allowed: name a "
                                                             "torch.optim optimizer"),
    (["run_name=../../escape"], "run_name='../../escape' is not allowed"),
    (["run_name=/etc/passwd"], "run_name='/etc/passwd' is not allowed"),
    (["run_name="], "run_name='' is not allowed"),
    (["run_name=x;rm -rf ~"], "cannot parse the override 'run_name=x;rm -rf ~'"),
    (["run_name=$(touch pwned)"], "cannot parse the override 'run_name=$(touch pwned)'"),
    (["run_name=\"a;b\""], "run_name='a;b' is not allowed"),
    (["run_name=ünïcödé"], "cannot parse the override 'run_name=ünïcödé'"),
    (["agënt=dqn"], "cannot parse the override 'agënt=dqn'"),
    (["run_name=" + "x" * 101], "is not allowed: use up to 100 letters"),
    (["resume=/nonexistent"], "/nonexistent is not an unfinished rlexp run"),
]
if not torch.cuda.is_available():
    BAD_COMMAND_LINES.append((["device=cuda"], "device=cuda: CUDA is not available"))


def run_main_in_process(args: list[str], monkeypatch) -> tuple[int, str]:
    """``python -m rlexp.train ARGS`` through the same main(), without a new interpreter."""
    monkeypatch.setattr(sys, "argv", ["rlexp.train", *args])
    # main() sets this for Hydra; undone after the test, so that later subprocesses do not
    # inherit it and print tracebacks.
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    err = io.StringIO()
    loggers = [logging.getLogger(), logging.getLogger("rlexp")]
    before = [list(logger.handlers) for logger in loggers]
    try:
        with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
            train.main()
    finally:  # Hydra's handlers of this job (its train.log) must not outlive the test
        for logger, handlers in zip(loggers, before, strict=True):
            for handler in set(logger.handlers) - set(handlers):
                logger.removeHandler(handler)
                handler.close()
    return exit_info.value.code, err.getvalue()


@pytest.mark.parametrize("args,fragment", BAD_COMMAND_LINES,
                         ids=[" ".join(a)[:40] for a, _ in BAD_COMMAND_LINES])
def test_a_malformed_command_line_gets_one_line_and_leaves_no_run(tmp_path, monkeypatch, args,
                                                                  fragment):
    monkeypatch.chdir(tmp_path)
    code, stderr = run_main_in_process(
        [*args, *(["total_steps=100"] if not any("total_steps" in a for a in args) else [])],
        monkeypatch)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("rlexp: error: "), stderr
    assert fragment in lines[0], lines[0]
    # No directory is left that looks like a run, and nothing escaped outputs/.
    assert not list(tmp_path.rglob("metrics.json")) and not list(tmp_path.rglob(".hydra"))
    assert not list(tmp_path.rglob("events.out.tfevents.*"))
    assert {p.name for p in tmp_path.iterdir()} <= {"outputs"}
    assert not Path("/etc/passwd_seed0").exists()


@pytest.mark.slow  # 15 s; the default suite keeps the single-run signal tests
def test_an_interrupted_several_seed_job_continues_in_its_directory(tmp_path):
    args = ["agent=qnet", "env=toy", "seeds=2", "total_steps=2000", "log.every_steps=100",
            "eval.every_steps=0", "eval.episodes=2", "hydra.run.dir=job"]
    returncode, out = interrupt_at_20_percent(args, tmp_path)
    assert returncode == 130 and f"hydra.run.dir={tmp_path / 'job'}" in out
    stopped_at = [read_metrics(tmp_path / "job" / f"seed{s}")["env_steps"] for s in (0, 1)]
    # The same command: both seeds (a population split over worker processes, each part
    # stopped where it was) resume from where they stopped.
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-2000:]
    for s, step in zip((0, 1), stopped_at, strict=True):
        metrics = read_metrics(tmp_path / "job" / f"seed{s}")
        assert metrics["status"] == "completed" and 0 < step < 2000
        assert metrics["resumed_from_step"] == step
