"""`python -m rlexp.train` as a user runs it: a real run, and bad input refused in one line."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, TINY, TINY_DQN, options, read_scalars, run_cli

# A few bad command lines through a real interpreter; tests/test_faults.py checks many more
# through the same main() in-process.
BAD_INPUT = [
    # (command-line arguments, a fragment the one error line must contain)
    (["agent=foo"], "agent=foo is not an option of agent; choose one of: "
     + ", ".join(options("agent"))),
    (["optimizer.lr=-1"], "optimizer.lr=-1.0 must be > 0"),
    (["env=gym", "env.id=NoSuchEnv-v0"], "env.id='NoSuchEnv-v0' could not be made"),
    (["run_name=../../escape"], "run_name='../../escape' is not allowed"),
    (["seed=0,1"], "to sweep over it, add --multirun (-m)"),
]


@pytest.mark.parametrize("args,fragment", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_exits_nonzero_with_one_line_and_no_run(tmp_path, args, fragment):
    result = run_cli([*args, "total_steps=100"], cwd=tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert lines == [lines[0]] and lines[0].startswith("rlexp: error: "), result.stderr
    assert fragment in lines[0]
    # Nothing was trained and no directory is left that looks like a run (or escaped outputs/).
    assert not list(tmp_path.rglob("events.out.tfevents.*"))
    assert not list(tmp_path.rglob(".hydra")) and not list(tmp_path.rglob("metrics.json"))
    assert {p.name for p in tmp_path.iterdir()} <= {"outputs"}


def test_full_error_shows_the_traceback(tmp_path):
    result = run_cli(["optimizer.lr=-1"], cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_a_run_from_the_command_line_writes_its_run_dir(tmp_path):
    args = ["agent=qnet", "env=toy", "optimizer=sgd", "device=cpu", *TINY, "seed=3"]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Default location: outputs/runs/<date>/<time>_<agent>-<env>_seed<seed>
    (run_dir,) = (tmp_path / "outputs/runs").glob("*/*_qnet-toy_seed3")
    assert {".hydra", "config.yaml", "metrics.json", "checkpoints", "train.log"} <= {
        p.name for p in run_dir.iterdir()}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["seed"] == 3
    final_eval = read_scalars(run_dir)["eval/return_mean"][-1][1]
    assert final_eval == pytest.approx(metrics["eval_return_mean"])
    # The console's closing summary line, also kept in train.log.
    log = (run_dir / "train.log").read_text()
    assert f"done qnet-toy seed 3 | eval return {metrics['eval_return_mean']:.2f}" in log
    # Not a terminal: plain progress lines every 10% instead of a bar.
    assert "step 300/600 (50%) | last training episode's return" in log and "ETA" in log


def test_a_job_of_several_seeds_is_named_after_all_of_them(tmp_path):
    result = run_cli(["agent=qnet", "env=toy", *TINY, "seed=13", "seeds=2", "processes=1"],
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (job,) = (tmp_path / "outputs/runs").glob("*/*_qnet-toy_seeds13-14")
    assert sorted(p.name for p in job.glob("seed*")) == ["seed13", "seed14"]


def test_a_run_and_every_optimizer_never_import_torch_dynamo(tmp_path):
    # torch.optim's methods import torch._dynamo (about 1 s) at their first call unless rlexp
    # takes torch.compile's wrappers off (rlexp.members.eager_optimizer_class); every run of a
    # sweep would pay it. A fresh interpreter: this one may have imported it already.
    args = ["agent=dqn", "env=cartpole", *TINY, *TINY_DQN, f"hydra.run.dir={tmp_path / 'run'}"]
    script = f"""
import runpy, sys
import torch
sys.argv = ["rlexp.train", *{args!r}]
try:
    runpy.run_module("rlexp.train", run_name="__main__")
except SystemExit as e:
    assert not e.code, e.code
from rlexp.build import build_optimizer
from rlexp.config import OPTIMIZERS
for schema in OPTIMIZERS.values():
    param = torch.zeros(3, requires_grad=True)
    opt = build_optimizer(schema())([param])
    param.sum().backward()
    opt.step()
    opt.load_state_dict(opt.state_dict())
    opt.zero_grad()
print("torch._dynamo" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoints").is_dir()
    assert result.stdout.splitlines()[-1] == "False"


def test_run_dir_can_be_chosen_with_hydra_run_dir(tmp_path):
    target = tmp_path / "my_run"
    result = run_cli(["agent=qnet", "env=toy", *TINY, f"hydra.run.dir={target}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (target / "metrics.json").is_file()
    # A finished run is never overwritten by a second run into the same directory.
    again = run_cli(["agent=qnet", "env=toy", *TINY, f"hydra.run.dir={target}"], cwd=tmp_path)
    assert again.returncode == 2 and "already holds a finished run" in again.stderr


def test_help_lists_the_groups_a_user_chooses_and_every_field_with_its_doc():
    from rlexp.config import SCHEMAS
    from rlexp.help import INTERNAL_GROUPS, field_docs

    result = run_cli(["--help"])
    assert result.returncode == 0
    out = " ".join(result.stdout.split())  # unwrapped
    groups = [p.name for p in (REPO / "conf").iterdir() if p.is_dir()]
    for group in groups:
        options = sorted(p.stem for p in (REPO / "conf" / group).glob("*.yaml"))
        listed = f"{group}: {', '.join(options)}" in result.stdout
        assert listed == (group not in INTERNAL_GROUPS), group
    assert "schema/" not in result.stdout
    for group, schemas in SCHEMAS.items():
        for cls in schemas.values():
            docs = field_docs(cls)
            assert docs, cls
            for name, doc in docs.items():
                if name != "name" and not (name == "_target_" and group in ("agent", "env")):
                    assert f"{group}." in out and " ".join(doc.split()) in out, (cls, name)


@pytest.mark.parametrize("skipped", [False, True])
def test_a_process_that_skips_its_exit_collection_leaves_the_garbage_alive_then(skipped):
    # An unreachable cycle whose finalizer prints: the exit's collection finalizes it, unless
    # the process asked (here twice, as a command running several jobs does) to skip it.
    code = ("import gc\n"
            "from rlexp.runtime import skip_exit_collection\n"
            "class Cycle:\n"
            "    def __del__(self): print('collected')\n"
            "gc.disable()\n"
            "c = Cycle(); c.me = c; del c\n"
            f"if {skipped}: skip_exit_collection(); skip_exit_collection()\n"
            "print('exiting')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=True).stdout.split()
    assert out == (["exiting"] if skipped else ["exiting", "collected"])
