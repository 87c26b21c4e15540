"""The run directory (rlexp.rundir): its names, claims and locks."""

from multiprocessing import Pool
from pathlib import Path

from rlexp import rundir
from rlexp.config import CONFIG_DIR
from rlexp.rundir import safe_dirname


def test_processes_claiming_the_same_directory_at_once_get_distinct_ones(tmp_path):
    base = str(tmp_path / "runs" / "12-00-00_dqn-cartpole_seed9")
    with Pool(6, maxtasksperchild=1) as pool:  # a process per claim
        claimed = pool.map(_claim, [base] * 6, chunksize=1)
    assert sorted(claimed) == sorted([base] + [f"{base}-{n}" for n in range(2, 7)])


def test_sweep_directory_names_are_single_safe_names():
    assert safe_dirname("env.id=a/b,run_name=../x") == "env.id=a_b,run_name=.._x"
    assert safe_dirname(".hidden") == "_.hidden"
    assert safe_dirname("") == "_"
    assert "/" not in safe_dirname("/" * 300) and len(safe_dirname("x" * 300)) <= 201


def test_default_run_names_name_the_env_id_for_any_gymnasium_env():
    from rlexp.rundir import run_label

    assert run_label("dqn", "cartpole", "CartPole-v1") == "dqn-cartpole"
    assert run_label("dqn", "gym", "LunarLander-v3") == "dqn-LunarLander-v3"
    assert run_label("qnet", "gym", "rlexp/Toy-v0") == "qnet-rlexp_Toy-v0"  # one dir name
    assert "${run_label:" in (Path(CONFIG_DIR) / "config.yaml").read_text()


def test_a_job_directory_leads_with_the_swept_keys(tmp_path):
    from rlexp import rundir

    overrides = ["env=toy", "seed=3", "device=cpu", "optimizer.lr=0.1", "resume=true"]
    sweep = tmp_path / "sweep"
    assert rundir.job_dirname(overrides, sweep) == "device=cpu,env=toy,optimizer.lr=0.1,seed=3"
    rundir.write_swept_keys(sweep, ["seed", "optimizer.lr"])
    assert rundir.job_dirname(overrides, sweep) == "optimizer.lr=0.1,seed=3,device=cpu,env=toy"
    assert rundir.job_dirname(overrides[::-1], sweep) == rundir.job_dirname(overrides, sweep)


def _claim(base: str) -> str:
    return rundir.claim_new(base)
