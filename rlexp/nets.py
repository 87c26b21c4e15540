"""Q-networks: an MLP over vector (or one-hot encoded discrete) observations, and the
convolutional networks of the pixel benchmarks: the Nature DQN network (Mnih et al. 2015) for
Atari frame stacks and the MinAtar network (Young & Tian 2019).

Pixel observations reach the network in their own dtype (uint8 frames, bool planes) and are
converted to floats inside it, on its device: they travel and are stored at 1 byte per value.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}
#: Network kinds (``agent.network.kind``); ``auto`` picks one from the observation space.
KINDS = ("auto", "mlp", "nature_cnn", "minatar_cnn")
#: The smallest frames the Nature network's three convolutions accept.
NATURE_MIN_SIZE = 36


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
    with the same arithmetic (a Nature-network gradient step at batch 32 on one thread: 16%
    faster on an AMD EPYC, about 1% on the Xeon measured before)."""

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


def network_kind(kind: str, observation_space: spaces.Space) -> str:
    """The network kind ``auto`` stands for: 3-D observations are images, channels first
    ``[C, H, W]`` when large enough for the Nature network (Atari stacks), else channels last
    ``[H, W, C]`` (MinAtar); anything else gets an MLP."""
    if kind != "auto":
        return kind
    shape = getattr(observation_space, "shape", None) or ()
    if len(shape) != 3:
        return "mlp"
    return "nature_cnn" if min(shape[1:]) >= NATURE_MIN_SIZE else "minatar_cnn"


