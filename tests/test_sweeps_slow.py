"""Cluster-style sweeps end to end (slow): submitit jobs that time out and resume, and Optuna."""

import pytest
import yaml

from rlexp.metrics import read_metrics
from tests.conftest import read_scalars, run_cli, run_in_process

pytestmark = pytest.mark.slow


def test_submitit_job_checkpoints_at_its_timeout_signal_and_the_requeued_job_resumes(tmp_path):
    # A 1-minute limit: submitit's local executor sends SIGUSR2 after 30 s, the run saves its
    # checkpoint and is requeued, and the new job resumes it; a job requeued 3 times is given
    # up. The run is sized to this machine: ~45 s of Q-learning on the toy env (one of these
    # machines steps it 3-4x as fast as another), so the first job cannot finish and the
    # second can.
    args = ["agent=qnet", "env=toy", "log.every_steps=1000", "eval.every_steps=0",
            "eval.episodes=2", "seed=0"]
    speed = run_in_process([*args, "total_steps=5000"], tmp_path / "calibration").sps
    steps = max(round(45 * speed / 1000), 1) * 1000
    result = run_cli(["-m", "hydra/launcher=local_cluster", "hydra.launcher.timeout_min=1",
                      *args, f"total_steps={steps}"], cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sweep,) = tmp_path.glob("outputs/multirun/*/*")
    (run_dir,) = [p for p in sweep.iterdir() if (p / ".hydra").is_dir()]
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["env_steps"] == steps
    assert 0 < metrics["resumed_from_step"] < steps
    log = (run_dir / "train.log").read_text()
    assert "interrupted by SIGUSR2" in log and "resuming the unfinished run" in log
    submitit_logs = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.out"))
    assert "Requeued job" in submitit_logs
    # One curve, no step repeated or missing across the requeue.
    assert [s for s, _ in read_scalars(run_dir)["train/epsilon"]] == list(range(1000, steps + 1,
                                                                             1000))


def test_optuna_study_records_failed_trials_and_keeps_the_best(tmp_path):
    # gradient_steps=0 is refused by the config check: those trials fail, the study goes on.
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    result = run_cli(["hparams_search=dqn_cartpole", "hydra.sweeper.n_trials=4", "seeds=2",
                      "agent.gradient_steps=choice(0,8)", "total_steps=3000",
                      "agent.learning_starts=500", "eval.every_steps=0", "eval.episodes=5",
                      f"hydra.sweeper.storage={storage}"], cwd=tmp_path)
    assert result.returncode == 1  # some trials failed: the sweep says so
    (sweep,) = tmp_path.glob("outputs/multirun/*/*")
    trials = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert [p.name for p in trials] == [f"trial_{i}" for i in range(4)]
    failed, completed = [], []
    for trial in trials:
        overrides = yaml.safe_load((trial / ".hydra" / "overrides.yaml").read_text())
        if "agent.gradient_steps=0" in overrides:  # refused when the config was checked
            failed.append(read_metrics(trial))
        else:  # two seeds, each a run of its own
            runs = [read_metrics(trial / f"seed{s}") for s in (0, 1)]
            assert [m["seed"] for m in runs] == [0, 1]
            completed.append(sum(m["eval_return_mean"] for m in runs) / 2)
    assert failed and completed
    assert all(m["status"] == "failed" and "agent.gradient_steps=0" in m["error"]
               for m in failed)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_params"]["agent.gradient_steps"] == 8
    assert best["best_value"] == pytest.approx(max(completed))  # the mean over its seeds

    import optuna

    study = optuna.load_study(study_name="dqn_cartpole", storage=storage)
    states = sorted(t.state.name for t in study.trials)
    assert states == sorted(["FAIL"] * len(failed) + ["COMPLETE"] * len(completed))
    assert (sweep / "summary.md").is_file()
