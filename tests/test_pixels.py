"""Pixel envs: Atari's DQN protocol, MinAtar, the convolutional networks, and the replay memory
that stores each frame once."""

from __future__ import annotations

import math
from functools import partial

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import FrameStackObservation

from rlexp import evaluate, evaluator, runner
from rlexp.build import make_env, make_eval_envs, make_vector_env
from rlexp.config import EVAL_MAX_EPISODE_STEPS
from rlexp.envs.minatar import GAMES
from rlexp.nets import network_kind, q_network
from rlexp.replay import FrameReplayBuffer, make_replay
from tests.conftest import (
    compose_config,
    read_scalars,
    run_in_process,
    sigint_when_learning_at,
    solo_agent,
)

# ------------------------------------------------------------------------------ replay memory


class Frames(gym.Env):
    """Frames that name what they are: [env, episode, step, noise...]. Episodes end at random,
    by termination or by a time limit."""

    action_space = gym.spaces.Discrete(3)

    def __init__(self, index: int, shape=(2, 6), dtype=np.uint8):
        self.index, self.shape, self.dtype = index, shape, dtype
        high = 1 if dtype == np.bool_ else 255
        self.observation_space = gym.spaces.Box(0, high, shape, dtype)
        self.episode = self.t = 0

    def frame(self) -> np.ndarray:
        if self.dtype == np.bool_:
            return self.np_random.random(self.shape) < 0.5
        frame = self.np_random.integers(0, 256, self.shape).astype(np.uint8)
        frame.flat[:3] = (self.index, self.episode % 256, self.t)
        return frame

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return self.frame(), {}

    def step(self, action):
        self.t += 1
        terminated = bool(self.np_random.random() < 0.08)
        return self.frame(), float(self.t + action), terminated, self.t >= 15, {}


def frame_envs(n: int, stack: int, padding: str = "reset", dtype=np.uint8):
    def make(i):
        env = Frames(i, dtype=dtype)
        return FrameStackObservation(env, stack, padding_type=padding) if stack > 1 else env
    return SyncVectorEnv([lambda i=i: make(i) for i in range(n)],
                         autoreset_mode=AutoresetMode.SAME_STEP)


def key(obs, action, reward, next_obs, terminated, truncated) -> bytes:
    return b"|".join([np.ascontiguousarray(obs).tobytes(), np.ascontiguousarray(next_obs).tobytes(),
                      np.float32(action).tobytes(), np.float32(reward).tobytes(),
                      np.float32(terminated).tobytes(), np.float32(truncated).tobytes()])


def transitions(envs, steps: int, seed: int = 0) -> list[tuple]:
    """Step ``envs`` with random actions; the transitions as the training loop builds them."""
    rng = np.random.default_rng(seed)
    obs = envs.reset(seed=seed)[0].copy()  # make_vector_env's envs reuse their buffers
    out = []
    for _ in range(steps):
        action = rng.integers(envs.single_action_space.n, size=envs.num_envs)
        next_obs, reward, terminated, truncated, info = envs.step(action)
        real = next_obs.copy()
        for i in np.flatnonzero(info.get("_final_obs", ())):
            real[i] = info["final_obs"][i]
        out.append((obs, action, reward, real, terminated, truncated))
        obs = next_obs.copy()
    return out


def fill(replay, envs, steps: int, seed: int = 0) -> list[list[bytes]]:
    """Add ``steps`` steps of ``envs`` to ``replay``; returns each step's transitions (keys)."""
    added = []
    for t in transitions(envs, steps, seed):
        replay.add(*t)
        added.append([key(*row) for row in zip(*t, strict=True)])
    return added


def sampled_keys(replay, batches: int, batch_size: int = 64) -> list[bytes]:
    keys = []
    for _ in range(batches):
        b = replay.sample(batch_size)
        keys += [key(*t) for t in zip(b.obs.numpy(), b.action.numpy(), b.reward.numpy(),
                                      b.next_obs.numpy(), b.terminated.numpy(),
                                      b.truncated.numpy(), strict=True)]
    return keys


