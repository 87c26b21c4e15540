"""DQN: Q-learning from a replay buffer, with a target network.

Every env step goes into the replay buffer. Once ``learning_starts`` steps are stored, every
``train_freq`` vector-env steps the online network takes ``gradient_steps`` gradient steps on
sampled minibatches, toward ``r + gamma * Q_target(s', argmax_a' Q(s', a'))``, where the
argmax uses the target network (plain DQN) or the online network (``double_q``). Terminated
transitions do not bootstrap; truncated ones do. Every ``target_update_interval`` env steps the
target network moves to the online one: a copy when ``tau`` is 1, Polyak averaging otherwise.

Options: n-step returns (``n_step``), a dueling head (``network.dueling``) and proportional
prioritized replay (``prioritized``). Subclasses change what the network predicts and the loss
(``_loss``), as C51 does; the replay, target network and update schedule stay.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from rlexp.agents.base import AgentSpec, Transition
from rlexp.agents.qlearning import (
    EpsilonConfig,
    NetworkConfig,
    QLearningAgent,
    QLearningConfig,
    shared_counter,
    td_loss,
)
from rlexp.members import member_weights
from rlexp.replay import MemberReplay, ReplaySample, make_replay

log = logging.getLogger("rlexp")


@dataclass
class DQNConfig(QLearningConfig):
    """DQN's fields. The defaults are tuned on CartPole-v1 for results that hold to the end of
    the budget and a fast first solve (docs/tuning.md): every 128 env steps, 16 gradient steps
    on batches of 256 for a dueling 128-128 MLP with Adam (lr 3.5e-3, decaying to 0 over the
    run), 3-step Double DQN targets, Huber loss, unclipped, a Polyak-averaged target network, and
    epsilon 1 -> 0.01 over the first 16% of the run."""

    name: str = "dqn"
    #: Transitions kept in the replay buffer; the oldest are overwritten.
    buffer_size: int = 100_000
    #: Minibatch size of each gradient step.
    batch_size: int = 256
    #: Env steps collected (with epsilon-greedy actions) before the first gradient step.
    learning_starts: int = 1_000
    #: Train every this many vector-env steps ...
    train_freq: int = 128
    #: ... taking this many gradient steps each time.
    gradient_steps: int = 16
    #: Env steps between target-network updates.
    target_update_interval: int = 10
    #: Target update rate: 1.0 copies the online net, < 1 is Polyak averaging.
    tau: float = 0.05
    #: Double DQN: pick the next action with the online net, value it with the target net.
    double_q: bool = True
    #: n-step returns: a target sums the discounted rewards of up to this many steps of the
    #: same env, then bootstraps with gamma**n (fewer steps at an episode's end; a terminated
    #: end does not bootstrap, a truncated one does). 1: one-step Q-learning. Rainbow uses 3.
    n_step: int = 3
    #: Proportional prioritized replay (Schaul et al. 2016): transitions are sampled in
    #: proportion to (|TD error| + priority_epsilon) ** priority_alpha, new ones at the largest
    #: priority so far, and losses weighted by importance-sampling weights of exponent beta,
    #: annealed from priority_beta to 1 over total_steps.
    prioritized: bool = False
    #: How much the priorities count (0: uniform sampling).
    priority_alpha: float = 0.6
    #: The importance-sampling exponent at step 0 (1: full correction).
    priority_beta: float = 0.4
    #: Added to |TD error|, so that no transition's priority is 0.
    priority_epsilon: float = 1e-6
    loss: str = "huber"
    max_grad_norm: float | None = None
    lr_final_fraction: float = 0.0
    network: NetworkConfig = field(
        default_factory=lambda: NetworkConfig(hidden=[128, 128], dueling=True))
    epsilon: EpsilonConfig = field(
        default_factory=lambda: EpsilonConfig(start=1.0, end=0.01, fraction=0.16)
    )

    member_fields: ClassVar[tuple[str, ...]] = (
        *QLearningConfig.member_fields, "buffer_size", "tau", "target_update_interval",
        "n_step", "priority_alpha", "priority_beta", "priority_epsilon")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("buffer_size", "batch_size", "train_freq", "gradient_steps",
                     "target_update_interval", "n_step"):
            if getattr(self, name) <= 0:
                raise ValueError(f"agent.{name}={getattr(self, name)} must be positive")
        if self.learning_starts < 0:
            raise ValueError(f"agent.learning_starts={self.learning_starts} must be >= 0")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"agent.tau={self.tau} must be in (0, 1]")
        for name in ("priority_alpha", "priority_beta"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"agent.{name}={getattr(self, name)} must be in [0, 1]")
        if not self.priority_epsilon > 0:
            raise ValueError(f"agent.priority_epsilon={self.priority_epsilon} must be > 0")


class DQNAgent(QLearningAgent):
    Config = DQNConfig

    @classmethod
    def memory_settings(cls, cfg) -> list[str]:
        return [f"agent.buffer_size={cfg.buffer_size}"]

    def __init__(self, spec: AgentSpec):
        super().__init__(spec)
        cfg, device = self.cfg, spec.device
        self.target_net = self.q_net.clone().requires_grad_(False)
        # Updated in place (load_state_dicts too), so the lists stay those of the networks.
        self._params = (list(self.target_net.parameters()), list(self.q_net.parameters()))
        #: The target update rate: one number, or per member (a weight per parameter).
        self._tau = member_weights([m.cfg.tau for m in self.members], self._params[1])
        memories = []
        for m in self.members:
            memory = make_replay(m.cfg.buffer_size, spec.observation_space, spec.frame_stack,
                                 device, m.seed, m.cfg.n_step, m.cfg.gamma)
            if cfg.prioritized:
                memory.prioritize(m.cfg.priority_alpha, m.cfg.priority_epsilon, m.seed)
            memories.append(memory)
        self.replay = MemberReplay(memories)
        log.info("replay memory: %s", self.replay.describe())
        self.vector_steps = 0  # calls to learn(); train_freq counts these
        self.num_envs = 1  # envs per learn() call (the target update interval counts env steps)
        #: Gradient steps of this vector step's update still to take, and the losses and
        #: Q-values of those taken: non-zero only after a stop cut the update short.
        self.steps_left = 0
        self.burst: list[tuple[torch.Tensor, torch.Tensor]] = []
        # Counted on the buffer, not on env steps, so that an agent restored without its replay
        # buffer refills it before training again; and on transitions added, which every
        # member has as many of (a member's stored n-step transitions depend on its episodes).
        # Honoured above buffer_size too (as SB3 and the zoo's Atari settings do): the buffer
        # then holds its newest buffer_size transitions when training starts.
        self.min_replay = max(cfg.learning_starts, 1)
        # After n_step steps every env has a complete n-step transition to sample.
        self._longest_n_step = max(m.cfg.n_step for m in self.members)

    def learn(self, batch: Transition, should_stop=None) -> dict[str, torch.Tensor] | None:
        n = batch.obs.shape[1]
        if n != self.num_envs:  # the first step: intervals in env steps count vector steps
            self.num_envs = n
            self._warn_rounded_intervals()
        self.env_steps += n
        self.vector_steps += 1
        self.replay.add(batch.obs, batch.action, batch.reward, batch.next_obs, batch.terminated,
                        batch.truncated)
        if not self._ready():
            return None
        if self.vector_steps % self.cfg.train_freq == 0:
            self.steps_left = self.cfg.gradient_steps
        return self._update(should_stop)

    def _warn_rounded_intervals(self) -> None:
        """Say so where a member's target_update_interval (env steps) is not a whole number of
        vector steps of ``num_envs`` envs: the target network then updates every this many."""
        n = self.num_envs
        for interval in sorted({m.cfg.target_update_interval for m in self.members}):
            if interval % n:
                log.warning("agent.target_update_interval=%d is not a multiple of the %d envs "
                            "stepped together (env.num_envs): the target network updates every "
                            "%d env steps", interval, n, max(interval // n, 1) * n)

    def finish_pending(self) -> dict[str, torch.Tensor] | None:
        if not self.steps_left:
            return None
        if not self._ready():  # resumed without its replay buffer: dropped
            self.steps_left, self.burst = 0, []
            return None
        return self._update(None)

    def _ready(self) -> bool:
        """Whether the replay memories hold enough to train on."""
        return self.replay.added >= max(self.min_replay, self._longest_n_step * self.num_envs)

    def _update(self, should_stop) -> dict[str, torch.Tensor] | None:
        """This vector step's gradient steps (those left of them), then the target update."""
        metrics = None
        while self.steps_left:
            if should_stop is not None and should_stop():
                return None  # the rest stays pending: finish_pending() takes it up
            self.burst.append(self._gradient_update())
            self.steps_left -= 1
        if self.burst:
            # Kept as tensors and reduced once per burst: no extra ops per gradient step.
            losses, qs = zip(*self.burst, strict=True)
            metrics = {"loss": torch.stack(losses, dim=1).mean(dim=1),
                       "q_mean": torch.cat(qs, dim=1).mean(dim=1)}
            self.burst = []
        due = [self.vector_steps % max(m.cfg.target_update_interval // self.num_envs, 1) == 0
               for m in self.members]
        if any(due):
            self._update_target(due)
        return metrics

    @property
    def priority_betas(self) -> list[float]:
        """Each member's importance-sampling exponent now: annealed linearly to 1 over the
        run."""
        done = min(self.env_steps / self.total_steps, 1.0)
        return [m.cfg.priority_beta + (1.0 - m.cfg.priority_beta) * done for m in self.members]

    def _gradient_update(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One gradient step on each member's sampled minibatch; returns the members' losses
        ``[members]`` and their batches' Q(s, a) ``[members, batch]``."""
        b = self.replay.sample(self.cfg.batch_size,
                               self.priority_betas if self.replay.prioritized else None)
        self._noise(self.q_net, self.target_net, on=True)
        loss, q, errors = self._loss(b)
        self._gradient_step(loss)
        if self.replay.prioritized:
            self.replay.update_priorities(b.index, errors)
        return loss.detach(), q.detach()

    def _loss(self, b: ReplaySample) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each member's loss ``[members]``, its batch's Q(s, a) and each sample's error (the
        priority's base), ``[members, batch]``."""
        cfg = self.cfg
        q_all = self.q_net(b.obs)
        with torch.no_grad():
            next_all = self.target_net(b.next_obs)
            if cfg.double_q:
                # The online net picks the next action in a forward of its own, not in one
                # over [obs; next_obs]: backward then runs over the batch that has gradients
                # only (a third less arithmetic per step).
                next_action = self.q_net(b.next_obs).argmax(dim=2, keepdim=True)
                next_q = next_all.gather(2, next_action).squeeze(2)
            else:
                next_q = next_all.max(dim=2).values
        q = q_all.gather(2, b.action[..., None]).squeeze(2)
        target = b.reward + b.discount * next_q
        return td_loss(q, target, cfg.loss, b.weight), q, q.detach() - target

    @torch.no_grad()
    def _update_target(self, due: list[bool]) -> None:
        """Update the target networks of the members whose update is ``due``: one op for all
        parameters (per-tensor calls cost ~10 us each). A member not due has rate 0, which
        leaves its target as it is, and a rate of 1 copies exactly, so a member's target is
        its run's alone whatever the others' intervals."""
        targets, online = self._params
        tau = self._tau if all(due) else member_weights(
            [m.cfg.tau if d else 0.0 for m, d in zip(self.members, due, strict=True)], online)
        if isinstance(tau, float) and tau == 1.0:
            torch._foreach_copy_(targets, online)
        else:
            torch._foreach_lerp_(targets, online, tau)

    def state_dict(self, i: int = 0):
        """Includes the replay buffer under ``"replay"`` (drop it to save space)."""
        return {**super().state_dict(i), "target_net": self.target_net.member_state_dict(i),
                "vector_steps": self.vector_steps, "num_envs": self.num_envs,
                "steps_left": self.steps_left,
                "burst": [[loss[i], q[i]] for loss, q in self.burst],
                "replay": self.replay.state_dict(i)}

    def load_state_dicts(self, states):
        super().load_state_dicts(states)
        for i, state in enumerate(states):
            self.target_net.load_member_state_dict(i, state["target_net"])
        self.vector_steps = shared_counter(states, "vector_steps")
        self.num_envs = int(states[0].get("num_envs", 1))
        self.steps_left = shared_counter(states, "steps_left", default=0)
        self.burst = [(torch.stack([s["burst"][k][0] for s in states]),
                       torch.stack([s["burst"][k][1] for s in states]))
                      for k in range(len(states[0].get("burst", [])))]
        for i, state in enumerate(states):
            if "replay" in state:  # else the buffer starts empty and refills before training
                self.replay.load_state_dict(i, state["replay"])
