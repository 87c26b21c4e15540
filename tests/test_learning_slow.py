"""Learning checks that take minutes: `make test-slow`."""

import json

import numpy as np
import pytest

from tests.conftest import read_scalars, run_cli, run_in_process

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


#: MinAtar Breakout runs per agent: DQN's preset at 100k steps (train every 4 steps, epsilon
#: over half the run), PQN's at 1M (purejaxql's MinAtar configuration: 128 envs, 95 s here;
#: seed 0's greedy policy averages 14.5 over 50 episodes, random play under 1) and Rainbow's
#: defaults at 100k (174 s a seed here; seeds 0 and 1 average 6.0 and 5.3 over 50 episodes).
BREAKOUT = {
    "dqn": ["experiment=minatar_dqn", "total_steps=100000", "agent.train_freq=4",
            "agent.epsilon.fraction=0.5"],
    "pqn": ["experiment=pqn_minatar", "total_steps=1000000"],
    "rainbow": ["agent=rainbow", "env=minatar", "total_steps=100000"],
}


@pytest.mark.parametrize("agent", BREAKOUT)
def test_agents_beat_random_play_on_minatar_breakout(tmp_path, agent):
    """MinAtar Breakout: the agent's greedy evaluation against uniformly random play, over 50
    episodes of each of two training seeds. One seed's run is a single draw of training's
    outcome (DQN at 100k steps: seed 0's greedy policy averages 1.2, seeds 1 and 2 3.0), so the
    test pools two. The margin is statistical: the trained mean must exceed the random mean by
    5 standard errors of the difference (a chance of about 3e-7 under a normal approximation
    if the two were the same policy), and by at least 1 point besides."""
    from rlexp.build import load_run, make_eval_envs
    from rlexp.evaluator import EVAL_SEED_OFFSET, evaluate

    trained, random = [], []
    for seed in (0, 1):
        run_dir = tmp_path / f"run{seed}"
        metrics = run_in_process([*BREAKOUT[agent], "env.game=breakout", "device=cpu",
                                  "eval.every_steps=0", "eval.episodes=50",
                                  "checkpoint.every_steps=0", f"seed={seed}"], run_dir)
        assert metrics.status == "completed"
        cfg, trained_agent = load_run(run_dir)
        envs, _ = make_eval_envs(cfg.env, cfg.eval, None)
        (greedy,) = evaluate(trained_agent, envs, [cfg.seed + EVAL_SEED_OFFSET])
        (uniform,) = evaluate(trained_agent, envs, [cfg.seed + EVAL_SEED_OFFSET], epsilon=1.0)
        trained.append(greedy.returns)
        random.append(uniform.returns)
    trained, random = np.concatenate(trained), np.concatenate(random)
    stderr = np.sqrt(trained.var(ddof=1) / len(trained) + random.var(ddof=1) / len(random))
    margin = trained.mean() - random.mean()
    assert margin > max(5 * stderr, 1.0), (trained.mean(), random.mean(), stderr)


@pytest.mark.parametrize("seed", [0, 1])
def test_qnet_on_the_toy_chain_learns_the_optimal_policy_with_no_overrides(tmp_path, seed):
    # agent=qnet env=toy as typed: the tuned settings (conf/tuned/qnet_toy.yaml) explore
    # enough to find the goal; the greedy policy walks right from every state, and Q(s, right)
    # is within 0.05 of Q* (value iteration on the env's own model).
    import gymnasium as gym

    from rlexp.build import load_agent
    from rlexp.envs.planning import value_iteration

    metrics = run_in_process(["agent=qnet", "env=toy", "device=cpu", f"seed={seed}"],
                             tmp_path / "run")
    assert metrics.status == "completed" and metrics.eval_return_mean == 1.0
    env = gym.make("rlexp/Toy-v0")
    q_star = value_iteration(env.unwrapped.P, 0.99)
    n = env.observation_space.n
    q = load_agent(tmp_path / "run").q_values(np.arange(n - 1))  # the goal is terminal
    assert (q.argmax(axis=1) == 1).all(), q
    np.testing.assert_allclose(q[:, 1], q_star[: n - 1, 1], atol=0.05)


#: Named envs whose tuned DQN settings (conf/tuned/dqn_<env>.yaml) must reach the env's target.
TUNED_ENVS = ["lunarlander", "mountaincar"]


@pytest.mark.parametrize("env", TUNED_ENVS)
def test_dqn_with_its_tuned_settings_reaches_the_target_over_several_seeds(tmp_path, env):
    # `agent=dqn env=NAME` as typed: the tuned settings decide budget and hyperparameters. The
    # final greedy evaluation (20 episodes) must reach the env's solved_return in at least two
    # of three seeds.
    from rlexp.config import compose

    target = compose([f"env={env}"]).env.solved_return
    finals = [run_in_process([f"env={env}", "device=cpu", f"seed={seed}"],
                             tmp_path / f"seed{seed}").eval_return_mean for seed in range(3)]
    assert sum(f >= target for f in finals) >= 2, (finals, target)


def test_sixteen_population_members_end_as_sixteen_separate_runs(tmp_path):
    """The default DQN on CartPole at its full budget: a population of 16 seeds against the
    same 16 seeds trained one by one. A member is its run alone, so every final return is the
    same; and a rank test of the two samples (which would flag a population that learns
    differently even if it did not match seed for seed) finds no difference."""
    from scipy.stats import mannwhitneyu

    from rlexp.metrics import read_metrics

    result = run_cli(["seeds=16", "processes=1", "device=cpu", f"hydra.run.dir={tmp_path}/pop"],
                     timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    together = [read_metrics(tmp_path / "pop" / f"seed{s}") for s in range(16)]
    alone = [run_in_process([f"seed={s}", "device=cpu"], tmp_path / f"alone{s}")
             for s in range(16)]
    assert all(m["population"] == 16 for m in together)
    finals = [m["eval_return_mean"] for m in together]
    assert finals == [m.eval_return_mean for m in alone]
    assert mannwhitneyu(finals, [m.eval_return_mean for m in alone]).pvalue > 0.05


def deep_agents() -> list[str]:
    """Every registered agent but qnet (online Q-learning with no replay: the toy chain's and
    the linear baselines' agent, not CartPole's)."""
    from rlexp.agents import AGENTS

    return [name for name in sorted(AGENTS) if name != "qnet"]


@pytest.mark.parametrize("agent", deep_agents())
def test_every_deep_agent_solves_cartpole_with_its_defaults_in_four_of_five_seeds(tmp_path,
                                                                                   agent):
    # `agent=NAME seeds=5` as typed (CartPole-v1, the agent's defaults and tuned settings): one
    # population of five, or five runs alone for an agent whose networks train alone (IQN's).
    from rlexp.metrics import read_metrics

    result = run_cli([f"agent={agent}", "seeds=5", "device=cpu",
                      f"hydra.run.dir={tmp_path}/run"], timeout=3600)
    assert result.returncode == 0, result.stderr[-3000:]
    finals = [read_metrics(tmp_path / "run" / f"seed{s}")["eval_return_mean"] for s in range(5)]
    assert sum(f >= 475 for f in finals) >= 4, finals
