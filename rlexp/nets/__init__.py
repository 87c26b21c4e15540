"""Q-networks: the architectures (:mod:`rlexp.nets.architectures`) and the population kernel that
trains many members' networks as one (:mod:`rlexp.nets.population`).
"""

from rlexp.nets.architectures import (
    ACTIVATIONS,
    KINDS,
    MINATAR_MIN_SIZE,
    NATURE_MIN_SIZE,
    DuelingHead,
    OneHot,
    PixelInput,
    minatar_cnn,
    nature_cnn,
    network_kind,
    obs_size,
    q_network,
)
from rlexp.nets.population import (
    MEMBER_ALIGNMENT,
    MemberNetworks,
    OneMember,
    StackedMLP,
    functional_forward,
    member_networks,
)

__all__ = [
    "ACTIVATIONS", "DuelingHead", "KINDS", "MEMBER_ALIGNMENT", "MINATAR_MIN_SIZE",
    "MemberNetworks", "NATURE_MIN_SIZE", "OneHot", "OneMember", "PixelInput", "StackedMLP",
    "functional_forward", "member_networks", "minatar_cnn", "nature_cnn", "network_kind",
    "obs_size", "q_network",
]
