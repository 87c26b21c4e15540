"""rlexp: Hydra-configured reinforcement-learning experiments in PyTorch.

Importing rlexp registers its envs with gymnasium (``rlexp/Toy-v0``). Public API:

- :func:`load_agent`: the trained agent of a run directory (:class:`rlexp.build.TrainedAgent`):
  ``agent.q_values(obs)`` and ``agent.act(obs)``, numpy in and out, one observation or a batch.
- :func:`rlexp.envs.planning.value_iteration`: the optimal Q* of any env that exposes ``P``.
"""

from rlexp import envs  # noqa: F401  (registers rlexp/Toy-v0)
from rlexp.build import load_agent

__all__ = ["load_agent"]
