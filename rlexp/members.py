"""What keeps the members of a population apart when they train as one computation.

A population's Q-networks are one module (:class:`rlexp.nets.MemberNetworks`); its gradient
steps are one optimizer step. :class:`MemberOptimizer` keeps every member's step its own: the
loss is the sum of the members' losses (each the mean over its own batch), the gradient norm
is clipped per member, and each member has its own learning rate and schedule. The optimizer's
state is elementwise (Adam's moments, momentum buffers), so it is per member by construction;
each member's part reads and writes as the state dict a single run's optimizer would have.

An elementwise optimizer (:data:`ELEMENTWISE`) steps the parameters as one flat tensor
(:class:`FlatParameters`): each of the step's ops is one kernel instead of one per parameter,
with the same values bit for bit, and the state dict still reads and writes per parameter, as
torch's optimizers save it.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from rlexp.nets import MEMBER_ALIGNMENT, LossOfOutputs, MemberNetworks, OutputGradient

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]

#: The torch.optim methods torch wraps for torch.compile (see :func:`eager_optimizer_class`).
_COMPILE_WRAPPED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


@functools.cache
def eager_optimizer_class(cls: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """``cls`` with the wrappers torch puts on its methods for torch.compile taken off.

    Those wrappers import ``torch._dynamo`` at their first call: about 1 s, a third of a short
    run's start-up, paid by every run of a sweep. rlexp never compiles an optimizer, so its
    optimizers call the methods themselves; the step runs without gradient tracking, as its
    wrapper would run it (torch's step hooks and profiler labels stay). Where a torch version
    wraps none of them, this is ``cls`` under another class, unchanged.
    """
    methods = {name: inspect.unwrap(getattr(cls, name)) for name in _COMPILE_WRAPPED}
    step = inspect.unwrap(cls.step)

    def no_grad_step(self, closure=None):
        with torch.no_grad():
            return step(self, closure)

    methods["step"] = functools.wraps(step)(no_grad_step)
    return type(cls.__name__, (cls,), {**methods, "__module__": cls.__module__,
                                       "__qualname__": cls.__qualname__})


#: A flat tensor's size is a multiple of this many values: torch splits an elementwise op of
#: 32,768 values or more into one chunk per thread, which then starts at a multiple of 32 values
#: (two AVX-512 vectors of floats), as a parameter's own tensor would, for up to 64 threads.
FLAT_ALIGNMENT = 2048
#: torch.optim optimizers whose update of a value reads only that value, its gradient and its
#: own state (and numbers shared by all values, such as the step count).
ELEMENTWISE = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RAdam,
               torch.optim.NAdam, torch.optim.Adamax, torch.optim.RMSprop, torch.optim.Adagrad)


class FlatParameters:
    """The parameters an elementwise optimizer steps as one: those whose size is a multiple of
    ``MEMBER_ALIGNMENT`` values become views into one flat tensor, ``flat``, and their gradients
    views into ``flat.grad``; the others (a 2-action head's bias) stay tensors of their own.

    Bit for bit the step of the parameters one by one: each joined parameter starts at a
    multiple of ``MEMBER_ALIGNMENT``, and the flat tensor's size is a multiple of
    ``FLAT_ALIGNMENT``, so torch's kernels (and their split over threads) give every value the
    same vector lane; a size that does not fill its last vector (which torch computes in
    scalar code) stays alone. The gaps are zeros that stay zero (zero gradient, zero state).
    """

    def __init__(self, params: Sequence[nn.Parameter]):
        self.params = list(params)
        #: The parameters' indices: joined into ``flat``, and alone (stepped after it).
        self.joined = [k for k, p in enumerate(self.params)
                       if p.is_contiguous() and p.numel() % MEMBER_ALIGNMENT == 0]
        self.alone = [k for k in range(len(self.params)) if k not in self.joined]
        self.offsets, end = [], 0
        for k in self.joined:
            self.offsets.append(end)
            end += self.params[k].numel()
        self.flat = nn.Parameter(self.params[0].new_zeros(-(-end // FLAT_ALIGNMENT)
                                                          * FLAT_ALIGNMENT))
        self.flat.grad = torch.zeros_like(self.flat)
        with torch.no_grad():
            for k, view, grad in zip(self.joined, self._views(self.flat.detach()),
                                     self._views(self.flat.grad), strict=True):
                view.copy_(self.params[k])
                self.params[k].data = view
                self.params[k].grad = grad

    def row_members(self, members: int) -> torch.Tensor:
        """The member each row of ``MEMBER_ALIGNMENT`` values of ``flat`` belongs to, for
        parameters ``[members, ...]`` whose members' parts are whole rows (a gap's: 0)."""
        owner = torch.zeros(len(self.flat) // MEMBER_ALIGNMENT, dtype=torch.long,
                            device=self.flat.device)
        for offset, k in zip(self.offsets, self.joined, strict=True):
            start, n = offset // MEMBER_ALIGNMENT, self.params[k].numel() // MEMBER_ALIGNMENT
            owner[start:start + n] = torch.arange(n) * members // n
        return owner

    def stepped(self) -> list[nn.Parameter]:
        """What the optimizer steps: the flat tensor, then the parameters alone."""
        return [self.flat, *(self.params[k] for k in self.alone)]

    def copies(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """A copy of what the optimizer steps, and each parameter's part of it, in the
        parameters' order."""
        stepped = [t.detach().clone() for t in self.stepped()]
        parts: list[torch.Tensor] = [stepped[0]] * len(self.params)
        for k, view in zip(self.joined, self._views(stepped[0]), strict=True):
            parts[k] = view
        for j, k in enumerate(self.alone):
            parts[k] = stepped[1 + j]
        return stepped, parts

    def zero_grad(self) -> None:
        self.flat.grad.zero_()  # the joined parameters' gradients accumulate into their views
        for k in self.alone:
            self.params[k].grad = None

    def _views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [flat[o:o + self.params[k].numel()].view_as(self.params[k])
                for o, k in zip(self.offsets, self.joined, strict=True)]

    def per_parameter(self, full: dict[str, Any]) -> dict[str, Any]:
        """The optimizer's state dict as stepping the parameters one by one saves it."""
        state = {}
        for entry, entries in full["state"].items():
            if entry != 0:
                state[self.alone[entry - 1]] = entries
                continue
            for key, value in entries.items():
                views = self._views(value) if isinstance(value, torch.Tensor) and \
                    value.shape == self.flat.shape else None
                for j, k in enumerate(self.joined):
                    state.setdefault(k, {})[key] = value if views is None else views[j]
        groups = [{**g, "params": list(range(len(self.params)))} for g in full["param_groups"]]
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def as_stepped(self, full: dict[str, Any]) -> dict[str, Any]:
        """``per_parameter``'s inverse: the state dict of the optimizer as it steps."""
        parts = {int(k): v for k, v in full["state"].items()}
        state = {j + 1: parts[k] for j, k in enumerate(self.alone) if k in parts}
        joined = [parts[k] for k in self.joined if k in parts]
        if joined:
            if len(joined) != len(self.joined):
                raise ValueError("the optimizer's state covers only some of the parameters")
            state[0] = {}
            for key, value in joined[0].items():
                if isinstance(value, torch.Tensor) and value.shape == self.params[
                        self.joined[0]].shape:
                    value = torch.zeros_like(self.flat.detach(), dtype=value.dtype)
                    for view, part in zip(self._views(value), joined, strict=True):
                        view.copy_(part[key])
                state[0][key] = value
        groups = [{**g, "params": list(range(1 + len(self.alone)))}
                  for g in full["param_groups"]]
        return {"state": state, "param_groups": groups}


def member_weights(values: Sequence[float], params: Sequence[torch.Tensor]
                   ) -> float | list[torch.Tensor]:
    """One number per member as the weight of an elementwise op on each of ``params``
    (``[members, ...]``): the number itself when they are all equal (the same arithmetic, one
    op fewer), else one tensor, viewed to broadcast over each parameter."""
    if len(set(values)) == 1:
        return values[0]
    weights = torch.tensor(values, dtype=params[0].dtype, device=params[0].device)
    return [weights.view(-1, *[1] * (p.dim() - 1)) for p in params]


class MemberOptimizer:
    """A torch optimizer over a population's networks, stepping each member with its own
    learning rate ``lrs[i] * scale[i]`` and gradient-norm limit ``max_grad_norms[i]``.

    The optimizer steps at rate 1, and each member's displacement is then scaled by its own
    rate: every torch optimizer's update is linear in the learning rate, so this is the
    member's update at its rate, up to rounding no larger than a direct update's. A member's
    arithmetic involves no other member's values or settings, so it is the same (bit for bit)
    in a population of any size, a population of one included. A network that never joins a
    population (``joins_populations`` false: the convolutional ones) steps at its rate.
    """

    def __init__(self, net: MemberNetworks, make_optimizer: OptimizerFactory,
                 lrs: Sequence[float], max_grad_norms: Sequence[float | None]):
        self.net = net
        self.params = list(net.parameters())
        self.optimizer = make_optimizer(self.params)
        #: The parameters as one flat tensor, which the optimizer steps (ELEMENTWISE); None:
        #: the optimizer steps them one by one.
        self.flat = None
        if isinstance(self.optimizer, ELEMENTWISE):
            self.flat = FlatParameters(self.params)
            self.optimizer = make_optimizer(self.flat.stepped())
            net._compile()  # its forward functions hold views of the parameters' old tensors
        self.base_lrs = [float(lr) for lr in lrs]
        limits = [float("inf") if m is None else m for m in max_grad_norms]
        self.max_grad_norms = None if all(m is None for m in max_grad_norms) else \
            torch.tensor(limits, device=self.params[0].device)
        for group in self.optimizer.param_groups:  # see step()
            group["lr"] = 1.0
        #: The member of each row of MEMBER_ALIGNMENT values of the flat gradient (see _clip).
        self._row_member = None if self.flat is None else self.flat.row_members(net.members)
        #: The parameters before a step (each step's displacement is scaled from them), and
        #: as the optimizer steps them (one flat tensor: one op a pass where every member's
        #: rate is the same number); a network that never joins a population steps at its
        #: rate directly (three passes over the parameters fewer: about 8% more Atari env
        #: steps per second).
        self._stepped = [p.detach() for p in self.optimizer.param_groups[0]["params"]]
        self._stepped_before: list[torch.Tensor] = []
        self._before: list[torch.Tensor] = []
        if net.joins_populations and self.flat is not None:
            self._stepped_before, self._before = self.flat.copies()
        elif net.joins_populations:
            self._before = self._stepped_before = [p.detach().clone() for p in self.params]

    def lrs(self, scale: Sequence[float]) -> list[float]:
        """Each member's learning rate at these schedule scales."""
        return [lr * s for lr, s in zip(self.base_lrs, scale, strict=True)]

    def step(self, loss: torch.Tensor, scale: Sequence[float]) -> None:
        """One gradient step on ``loss`` (the sum of the members' losses)."""
        if self.flat is None:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.flat.zero_grad()
        loss.backward()
        self._step_on_gradients(scale)

    def step_on(self, x: torch.Tensor, loss_of_outputs: LossOfOutputs, scale: Sequence[float],
                gradient: OutputGradient | None = None) -> tuple[torch.Tensor, ...]:
        """One gradient step on the members' losses ``loss_of_outputs(net(x))[0]``; returns
        what ``loss_of_outputs`` returned, detached. A network that computes its own gradients
        (``sets_gradients``) does, bit for bit as autograd would, with the loss's gradient
        from ``gradient`` (written out) where given."""
        if self.net.sets_gradients:
            returned = self.net.set_gradients(x, loss_of_outputs, gradient)
            self._step_on_gradients(scale)
        else:
            returned = loss_of_outputs(self.net(x))
            self.step(returned[0].sum(), scale)
        return tuple(t.detach() for t in returned)

    @torch.no_grad()
    def _step_on_gradients(self, scale: Sequence[float]) -> None:
        if self.max_grad_norms is not None:
            self._clip()
        if not self.net.joins_populations:  # never in a population: at its rate, directly
            (lr,) = self.lrs(scale)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.step()
            return
        torch._foreach_copy_(self._stepped_before, self._stepped)
        self.optimizer.step()  # at rate 1
        # before + rate * (after - before), then back into the parameters
        weights = member_weights(self.lrs(scale), self.params)
        before, after = (self._stepped_before, self._stepped) if isinstance(weights, float) \
            else (self._before, self.params)
        torch._foreach_lerp_(before, after, weights)
        torch._foreach_copy_(after, before)

    def _clip(self) -> None:
        """Scales each member's gradients to norm ``max_grad_norms[i]`` at most."""
        # The flat gradient as rows of MEMBER_ALIGNMENT values, each one member's: each row's
        # squares summed, then a member's rows in order (index_add_ adds them one by one), so
        # its norm is the same in a population of any size: ten ops for every parameter at
        # once instead of four a parameter (docs/benchmarks.md). The parameters outside it
        # (all of them without a flat tensor) are summed one by one.
        rows = squares = None
        if self.flat is not None:
            rows = self.flat.flat.grad.view(-1, MEMBER_ALIGNMENT)
            squares = rows.new_zeros(self.net.members).index_add_(
                0, self._row_member, (rows * rows).sum(dim=1))
        apart = range(len(self.params)) if self.flat is None else self.flat.alone
        grads = [self.net.per_member(self.params[k].grad, k) for k in apart
                 if self.params[k].grad is not None]
        if grads:
            summed = torch.stack([s.flatten(1).sum(1) for s in torch._foreach_pow(grads, 2)]
                                 ).sum(0)
            squares = summed if squares is None else squares + summed
        coef = (self.max_grad_norms / (squares.sqrt() + 1e-6)).clamp(max=1.0)
        if rows is not None:
            rows.mul_(coef[self._row_member][:, None])
        if grads:
            torch._foreach_mul_(grads, [coef.view(-1, *[1] * (g.dim() - 1)) for g in grads])

    def member_state_dict(self, i: int, scale: Sequence[float]) -> dict[str, Any]:
        """Member ``i``'s part: the state dict of a single run's optimizer."""
        full = self.optimizer.state_dict()
        if self.flat is not None:
            full = self.flat.per_parameter(full)
        state = {index: {key: self._member_part(value, index, i) for key, value in s.items()}
                 for index, s in full["state"].items()}
        groups = copy.deepcopy(full["param_groups"])
        for group in groups:
            group["lr"] = self.lrs(scale)[i]
        return {"state": state, "param_groups": groups}

    def _member_part(self, value: Any, index: int, i: int) -> Any:
        if isinstance(value, torch.Tensor) and value.shape == self.params[index].shape:
            return self.net.per_member(value, index)[i].clone()
        return value.clone() if isinstance(value, torch.Tensor) else value

    def load_member_state_dicts(self, states: Sequence[dict[str, Any]]) -> None:
        """Every member's part at once (the optimizer's state exists only for all of them)."""
        first = states[0]
        state = {}
        for index, entries in first["state"].items():
            k = int(index)
            solo_shape = self.net.per_member(self.params[k], k).shape[1:]
            state[index] = {
                key: self.net.join([s["state"][index][key] for s in states], k)
                if isinstance(value, torch.Tensor) and value.shape == solo_shape else value
                for key, value in entries.items()}
        full = {"state": state, "param_groups": first["param_groups"]}
        self.optimizer.load_state_dict(full if self.flat is None else self.flat.as_stepped(full))
        for group in self.optimizer.param_groups:  # saved at the member's rate; steps at 1
            group["lr"] = 1.0
