"""Benchmark suites (conf/suite/) and the cross-task report: the statistics by hand and against
rliable's, every suite's tasks, and a tiny suite sweep through the CLI and rlexp.compare."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from rlexp import build, suites
from rlexp.compare import main as compare
from rlexp.metrics import read_metrics
from rlexp.report import build_report
from rlexp.report.aggregate import (
    METRICS,
    aggregate,
    performance_profile,
    probability_of_improvement,
)
from rlexp.report.figures import figures
from rlexp.report.study import published_scores
from rlexp.report.study_figures import AGGREGATE_PNG, CURVES_PNG, PROFILE_PNG, SAMPLE_EFFICIENCY_PNG
from tests.conftest import fake_run, run_cli

DATA = Path(__file__).parent / "data"

# ------------------------------------------------------------------------------- statistics


def test_the_aggregate_metrics_by_hand():
    # Two tasks: [0, 1, 2, 3] and [4, 10]. All 6 runs sorted: 0 1 2 3 4 10; IQM drops
    # int(6/4) = 1 from each end: mean(1, 2, 3, 4) = 2.5. Task means 1.5 and 7: median and mean
    # over tasks 4.25. Optimality gap: 1 - mean(min(x, 1)) = 1 - (0 + 1 + 1 + 1 + 1 + 1) / 6.
    tasks = [np.array([0.0, 1.0, 2.0, 3.0]), np.array([4.0, 10.0])]
    assert aggregate("iqm", tasks)[0] == pytest.approx(2.5)
    assert aggregate("median", tasks)[0] == pytest.approx(4.25)
    assert aggregate("mean", tasks)[0] == pytest.approx(4.25)
    assert aggregate("optimality_gap", tasks)[0] == pytest.approx(1 / 6)
    # Three tasks: the median is the middle task's mean.
    assert aggregate("median", [np.array([0.0]), np.array([5.0, 7.0]),
                                np.array([1.0])])[0] == pytest.approx(1.0)


def test_the_probability_of_improvement_by_hand():
    # Task 1: pairs (1>0) (1<2) (2>0) (2=2): (1 + 0 + 1 + 0.5) / 4 = 0.625. Task 2: x always
    # below: 0. Averaged over the tasks: 0.3125.
    x = [np.array([1.0, 2.0]), np.array([0.0])]
    y = [np.array([0.0, 2.0]), np.array([1.0, 3.0])]
    assert probability_of_improvement(x, y)[0] == pytest.approx(0.3125)
    assert probability_of_improvement(y, x)[0] == pytest.approx(1 - 0.3125)


def test_the_stratified_bootstrap_resamples_within_tasks():
    # A task of one run keeps its score in every resample: with every task of one run, every
    # interval is the point itself.
    one_run_each = [np.array([0.2]), np.array([0.9]), np.array([0.4])]
    for metric in METRICS:
        value, low, high = aggregate(metric, one_run_each)
        assert low == pytest.approx(value) and high == pytest.approx(value), metric
    # Resampling across tasks would move the mean of a [0, 0] task and a [1, 1] task: within
    # tasks it never moves.
    assert aggregate("mean", [np.zeros(2), np.ones(2)])[1:] == pytest.approx((0.5, 0.5))
    profile, low, high = performance_profile([np.array([0.0, 1.0]), np.array([2.0])],
                                             np.array([0.5, 1.5, 2.5]))
    # tau 0.5: task 1 half its runs, task 2 all: (0.5 + 1) / 2.
    assert profile == pytest.approx([0.75, 0.5, 0.0])
    assert low[1] == pytest.approx(0.5) and high[1] == pytest.approx(0.5)  # task 2 fixed


def test_the_intervals_match_rliables_on_the_same_score_matrices():
    # Recorded by scripts/rliable_values.py (rliable 1.2.0, 50,000 resamples); bootstrap draws
    # differ between the two, so the bounds agree to Monte Carlo error (about 0.003 here, on
    # intervals about 0.18 wide), the points exactly.
    recorded = json.loads((DATA / "rliable_intervals.json").read_text())
    for group in ("x", "y"):
        tasks = list(np.array(recorded[group]).T)  # [runs, tasks] -> runs per task
        for i, metric in enumerate(METRICS):
            value, low, high = aggregate(metric, tasks)
            assert value == pytest.approx(recorded["points"][group][i], abs=1e-9), metric
            assert low == pytest.approx(recorded["intervals"][group][0][i], abs=0.01), metric
            assert high == pytest.approx(recorded["intervals"][group][1][i], abs=0.01), metric
    x, y = (list(np.array(recorded[g]).T) for g in ("x", "y"))
    p, low, high = probability_of_improvement(x, y)
    assert p == pytest.approx(recorded["poi"], abs=1e-9)
    assert (low, high) == pytest.approx(recorded["poi_interval"], abs=0.01)


# ----------------------------------------------------------------------------------- suites


@pytest.mark.parametrize("name", suites.names())
def test_every_suite_composes_and_each_task_builds_its_env(name):
    suite = suites.load(name)
    assert len(suite.values) == len(set(suite.values)) >= 2
    ids = []
    first = suite.task_config(suite.values[0])
    for value in suite.values:
        # A task that differs by its env id is the first task's config with that id (a compose
        # per game of Atari 100k would double the test's time).
        cfg = suite.task_config(value) if suite.axis != "env.id" else \
            dataclasses.replace(first, env=dataclasses.replace(first.env, id=value))
        env = build.make_env(cfg.env)
        try:
            assert env.action_space.n >= 2
        finally:
            env.close()
        assert cfg.total_steps == suite.budget[cfg.env.id]  # the suite's budget, any agent
        scores = published_scores().get(cfg.env.id) or {}
        assert scores.get("random") and scores.get("reference"), f"{cfg.env.id}: no scores"
        ids.append(cfg.env.id)
    assert sorted(ids) == sorted(suite.budget)  # one budget per task, none without a task


# ------------------------------------------------------------------ the report across tasks

TINY_SUITE = ["suite=classic", "total_steps=400", "eval.every_steps=200", "eval.episodes=2",
              "agent.learning_starts=100", "agent.buffer_size=500", "agent.train_freq=8",
              "agent.gradient_steps=1", "agent.batch_size=16", "agent.network.hidden=[16]",
              "checkpoint.every_steps=0"]


@pytest.fixture(scope="module")
def suite_sweep(tmp_path_factory) -> Path:
    sweep = tmp_path_factory.mktemp("suite") / "sweep"
    result = run_cli(["-m", *TINY_SUITE, "agent=dqn,c51", f"hydra.sweep.dir={sweep}"],
                     timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _check_study(out: Path, groups: set[str]) -> None:
    scores = _rows(out / "scores.csv")
    assert set(scores[0]) == {"group", "task", "seed", "final_return", "normalized"}
    assert {r["group"] for r in scores} == groups
    assert {r["task"] for r in scores} == {"CartPole-v1", "Acrobot-v1", "LunarLander-v3",
                                           "MountainCar-v0"}
    for r in scores:  # the normalization of reference_scores.csv
        ref = published_scores()[r["task"]]
        expected = (float(r["final_return"]) - float(ref["random"])) / (
            float(ref["reference"]) - float(ref["random"]))
        assert float(r["normalized"]) == pytest.approx(expected)
    aggregates = _rows(out / "aggregate.csv")
    assert {(r["group"], r["metric"]) for r in aggregates} == {(g, m) for g in groups
                                                               for m in METRICS}
    for r in aggregates:
        group = [float(s["normalized"]) for s in scores if s["group"] == r["group"]]
        if r["metric"] == "optimality_gap":
            assert float(r["value"]) == pytest.approx(1 - np.minimum(group, 1).mean())
        assert float(r["ci_low"]) <= float(r["value"]) + 1e-9 <= float(r["ci_high"]) + 2e-9
    improvement = _rows(out / "improvement.csv")
    assert len(improvement) == len(groups) * (len(groups) - 1)
    for r in improvement:  # P(X > Y) + P(Y > X) = 1, ties counting half each way
        other = next(o for o in improvement if (o["group"], o["over"]) == (r["over"], r["group"]))
        assert float(r["probability"]) + float(other["probability"]) == pytest.approx(1.0)
    for png in (AGGREGATE_PNG, PROFILE_PNG, SAMPLE_EFFICIENCY_PNG, CURVES_PNG):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    summary = (out / "summary.md").read_text()
    assert summary.index("## Across 4 tasks") < summary.index("## Per task and configuration")


def test_a_suite_sweep_of_two_agents_reports_across_its_tasks(suite_sweep):
    _check_study(suite_sweep, {"agent=dqn", "agent=c51"})
    # Each run trained its task with the suite's budget overridden, and its final return is in
    # scores.csv as metrics.json has it.
    scores = _rows(suite_sweep / "scores.csv")
    run = next(suite_sweep.glob("agent=dqn,env=acrobot,*"))
    final = read_metrics(run)["eval_return_mean"]
    assert any(r["group"] == "agent=dqn" and r["task"] == "Acrobot-v1"
               and float(r["final_return"]) == pytest.approx(final) for r in scores)


def test_a_suite_sweep_resumes_as_any_sweep(suite_sweep):
    # Every run completed: resume=true keeps them all and writes the same study again.
    before = (suite_sweep / "scores.csv").read_text()
    result = run_cli(["-m", *TINY_SUITE, "agent=dqn,c51", f"hydra.sweep.dir={suite_sweep}",
                      "resume=true"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (suite_sweep / "scores.csv").read_text() == before


def test_compare_reports_over_several_sweeps_and_refuses_other_budgets(suite_sweep, tmp_path,
                                                                       capsys):
    baseline = tmp_path / "baseline"
    for job in suite_sweep.glob("agent=dqn,*"):  # last month's sweep: dqn alone
        shutil.copytree(job, baseline / job.name)
    out = tmp_path / "out"
    assert compare([str(suite_sweep), str(baseline), "--out", str(out)]) == 0
    _check_study(out, {"agent=dqn,sweep=sweep", "agent=c51,sweep=sweep",
                       "agent=dqn,sweep=baseline"})
    capsys.readouterr()
    other = tmp_path / "other" / "job"  # a sweep of a longer budget
    shutil.copytree(next(baseline.iterdir()), other)
    config = other / "config.yaml"
    config.write_text(config.read_text().replace("total_steps: 400", "total_steps: 800"))
    with pytest.raises(SystemExit) as exit_:
        compare([str(suite_sweep), str(other.parent), "--out", str(tmp_path / "refused")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "different budgets" in err and "800" in err, err


# ----------------------------------------------------------------------- published results

def _breakout_runs(sweep: Path, sticky: float) -> None:
    protocol = {"env": {"id": "ALE/Breakout-v5", "sticky_actions": sticky, "episodic_life": True,
                        "clip_rewards": True, "noop_max": 30, "frame_skip": 4,
                        "solved_return": None},
                "total_steps": 10_000_000, "eval": {"epsilon": 0.05}}
    for seed in range(2):
        run = fake_run(sweep, f"seed={seed}", [f"seed={seed}"], final=300.0 + seed,
                       curve=[(0, 1.0), (10_000_000, 300.0 + seed)])
        (run / "config.yaml").write_text(yaml.safe_dump({**protocol, "seed": seed}))


@pytest.mark.parametrize("sticky", [0.0, 0.25])
def test_a_published_result_is_drawn_only_beside_runs_of_its_protocol(tmp_path, sticky):
    # CleanRL's DQN on Breakout (no sticky actions, 10M steps, evaluated at epsilon 0.05).
    import matplotlib.pyplot as plt

    _breakout_runs(tmp_path, sticky)
    report = build_report(tmp_path)
    report.write()
    summary = (tmp_path / "summary.md").read_text()
    line = next(x for x in summary.splitlines() if "CleanRL DQN: 366.9 ± 39.9 (3 seeds)" in x)
    figs = figures(report.groups, tmp_path, report.comparable_references)
    levels = {y for ax in figs[tmp_path / "curves.png"].axes for ln in ax.get_lines()
              for y in set(ln.get_ydata()) if len(set(ln.get_ydata())) == 1}
    for fig in figs.values():
        plt.close(fig)
    if sticky == 0.0:
        assert line.endswith("same protocol, drawn in the figures"), line
        assert 366.9 in levels
    else:
        assert "not comparable" in line and "env.sticky_actions is 0.25 here, 0.0 in the " \
            "reference" in line, line
        assert 366.9 not in levels


@pytest.mark.slow
def test_a_minatar_suite_sweep_on_the_population_launcher_reports_end_to_end(tmp_path):
    # DQN and C51 on the five games, 3 seeds, at a small budget: 30 convolutional runs.
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "hydra/launcher=population", "suite=minatar", "agent=dqn,c51",
                      "seed=range(3)", "total_steps=3000", "eval.every_steps=1500",
                      "eval.episodes=3", "agent.learning_starts=500", "agent.buffer_size=3000",
                      "checkpoint.every_steps=0", f"hydra.sweep.dir={sweep}"], timeout=3600)
    assert result.returncode == 0, result.stderr[-3000:]
    scores = _rows(sweep / "scores.csv")
    assert len(scores) == 2 * 5 * 3
    assert {r["task"] for r in scores} == {f"MinAtar/{g}" for g in
                                           ("asterix", "breakout", "freeway", "seaquest",
                                            "space_invaders")}
    assert {(r["group"], r["metric"]) for r in _rows(sweep / "aggregate.csv")} == {
        (g, m) for g in ("agent=dqn", "agent=c51") for m in METRICS}
    for png in (AGGREGATE_PNG, PROFILE_PNG, SAMPLE_EFFICIENCY_PNG, CURVES_PNG):
        assert (sweep / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert "rlexp PQN 1M steps" in (sweep / "summary.md").read_text()  # MinAtar's reference


def test_a_task_without_reference_scores_is_left_out_and_said(tmp_path):
    for task in ("CartPole-v1", "MyEnv-v0"):
        for seed in range(2):
            run = fake_run(tmp_path, f"task={task},seed={seed}", [f"task={task}", f"seed={seed}"],
                           final=100.0 + seed, curve=[(0, 10.0), (1000, 100.0 + seed)])
            (run / "config.yaml").write_text(yaml.safe_dump(
                {"env": {"id": task, "solved_return": None}, "seed": seed, "total_steps": 1000}))
    report = build_report(tmp_path)
    assert report.study is not None and report.study.scored_tasks == ["CartPole-v1"]
    assert {r["group"] for r in report.study.aggregate_rows} == {"all runs"}
    report.write(plots=False)
    assert "- MyEnv-v0: left out of the aggregates: no random and reference scores" in (
        tmp_path / "summary.md").read_text()