@pytest.mark.parametrize("n_envs,stack,padding,dtype", [
    (1, 4, "reset", np.uint8), (3, 4, "reset", np.uint8), (3, 4, "zero", np.uint8),
    (2, 1, None, np.bool_),
])
def test_sampled_stacks_are_the_envs_own_across_episodes_envs_and_wrap_around(
        n_envs, stack, padding, dtype):
    capacity = 90  # the ring wraps around many times in 400 steps
    envs = frame_envs(n_envs, stack, padding or "reset", dtype)
    replay = make_replay(capacity, envs.single_observation_space, stack, "cpu", seed=1)
    assert isinstance(replay, FrameReplayBuffer)
    added = fill(replay, envs, 400)
    # What the memory can still hold: the last capacity rows' worth of steps.
    window = {k for step in added[-(capacity // n_envs):] for k in step}
    sampled = sampled_keys(replay, 40)
    assert set(sampled) <= window  # frame for frame what the env returned, never a mix
    recent = {k for step in added[-(capacity // n_envs) // 2:] for k in step}
    assert len(recent & set(sampled)) / len(recent) > 0.95  # and all of them reachable


def test_atari_stacks_sampled_from_the_memory_are_those_the_env_returned():
    cfg = compose_config(["env=atari", "env.id=ALE/Breakout-v5"]).env
    envs = make_vector_env(cfg, 2)  # life-loss ends: many episode starts
    replay = make_replay(150, envs.single_observation_space, cfg.frame_stack, "cpu")
    added = fill(replay, envs, 300)
    window = {k for step in added[-75:] for k in step}
    assert set(sampled_keys(replay, 10)) <= window
    assert replay.transitions > 120  # only a few rows went to episodes' first frames


def test_a_bad_frame_stack_is_refused():
    replay = FrameReplayBuffer(10, (4, 2, 6), np.uint8, 4, "cpu")
    obs = np.zeros((1, 4, 2, 6), np.uint8)
    with pytest.raises(ValueError, match="does not continue"):
        replay.add(obs, [0], [0.0], obs + 1, [False], [False])


@pytest.mark.parametrize("shape,dtype,stack", [
    ((4, 84, 84), np.uint8, 4),  # Atari
    *[(None, np.bool_, 1)] * len(GAMES),  # MinAtar, one per game (shapes read from the env)
], ids=["atari", *GAMES])
def test_replay_memory_is_within_1_1x_of_the_raw_bytes(shape, dtype, stack, request):
    if shape is None:
        game = request.node.callspec.id
        shape = make_env(compose_config(["env=minatar", f"env.game={game}"]).env
                         ).observation_space.shape
    replay = FrameReplayBuffer(1000, shape, dtype, stack, "cpu")
    frame_bytes = math.prod(shape[1:] if stack > 1 else shape) * np.dtype(dtype).itemsize
    raw = frame_bytes + 1 + 4 + 2  # one new frame, action, reward, two flags
    assert replay.raw_bytes_per_transition == raw
    assert replay.nbytes / 1000 / raw <= 1.1
    if stack > 1:  # 1M Atari transitions: under 7.8 GB (obs and next_obs stacks: ~56 GB)
        assert replay.nbytes / 1000 * 1_000_000 < 7.8e9


def test_the_memory_restored_from_its_state_continues_exactly():
    steps = transitions(frame_envs(2, 4), 150)
    space = frame_envs(2, 4).single_observation_space
    straight = make_replay(50, space, 4, "cpu", seed=3)
    for t in steps[:120]:
        straight.add(*t)
    restored = make_replay(50, space, 4, "cpu", seed=4)
    restored.load_state_dict(straight.state_dict())
    for t in steps[120:]:
        straight.add(*t)
        restored.add(*t)
    assert restored.written == straight.written and len(restored) == len(straight)
    assert sampled_keys(restored, 5) == sampled_keys(straight, 5)


# ------------------------------------------------------------------------------- Atari protocol


def play(env: gym.Env, seed: int, until_game_over: bool = True):
    """Random play until the game is over; returns rewards, terminations and the last info."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    rewards, ends, info = [], 0, {}
    while True:
        _, reward, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        rewards.append(reward)
        if terminated or truncated:
            ends += 1
            if "episode" in info or not until_game_over:
                return np.array(rewards), ends, info
            env.reset()


def test_atari_observations_are_uint8_frame_stacks_and_pick_the_nature_network():
    cfg = compose_config(["env=atari"]).env
    env = make_env(cfg)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert cfg.channels == "first"
    assert network_kind("auto", env.observation_space, cfg.channels) == "nature_cnn"
    net = q_network(env.observation_space, env.action_space.n, [64], kind="auto",
                    channels=cfg.channels)
    assert net(torch.as_tensor(obs[None])).shape == (1, env.action_space.n)
    minatar_cfg = compose_config(["env=minatar"]).env
    minatar = make_env(minatar_cfg)
    assert minatar.observation_space.dtype == np.bool_ and minatar_cfg.channels == "last"
    assert network_kind("auto", minatar.observation_space, "last") == "minatar_cnn"
    # Not an image (env.channels=none): an MLP reads the planes.
    assert network_kind("auto", minatar.observation_space, None) == "mlp"


def test_training_clips_rewards_and_ends_episodes_at_lives_lost_evaluation_does_not():
    cfg = compose_config(["env=atari", "env.id=ALE/SpaceInvaders-v5"]).env  # 3 lives, 5-30/alien
    rewards, ends, info = play(make_env(cfg), seed=0)
    assert np.abs(rewards).max() <= 1.0 and ends == 3  # clipped; one episode per life
    # The game's raw score is what training curves report: more than the clipped sum.
    assert info["episode"]["r"] > rewards.sum() > 0
    rewards, ends, info = play(make_env(cfg, evaluation=True), seed=0)
    assert rewards.max() >= 5 and ends == 1  # raw scores, one episode per game
    assert info["episode"]["r"] == rewards.sum()


def test_an_evaluation_of_a_policy_that_never_presses_fire_is_cut_as_truncated():
    cfg = compose_config(["env=atari", "env.id=ALE/Breakout-v5", "eval.episodes=2",
                          "eval.max_episode_steps=400"])
    envs, cap = make_eval_envs(cfg.env, cfg.eval, None)

    class Noop:
        def act(self, obs, explore=True):
            return np.zeros(obs.shape[:2], dtype=np.int64)  # after the first life, never FIRE

    (result,) = evaluator.evaluate(Noop(), envs, [1])
    assert cap == 400 and result.truncated.all()
    # The cap without eval.max_episode_steps: 27,000 agent steps (108,000 frames).
    assert EVAL_MAX_EPISODE_STEPS * cfg.env.frame_skip == cfg.env.max_frames_per_episode


def test_training_curves_report_raw_scores_of_full_games(run_dir):
    # Random play (no learning): SpaceInvaders' scores are multiples of 5 and a game runs
    # hundreds of steps, so each 50-step log point holds at most one game.
    run_in_process(["env=atari", "env.id=ALE/SpaceInvaders-v5", "total_steps=1500",
                    "agent.learning_starts=2000", "agent.buffer_size=2000", "log.every_steps=50",
                    "eval.every_steps=0", "eval.episodes=1", "eval.max_episode_steps=50",
                    "device=cpu"], run_dir)
    returns = [v for _, v in read_scalars(run_dir)["train/episode_return"]]
    lengths = [v for _, v in read_scalars(run_dir)["train/episode_length"]]
    assert returns and all(r % 5 == 0 for r in returns) and max(returns) > 30
    assert min(lengths) > 100  # whole games, not lives


# ------------------------------------------------------------------------- runs, end to end

#: A pixel run in a few seconds: a small memory, small batches, short evaluation episodes.
PIXEL_TINY = ["device=cpu", "total_steps=400", "agent.learning_starts=100",
              "agent.buffer_size=500", "agent.batch_size=8", "agent.train_freq=4",
              "agent.gradient_steps=1", "log.every_steps=100", "eval.every_steps=200",
              "eval.episodes=1", "eval.max_episode_steps=50", "checkpoint.every_steps=200"]
PIXEL_RUNS = {
    "atari": ["env=atari"],
    "atari-rmsprop-eval-epsilon": ["env=atari", "env.id=ALE/Pong-v5", "optimizer=rmsprop",
                                   "eval.epsilon=0.05", "env.sticky_actions=0",
                                   "env.screen_size=42"],  # a quarter of the convolutions
    **{f"minatar-{game}": ["env=minatar", f"env.game={game}"] for game in GAMES},
    "minatar-mlp": ["env=minatar", "agent.network.kind=mlp", "agent.network.hidden=[32]"],
    "minatar-qnet": ["env=minatar", "agent=qnet"],
}


@pytest.mark.parametrize("name", sorted(PIXEL_RUNS))
def test_every_pixel_option_trains_a_tiny_budget_and_logs_its_curves(name, run_dir):
    overrides = [*PIXEL_TINY, *PIXEL_RUNS[name]]
    if "agent=qnet" in overrides:  # no replay options
        overrides = [o for o in overrides if not o.startswith("agent.") or "network" in o]
    metrics = run_in_process(overrides, run_dir)
    assert metrics.status == "completed" and metrics.env_steps == 400
    scalars = read_scalars(run_dir)
    assert [s for s, _ in scalars["eval/return_mean"]] == [0, 200, 400]
    assert [s for s, _ in scalars["train/loss"]] == [100, 200, 300, 400]  # learns from step 100
    assert all(math.isfinite(v) for _, v in scalars["train/loss"] + scalars["train/q_mean"])


def test_a_network_that_does_not_fit_the_observations_is_refused_in_one_line(run_dir):
    from rlexp.config import ConfigError

    with pytest.raises(ConfigError, match="nature_cnn needs .* at least 36x36") as info:
        run_in_process([*PIXEL_TINY, "env=minatar", "agent.network.kind=nature_cnn"], run_dir)
    assert "\n" not in str(info.value)


def test_evaluation_epsilon_draws_nothing_from_training():
    from rlexp.agents import AGENTS

    cfg = compose_config(["env=minatar", "device=cpu"])
    envs = make_vector_env(cfg.env, 1)
    agent = solo_agent(AGENTS["dqn"], cfg.agent, envs.single_observation_space,
                       envs.single_action_space, partial(torch.optim.Adam), 1000)
    eval_envs, _ = make_eval_envs(cfg.env, cfg.eval, None)
    rng_before = agent.rngs[0].bit_generator.state
    (greedy,) = evaluator.evaluate(agent, eval_envs, [7], epsilon=0.0)
    noisy = [evaluator.evaluate(agent, eval_envs, [7], epsilon=0.5)[0].returns for _ in range(2)]
    assert agent.rngs[0].bit_generator.state == rng_before
    np.testing.assert_array_equal(noisy[0], noisy[1])  # seeded by the evaluation's seed
    assert not np.array_equal(noisy[0], greedy.returns) or greedy.returns.std() > 0


@pytest.mark.parametrize("env", ["minatar", "atari"])
def test_a_pixel_run_stopped_mid_episode_resumes_exactly(env, tmp_path, monkeypatch):
    """The envs' state (MinAtar's plain data, the Atari emulator's own saved state), the frame
    memory and the loop all continue: the curves and weights are an uninterrupted run's."""

    from rlexp import rundir
    from rlexp.agents.dqn import DQNAgent
    from rlexp.checkpoint import load_training_state
    from rlexp.stop import StopSignals

    args = [*PIXEL_TINY, f"env={env}", *(["env.screen_size=42"] if env == "atari" else [])]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    run_in_process(args, straight)
    sigint_when_learning_at(monkeypatch, DQNAgent, 256)
    with StopSignals() as stop:
        assert run_in_process(args, stopped, stop).status == "interrupted"
    monkeypatch.undo()
    assert load_training_state(stopped / rundir.LAST)["loop"]["env_state"] is not None
    resumed = runner.run(compose_config([*args, f"resume={stopped}"]), stopped)
    assert resumed.status == "completed" and resumed.resumed_from_step == 257
    def curves(run_dir):
        return {tag: sorted(points) for tag, points in read_scalars(run_dir).items()
                if not tag.startswith("time/")}
    assert curves(stopped) == curves(straight)
    final, expected = (load_training_state(d / rundir.FINAL)["agent"]["q_net"]
                       for d in (stopped, straight))
    assert all(torch.equal(final[k], expected[k]) for k in expected)


@pytest.mark.parametrize("env", ["minatar", "atari"])
def test_a_pixel_run_plays_back_as_a_colour_animation(env, run_dir):
    from PIL import Image

    run_in_process([*PIXEL_TINY, f"env={env}", "total_steps=200"], run_dir)
    evaluate.main([f"run_dir={run_dir}", "episodes=1", "video=true"])
    gif = Image.open(run_dir / "eval.gif")
    assert gif.n_frames > 1 and min(gif.size) >= 100
    colours = {c for frame in range(min(gif.n_frames, 20)) if not gif.seek(frame)
               for _, c in gif.convert("RGB").getcolors(1 << 16)}
    assert len(colours) >= 3 and any(len(set(c)) > 1 for c in colours)  # not grayscale


def test_an_env_state_that_does_not_fit_the_envs_is_refused_not_half_applied():
    from rlexp.envs import snapshot

    cartpole = make_vector_env(compose_config([]).env, 1)
    cartpole.reset(seed=0)
    minatar = make_vector_env(compose_config(["env=minatar"]).env, 1)
    assert snapshot.restore(cartpole, snapshot.capture(cartpole))
    assert not snapshot.restore(minatar, snapshot.capture(cartpole))
