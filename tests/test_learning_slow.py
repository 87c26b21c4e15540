"""Learning checks that take minutes: `make test-slow`."""

import json

import pytest

from tests.conftest import read_scalars, run_cli

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("seed", [0])
def test_default_dqn_solves_cartpole_within_its_budget(tmp_path, seed):
    # The defaults exactly as a user types them; only the run directory is chosen.
    result = run_cli([f"seed={seed}", "device=cpu", f"hydra.run.dir={tmp_path}/run"],
                     timeout=900)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["env_steps"] <= 50_000 and metrics["eval_episodes"] == 20
    assert metrics["eval_return_mean"] >= 475, metrics
    assert max(v for _, v in read_scalars(tmp_path / "run")["eval/return_mean"]) >= 475
