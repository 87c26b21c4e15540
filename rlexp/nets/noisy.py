"""Noisy networks (Fortunato et al. 2018, "Noisy Networks for Exploration"): linear layers whose
weights are ``mu + sigma * epsilon``, with ``mu`` and ``sigma`` learned and ``epsilon`` random
noise, so that exploration comes from the network itself and is learned.

Factorised Gaussian noise: a layer of ``p`` inputs and ``q`` outputs draws ``p + q`` standard
normal values and builds ``epsilon_w = f(e_out) f(e_in)^T``, ``epsilon_b = f(e_out)``, with
``f(x) = sign(x) sqrt(|x|)`` (the paper's section 3). The noise is drawn by the agent
(:func:`resample_noise`, from the member's own generator) and switched off for greedy
evaluation (:func:`set_noise`): the layer then computes with ``mu`` alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class NoisyLinear(nn.Module):
    """A linear layer with factorised Gaussian noise on its weights and bias.

    ``weight`` and ``bias`` are the weights in use (noisy while the noise is on), so the layer
    reads as an ``nn.Linear`` to code that takes them (a dueling head)."""

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        # The paper's initialisation for factorised noise: mu ~ U[-1/sqrt(p), 1/sqrt(p)],
        # sigma = sigma0 / sqrt(p).
        bound = 1.0 / math.sqrt(in_features)
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound,
                                                                                      bound))
        self.weight_sigma = nn.Parameter(torch.full((out_features, in_features), sigma0 * bound))
        self.bias_mu = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.bias_sigma = nn.Parameter(torch.full((out_features,), sigma0 * bound))
        # The current noise (drawn by resample); not state: every use draws it first.
        self.register_buffer("eps_in", torch.zeros(in_features), persistent=False)
        self.register_buffer("eps_out", torch.zeros(out_features), persistent=False)
        self.noise_on = True

    @property
    def weight(self) -> torch.Tensor:
        if not self.noise_on:
            return self.weight_mu
        return self.weight_mu + self.weight_sigma * torch.outer(self.eps_out, self.eps_in)

    @property
    def bias(self) -> torch.Tensor:
        return self.bias_mu + self.bias_sigma * self.eps_out if self.noise_on else self.bias_mu

    @torch.no_grad()
    def resample(self, generator: torch.Generator) -> None:
        noise = factorised(torch.randn(self.in_features + self.out_features,
                                       generator=generator, device=generator.device))
        self.eps_in.copy_(noise[:self.in_features])
        self.eps_out.copy_(noise[self.in_features:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def factorised(noise: torch.Tensor) -> torch.Tensor:
    """``f(x) = sign(x) sqrt(|x|)`` of standard normal draws: factorised noise's values."""
    return noise.sign() * noise.abs().sqrt()


def noisy_layers(net: nn.Module) -> list[NoisyLinear]:
    return [m for m in net.modules() if isinstance(m, NoisyLinear)]


def resample_noise(net: nn.Module, generator: torch.Generator) -> None:
    """New noise for every noisy layer of ``net``, in the order of its modules."""
    for layer in noisy_layers(net):
        layer.resample(generator)


def set_noise(net: nn.Module, on: bool) -> None:
    """Noisy weights (``on``) or their means only (greedy evaluation)."""
    for layer in noisy_layers(net):
        layer.noise_on = on
