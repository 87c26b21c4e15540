"""Sweeps: readable multirun dirs, range/glob sweeps, the joblib launcher, failures that do not
stop a sweep, and the sweep report's numbers."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from rlexp import report
from rlexp.metrics import read_metrics
from tests import zygote
from tests.conftest import REPO, fake_run, read_scalars, run_cli

SHORT = ["env=toy", "total_steps=300", "log.every_steps=100", "eval.every_steps=150",
         "eval.episodes=2"]


def sweep_dir(cwd: Path) -> Path:
    (path,) = cwd.glob("outputs/multirun/*/*")
    return path


def run_dirs(sweep: Path) -> dict[str, Path]:
    return {p.name: p for p in sweep.iterdir() if (p / ".hydra").is_dir()}


def test_a_grid_sweep_writes_one_readable_dir_per_run_and_a_report(tmp_path):
    result = run_cli(["-m", "agent=qnet,dqn", "optimizer=sgd,adam", "seed=0,1,2", *SHORT],
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = sweep_dir(tmp_path)
    runs = run_dirs(sweep)
    assert len(runs) == 12
    for agent in ("qnet", "dqn"):
        for optimizer in ("sgd", "adam"):
            for seed in range(3):
                # The swept keys first, then the others, each part by name.
                name = f"agent={agent},optimizer={optimizer},seed={seed},env=toy," \
                       "eval.episodes=2,eval.every_steps=150,log.every_steps=100,total_steps=300"
                run = runs[name]
                metrics = read_metrics(run)
                assert metrics["status"] == "completed" and metrics["seed"] == seed
                assert metrics["env_steps"] == 300
                assert [s for s, _ in read_scalars(run)["eval/return_mean"]] == [0, 150, 300]
                assert (run / "checkpoints" / "final.pt").is_file()
                assert yaml.safe_load((run / "config.yaml").read_text())["optimizer"]["name"] \
                    == optimizer
    # The report pooled the three seeds of each of the four configurations.
    with open(sweep / "summary.csv") as f:
        rows = {r["group"]: r for r in csv.DictReader(f)}
    assert set(rows) == {f"agent={a},optimizer={o}" for a in ("qnet", "dqn")
                         for o in ("sgd", "adam")}
    for group, row in rows.items():
        finals = [read_metrics(r)["eval_return_mean"] for r in runs.values()
                  if all(part in r.name.split(",") for part in group.split(","))]
        assert len(finals) == 3 and row["completed"] == "3"
        assert float(row["return_mean"]) == pytest.approx(np.mean(finals))
    assert (sweep / "summary.md").read_text().count("| agent=") == 4
    # The figure, looked at: 900x500 pixels, and each group's line (matplotlib's first four
    # colours) drawn in it, at least in the legend.
    from PIL import Image

    image = np.asarray(Image.open(sweep / "curves.png").convert("RGB")).astype(int)
    assert image.shape == (500, 900, 3)
    for colour in ("1f77b4", "ff7f0e", "2ca02c", "d62728"):
        rgb = np.array([int(colour[i:i + 2], 16) for i in (0, 2, 4)])
        assert (np.abs(image - rgb).sum(axis=2) < 40).sum() > 20, colour
    assert (image.sum(axis=2) < 600).mean() > 0.02  # not a blank canvas
    assert len(list((sweep / "curves").glob("*.png"))) == 4
    assert "rlexp sweep report" in result.stdout


def test_range_and_glob_sweeps(tmp_path):
    result = run_cli(["-m", "agent=qnet", "seed=range(0,2)", "optimizer=glob(*)", *SHORT],
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(run_dirs(sweep_dir(tmp_path)))
    optimizers = [p.stem for p in (REPO / "conf" / "optimizer").glob("*.yaml")]
    assert len(names) == 2 * len(optimizers)
    assert {(n.split("optimizer=")[1].split(",")[0], n.split("seed=")[1].split(",")[0])
            for n in names} == {(o, s) for o in optimizers for s in "01"}


def test_failing_and_diverging_runs_do_not_stop_the_others(tmp_path):
    # Seed 1 crashes inside the env; lr 1e6 with plain SGD makes the Q-values explode.
    result = run_cli(["-m", "agent=qnet", "env=gym", "env.id=tests.faulty_env:Faulty-v0",
                      "optimizer=sgd", "optimizer.lr=0.01,1e6", "seed=0,1,2",
                      "total_steps=2000", "log.every_steps=100", "eval.every_steps=0",
                      "eval.episodes=2"], cwd=tmp_path, env={"PYTHONPATH": str(REPO)})
    assert result.returncode == 1
    runs = run_dirs(sweep_dir(tmp_path))
    statuses = {}
    for name, run in runs.items():
        lr = name.split("optimizer.lr=")[1].split(",")[0]
        seed = name.split("seed=")[1].split(",")[0]
        statuses[lr, seed] = read_metrics(run)
    assert len(statuses) == 6
    for lr in ("0.01", "1000000.0"):
        failed = statuses[lr, "1"]
        assert failed["status"] == "failed"
        assert failed["error"] == "RuntimeError: simulated crash in the env"
        log = (runs[next(n for n in runs if f"optimizer.lr={lr}," in n and ",seed=1," in n)]
               / "train.log").read_text()
        assert "Traceback" in log and "simulated crash" in log
    for seed in ("0", "2"):
        assert statuses["0.01", seed]["status"] == "completed"
        assert statuses["0.01", seed]["env_steps"] == 2000
        diverged = statuses["1000000.0", seed]
        assert diverged["status"] == "diverged" and "optimizer.lr=1e+06" in diverged["error"]
    # The sweep ends by listing every run that did not complete.
    tail = result.stdout[result.stdout.index("4 runs did not complete"):]
    assert tail.count(": failed: RuntimeError") == 2 and tail.count(": diverged: ") == 2


def test_parallel_launcher_runs_jobs_in_processes_with_one_torch_thread(tmp_path):
    result = run_cli(["-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "agent=qnet",
                      "seed=0,1", *SHORT], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = run_dirs(sweep_dir(tmp_path))
    assert len(runs) == 2
    pids = set()
    for run in runs.values():
        metrics = read_metrics(run)
        assert metrics["status"] == "completed" and metrics["torch_threads"] == 1
        assert "done qnet-toy" in (run / "train.log").read_text()  # its own log file
        pids.add((run / ".lock").read_text().strip())  # "process PID": who trained it
    assert len(pids) == 2  # two worker processes (the launcher's own pid is never a job's)


def test_a_missing_launcher_plugin_says_what_to_install(tmp_path):
    # A regular hydra_plugins package first on the path hides the installed plugins, as if the
    # launchers extra were not installed.
    (tmp_path / "hydra_plugins").mkdir()
    (tmp_path / "hydra_plugins" / "__init__.py").write_text("")
    result = run_cli(["-m", "hydra/launcher=parallel", "seed=0,1", *SHORT], cwd=tmp_path,
                     env={"PYTHONPATH": f"{tmp_path}:{REPO}"})
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0] == ("rlexp: error: hydra/launcher=joblib is not installed: it comes with a "
                        "Hydra plugin: pip install -e '.[launchers]'")


# ------------------------------------------------------------------- the report's statistics


def test_report_statistics_match_values_computed_by_hand(tmp_path):
    sweep = tmp_path / "sweep"
    # Group lr=0.1: five seeds. Final returns 10, 20, 30, 40, 100; the curves reach 100 at
    # steps 300, 200 and 300 for three of them and never for the other two.
    finals = [10, 20, 30, 40, 100]
    reach = {0: 300, 1: 200, 2: 300}
    for seed, final in enumerate(finals):
        curve = [(100, 0.0), (200, 150.0 if reach.get(seed) == 200 else 50.0),
                 (300, 120.0 if seed in reach else 60.0)]
        fake_run(sweep, f"lr0.1_s{seed}", ["optimizer.lr=0.1", f"seed={seed}", "env=toy"],
                 final=final, curve=curve)
    # Group lr=0.01: two seeds (0 and 1) and one failed run.
    fake_run(sweep, "lr0.01_s0", ["optimizer.lr=0.01", "seed=0", "env=toy"], final=0.0,
             curve=[(100, 0.0)])
    fake_run(sweep, "lr0.01_s1", ["optimizer.lr=0.01", "seed=1", "env=toy"], final=1.0,
             curve=[(100, 1.0)])
    fake_run(sweep, "lr0.01_s2", ["optimizer.lr=0.01", "seed=2", "env=toy"], status="failed",
             error="RuntimeError: boom")

    rep = report.build_report(sweep)
    groups = {g.label: g for g in rep.groups}
    assert set(groups) == {"optimizer.lr=0.1", "optimizer.lr=0.01"}  # env=toy: shared, left out
    ret = groups["optimizer.lr=0.1"].returns()
    assert ret.n == 5 and ret.mean == 40.0
    assert ret.std == pytest.approx(math.sqrt(5000 / 4))  # squared deviations 900+400+100+0+3600
    assert ret.iqm == 30.0  # drop one value at each end: mean of 20, 30, 40
    # The bootstrap CI of the mean: inside the data's range, around the normal approximation.
    half = 1.96 * np.std(finals) / math.sqrt(5)
    assert 10 <= ret.ci_low < 40 < ret.ci_high <= 100
    assert ret.ci_low == pytest.approx(40 - half, abs=6)
    assert ret.ci_high == pytest.approx(40 + half, abs=6)
    steps = groups["optimizer.lr=0.1"].steps()
    assert steps.n == 3 and steps.mean == pytest.approx(800 / 3) and steps.iqm == 800 / 3
    # Results that hold: final evaluation >= 100 for seeds 0-2; the last two average >= 100
    # only for seed 1 (150, 120); the last five (all three points) for none.
    big = groups["optimizer.lr=0.1"]
    assert (big.holding(1), big.holding(2), big.holding(5)) == (3, 1, 0)
    # Two seeds 0 and 1: resampled means are 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4.
    small = groups["optimizer.lr=0.01"]
    assert len(small.runs) == 3 and small.returns().n == 2
    assert (small.returns().ci_low, small.returns().ci_high) == (0.0, 1.0)
    assert small.returns().std == pytest.approx(math.sqrt(0.5))
    assert small.steps().n == 0

    written = rep.write()
    assert {p.name for p in written} >= {"summary.csv", "summary.md", "curves.png"}
    with open(sweep / "summary.csv") as f:
        rows = {r["group"]: r for r in csv.DictReader(f)}
    assert float(rows["optimizer.lr=0.1"]["return_iqm"]) == 30.0
    assert (rows["optimizer.lr=0.1"]["final_holds"], rows["optimizer.lr=0.1"]["last5_holds"]) \
        == ("3", "0")
    assert (rows["optimizer.lr=0.01"]["completed"], rows["optimizer.lr=0.01"]["runs"]) == ("2", "3")
    md = (sweep / "summary.md").read_text()
    assert "| optimizer.lr=0.1 | 5/5 | 40.0 ± 35.4 | 30.0 [" in md
    # Probability of improvement: every run of lr=0.1 (10..100) ends above both of lr=0.01's
    # (0, 1), so lr=0.1 is the best group and P(lr=0.01 > lr=0.1) is 0.
    assert rows["optimizer.lr=0.01"]["p_improvement_vs_best"] == "0.0"
    assert "| (1) optimizer.lr=0.01 |  | 0.00 |" in md
    assert "| (2) optimizer.lr=0.1 | 1.00 |  |" in md
    assert "| 100 | 3/5 | 3/5 | 0/5 |" in md  # target, reached, final >= target, last 5
    assert "- lr0.01_s2: failed: RuntimeError: boom" in md


def test_probability_of_improvement_counts_ties_as_half():
    # x=[1,2,3] vs y=[2,2]: 1 loses twice, 2 ties twice (1), 3 wins twice (2): 3 of 6 pairs.
    assert report.probability_of_improvement([1, 2, 3], [2, 2]) == 0.5
    # [3,4] vs [1,3]: 3>1, 3=3 (0.5), 4>1, 4>3: 3.5 of 4.
    assert report.probability_of_improvement([3, 4], [1, 3]) == 0.875
    assert report.probability_of_improvement([1, 3], [3, 4]) == 0.125


def test_report_cli(tmp_path):

    sweep = tmp_path / "sweep"
    fake_run(sweep, "a", ["seed=0"], final=5.0, curve=[(100, 5.0)])
    out = zygote.run("rlexp.report", [str(sweep), "--target", "5", "--no-plots"], REPO)
    assert out.returncode == 0, out.stderr
    assert "all runs" in out.stdout and "1/1" in out.stdout
    with open(sweep / "summary.csv") as f:
        (row,) = csv.DictReader(f)
    assert row["target"] == "5.0" and row["steps_mean"] == "100.0"
    missing = zygote.run("rlexp.report", [str(tmp_path / "nope")], REPO)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1


def test_a_job_with_several_seeds_trains_them_as_one_population_and_runs_each_once(tmp_path):
    # Seed 1 crashes in the env: the population, in one process, fails; every seed says so.
    # Run again, nothing is trained twice (failed runs are kept unless retry_failed=true).
    args = ["agent=qnet", "env=gym", "env.id=tests.faulty_env:Faulty-v0", "seeds=3", "processes=1",
            "total_steps=300", "log.every_steps=100", "eval.every_steps=0", "eval.episodes=2",
            "hydra.run.dir=job"]
    env = {"PYTHONPATH": str(REPO)}
    first = run_cli(args, cwd=tmp_path, env=env)
    assert first.returncode == 1
    job = tmp_path / "job"
    for seed in range(3):
        metrics = read_metrics(job / f"seed{seed}")
        assert metrics["status"] == "failed" and "simulated crash" in metrics["error"]
    seed0 = (job / "seed0" / "metrics.json").read_bytes()
    second = run_cli(args, cwd=tmp_path, env=env)
    assert second.returncode == 1
    assert (job / "seed0" / "metrics.json").read_bytes() == seed0
    fixed = run_cli([*args, "+env.kwargs.crash_seeds=[]", "retry_failed=true"], cwd=tmp_path,
                    env=env)
    assert fixed.returncode == 0, fixed.stderr
    runs = report.load_runs(tmp_path)
    assert sorted(r.dir.name for r in runs) == ["seed0", "seed1", "seed2"]
    (group,) = report.group_runs(runs)
    assert len(group.runs) == 3 and len(group.completed) == 3
    assert {read_metrics(job / f"seed{s}")["population"] for s in range(3)} == {3}
