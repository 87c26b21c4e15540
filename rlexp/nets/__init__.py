"""Q-networks: the architectures (:mod:`rlexp.nets.architectures`) and the population kernel that
trains many members' networks as one (:mod:`rlexp.nets.population`).
"""

from rlexp.nets.architectures import (
    ACTIVATIONS,
    KINDS,
    MINATAR_MIN_SIZE,
    NATURE_MIN_SIZE,
    NORMS,
    DuelingHead,
    OneHot,
    PixelInput,
    linear_layer,
    minatar_cnn,
    nature_cnn,
    network_kind,
    obs_size,
    q_network,
)
from rlexp.nets.noisy import NoisyLinear, resample_noise, set_noise
from rlexp.nets.population import (
    MEMBER_ALIGNMENT,
    LossOfOutputs,
    MemberNetworks,
    OneMember,
    OutputGradient,
    StackedMLP,
    functional_forward,
    member_networks,
)

__all__ = [
    "ACTIVATIONS", "DuelingHead", "KINDS", "LossOfOutputs", "MEMBER_ALIGNMENT",
    "MINATAR_MIN_SIZE", "NORMS", "MemberNetworks", "NATURE_MIN_SIZE", "NoisyLinear", "OneHot",
    "OneMember", "OutputGradient", "PixelInput", "StackedMLP", "functional_forward", "linear_layer",
    "member_networks", "minatar_cnn", "nature_cnn", "network_kind", "obs_size", "q_network",
    "resample_noise", "set_noise",
]
