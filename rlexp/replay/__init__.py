"""Replay memories (:mod:`rlexp.replay.memories`), prioritized sampling and its sum tree
(:mod:`rlexp.replay.prioritized`), and a population's memories (:mod:`rlexp.replay.members`).
"""

from rlexp.replay.members import MemberReplay, make_replay
from rlexp.replay.memories import (
    SCALARS,
    TRANSITION_EXTRA_BYTES,
    Column,
    FrameReplayBuffer,
    PackedTable,
    ReplayBuffer,
    ReplayMemory,
    ReplaySample,
)
from rlexp.replay.prioritized import PrioritizedSampler, SumTree

__all__ = [
    "Column", "FrameReplayBuffer", "MemberReplay", "PackedTable", "PrioritizedSampler",
    "ReplayBuffer", "ReplayMemory", "ReplaySample", "SCALARS", "SumTree",
    "TRANSITION_EXTRA_BYTES", "make_replay",
]
