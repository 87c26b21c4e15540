"""Q-networks: an MLP over vector (or one-hot encoded discrete) observations, and the
convolutional networks of the pixel benchmarks: the Nature DQN network (Mnih et al. 2015) for
Atari frame stacks and the MinAtar network (Young & Tian 2019).

Pixel observations reach the network in their own dtype (uint8 frames, bool planes) and are
converted to floats inside it, on its device: they travel and are stored at 1 byte per value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rlexp.nets.noisy import NoisyLinear

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}


#: Normalisations after a hidden layer's linear map (``agent.network.norm``; null: none).
NORMS = ("layer",)


def _normalised(width: int, norm: str | None) -> list[nn.Module]:
    """The normalisation of a hidden layer of ``width`` units (LayerNorm, Ba et al. 2016), before
    its nonlinearity, as PQN's networks place it."""
    return [nn.LayerNorm(width)] if norm == "layer" else []


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each pixel of a convolution's output ``[batch, C, H, W]``
    (as a LayerNorm on channels-last images normalises: purejaxql's MinAtar network)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _normalised_conv(channels: int, norm: str | None) -> list[nn.Module]:
    return [ChannelLayerNorm(channels)] if norm == "layer" else []


#: Network kinds (``agent.network.kind``); ``auto`` picks one from the observation space.
KINDS = ("auto", "mlp", "nature_cnn", "minatar_cnn")


#: The smallest frames the Nature network's three convolutions accept, and MinAtar's one.
NATURE_MIN_SIZE = 36


MINATAR_MIN_SIZE = 3


class OneHot(nn.Module):
    """Integer observations [batch] -> one-hot floats [batch, n]."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(x.long(), self.n).float()


def obs_size(space: spaces.Space) -> int:
    """Width of the network input for an observation space (the one-hot width if discrete)."""
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.Box):
        return int(np.prod(space.shape))
    raise ValueError(f"observation space {space} is not supported (Discrete or Box only)")


class PixelInput(nn.Module):
    """uint8 pixels -> floats in [0, 1], bool planes -> 0/1 floats; ``channels_last`` inputs
    ``[batch, H, W, C]`` (as MinAtar gives them) are moved to ``[batch, C, H, W]``.

    For a convolutional network the result is laid out channels-last in memory
    (torch.channels_last), as its weights are: oneDNN's convolutions run faster so on the CPU,
    with the same arithmetic (docs/benchmarks.md, "Measurements behind the code")."""

    def __init__(self, channels_last: bool, convolutional: bool = True):
        super().__init__()
        self.channels_last = channels_last
        self.convolutional = convolutional

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.dtype == torch.uint8
        if self.channels_last:  # a [B, C, H, W] view of channels-last memory: no copy
            x = x.permute(0, 3, 1, 2)
        if self.convolutional:
            x = x.to(torch.float32, memory_format=torch.channels_last)
        else:
            x = x.float()
        return x.mul_(1.0 / 255.0) if scale else x  # in place: the conversion made a copy


def network_kind(kind: str, observation_space: spaces.Space, channels: str | None) -> str:
    """The network kind ``auto`` stands for: an image (``channels``, where its channels are:
    see :func:`rlexp.envs.boundary.image_channels`; None: not an image) gets a convolutional
    network, the Nature network when its frames are large enough for it, else MinAtar's (an
    MLP when they are smaller still); anything else an MLP."""
    if kind != "auto":
        return kind
    size = min(_frame_size(observation_space, channels)) if channels is not None else 0
    if size < MINATAR_MIN_SIZE:  # not an image, or too small for a 3x3 convolution
        return "mlp"
    return "nature_cnn" if size >= NATURE_MIN_SIZE else "minatar_cnn"


def _frame_size(space: spaces.Box, channels: str) -> tuple[int, int]:
    """An image's height and width."""
    return tuple(space.shape[1:] if channels == "first" else space.shape[:2])


class DuelingHead(nn.Module):
    """Wang et al. (2016): Q(s, a) = V(s) + A(s, a) - mean_a A(s, a), V and A linear maps of
    the features; per output of an action (C51's atoms) when there are several. V and A are
    the rows of one linear layer: one matrix product for both."""

    def __init__(self, width: int, n_actions: int, outputs_per_action: int = 1,
                 linear: Callable[[int, int], nn.Module] = nn.Linear):
        super().__init__()
        self.shape = (n_actions, outputs_per_action)
        #: Rows [0, outputs_per_action): V; the rest: A, action-major.
        self.linear = linear(width, (n_actions + 1) * outputs_per_action)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.linear(x, self.linear.weight, self.linear.bias)
        atoms = self.shape[1]
        value, advantage = out[:, None, :atoms], out[:, atoms:].view(len(x), *self.shape)
        return (value + advantage - advantage.mean(dim=1, keepdim=True)).flatten(1)


def _head(width: int, n_actions: int, outputs_per_action: int, dueling: bool,
          linear: Callable[[int, int], nn.Module]) -> nn.Module:
    """The output layer: ``n_actions * outputs_per_action`` values, action-major."""
    if dueling:
        return DuelingHead(width, n_actions, outputs_per_action, linear)
    return linear(width, n_actions * outputs_per_action)


def linear_layer(bias: bool = True, noisy: bool = False, sigma0: float = 0.5
                 ) -> Callable[[int, int], nn.Module]:
    """How a network makes its fully connected layers: ``nn.Linear``, or a noisy layer
    (:class:`~rlexp.nets.noisy.NoisyLinear`, always with a bias) with noise scale ``sigma0``."""
    return partial(NoisyLinear, sigma0=sigma0) if noisy else partial(nn.Linear, bias=bias)


