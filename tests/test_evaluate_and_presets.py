"""`python -m rlexp.evaluate` on a finished run, and the experiment presets."""

import json

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

from rlexp.agents.dqn import DQNConfig
from rlexp.agents.qnet import QNetConfig
from rlexp.envs.cartpole import batched_eval_envs
from tests import zygote
from tests.conftest import REPO, TINY, TINY_DQN, compose_config, run_in_process


def evaluate_cli(*args):
    return zygote.run("rlexp.evaluate", list(args), REPO, timeout=120)


def test_evaluate_prints_writes_eval_json_and_a_gif(run_dir):
    metrics = run_in_process(["agent=dqn", "env=cartpole", "device=cpu", *TINY, *TINY_DQN],
                             run_dir)
    result = evaluate_cli(f"run_dir={run_dir}", "episodes=3", "video=true")
    assert result.returncode == 0 and result.stderr == "", result.stderr  # no SDL noise
    data = json.loads((run_dir / "eval.json").read_text())
    assert data["episodes"] == 3 and len(data["returns"]) == 3
    assert f"eval return {data['return_mean']:.2f} +- {data['return_std']:.2f}" in result.stdout
    gif = Image.open(run_dir / "eval.gif")
    assert gif.format == "GIF" and gif.n_frames > 1
    # CartPole pays 1 per step: one 20 ms frame (50 fps) per step plus the first. (Identical
    # consecutive frames are merged into one longer frame, so count time, not frames.)
    total_ms = 0
    for i in range(gif.n_frames):
        gif.seek(i)
        total_ms += gif.info["duration"]
    assert total_ms == pytest.approx((data["video_return"] + 1) * 20, abs=gif.n_frames)
    # Without a seed it replays the run's own final evaluation (TINY: 2 episodes); the run
    # directory can be given as it is, as rlexp.report takes it.
    same = evaluate_cli(str(run_dir), "episodes=2")
    assert json.loads((run_dir / "eval.json").read_text())["return_mean"] == pytest.approx(
        metrics.eval_return_mean), same.stderr


