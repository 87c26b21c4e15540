"""Proportional prioritized replay (Schaul et al. 2016): the sum tree its draws walk, and the
sampler a memory delegates its draws to when it is prioritized.
"""

from __future__ import annotations

import numpy as np
import torch


class SumTree:
    """Sums of non-negative values over a binary tree: set values and draw an index in
    proportion to them, both in O(log n) numpy operations for a whole batch."""

    def __init__(self, capacity: int):
        self.depth = max(1, (capacity - 1).bit_length())
        self.leaves = 1 << self.depth
        self.tree = np.zeros(2 * self.leaves)  # node i's children: 2i, 2i + 1; root: 1

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        return self.tree[index + self.leaves]

    def set(self, index: np.ndarray, values: np.ndarray) -> None:
        node = np.asarray(index) + self.leaves
        self.tree[node] = values
        for _ in range(self.depth):  # parents recomputed from both children: duplicates agree
            node = np.unique(node >> 1)
            self.tree[node] = self.tree[2 * node] + self.tree[2 * node + 1]

    def find(self, mass: np.ndarray) -> np.ndarray:
        """For each ``mass`` in [0, total): the index whose interval of the cumulative sums
        holds it (a zero value's empty interval never does)."""
        node = np.ones(len(mass), dtype=np.int64)
        for _ in range(self.depth):
            left = self.tree[2 * node]
            right = mass >= left
            mass = np.where(right, mass - left, mass)
            node = 2 * node + right
        return node - self.leaves


class PrioritizedSampler:
    """Proportional prioritized replay (Schaul et al. 2016): row ``i`` is drawn with
    probability ``p_i**alpha / sum_j p_j**alpha``, new transitions at the largest priority seen
    so far, and sampled rows carry importance-sampling weights ``(N * P(i))**-beta``, divided
    by the batch's largest. A batch is drawn stratified: one row from each of ``batch_size``
    equal slices of the total priority mass."""

    def __init__(self, capacity: int, alpha: float, epsilon: float, seed: int):
        self.tree = SumTree(capacity)
        self.capacity, self.alpha, self.epsilon = capacity, alpha, epsilon
        self.max_priority = 1.0
        self.rng = np.random.default_rng(seed)

    def add(self, start: int, holds_transition: np.ndarray) -> None:
        """New rows at ring positions ``start, start + 1, ...``: the largest priority, or 0
        for rows that hold no transition."""
        rows = (start + np.arange(len(holds_transition))) % self.capacity
        self.tree.set(rows, np.where(holds_transition, self.max_priority ** self.alpha, 0.0))

    def draw(self, batch_size: int, device: torch.device) -> torch.Tensor:
        total = self.tree.total
        mass = (np.arange(batch_size) + self.rng.random(batch_size)) * (total / batch_size)
        rows = self.tree.find(np.minimum(mass, np.nextafter(total, 0.0)))
        return torch.from_numpy(rows).to(device)

    def weights(self, rows: torch.Tensor, beta: float) -> torch.Tensor:
        probability = self.tree[rows.cpu().numpy()] / self.tree.total
        count = np.count_nonzero(self.tree[np.arange(self.capacity)])
        weight = (count * probability) ** -beta
        return torch.as_tensor(weight / weight.max(), dtype=torch.float32, device=rows.device)

    def update(self, rows: torch.Tensor, errors: torch.Tensor) -> None:
        """New priorities ``|error| + epsilon`` for sampled rows (e.g. their TD errors)."""
        priority = errors.detach().abs().double().cpu().numpy() + self.epsilon
        if not np.isfinite(priority).all():  # a diverged member's: the loop retires it
            return
        self.max_priority = max(self.max_priority, float(priority.max()))
        self.tree.set(rows.cpu().numpy(), priority ** self.alpha)

    def state_dict(self) -> dict:
        return {"tree": torch.from_numpy(self.tree.tree.copy()),
                "max_priority": self.max_priority, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.tree.tree[:] = state["tree"].numpy()
        self.max_priority = float(state["max_priority"])
        self.rng.bit_generator.state = state["rng"]