def _conv_q_network(space: spaces.Box, convs: list[nn.Module], dense: int, head: Callable,
                    channels_last: bool, linear: Callable[[int, int], nn.Module],
                    norm: str | None = None) -> nn.Sequential:
    torso = nn.Sequential(PixelInput(channels_last), *convs, nn.Flatten())
    with torch.no_grad():
        width = torso(torch.zeros((1, *space.shape), dtype=torch.float32)).shape[1]
    net = nn.Sequential(*torso, linear(width, dense), *_normalised(dense, norm), nn.ReLU(),
                        head(dense))
    return net.to(memory_format=torch.channels_last)  # the conv weights, as PixelInput's output


def nature_cnn(space: spaces.Box, head: Callable[[int], nn.Module], channels_last: bool = False,
               linear: Callable[[int, int], nn.Module] = nn.Linear, norm: str | None = None
               ) -> nn.Sequential:
    """Mnih et al. (2015): conv 32 8x8/4, conv 64 4x4/2, conv 64 3x3/1, dense 512, on images
    (Atari's channels-first frame stacks ``[stack, H, W]``); ``head(512)`` makes the output
    layer."""
    channels = space.shape[-1 if channels_last else 0]
    convs = [nn.Conv2d(channels, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2),
             nn.ReLU(), nn.Conv2d(64, 64, 3, stride=1), nn.ReLU()]
    return _conv_q_network(space, convs, 512, head, channels_last, linear, norm)


def minatar_cnn(space: spaces.Box, head: Callable[[int], nn.Module], channels_last: bool = True,
                linear: Callable[[int, int], nn.Module] = nn.Linear, norm: str | None = None
                ) -> nn.Sequential:
    """Young & Tian (2019): conv 16 3x3/1, dense 128, on images (MinAtar's channels-last planes
    ``[H, W, C]``); with ``norm``, the convolution's output is normalised over its channels."""
    convs = [nn.Conv2d(space.shape[-1 if channels_last else 0], 16, 3, stride=1),
             *_normalised_conv(16, norm), nn.ReLU()]
    return _conv_q_network(space, convs, 128, head, channels_last, linear, norm)


def q_network(
    observation_space: spaces.Space,
    n_actions: int,
    hidden: Sequence[int],
    activation: str = "relu",
    bias: bool = True,
    kind: str = "auto",
    dueling: bool = False,
    outputs_per_action: int = 1,
    channels: str | None = None,
    noisy: bool = False,
    sigma0: float = 0.5,
    norm: str | None = None,
) -> nn.Sequential:
    """The Q-network ``kind`` names (see :func:`network_kind`): ``outputs_per_action`` values
    per action (1: its Q-value; C51: its return distribution's logits), action-major, from a
    linear or a dueling head.

    The convolutional kinds are their papers' networks, for images whose channels are where
    ``channels`` says (``first``, ``last``; None: not an image); ``hidden``, ``activation`` and
    ``bias`` shape the MLP. With ``noisy``, every fully connected layer (the convolutional
    networks' dense layers and head) is a noisy layer of noise scale ``sigma0``. ``norm``
    normalises every hidden layer before its nonlinearity (the MLP's layers; the convolutional
    networks' dense layer, and MinAtar's convolution over its channels).

    With no hidden layers the network is a single linear map, initialised to zero: on one-hot
    inputs and without bias it *is* a Q-table (``weight[a, s] = Q(s, a)``), and SGD with learning
    rate alpha on the loss 0.5 * td_error**2 is exactly tabular Q-learning with step size alpha.
    """
    kind = network_kind(kind, observation_space, channels)
    if kind != "mlp":
        linear = linear_layer(True, noisy, sigma0)  # the papers' layers have biases
        if channels is None:
            raise ValueError(f"agent.network.kind={kind} needs image observations (2-D or 3-D, "
                             f"uint8 or bool; see env.channels), not {observation_space}")
        if kind == "nature_cnn" and min(_frame_size(observation_space, channels)) < \
                NATURE_MIN_SIZE:
            raise ValueError(f"agent.network.kind=nature_cnn needs frames of at least "
                             f"{NATURE_MIN_SIZE}x{NATURE_MIN_SIZE}, not "
                             f"{observation_space.shape} (channels {channels})")
        return {"nature_cnn": nature_cnn, "minatar_cnn": minatar_cnn}[kind](
            observation_space,
            lambda width: _head(width, n_actions, outputs_per_action, dueling, linear),
            channels_last=channels == "last", linear=linear, norm=norm)
    linear = linear_layer(bias, noisy, sigma0)
    pixels = isinstance(observation_space, spaces.Box) and observation_space.dtype in (np.uint8,
                                                                                       np.bool_)
    layers: list[nn.Module] = []
    if pixels:
        layers.append(PixelInput(channels_last=False, convolutional=False))
    if isinstance(observation_space, spaces.Discrete):
        layers.append(OneHot(int(observation_space.n)))
    elif len(observation_space.shape) > 1:  # 1-D observations need no (costly) no-op module
        layers.append(nn.Flatten())
    width = obs_size(observation_space)
    for h in hidden:
        layers += [linear(width, h), *_normalised(h, norm), ACTIVATIONS[activation]()]
        width = h
    head = _head(width, n_actions, outputs_per_action, dueling, linear)
    if not hidden and not noisy:
        for p in head.parameters():
            nn.init.zeros_(p)
    layers.append(head)
    return nn.Sequential(*layers)
