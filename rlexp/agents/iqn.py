"""IQN: implicit quantile networks (Dabney et al. 2018, "Implicit Quantile Networks for
Distributional Reinforcement Learning").

QR-DQN learns the return distribution's quantiles at N fixed fractions; IQN learns the whole
quantile function: the network takes a fraction ``tau`` in [0, 1] with the observation and
returns each action's quantile at ``tau``. The fraction enters through a cosine embedding,
``ReLU(W cos(pi i tau) + b)`` for ``i = 0 .. cosine_embeddings - 1``, multiplied elementwise with
the observation's features before the network's last hidden layer and head.

Each gradient step samples ``tau_samples`` fractions (N) for the prediction and
``tau_prime_samples`` (N') for the target, uniformly and per sample; the target's next action
is the argmax of the mean over ``quantile_samples`` (K) fractions (risk-neutral: the mean of
the return); the loss is QR-DQN's quantile Huber loss. Acting samples K fractions too; greedy
evaluation takes the K midpoints of [0, 1] instead, so that it is deterministic. Everything
else is DQN's: replay (n-step, prioritized by the per-sample loss), target network and update
schedule. A population's networks are one module (:class:`StackedIQN`), each member's
fractions drawn from its own generator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from rlexp.agents.c51 import of_action
from rlexp.agents.dqn import DQNAgent, DQNConfig
from rlexp.agents.qrdqn import quantile_huber_loss
from rlexp.nets import DuelingHead, MemberNetworks, NoisyLinear, StackedMLP, network_kind
from rlexp.replay import ReplaySample


@dataclass
class IQNConfig(DQNConfig):
    """DQN's fields (``loss`` is not used: the loss is the quantile Huber loss) and the
    fractions. Defaults: Dabney et al.'s and Dopamine's IQN (N = N' = 64, K = 32, 64 cosine
    features, kappa 1)."""

    name: str = "iqn"
    #: N: fractions sampled per sample for the predicted quantiles.
    tau_samples: int = 64
    #: N': fractions sampled per sample for the target quantiles.
    tau_prime_samples: int = 64
    #: K: fractions whose quantiles' mean is the Q-value that picks actions.
    quantile_samples: int = 32
    #: The cosine embedding's width (the paper's n = 64).
    cosine_embeddings: int = 64
    #: The quantile Huber loss's threshold.
    kappa: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("tau_samples", "tau_prime_samples", "quantile_samples",
                     "cosine_embeddings"):
            if getattr(self, name) < 1:
                raise ValueError(f"agent.{name}={getattr(self, name)} must be at least 1")
        if self.kappa < 0:
            raise ValueError(f"agent.kappa={self.kappa} must be >= 0")


class ImplicitQuantileNetwork(nn.Module):
    """``torso(obs) * embedding(tau)`` through ``head``: observations ``[batch, ...]`` and
    fractions ``[batch, T]`` -> quantiles ``[batch, T, n_actions]``."""

    def __init__(self, torso: nn.Module, width: int, head: nn.Module, cosine_embeddings: int):
        super().__init__()
        self.torso, self.head = torso, head
        self.embedding = nn.Linear(cosine_embeddings, width)
        self.register_buffer("frequencies", math.pi * torch.arange(cosine_embeddings,
                                                                   dtype=torch.float32),
                             persistent=False)

    def embed(self, taus: torch.Tensor) -> torch.Tensor:
        """The fractions' embedding ``ReLU(W cos(pi i tau) + b)``, ``[batch, T, width]``."""
        return torch.relu(self.embedding(torch.cos(taus[..., None] * self.frequencies)))

    def forward(self, obs: torch.Tensor, taus: torch.Tensor) -> torch.Tensor:
        features = self.torso(obs)  # [batch, width]
        mixed = features[:, None, :] * self.embed(taus)  # [batch, T, width]
        out = self.head(mixed.flatten(0, 1))
        return out.view(*taus.shape, -1)


class StackedIQN(MemberNetworks):
    """The members' implicit quantile networks as one module: the torso, the embedding and
    the head each stacked over the members (:class:`~rlexp.nets.StackedMLP`), with inputs
    ``[members, batch, ...]`` and fractions ``[members, batch, T]``."""

    def __init__(self, nets: Sequence[ImplicitQuantileNetwork]):
        super().__init__()
        self.members = len(nets)
        self.names = [name for name, _ in nets[0].named_parameters()]
        # Registered in the single network's order, so that parameters() follows its names.
        self.torso = StackedMLP([net.torso for net in nets])
        self.head = StackedMLP([net.head for net in nets])
        self.embedding = StackedMLP([nn.Sequential(net.embedding, nn.ReLU()) for net in nets])
        self.register_buffer("frequencies", nets[0].frequencies.clone(), persistent=False)
        #: Each parameter's part and its index there.
        self.parts = [(part, k) for part in (self.torso, self.head, self.embedding)
                      for k in range(len(part.names))]

    def per_member(self, tensor: torch.Tensor, index: int) -> torch.Tensor:
        part, k = self.parts[index]
        return part.per_member(tensor, k)

    def join(self, parts: Sequence[torch.Tensor], index: int) -> torch.Tensor:
        part, k = self.parts[index]
        return part.join(parts, k)

    def _compile(self) -> None:
        for part in (self.torso, self.head, self.embedding):
            part._compile()

    def set_noise(self, on: bool) -> None:
        self.torso.set_noise(on)
        self.head.set_noise(on)

    def resample_noise(self, generators: Sequence[torch.Generator]) -> None:
        self.torso.resample_noise(generators)  # in the single network's order of layers
        self.head.resample_noise(generators)

    def _mixed(self, features: torch.Tensor, embedded: torch.Tensor,
               taus: torch.Tensor) -> torch.Tensor:
        """The head's input: features ``[members, batch, width]`` times the embedding."""
        return (features[:, :, None, :] * embedded.view(*taus.shape, -1)).flatten(1, 2)

    def _cosines(self, taus: torch.Tensor) -> torch.Tensor:
        return torch.cos(taus[..., None] * self.frequencies).flatten(1, 2)

    def forward(self, x: torch.Tensor, taus: torch.Tensor) -> torch.Tensor:
        mixed = self._mixed(self.torso(x), self.embedding(self._cosines(taus)), taus)
        return self.head(mixed).view(*taus.shape, -1)

    def act_forward(self, x: torch.Tensor, taus: torch.Tensor) -> torch.Tensor:
        mixed = self._mixed(self.torso.act_forward(x),
                            self.embedding.act_forward(self._cosines(taus)), taus)
        return self.head.act_forward(mixed).view(*taus.shape, -1)