@pytest.mark.parametrize("args,fragment", [
    (["run_dir=/no/such/dir"], "is not an rlexp run directory"),
    ([], "run_dir is required"),
    (["run_dir=.", "episodes=abc"], "episodes"),
    (["run_dir=.", "bogus=1"], "bogus"),
])
def test_evaluate_bad_input_is_one_line(args, fragment):
    result = evaluate_cli(*args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and fragment in lines[0], result.stderr


def test_evaluating_an_unfinished_run_says_how_to_finish_it(run_dir):
    from rlexp import rundir
    from rlexp.metrics import RunMetrics, write_metrics

    run_in_process(["agent=qnet", "env=toy", *TINY], run_dir)
    (run_dir / rundir.FINAL).unlink()  # what a stopped run leaves: last.pt, no final.pt
    write_metrics(run_dir, RunMetrics(status="interrupted", error="interrupted by SIGTERM"))
    result = evaluate_cli(str(run_dir))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "the run did not complete (interrupted)" in result.stderr
    assert f"python -m rlexp.train resume={run_dir}" in result.stderr


def test_video_of_an_env_that_cannot_render_is_refused_in_one_line(tmp_path):
    # A sweep's job directory: "=" and "," in its name, given as it is.
    run_dir = tmp_path / "agent=qnet,env=toy,seed=0"
    run_in_process(["agent=qnet", "env=toy", *TINY], run_dir)
    result = evaluate_cli(str(run_dir), "video=true")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr == ("rlexp.evaluate: error: video=true: rlexp/Toy-v0 cannot render "
                             "frames (its render modes: none; a video needs rgb_array)\n")
    assert evaluate_cli(str(run_dir), "episodes=2").returncode == 0


PRESETS = {
    "blog_qlearning_toy": {"agent": QNetConfig, "agent.network.hidden": [16],
                           "optimizer._target_": "torch.optim.SGD", "optimizer.lr": 0.1,
                           "agent.epsilon.end": 0.1, "env.variant": "random"},
    "blog_dqn_online": {"agent": QNetConfig, "agent.network.hidden": [64, 32],
                        "optimizer.lr": 0.001, "env.id": "CartPole-v1"},
    "blog_linear_cartpole": {"agent": QNetConfig, "agent.network.hidden": [],
                             "optimizer.lr": 0.001},
    "blog_dqn_cartpole": {"agent": DQNConfig, "agent.network.hidden": [128],
                          "agent.buffer_size": 10_000, "optimizer.lr": 0.001},
    "cleanrl_dqn_cartpole": {"agent": DQNConfig, "total_steps": 500_000,
                             "optimizer.lr": 0.00025, "agent.buffer_size": 10_000,
                             "agent.batch_size": 128, "agent.target_update_interval": 500,
                             "agent.train_freq": 10, "agent.learning_starts": 10_000,
                             "agent.epsilon.end": 0.05, "agent.epsilon.fraction": 0.5,
                             "agent.network.hidden": [120, 84], "agent.loss": "mse"},
    "zoo_dqn_cartpole": {"agent": DQNConfig, "total_steps": 50_000, "optimizer.lr": 0.0023,
                         "agent.batch_size": 64, "agent.buffer_size": 100_000,
                         "agent.learning_starts": 1000, "agent.target_update_interval": 10,
                         "agent.train_freq": 256, "agent.gradient_steps": 128,
                         "agent.epsilon.fraction": 0.16, "agent.epsilon.end": 0.04,
                         "agent.network.hidden": [256, 256]},
    "cleanrl_dqn_atari": {"agent": DQNConfig, "total_steps": 10_000_000, "optimizer.lr": 1e-4,
                          "agent.buffer_size": 1_000_000, "agent.batch_size": 32,
                          "agent.learning_starts": 80_000, "agent.train_freq": 4,
                          "agent.target_update_interval": 1000, "agent.epsilon.end": 0.01,
                          "agent.loss": "mse", "eval.epsilon": 0.05, "env.sticky_actions": 0.0,
                          "agent.network.kind": "nature_cnn"},
    "zoo_dqn_atari": {"agent": DQNConfig, "total_steps": 10_000_000, "optimizer.lr": 1e-4,
                      "agent.buffer_size": 10_000, "agent.learning_starts": 100_000,
                      "agent.target_update_interval": 1000, "agent.max_grad_norm": 10.0,
                      "agent.loss": "huber", "eval.epsilon": 0.0, "env.frame_stack": 4},
    "minatar_dqn": {"agent": DQNConfig, "total_steps": 5_000_000, "optimizer.lr": 0.00025,
                    "optimizer.alpha": 0.95, "optimizer.eps": 0.01, "optimizer.centered": True,
                    "agent.buffer_size": 100_000, "agent.batch_size": 32,
                    "agent.learning_starts": 5000, "agent.train_freq": 1,
                    "agent.epsilon.end": 0.1, "env.sticky_action_prob": 0.1,
                    "agent.network.kind": "minatar_cnn"},
}


def lookup(cfg, dotted):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_composes_with_its_reference_values_and_runs(name, run_dir):
    cfg = compose_config([f"experiment={name}"])
    expected = PRESETS[name]
    assert type(cfg.agent) is expected["agent"]
    for key, value in expected.items():
        if key != "agent":
            assert lookup(cfg, key) == value, key
    if expected["agent"] is DQNConfig:  # no reference has rlexp's DQN defaults: all pinned
        a = cfg.agent
        assert (a.n_step, a.network.dueling, a.tau, a.lr_final_fraction) == (1, False, 1.0, 1.0)
    shrink = ["total_steps=300", "eval.episodes=2", "eval.every_steps=0",
              "eval.max_episode_steps=100"]
    if expected["agent"] is DQNConfig:
        shrink += ["agent.learning_starts=100", "agent.train_freq=10", "agent.gradient_steps=1",
                   "agent.buffer_size=1000"]
    metrics = run_in_process([f"experiment={name}", "device=cpu", *shrink], run_dir)
    assert metrics.status == "completed" and metrics.env_steps == 300


def test_presets_are_listed_in_the_readme():
    readme = (REPO / "README.md").read_text()
    for name in PRESETS:
        assert f"experiment={name}" in readme


class _Lean:
    """A fixed policy for CartPole: push the way the pole leans (episodes of varied lengths)."""

    def act(self, obs, explore=True):
        return (obs[..., 2] > 0).astype(np.int64)


class _CountSteps(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.steps = 0

    def step(self, action):
        self.steps += 1
        return super().step(action)


BATCHED_EVAL_IDS = [env_id for env_id in sorted(gym.registry)
                    if batched_eval_envs(env_id, {}, 1, 10) is not None]


@pytest.mark.parametrize("env_id", BATCHED_EVAL_IDS)
def test_a_batched_evaluation_plays_the_episodes_of_the_per_env_one_bit_for_bit(env_id):
    from rlexp.build import make_eval_envs, make_vector_env
    from rlexp.config import EvalConfig
    from rlexp.envs import EnvConfig
    from rlexp.evaluator import evaluate

    cfg, cap = EnvConfig(id=env_id), 40  # the cap: some episodes end by it, some fall
    eval_cfg = EvalConfig(episodes=7, max_episode_steps=cap)
    batched, _ = make_eval_envs(cfg, eval_cfg, None, members=3)
    per_env = make_vector_env(cfg, 21, cap, evaluation=True)
    assert not isinstance(batched, type(per_env))
    for epsilon in (0.0, 0.3):
        fast = evaluate(_Lean(), batched, [5, 50, 500], epsilon=epsilon)
        slow = evaluate(_Lean(), per_env, [5, 50, 500], epsilon=epsilon)
        for a, b in zip(fast, slow, strict=True):
            assert a.returns.tolist() == b.returns.tolist()
            assert a.truncated.tolist() == b.truncated.tolist()
        cut = np.concatenate([r.truncated for r in slow])
        assert cut.any() and not cut.all()
    # Its reset is gymnasium's own per-env reset, seed by seed.
    obs, _ = batched.reset(seed=list(range(21)))
    for k, env in enumerate(per_env.envs):
        assert env.reset(seed=k)[0].tobytes() == obs[k].tobytes()


def test_an_evaluation_steps_each_episode_to_its_end_and_no_further():
    from rlexp.build import make_env, make_vector_env
    from rlexp.envs import EnvConfig
    from rlexp.evaluator import evaluate

    cfg = EnvConfig(id="CartPole-v1")
    envs = make_vector_env(cfg, 6, evaluation=True)  # the per-env form (not batched)
    envs.envs = [_CountSteps(env) for env in envs.envs]
    results = evaluate(_Lean(), envs, [10, 20])  # two members, three episodes each
    returns = np.concatenate([r.returns for r in results])
    assert len(set(returns)) > 1  # episodes of different lengths: the short ones wait
    assert [env.steps for env in envs.envs] == returns.tolist()  # CartPole pays 1 per step
    # Each episode is the one the policy plays alone from its seed.
    for k, seed in enumerate([10, 11, 12, 20, 21, 22]):
        env = make_env(cfg)
        obs, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(obs[2] > 0))
            total, done = total + reward, terminated or truncated
        assert returns[k] == total
