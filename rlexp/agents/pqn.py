"""PQN: parallelised Q-learning (Gallici et al. 2024, "Simplifying Deep Temporal Difference
Learning").

No replay memory and no target network. The agent acts epsilon-greedily in ``env.num_envs``
envs for ``rollout_steps`` vector steps; then it computes each transition's lambda-return from
its own network (:func:`lambda_returns`) and takes ``epochs`` passes over the rollout, each in
``minibatches`` shuffled minibatches, one gradient step on ``0.5 (Q(s, a) - G)^2`` per
minibatch. What keeps it stable without a target network is the network's normalisation
(LayerNorm before every nonlinearity) and the many decorrelated envs.

The defaults are purejaxql's CartPole-v1 configuration (``pqn_cartpole.yaml``): rollouts of 64
steps, 4 epochs of 16 minibatches, lambda 0.95, rewards scaled by 0.1, a 256-256 LayerNorm MLP,
epsilon 1 -> 0.2 over the first 20% of the run, gradients clipped at norm 10 and the learning
rate decaying linearly to 0; ``experiment=pqn_cartpole`` adds its 32 envs, budget and RAdam.

The contract fits as it is: ``learn`` sees every vector step and decides when to update, and an
update cut short by a stop signal keeps the rest (its targets, order and position) in the
state dict, so a resumed run takes exactly the same steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch

from rlexp.agents.base import Transition
from rlexp.agents.qlearning import (
    EpsilonConfig,
    NetworkConfig,
    QLearningAgent,
    QLearningConfig,
    chosen_td_loss,
    chosen_td_loss_gradient,
    shared_counter,
)


@dataclass
class PQNConfig(QLearningConfig):
    """PQN's fields; the defaults are purejaxql's for CartPole-v1."""

    name: str = "pqn"
    #: Vector steps of every env per rollout (purejaxql's NUM_STEPS).
    rollout_steps: int = 64
    #: Passes over each rollout (NUM_EPOCHS).
    epochs: int = 4
    #: Minibatches per pass, each one gradient step (NUM_MINIBATCHES).
    minibatches: int = 16
    #: The lambda of the lambda-returns (0: one-step Q-learning targets; 1: Monte Carlo
    #: returns bootstrapped at the rollout's end).
    lambda_: float = 0.95
    #: Rewards are multiplied by this before the targets are computed (REW_SCALE).
    reward_scale: float = 0.1
    max_grad_norm: float | None = 10.0
    lr_final_fraction: float = 0.0
    network: NetworkConfig = field(
        default_factory=lambda: NetworkConfig(hidden=[256, 256], norm="layer"))
    epsilon: EpsilonConfig = field(
        default_factory=lambda: EpsilonConfig(start=1.0, end=0.2, fraction=0.2))

    member_fields: ClassVar[tuple[str, ...]] = (*QLearningConfig.member_fields, "lambda_",
                                                "reward_scale")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("rollout_steps", "epochs", "minibatches"):
            if getattr(self, name) < 1:
                raise ValueError(f"agent.{name}={getattr(self, name)} must be at least 1")
        if not 0.0 <= self.lambda_ <= 1.0:
            raise ValueError(f"agent.lambda_={self.lambda_} must be in [0, 1]")


def lambda_returns(reward: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor,
                   next_value: torch.Tensor, gamma: torch.Tensor | float,
                   lambda_: torch.Tensor | float) -> torch.Tensor:
    """The lambda-return of every step of a rollout ``[..., T, envs]``:
    ``G_t = r_t + gamma * (1 - terminated_t) * ((1 - l) V_t + l G_{t+1})`` with ``V_t`` the
    value of the step's next observation (``next_value``) and ``l`` = lambda, or 0 where the
    episode ended at t (a truncated episode bootstraps from its last observation's value, a
    terminated one not at all) and at the rollout's last step. ``gamma`` and ``lambda_``:
    numbers, or ``[..., 1, 1]`` per member."""
    steps = reward.shape[-2]
    # Every step's factors at once, a few ops a step in the recursion (the same arithmetic).
    discount = gamma * (1.0 - terminated.to(reward.dtype))
    carries = (1.0 - (terminated | truncated).to(reward.dtype)) * lambda_
    bootstrap = (1.0 - carries) * next_value
    out = torch.empty_like(reward)
    # Each step's values as [..., 1, envs], so that per-member numbers broadcast alike.
    out[..., -1:, :] = reward[..., -1:, :] + discount[..., -1:, :] * next_value[..., -1:, :]
    for t in range(steps - 2, -1, -1):
        now = slice(t, t + 1)
        mixed = bootstrap[..., now, :] + carries[..., now, :] * out[..., t + 1:t + 2, :]
        torch.add(reward[..., now, :], discount[..., now, :] * mixed, out=out[..., now, :])
    return out


#: A rollout's fields, as ``Transition`` names them.
FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")


class PQNAgent(QLearningAgent):
    Config = PQNConfig

    def __init__(self, spec):
        super().__init__(spec)
        #: The vector steps of the rollout under way, as ``learn`` received them.
        self.rollout: list[Transition] = []
        #: An update under way: the rollout as tensors, its targets, the minibatches' order
        #: ``[epochs, members, rollout_steps * envs]``, the gradient steps taken and their
        #: losses and Q-values (and the current epoch's minibatches, derived). Non-empty
        #: only while an update is cut short.
        self.pending: dict[str, Any] = {}

    def learn(self, batch: Transition, should_stop=None) -> dict[str, torch.Tensor] | None:
        self.env_steps += batch.obs.shape[1]
        # Copied: the loop may hand the same arrays back, refilled, at its next step.
        self.rollout.append(Transition(*(np.array(getattr(batch, f)) for f in FIELDS)))
        if len(self.rollout) < self.cfg.rollout_steps:
            return None
        self.pending = self._prepare(self.rollout)
        self.rollout = []
        return self._update(should_stop)

    def finish_pending(self) -> dict[str, torch.Tensor] | None:
        return self._update(None) if self.pending else None

    def _per_member(self, values: Sequence[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=self.device)[:, None, None]

    @torch.no_grad()
    def _prepare(self, rollout: list[Transition]) -> dict[str, Any]:
        """The update of a full rollout: its transitions ``[members, T * envs, ...]``, their
        lambda-returns and the order of every epoch's minibatches."""
        steps = {f: torch.as_tensor(np.stack([getattr(t, f) for t in rollout], axis=1),
                                    device=self.device) for f in FIELDS}  # [members, T, envs]
        members, length, envs = steps["reward"].shape
        self._noise(self.q_net, on=False)
        next_q = self._q_from_outputs(self.q_net(steps["next_obs"].flatten(1, 2)))
        next_value = next_q.max(dim=2).values.view(members, length, envs)
        reward = steps["reward"].float() * self._per_member(
            [m.cfg.reward_scale for m in self.members])
        targets = lambda_returns(reward, steps["terminated"].bool(), steps["truncated"].bool(),
                                 next_value, self._per_member([m.cfg.gamma for m in self.members]),
                                 self._per_member([m.cfg.lambda_ for m in self.members]))
        n = length * envs
        order = np.stack([np.stack([rng.permutation(n) for rng in self.rngs])
                          for _ in range(self.cfg.epochs)])
        return {"obs": steps["obs"].flatten(1, 2), "action": steps["action"].long().flatten(1, 2),
                "target": targets.flatten(1, 2), "order": torch.as_tensor(order),
                "taken": 0, "losses": [], "qs": []}

    def _update(self, should_stop) -> dict[str, torch.Tensor] | None:
        p, cfg = self.pending, self.cfg
        while p["taken"] < cfg.epochs * cfg.minibatches:
            if should_stop is not None and should_stop():
                return None  # the rest stays pending: finish_pending() takes it up
            epoch, k = divmod(p["taken"], cfg.minibatches)
            loss, q = self._gradient_update(self._minibatches(epoch)[k])
            p["losses"].append(loss)
            p["qs"].append(q)
            p["taken"] += 1
        metrics = {"loss": torch.stack(p["losses"], dim=1).mean(dim=1),
                   "q_mean": torch.cat(p["qs"], dim=1).mean(dim=1)}
        self.pending = {}
        return metrics

    def _minibatches(self, epoch: int) -> list[tuple[torch.Tensor, ...]]:
        """Epoch ``epoch``'s minibatches: observations, actions and targets, each a slice of
        the update's data in the epoch's order (three gathers an epoch, not three a
        minibatch)."""
        p = self.pending
        if p.get("shuffled", (None,))[0] != epoch:
            index = p["order"][epoch].to(self.device)
            rows = torch.arange(len(index), device=self.device)[:, None]
            parts = [p[key][rows, index].tensor_split(self.cfg.minibatches, dim=1)
                     for key in ("obs", "action", "target")]
            p["shuffled"] = (epoch, list(zip(*parts, strict=True)))
        return p["shuffled"][1]

    def _gradient_update(self, minibatch: tuple[torch.Tensor, ...]
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """One gradient step on each member's minibatch: observations, actions and targets
        ``[members, size, ...]``."""
        obs, action, target = minibatch
        self._noise(self.q_net, on=True)
        return self._gradient_step_on(
            obs, partial(chosen_td_loss, action=action, target=target, kind=self.cfg.loss),
            partial(chosen_td_loss_gradient, action=action, target=target, kind=self.cfg.loss))

    def state_dict(self, i: int = 0) -> dict[str, Any]:
        """Adds the rollout under way and an update a stop cut short."""
        p = self.pending
        pending = {} if not p else {
            "obs": p["obs"][i], "action": p["action"][i], "target": p["target"][i],
            "order": p["order"][:, i], "taken": p["taken"],
            "losses": [loss[i] for loss in p["losses"]], "qs": [q[i] for q in p["qs"]]}
        return {**super().state_dict(i),
                "rollout": [{f: torch.as_tensor(getattr(t, f)[i]) for f in FIELDS}
                            for t in self.rollout],
                "pending": pending}

    def load_state_dicts(self, states: Sequence[dict[str, Any]]) -> None:
        super().load_state_dicts(states)
        steps = {len(s["rollout"]) for s in states}
        if len(steps) != 1:
            raise ValueError(f"the members' states are at different points (rollout steps: "
                             f"{sorted(steps)}); a population resumes members saved together")
        self.rollout = [Transition(*(np.stack([s["rollout"][k][f].numpy() for s in states])
                                     for f in FIELDS)) for k in range(steps.pop())]
        if not states[0]["pending"]:
            self.pending = {}
            return
        pending = [s["pending"] for s in states]
        taken = shared_counter(pending, "taken")
        self.pending = {
            **{key: torch.stack([q[key] for q in pending]).to(self.device)
               for key in ("obs", "action", "target")},
            "order": torch.stack([q["order"] for q in pending], dim=1), "taken": taken,
            "losses": [torch.stack([q["losses"][k] for q in pending]) for k in range(len(
                pending[0]["losses"]))],
            "qs": [torch.stack([q["qs"][k] for q in pending]) for k in range(len(
                pending[0]["qs"]))]}