def split_network(net: nn.Sequential) -> tuple[nn.Sequential, nn.Sequential]:
    """A Q-network cut before its last hidden layer (its last fully connected layer but the
    head), where IQN mixes in the fractions; before the head when it has no hidden layer."""
    dense = [i for i, m in enumerate(net) if isinstance(m, nn.Linear | NoisyLinear | DuelingHead)]
    cut = dense[-2] if len(dense) >= 2 else len(net) - 1
    return net[:cut], net[cut:]


class IQNAgent(DQNAgent):
    Config = IQNConfig

    @classmethod
    def joins_populations(cls, cfg, observation_space, channels) -> bool:
        # Stacked (StackedIQN): an MLP with a hidden layer before the one the fractions enter.
        return network_kind(cfg.network.kind, observation_space, channels) == "mlp" and \
            len(cfg.network.hidden) >= 2

    def _member_networks(self, nets: list[nn.Module]) -> MemberNetworks:
        if self.joins_populations(self.cfg, self.observation_space, self.spec.channels):
            return StackedIQN(nets)
        return super()._member_networks(nets)

    def draws_with_torch(self) -> bool:
        return True

    def _network(self, seed: int) -> nn.Module:
        sequential = super()._network(seed)
        torso, head = split_network(sequential)
        with torch.no_grad():
            probe = torch.zeros((1, *self.observation_space.shape),
                                dtype=torch.float32 if self.observation_space.shape else
                                torch.int64)
            width = torso(probe).shape[1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)  # the embedding's initialisation, apart from the rest
            return ImplicitQuantileNetwork(torso, width, head, self.cfg.cosine_embeddings)

    def _fractions(self, batch: int, count: int, needed: list[bool] | None = None
                   ) -> torch.Tensor:
        """``count`` fractions per sample, uniform on [0, 1), each member's from its own
        generator: ``[members, batch, count]``; ``needed``: the members that draw (the others'
        are zeros, drawing nothing; None: all)."""
        return torch.stack([
            torch.rand((batch, count), generator=rng, device=self.device)
            if needed is None or needed[i] else torch.zeros((batch, count), device=self.device)
            for i, rng in enumerate(self.torch_rngs)])

    def _midpoints(self, batch: int) -> torch.Tensor:
        k = self.cfg.quantile_samples
        taus = (torch.arange(k, device=self.device, dtype=torch.float32) + 0.5) / k
        return taus.expand(self.size, batch, k)

    def _acting_q(self, obs: torch.Tensor, explore: bool, needed: list[bool] | None = None
                  ) -> torch.Tensor:
        batch = obs.shape[1]
        taus = self._fractions(batch, self.cfg.quantile_samples, needed) if explore \
            else self._midpoints(batch)
        return self.q_net.act_forward(obs, taus).mean(dim=2)

    def _loss(self, b: ReplaySample) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg, batch = self.cfg, b.action.shape[1]
        taus = self._fractions(batch, cfg.tau_samples)
        quantiles = self.q_net(b.obs, taus)  # [members, batch, N, n_actions]
        predicted = of_action(quantiles.transpose(2, 3), b.action)  # [members, batch, N]
        with torch.no_grad():
            picking = self.q_net if cfg.double_q else self.target_net
            next_q = picking(b.next_obs, self._fractions(batch, cfg.quantile_samples)).mean(2)
            next_action = next_q.argmax(dim=2)
            target_quantiles = self.target_net(b.next_obs,
                                               self._fractions(batch, cfg.tau_prime_samples))
            # [members, batch, N']
            greedy = of_action(target_quantiles.transpose(2, 3), next_action)
            target = b.reward[..., None] + b.discount[..., None] * greedy
        per_sample = quantile_huber_loss(predicted, taus, target, cfg.kappa)
        weighted = per_sample if b.weight is None else b.weight * per_sample
        return weighted.mean(dim=1), predicted.detach().mean(dim=2), per_sample.detach()
