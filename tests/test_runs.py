"""Whole runs with tiny budgets: every agent x vector env (sgd or adam, on cpu or auto) writes the
documented TensorBoard scalars (read back from the event file), metrics.json, a checkpoint that
load_agent restores, and the same curves for the same seed."""

import json
import math

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

import rlexp
from tests.conftest import TINY, compose_config, options, read_scalars, run_in_process, shrunk

TAGS = {"train/loss", "train/episode_return", "train/episode_length", "train/epsilon",
        "train/q_mean", "eval/return_mean", "eval/return_std", "time/sps"}
#: An env=gym id for the runs here: Discrete observations (one-hot at the env boundary).
GYM_ID = "FrozenLake-v1"


def env_overrides(env: str) -> list[str]:
    return ["env=gym", f"env.id={GYM_ID}"] if env == "gym" else [f"env={env}"]


#: Every registered env option whose observations are not images (pixels: test_pixels).
VECTOR_ENVS = [env for env in options("env")
               if compose_config(env_overrides(env)).env.channels is None]


def tiny(agent: str, env: str, optimizer: str = "adam", device: str = "cpu") -> list[str]:
    return shrunk([f"agent={agent}", *env_overrides(env), f"optimizer={optimizer}",
                   f"device={device}", *TINY])


def combinations() -> list[tuple[str, str]]:
    """Every registered agent on a discrete (toy) and a vector (CartPole) observation, and
    every vector env with the default agent and with qnet: the agents share the env boundary
    and the network's input layers (test_boundary's generated envs draw agents and observation
    spaces together)."""
    agents = options("agent")
    pairs = [(agent, env) for agent in agents for env in ("toy", "cartpole")]
    pairs += [(agent, env) for env in VECTOR_ENVS for agent in ("dqn", "qnet")]
    return list(dict.fromkeys(pairs))