class DuelingHead(nn.Module):
    """Wang et al. (2016): Q(s, a) = V(s) + A(s, a) - mean_a A(s, a), V and A linear maps of
    the features; per output of an action (C51's atoms) when there are several. V and A are
    the rows of one linear layer: one matrix product for both."""

    def __init__(self, width: int, n_actions: int, outputs_per_action: int = 1,
                 bias: bool = True):
        super().__init__()
        self.shape = (n_actions, outputs_per_action)
        #: Rows [0, outputs_per_action): V; the rest: A, action-major.
        self.linear = nn.Linear(width, (n_actions + 1) * outputs_per_action, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.linear(x, self.linear.weight, self.linear.bias)
        atoms = self.shape[1]
        value, advantage = out[:, None, :atoms], out[:, atoms:].view(len(x), *self.shape)
        return (value + advantage - advantage.mean(dim=1, keepdim=True)).flatten(1)


def _head(width: int, n_actions: int, outputs_per_action: int, dueling: bool, bias: bool = True
          ) -> nn.Module:
    """The output layer: ``n_actions * outputs_per_action`` values, action-major."""
    if dueling:
        return DuelingHead(width, n_actions, outputs_per_action, bias)
    return nn.Linear(width, n_actions * outputs_per_action, bias=bias)


def _conv_q_network(space: spaces.Box, convs: list[nn.Module], dense: int, head: Callable,
                    channels_last: bool) -> nn.Sequential:
    torso = nn.Sequential(PixelInput(channels_last), *convs, nn.Flatten())
    with torch.no_grad():
        width = torso(torch.zeros((1, *space.shape), dtype=torch.float32)).shape[1]
    net = nn.Sequential(*torso, nn.Linear(width, dense), nn.ReLU(), head(dense))
    return net.to(memory_format=torch.channels_last)  # the conv weights, as PixelInput's output


def nature_cnn(space: spaces.Box, head: Callable[[int], nn.Module]) -> nn.Sequential:
    """Mnih et al. (2015): conv 32 8x8/4, conv 64 4x4/2, conv 64 3x3/1, dense 512, on
    channels-first frame stacks ``[stack, H, W]``; ``head(512)`` makes the output layer."""
    channels = space.shape[0]
    convs = [nn.Conv2d(channels, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2),
             nn.ReLU(), nn.Conv2d(64, 64, 3, stride=1), nn.ReLU()]
    return _conv_q_network(space, convs, 512, head, channels_last=False)


def minatar_cnn(space: spaces.Box, head: Callable[[int], nn.Module]) -> nn.Sequential:
    """Young & Tian (2019): conv 16 3x3/1, dense 128, on channels-last planes ``[H, W, C]``."""
    convs = [nn.Conv2d(space.shape[-1], 16, 3, stride=1), nn.ReLU()]
    return _conv_q_network(space, convs, 128, head, channels_last=True)


def q_network(
    observation_space: spaces.Space,
    n_actions: int,
    hidden: Sequence[int],
    activation: str = "relu",
    bias: bool = True,
    kind: str = "auto",
    dueling: bool = False,
    outputs_per_action: int = 1,
) -> nn.Sequential:
    """The Q-network ``kind`` names (see :func:`network_kind`): ``outputs_per_action`` values
    per action (1: its Q-value; C51: its return distribution's logits), action-major, from a
    linear or a dueling head.

    The convolutional kinds are their papers' networks; ``hidden``, ``activation`` and
    ``bias`` shape the MLP.

    With no hidden layers the network is a single linear map, initialised to zero: on one-hot
    inputs and without bias it *is* a Q-table (``weight[a, s] = Q(s, a)``), and SGD with learning
    rate alpha on the loss 0.5 * td_error**2 is exactly tabular Q-learning with step size alpha.
    """
    kind = network_kind(kind, observation_space)
    pixels = isinstance(observation_space, spaces.Box) and observation_space.dtype in (np.uint8,
                                                                                       np.bool_)
    if kind != "mlp":
        shape = getattr(observation_space, "shape", None) or ()
        if len(shape) != 3 or not pixels:
            raise ValueError(f"agent.network.kind={kind} needs image observations (3-D, uint8 "
                             f"or bool), not {observation_space}")
        if kind == "nature_cnn" and min(shape[1:]) < NATURE_MIN_SIZE:
            raise ValueError(f"agent.network.kind=nature_cnn needs [C, H, W] frames of at least "
                             f"{NATURE_MIN_SIZE}x{NATURE_MIN_SIZE}, not {shape}")
        return {"nature_cnn": nature_cnn, "minatar_cnn": minatar_cnn}[kind](
            observation_space, lambda width: _head(width, n_actions, outputs_per_action, dueling))
    layers: list[nn.Module] = []
    if pixels:
        layers.append(PixelInput(channels_last=False, convolutional=False))
    if isinstance(observation_space, spaces.Discrete):
        layers.append(OneHot(int(observation_space.n)))
    elif len(observation_space.shape) > 1:  # 1-D observations need no (costly) no-op module
        layers.append(nn.Flatten())
    width = obs_size(observation_space)
    for h in hidden:
        layers += [nn.Linear(width, h, bias=bias), ACTIVATIONS[activation]()]
        width = h
    head = _head(width, n_actions, outputs_per_action, dueling, bias)
    if not hidden:
        for p in head.parameters():
            nn.init.zeros_(p)
    layers.append(head)
    return nn.Sequential(*layers)


def functional_forward(net: nn.Sequential) -> Callable[[torch.Tensor], torch.Tensor]:
    """``net``'s forward pass as plain function calls on its parameter tensors, for acting.

    A batch-1 forward through nn.Module's call machinery costs about twice the arithmetic on
    these small networks; acting does one per env step. The function reads the parameters
    themselves, so it follows every in-place update (optimizer steps, load_state_dict).
    """
    steps: list[Callable[[torch.Tensor], torch.Tensor]] = []
    for module in net:
        if isinstance(module, nn.Linear):
            steps.append(lambda x, w=module.weight, b=module.bias: nn.functional.linear(x, w, b))
        elif isinstance(module, nn.ReLU):
            steps.append(torch.relu)
        elif isinstance(module, nn.Tanh):
            steps.append(torch.tanh)
        else:  # OneHot, Flatten, ELU: their own forward, without the call machinery
            steps.append(module.forward)
    return _chain(steps)


def _chain(steps: list[Callable[[torch.Tensor], torch.Tensor]]
           ) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        for step in steps:
            x = step(x)
        return x

    return forward


# ------------------------------------------------------------------ the members of a population


class MemberNetworks(nn.Module):
    """The Q-networks of a population's members (one architecture), as one module: inputs
    ``[members, batch, ...]``, outputs ``[members, batch, outputs]``; member ``i``'s outputs
    depend on member ``i``'s inputs and parameters only.

    Each member's part reads and writes as the state dict of the network it would have alone
    (:meth:`member_state_dict`), so a member's checkpoint is a single run's checkpoint.
    :func:`member_networks` picks the implementation.
    """

    members: int
    #: The solo network's parameter names, in the order of ``parameters()``.
    names: list[str]
    #: Whether populations of several members use this implementation: a population of one
    #: must then compute as any member of a larger one does (see MemberOptimizer).
    joins_populations: ClassVar[bool] = True

    def per_member(self, tensor: torch.Tensor, index: int) -> torch.Tensor:
        """A tensor shaped like parameter ``index`` (its gradient, its optimizer state),
        viewed as ``[members, *the single network's shape]``."""
        raise NotImplementedError

    def join(self, parts: Sequence[torch.Tensor], index: int) -> torch.Tensor:
        """The members' parts of a tensor shaped like parameter ``index`` as one
        (``per_member``'s inverse)."""
        raise NotImplementedError

    def act_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` without nn.Module's call machinery and outside autograd (acting does
        one per env step)."""
        raise NotImplementedError

    def _compile(self) -> None:
        """Build the forward functions from this module's own parameters (again in a copy)."""
        raise NotImplementedError

    def clone(self) -> MemberNetworks:
        """An independent copy (a target network)."""
        twin = copy.deepcopy(self)
        twin._compile()
        return twin

    def member_state_dict(self, i: int) -> dict[str, torch.Tensor]:
        return {name: self.per_member(p.detach(), k)[i].clone()
                for k, (name, p) in enumerate(zip(self.names, self.parameters(), strict=True))}

    @torch.no_grad()
    def load_member_state_dict(self, i: int, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.names) ^ set(state)
        if missing:
            raise KeyError(f"the network's parameters are {sorted(self.names)}, the state's "
                           f"{sorted(state)}")
        for k, (name, p) in enumerate(zip(self.names, self.parameters(), strict=True)):
            self.per_member(p, k)[i].copy_(state[name])


#: Each member's part of a StackedMLP parameter is padded to a multiple of this many values.
MEMBER_ALIGNMENT = 64


class StackedMLP(MemberNetworks):
    """MLPs of one shape with each layer's parameters stacked along a leading member axis:
    each linear layer of every member is one batched matrix product (``torch.baddbmm``).

    A linear layer's weight is stored ``[members, out, in]``, as the single network's, and its
    bias as ``[members, 1, out]``, the shape the batched product adds. A member's arithmetic
    is exactly that of a population of one: batched matrix products compute each member
    alone, and each member's part of a parameter starts at a multiple of ``MEMBER_ALIGNMENT``
    values (a part of another size, e.g. a 3-value bias, is stored flat and padded with zeros,
    which stay zero), so elementwise kernels (optimizer steps, target updates) give it the
    same vector lanes whatever the population's size.
    """

    def __init__(self, nets: Sequence[nn.Sequential]):
        super().__init__()
        self.members = len(nets)
        self.names = [name for name, _ in nets[0].named_parameters()]
        #: The single network's parameter shapes.
        self.shapes = [nets[0].get_parameter(name).shape for name in self.names]
        self.weights = nn.ParameterList(
            [self._stored(torch.stack([net.get_parameter(name).detach() for net in nets]), k)
             for k, name in enumerate(self.names)])
        self.layers = [_stacked_layer(module) for module in nets[0]]
        self._compile()

    def _layout(self, k: int) -> torch.Size:
        """How one member's part of parameter ``k`` is laid out: a weight's as the single
        network's, ``[1, out]`` for a bias."""
        shape = self.shapes[k]
        return shape if len(shape) == 2 else torch.Size([1, *shape])

    def _padded(self, k: int) -> bool:
        return self.shapes[k].numel() % MEMBER_ALIGNMENT != 0

    def _stored(self, solo: torch.Tensor, k: int) -> torch.Tensor:
        """The members' values ``[members, *single network's shape]`` as parameter ``k``
        stores them."""
        laid = solo if solo.dim() == 3 else solo.unsqueeze(1)
        if not self._padded(k):
            return laid.contiguous()
        numel = self.shapes[k].numel()
        padded = solo.new_zeros(len(solo), -(-numel // MEMBER_ALIGNMENT) * MEMBER_ALIGNMENT)
        padded[:, :numel] = laid.flatten(1)
        return padded

    def _laid_out(self, tensor: torch.Tensor, k: int) -> torch.Tensor:
        """A tensor stored like parameter ``k``, as ``[members, *layout]`` (a view)."""
        if not self._padded(k):
            return tensor
        return tensor[:, :self.shapes[k].numel()].view(-1, *self._layout(k))

    def per_member(self, tensor: torch.Tensor, index: int) -> torch.Tensor:
        laid = self._laid_out(tensor, index)
        return laid if len(self.shapes[index]) == 2 else laid.squeeze(1)

    def join(self, parts: Sequence[torch.Tensor], index: int) -> torch.Tensor:
        return self._stored(torch.stack(list(parts)), index)

    def _compile(self) -> None:
        # Learning: views of the parameters taken at each pass, so autograd sees them.
        # Acting: the same views taken once, outside autograd; they follow every in-place
        # update.
        learn = [self._operand_of(p, k) for k, p in enumerate(self.weights)]
        fixed = [self._operand(p.detach(), k) for k, p in enumerate(self.weights)]
        self._forward = self._chain(learn)
        self._act = self._chain([lambda t=t: t for t in fixed])

    def _operand_of(self, p: torch.Tensor, k: int) -> Callable[[], torch.Tensor]:
        """A function giving ``_operand(p, k)``, with as few calls as it can."""
        if self._padded(k):
            return lambda: self._operand(p, k)
        if len(self.shapes[k]) == 2:
            return lambda: p.transpose(1, 2)
        return lambda: p

    def _operand(self, p: torch.Tensor, k: int) -> torch.Tensor:
        """Parameter ``k`` as the batched product takes it: a weight ``[members, in, out]``,
        a bias ``[members, 1, out]``."""
        laid = self._laid_out(p, k)
        return laid.transpose(1, 2) if len(self.shapes[k]) == 2 else laid

    def _chain(self, params: list[Callable[[], torch.Tensor]]):
        params = iter(params)
        steps = []
        previous = None
        for kind, arg in self.layers:
            if kind == "activation":
                # In place on the product a linear layer just made, which nothing else holds
                # and its backward does not read: no new members x batch x width tensor, whose
                # allocation and memory traffic cost about 7% of a population's gradient step
                # (2% of a run's).
                out_of_place, in_place = arg
                steps.append(in_place if previous == "linear" else out_of_place)
            elif kind in ("linear", "dueling"):
                weight, bias = next(params), next(params) if arg[0] else None
                if bias is None:
                    steps.append(lambda x, w=weight: torch.bmm(x, w()))
                else:
                    steps.append(lambda x, w=weight, b=bias: torch.baddbmm(b(), x, w()))
                if kind == "dueling":
                    steps.append(partial(_dueling, shape=arg[1]))
            else:
                steps.append(arg)
            previous = kind
        return _chain(steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)

    def act_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._act(x)


def _stacked_layer(module: nn.Module) -> tuple[str, Any]:
    """How a StackedMLP applies one module of the single network."""
    if isinstance(module, nn.Linear):
        return "linear", (module.bias is not None,)
    if isinstance(module, DuelingHead):
        return "dueling", (module.linear.bias is not None, module.shape)
    if isinstance(module, nn.Flatten):
        return "plain", partial(torch.flatten, start_dim=2)  # keep [members, batch]
    if isinstance(module, tuple(ACTIVATIONS.values())):  # elementwise (out of, in place)
        if isinstance(module, nn.Tanh):
            return "activation", (module.forward, torch.tanh_)
        in_place = copy.copy(module)
        in_place.inplace = True
        return "activation", (module.forward, in_place.forward)
    if isinstance(module, OneHot) or (
            isinstance(module, PixelInput) and not module.convolutional):
        return "plain", module.forward  # elementwise: the member axis changes nothing
    raise ValueError(f"{type(module).__name__} layers have no stacked form")


def _dueling(out: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A DuelingHead's combination, on ``[members, batch, (n_actions + 1) * atoms]``."""
    atoms = shape[1]
    value = out[:, :, None, :atoms]
    advantage = out[:, :, atoms:].view(*out.shape[:2], *shape)
    return (value + advantage - advantage.mean(dim=2, keepdim=True)).flatten(2)


class OneMember(MemberNetworks):
    """A single network of any kind (the convolutional ones) as a population of one."""

    joins_populations = False

    def __init__(self, net: nn.Sequential):
        super().__init__()
        self.members = 1
        self.net = net
        self.names = [name for name, _ in net.named_parameters()]
        self._compile()

    def per_member(self, tensor: torch.Tensor, index: int) -> torch.Tensor:
        return tensor.unsqueeze(0)

    def join(self, parts: Sequence[torch.Tensor], index: int) -> torch.Tensor:
        (part,) = parts
        return part

    def _compile(self) -> None:
        act = functional_forward(self.net)
        self._act = lambda x: act(x[0]).unsqueeze(0)

    def act_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._act(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x[0]).unsqueeze(0)


def member_networks(nets: Sequence[nn.Sequential]) -> MemberNetworks:
    """The members' networks (one per member, of one architecture) as one module: stacked when
    they are MLPs, else (a convolutional network) only a population of one."""
    try:
        return StackedMLP(nets)
    except ValueError:
        if len(nets) > 1:
            raise ValueError(f"population training batches MLP Q-networks; these are "
                             f"{', '.join(type(m).__name__ for m in nets[0])}: train them one "
                             "run per process (hydra/launcher=parallel)") from None
        return OneMember(nets[0])
