"""Q-networks: an MLP over the observation, one-hot encoded when the observation is discrete."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}


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


def q_network(
    observation_space: spaces.Space,
    n_actions: int,
    hidden: Sequence[int],
    activation: str = "relu",
    bias: bool = True,
) -> nn.Sequential:
    """An MLP from observations to one Q-value per action.

    With no hidden layers the network is a single linear map, initialised to zero: on one-hot
    inputs and without bias it *is* a Q-table (``weight[a, s] = Q(s, a)``), and SGD with learning
    rate alpha on the loss 0.5 * td_error**2 is exactly tabular Q-learning with step size alpha.
    """
    layers: list[nn.Module] = []
    if isinstance(observation_space, spaces.Discrete):
        layers.append(OneHot(int(observation_space.n)))
    elif len(observation_space.shape) > 1:  # 1-D observations need no (costly) no-op module
        layers.append(nn.Flatten())
    width = obs_size(observation_space)
    for h in hidden:
        layers += [nn.Linear(width, h, bias=bias), ACTIVATIONS[activation]()]
        width = h
    head = nn.Linear(width, n_actions, bias=bias)
    if not hidden:
        nn.init.zeros_(head.weight)
        if bias:
            nn.init.zeros_(head.bias)
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

    def forward(x: torch.Tensor) -> torch.Tensor:
        for step in steps:
            x = step(x)
        return x

    return forward
