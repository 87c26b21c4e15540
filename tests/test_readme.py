"""Every command of the README's Quickstart, as written there.

The default suite runs each with its budget shrunk and needs it to succeed; a command whose
README comment promises an outcome (``# ... eval return >= X``) runs with its own budget in the
slow suite and must deliver it."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.conftest import REPO, run_cli, run_in_process, shrunk

#: Appended to every training command: a few hundred steps, short evaluations.
SHRINK = ["total_steps=600", "eval.episodes=2", "eval.max_episode_steps=200",
          "checkpoint.every_steps=0", "device=cpu"]
PROMISE = re.compile(r"eval return >= (-?[\d.]+)")
#: A sweep's seeds (a list or a range): more than one multiplies its runs, not what they test.
SEED_SWEEP = re.compile(r"^seed=(range\(\d+\)|\d+(,\d+)+)$")


def quickstart() -> list[tuple[list[str], float | None]]:
    """(rlexp.train arguments, the promised final eval return or None) per Quickstart command;
    ``make train``/``make sweep`` become the commands they run."""
    text = (REPO / "README.md").read_text()
    block = text.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        code, _, comment = line.partition(" # ")
        words = shlex.split(code.strip()) if code.strip() and not code.startswith("#") else []
        promise = PROMISE.search(comment)
        target = float(promise.group(1)) if promise else None
        if words[:3] == [".venv/bin/python", "-m", "rlexp.train"]:
            commands.append((words[3:], target))
        elif words[:2] == ["make", "train"]:
            commands.append((shlex.split(words[2].removeprefix("ARGS=")), target))
        elif words[:2] == ["make", "sweep"]:
            commands.append((["-m", "hydra/launcher=parallel",
                              *shlex.split(words[2].removeprefix("ARGS="))], target))
    return commands


COMMANDS = quickstart()
IDS = [" ".join(args) or "(no arguments)" for args, _ in COMMANDS]


def test_the_quickstart_has_its_commands():
    assert len(COMMANDS) >= 10 and any(t is not None for _, t in COMMANDS)


@pytest.mark.parametrize("args,target", COMMANDS, ids=IDS)
def test_every_quickstart_command_runs_as_written(tmp_path, args, target, monkeypatch):
    if "--help" in args or "--cfg" in args:
        result = run_cli(args, cwd=tmp_path)
        assert result.returncode == 0 and result.stdout.strip(), result.stderr
    elif "-m" in args:  # a sweep, each run shrunk, one seed; it ends with its report
        args = [SEED_SWEEP.sub("seed=0", a) for a in args]
        result = run_cli([*args, *SHRINK], cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "report: " in result.stdout
    else:
        monkeypatch.chdir(tmp_path)  # where a user's outputs/ (MLflow's store) would be
        metrics = run_in_process(shrunk([*args, *SHRINK]), tmp_path / "run")
        assert metrics.status == "completed" and metrics.env_steps == 600


@pytest.mark.slow
@pytest.mark.parametrize("args,target", [(a, t) for a, t in COMMANDS if t is not None],
                         ids=[i for i, (_, t) in zip(IDS, COMMANDS, strict=True)
                              if t is not None])
def test_quickstart_commands_deliver_what_they_promise(tmp_path, args, target):
    metrics = run_in_process([*args, "device=cpu"], tmp_path / "run")
    assert metrics.status == "completed" and metrics.eval_return_mean >= target