# The optimizers (sgd, adam) and devices (cpu, auto) alternate over the combinations.
@pytest.mark.parametrize("agent,env,optimizer,device", [
    (agent, env, ("sgd", "adam")[i % 2], ("cpu", "auto")[i // 2 % 2]) for i, (agent, env) in
    enumerate(combinations())])
def test_every_combination_trains_and_logs_finite_scalars(run_dir, agent, env, optimizer, device):
    metrics = run_in_process(tiny(agent, env, optimizer, device), run_dir)
    scalars = read_scalars(run_dir)
    assert set(scalars) >= TAGS, f"missing {TAGS - set(scalars)}"
    for tag in TAGS:
        assert all(math.isfinite(v) for _, v in scalars[tag]), tag
    # Logged every 100 env steps over 600 steps; evaluated untrained (step 0), at 300 and at
    # the end.
    assert [s for s, _ in scalars["train/epsilon"]] == [100, 200, 300, 400, 500, 600]
    assert [s for s, _ in scalars["eval/return_mean"]] == [0, 300, 600]
    assert metrics.status == "completed" and metrics.env_steps == 600
    assert metrics.eval_return_mean == pytest.approx(scalars["eval/return_mean"][-1][1])
    assert metrics.device == ("cuda:0" if device == "auto" and torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("total_steps", [600, 1000])
def test_the_default_evaluation_interval_gives_the_same_curve_points_for_any_budget(
        run_dir, total_steps):
    from rlexp.config import EVAL_POINTS

    run_in_process([*tiny("qnet", "toy"), f"total_steps={total_steps}", "eval.every_steps=null"],
                   run_dir)
    steps = [s for s, _ in read_scalars(run_dir)["eval/return_mean"]]
    assert steps == list(range(0, total_steps + 1, total_steps // EVAL_POINTS))


def test_run_dir_holds_metrics_config_and_a_loadable_checkpoint(run_dir):
    run_in_process(tiny("dqn", "cartpole"), run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"status", "eval_return_mean", "eval_return_std", "env_steps", "wall_seconds", "sps",
            "seed", "schema_version"} <= set(metrics)
    assert metrics["sps"] == pytest.approx(metrics["env_steps"] / metrics["wall_seconds"], rel=0.01)
    assert (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints/final.pt").is_file()

    agent = rlexp.load_agent(run_dir)
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    q = agent.q_values(obs)
    assert isinstance(q, np.ndarray) and q.shape == (5, 2) and np.isfinite(q).all()
    # numpy in and out, a batch or one observation (a tensor works too), act agreeing with Q.
    np.testing.assert_array_equal(agent.act(obs), q.argmax(axis=1))
    # (a batch of one rounds differently from a batch of five)
    np.testing.assert_allclose(agent.q_values(torch.from_numpy(obs[1])), q[1], rtol=1e-5)
    assert agent.act(obs[1]) == int(q[1].argmax()) and isinstance(agent.act(obs[1]), int)
    with pytest.raises(ValueError, match=r"has shape \(4,\): pass one, or a batch \[n, 4\]; "
                       r"got shape \(5, 3\)"):
        agent.q_values(obs[:, :3])
    # The restored network is the trained one: different from a fresh one of the same config.
    weights = torch.load(run_dir / "checkpoints/final.pt", weights_only=True)["agent"]["q_net"]
    for name, tensor in agent.agent.q_net.member_state_dict(0).items():
        torch.testing.assert_close(tensor, weights[name])


def test_a_loaded_agent_of_a_discrete_state_env_takes_states_not_one_hot_rows(run_dir):
    run_in_process(tiny("qnet", "toy"), run_dir)
    agent = rlexp.load_agent(run_dir)
    n = agent.observation_space.n
    q = agent.q_values(np.arange(n))
    assert q.shape == (n, 2) and agent.q_values(3).shape == (2,)
    np.testing.assert_allclose(agent.q_values(3), q[3], rtol=1e-5)
    for wrong in (np.eye(n), np.eye(n)[2], np.array([n])):  # one-hot rows; out of range
        with pytest.raises(ValueError, match=rf"states, integers in \[0, {n}\)"):
            agent.q_values(wrong)


def test_several_envs_step_together(run_dir):
    metrics = run_in_process([*tiny("dqn", "cartpole"), "env.num_envs=4"], run_dir)
    scalars = read_scalars(run_dir)
    # 4 envs: 150 vector steps make the 600 env steps; logging still happens every 100 steps.
    assert metrics.env_steps == 600
    assert [s for s, _ in scalars["train/epsilon"]] == [100, 200, 300, 400, 500, 600]
    assert metrics.episodes >= 4 and math.isfinite(scalars["train/loss"][-1][1])


def test_stop_on_return_ends_the_run_at_the_first_good_evaluation(run_dir):
    # Tabular Q-learning on a 4-state chain: its greedy return is 1.0 once it walks right.
    metrics = run_in_process(["agent=qnet", "env=toy", "env.n_states=4", "optimizer=sgd",
                              "optimizer.lr=0.5", "agent.network.hidden=[]",
                              "agent.network.bias=false", "agent.epsilon.end=1",
                              "total_steps=20000", "eval.every_steps=500", "eval.episodes=2",
                              "train.stop_on_return=1.0"], run_dir)
    evals = read_scalars(run_dir)["eval/return_mean"]
    assert metrics.stopped_early and metrics.env_steps < 20_000
    assert evals[-1] == (metrics.env_steps, 1.0) and all(v < 1.0 for _, v in evals[:-1])
    assert metrics.eval_return_mean == 1.0
    assert (run_dir / "checkpoints/final.pt").is_file()


def test_epsilon_follows_the_linear_schedule(run_dir):
    run_in_process([*tiny("dqn", "cartpole"), "agent.epsilon.start=1.0", "agent.epsilon.end=0.1",
                    "agent.epsilon.fraction=0.5"], run_dir)
    eps = dict(read_scalars(run_dir)["train/epsilon"])
    # Decays over the first 300 of 600 steps, then stays at the end value.
    assert eps[100] == pytest.approx(1.0 - 0.9 * 100 / 300)
    assert eps[200] == pytest.approx(1.0 - 0.9 * 200 / 300)
    assert eps[300] == eps[600] == pytest.approx(0.1)


@pytest.mark.parametrize("agent", options("agent"))
def test_same_seed_same_curves_and_different_seeds_differ(tmp_path, agent):
    def loss_curve(seed, name):
        run_in_process([*tiny(agent, "cartpole"), f"seed={seed}"], tmp_path / name)
        scalars = read_scalars(tmp_path / name)
        return scalars["train/loss"], scalars["train/episode_return"]

    first, again, other = loss_curve(1, "a"), loss_curve(1, "b"), loss_curve(2, "c")
    assert first == again
    assert first[0] != other[0]


def test_hparams_are_in_the_run_itself_with_config_text(run_dir):
    run_in_process([*tiny("qnet", "toy", "sgd"), "optimizer.lr=0.25"], run_dir)
    # One event file, in the run dir: no sub-run for the hparams.
    assert len(list(run_dir.rglob("events.out.tfevents.*"))) == 1
    acc = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = session.session_start_info.hparams
    assert hparams["optimizer.lr"].number_value == 0.25
    assert hparams["agent.name"].string_value == "qnet"
    # No experiment summary: TensorBoard infers it from all runs (see test_tensorboard_server).
    assert "_hparams_/experiment" not in content
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "lr: 0.25" in text and "variant: chain" in text
