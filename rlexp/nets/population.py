"""The Q-networks of a population's members as one module (:func:`member_networks`): an MLP's
layers (linear or noisy linear maps, LayerNorms, activations) stacked over the members, with a
forward and backward of their own (the population kernel), or one member's network as it is;
and functional forwards for acting.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from typing import ClassVar

import torch
from torch import nn

from rlexp.nets.architectures import ACTIVATIONS, DuelingHead, OneHot, PixelInput
from rlexp.nets.noisy import NoisyLinear, factorised, noisy_layers, resample_noise, set_noise


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


#: A function of a network's outputs ``[members, batch, outputs]`` that returns the members'
#: losses ``[members]`` first, and anything else its caller wants back after them.
LossOfOutputs = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]
#: A loss's gradient written out: of the outputs, what the loss function returns, and the
#: gradient of the members' summed losses with respect to the outputs (laid out as
#: ``[members, batch, outputs]``, contiguous, as autograd's).
OutputGradient = Callable[[torch.Tensor], tuple[tuple[torch.Tensor, ...], torch.Tensor]]


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
    #: Whether the network has a ``set_gradients(x, loss_of_outputs)`` that computes its
    #: gradients itself (:meth:`StackedMLP.set_gradients`); else autograd computes them.
    sets_gradients: bool = False

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

    def set_noise(self, on: bool) -> None:
        """Noisy layers: noisy weights (``on``) or their means alone (greedy evaluation)."""
        raise NotImplementedError

    def resample_noise(self, generators: Sequence[torch.Generator]) -> None:
        """Noisy layers: new noise, member ``i``'s drawn from ``generators[i]`` as its network
        alone draws it (:func:`rlexp.nets.noisy.resample_noise`)."""
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
    bias as ``[members, 1, out]``, the shape the batched product adds; a noisy layer's means
    and scales so, its noise as ``[members, in]`` and ``[members, out]``. A member's arithmetic
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
        self.plan = _plan(nets[0])
        #: Each noisy layer's noise (factorised: its inputs' and outputs'), as buffers.
        self.noise_sizes = [(m.in_features, m.out_features) for m in noisy_layers(nets[0])]
        for j, (n_in, n_out) in enumerate(self.noise_sizes):
            self.register_buffer(f"eps_in{j}", torch.zeros(self.members, n_in), persistent=False)
            self.register_buffer(f"eps_out{j}", torch.zeros(self.members, n_out),
                                 persistent=False)
        self.noise_on = True
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
        # Learning: the parameters' views taken at each pass, so autograd sees them. Acting:
        # the same views taken once, outside autograd; they follow every in-place update.
        self._learn_params = [self._operand_of(p, k) for k, p in enumerate(self.weights)]
        self._act_params = [self._laid_out(p.detach(), k) for k, p in enumerate(self.weights)]
        # For set_gradients: the parameters as a list (a ParameterList's indexing costs more
        # than a small step's arithmetic on them), and those stored padded.
        self._param_list = list(self.weights)
        self._padded_params = [k for k in range(len(self.shapes)) if self._padded(k)]

    def _operand_of(self, p: torch.Tensor, k: int) -> Callable[[], torch.Tensor]:
        """A function giving parameter ``k`` laid out as its layer takes it, with as few calls
        as it can."""
        if self._padded(k):
            return lambda: self._laid_out(p, k)
        return lambda: p

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.plan.inputs:
            x = step(x)
        return x

    def set_noise(self, on: bool) -> None:
        self.noise_on = on

    @torch.no_grad()
    def resample_noise(self, generators: Sequence[torch.Generator]) -> None:
        for j, (n_in, n_out) in enumerate(self.noise_sizes):
            noise = factorised(torch.stack([torch.randn(n_in + n_out, generator=g,
                                                        device=g.device) for g in generators]))
            self.get_buffer(f"eps_in{j}").copy_(noise[:, :n_in])
            self.get_buffer(f"eps_out{j}").copy_(noise[:, n_in:])

    def _operands(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """The layers' operands from the parameters: a noisy layer's weight and bias are
        ``mu + sigma * noise`` (with the noise on; else ``mu``), as NoisyLinear's."""
        if not self.noise_sizes:
            return params
        operands, at, j = [], 0, 0
        for layer in self.plan.layers:
            if layer.noisy:
                w_mu, w_sigma, b_mu, b_sigma = params[at:at + 4]
                if self.noise_on:
                    eps_in, eps_out = self.get_buffer(f"eps_in{j}"), self.get_buffer(f"eps_out{j}")
                    operands += [w_mu + w_sigma * (eps_out[:, :, None] * eps_in[:, None, :]),
                                 b_mu + b_sigma * eps_out[:, None, :]]
                else:
                    operands += [w_mu, b_mu]
                operands += params[at + 4:at + layer.params]
                j += 1
            else:
                operands += params[at:at + layer.params]
            at += layer.params
        return operands

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, params = self._inputs(x), self._operands([p() for p in self._learn_params])
        if torch.is_grad_enabled():
            out = _StackedLayers.apply(self.plan, x, *params)
        else:  # a target's forward: nothing to keep for a backward (the same arithmetic)
            out = _run_layers(self.plan.layers, x, params)[-1]
        # A narrow head's outputs are computed transposed (see _product), and so the dueling
        # combination's: laid out as [members, batch, outputs] again (a few thousand values)
        # for what reads them, e.g. an argmax over actions, 10x as long over the transpose.
        return self.plan.head(out).contiguous()

    @property
    def sets_gradients(self) -> bool:
        """Noisy layers' operands are differentiated by autograd (see :meth:`set_gradients`)."""
        return not self.noise_sizes

    def set_gradients(self, x: torch.Tensor, loss_of_outputs: LossOfOutputs,
                      gradient: OutputGradient | None = None) -> tuple[torch.Tensor, ...]:
        """Sets each parameter's ``.grad`` to the gradient of the members' summed losses
        ``loss_of_outputs(self(x))[0]``, and returns what ``loss_of_outputs`` returned.

        The layers' forward and backward run outside autograd: the same gradients bit for bit
        as ``backward()`` through :class:`_StackedLayers`, without the engine's nodes, the
        gradients' additions into zeroed ones and the copies around them. The loss's own
        gradient is ``gradient``'s where given (and the network has no head to combine
        outputs), else autograd's through the head and the loss. PQN's gradient step takes
        about a fifth less time (docs/benchmarks.md)."""
        with torch.no_grad():
            x, params = self._inputs(x), self._operands([p() for p in self._learn_params])
            normed: list[tuple[torch.Tensor, ...]] = []
            outputs = _run_layers(self.plan.layers, x, params, normed)
        if gradient is not None and self.plan.head is _no_combination:
            returned, grad = gradient(outputs[-1])
        else:
            out = outputs[-1].detach().requires_grad_()
            returned = loss_of_outputs(self.plan.head(out).contiguous())
            (grad,) = torch.autograd.grad(returned[0].sum(), out)
        with torch.no_grad():
            _, grads = _layers_backward(self.plan, grad, _layer_inputs(self.plan, x, outputs),
                                        params, [t for n in normed for t in n],
                                        input_grad=False)
            for p in self._param_list:
                if p.grad is None:  # a padded one's padding stays zero
                    p.grad = torch.zeros_like(p)
            targets = [p.grad for p in self._param_list]
            for k in self._padded_params:
                targets[k] = self._laid_out(targets[k], k)
            torch._foreach_copy_(targets, grads)
        return returned

    def act_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.plan.head(_run_layers(self.plan.layers, self._inputs(x),
                                          self._operands(self._act_params))[-1]).contiguous()


@dataclass(frozen=True)
class _Layer:
    """A linear layer of a StackedMLP, the LayerNorm after it (its epsilon; None: none) and
    the activation that follows them (None: none)."""

    bias: bool
    activation: _Activation | None = None
    norm: float | None = None
    #: A noisy layer (NoisyLinear): its weight and bias are ``mu + sigma * noise``.
    noisy: bool = False

    @property
    def params(self) -> int:
        """How many parameters the layer has: its weight and bias (a noisy layer's means and
        scales), and the norm's two."""
        return (4 if self.noisy else 1 + self.bias) + 2 * (self.norm is not None)

    @property
    def operands(self) -> int:
        """How many tensors its computation takes: a weight, a bias, the norm's two."""
        return 1 + self.bias + 2 * (self.norm is not None)


@dataclass(frozen=True)
class _Activation:
    """An elementwise nonlinearity, in place: forward on a layer's product, backward on the
    gradient, from the activation's output (which the forward keeps)."""

    forward: Callable[[torch.Tensor], torch.Tensor]
    backward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _activation(module: nn.Module) -> _Activation:
    aten = torch.ops.aten
    if isinstance(module, nn.ReLU):
        return _Activation(torch.relu_, lambda g, y: aten.threshold_backward.grad_input(
            g, y, 0, grad_input=g))
    if isinstance(module, nn.Tanh):
        return _Activation(torch.tanh_, lambda g, y: aten.tanh_backward.grad_input(
            g, y, grad_input=g))
    if isinstance(module, nn.ELU):
        alpha = module.alpha
        return _Activation(partial(nn.functional.elu_, alpha=alpha),
                           lambda g, y: aten.elu_backward.grad_input(g, alpha, 1, 1, True, y,
                                                                     grad_input=g))
    raise ValueError(f"{type(module).__name__} has no stacked form")


@dataclass(frozen=True)
class _Plan:
    """How a StackedMLP computes the single network's modules: elementwise input layers
    (one-hot, pixel scaling, flatten), then linear layers each with its norm and activation,
    then the head's combination (a dueling head's, or none)."""

    inputs: tuple[Callable[[torch.Tensor], torch.Tensor], ...]
    layers: tuple[_Layer, ...]
    head: Callable[[torch.Tensor], torch.Tensor]

    @cached_property
    def starts(self) -> tuple[int, ...]:
        """Where each layer's operands start among all of them, and their count last."""
        return tuple(itertools.accumulate((layer.operands for layer in self.layers), initial=0))


def _plan(net: nn.Sequential) -> _Plan:
    """The plan of an MLP as :func:`q_network` builds it; ValueError for any other network."""
    if not isinstance(net, nn.Sequential):
        raise ValueError(f"a {type(net).__name__} has no stacked form")
    modules = list(net)
    inputs = []
    while modules and (step := _input_step(modules[0])) is not None:
        inputs.append(step)
        modules.pop(0)
    layers: list[_Layer] = []
    head = _no_combination
    while modules:
        module = modules.pop(0)
        if isinstance(module, DuelingHead) and type(module.linear) in _LINEAR and not modules:
            layers.append(_Layer(module.linear.bias is not None,
                                 noisy=type(module.linear) is NoisyLinear))
            head = partial(_dueling, shape=module.shape)
        elif type(module) in _LINEAR:
            norm = modules.pop(0).eps if modules and _stackable_norm(modules[0]) else None
            activated = bool(modules) and isinstance(modules[0], tuple(ACTIVATIONS.values()))
            layers.append(_Layer(module.bias is not None,
                                 _activation(modules.pop(0)) if activated else None, norm,
                                 type(module) is NoisyLinear))
        else:
            raise ValueError(f"{type(module).__name__} layers have no stacked form here")
    if not layers:
        raise ValueError("a network without linear layers has no stacked form")
    return _Plan(tuple(inputs), tuple(layers), head)


#: The linear layers a StackedMLP computes.
_LINEAR = (nn.Linear, NoisyLinear)


def _stackable_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a LayerNorm a StackedMLP computes: over a layer's outputs, with
    its weight and bias (as :func:`q_network` makes them)."""
    return type(module) is nn.LayerNorm and len(module.normalized_shape) == 1 and \
        module.elementwise_affine and module.bias is not None


def _input_step(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """How a StackedMLP applies an input layer of the single network (None: not one)."""
    if isinstance(module, nn.Flatten):
        return partial(torch.flatten, start_dim=2)  # keep [members, batch]
    if isinstance(module, OneHot) or (
            isinstance(module, PixelInput) and not module.convolutional):
        return module.forward  # elementwise: the member axis changes nothing
    return None


def _no_combination(out: torch.Tensor) -> torch.Tensor:
    return out


#: A batched product whose result has fewer columns than this (and more rows) is computed as
#: its transpose: at 8 members MKL takes about 3x as long for a [256, 3] result (a head's
#: outputs over a batch) or a [128, 4] one (a first layer's weight gradient) as for the
#: [3, 256] or [4, 128] transpose. The transpose was the faster below 8 columns at 1 and at 8
#: members, and not from 8 columns on.
_NARROW = 8


def _product(a: torch.Tensor, b: torch.Tensor, add: torch.Tensor | None = None
             ) -> torch.Tensor:
    """``add + a @ b`` over a leading batch axis (``add``: broadcast, e.g. a bias
    ``[members, 1, n]``); a narrow result (see ``_NARROW``) is a transposed view."""
    if not b.shape[2] < min(_NARROW, a.shape[1]):
        return torch.bmm(a, b) if add is None else torch.baddbmm(add, a, b)
    a, b = b.transpose(1, 2), a.transpose(1, 2)
    out = torch.bmm(a, b) if add is None else torch.baddbmm(add.transpose(1, 2), a, b)
    return out.transpose(1, 2)


def _run_layers(layers: Sequence[_Layer], x: torch.Tensor, params: Sequence[torch.Tensor],
                normed: list | None = None) -> list[torch.Tensor]:
    """The outputs of each of ``layers`` on ``x``; ``params``: their weights
    ``[members, out, in]`` and biases ``[members, 1, out]`` (a norm's too), in order.
    ``normed``, when given, receives what a norm's backward needs: for each layer with a
    norm, its input (the layer's product) and the rows' means and reciprocal deviations."""
    params = iter(params)
    outputs = []
    for layer in layers:
        weight, bias = next(params), next(params) if layer.bias else None
        x = _product(x, weight.transpose(1, 2), bias)
        if layer.norm is not None:
            x = _layer_norm(x, next(params), next(params), layer.norm, normed)
        if layer.activation is not None:
            # In place on the product, which nothing else holds: no new members x batch x
            # width tensor, whose allocation and memory traffic cost about 7% of a
            # population's gradient step.
            x = layer.activation.forward(x)
        outputs.append(x)
    return outputs


def _layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                normed: list | None) -> torch.Tensor:
    """A LayerNorm of each member's rows ``x[i]`` with its weight and bias ``[members, 1, n]``:
    one fused kernel a member, as its network alone computes it (the kernel takes one weight)."""
    if len(x) == 1:
        out, mean, rstd = torch.native_layer_norm(x[0], x.shape[-1:], weight[0, 0], bias[0, 0],
                                                  eps)
        out, mean, rstd = out[None], mean[None], rstd[None]
    else:
        out, mean, rstd = (torch.stack(t) for t in zip(*(
            torch.native_layer_norm(x[i], x.shape[-1:], weight[i, 0], bias[i, 0], eps)
            for i in range(len(x))), strict=True))
    if normed is not None:
        normed.append((x, mean, rstd))
    return out


def _layer_norm_backward(g: torch.Tensor, x: torch.Tensor, mean: torch.Tensor,
                         rstd: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_layer_norm`'s backward: the gradients of its input, weight and bias, a member at
    a time (as its network alone computes them)."""
    parts = [torch.ops.aten.native_layer_norm_backward(
        g[i], x[i], x.shape[-1:], mean[i], rstd[i], weight[i, 0], bias[i, 0],
        [True, True, True]) for i in range(len(x))]
    if len(parts) == 1:
        gx, gw, gb = parts[0]
        return gx[None], gw[None, None], gb[None, None]
    gx, gw, gb = (torch.stack(t) for t in zip(*parts, strict=True))
    return gx, gw[:, None], gb[:, None]


class _StackedLayers(torch.autograd.Function):
    """A StackedMLP's linear layers and activations as one autograd node, with a backward
    written for them: each product in its faster orientation (``_product``), each weight's
    gradient computed in its parameter's layout (autograd's is its transpose, copied), and
    each activation's backward in place on a gradient this node made (autograd's allocates a
    new one: 2.3x as long at 8 members)."""

    @staticmethod
    def forward(ctx, plan: _Plan, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        normed: list[tuple[torch.Tensor, ...]] = []
        outputs = _run_layers(plan.layers, x, params, normed)
        ctx.plan = plan
        ctx.save_for_backward(*_layer_inputs(plan, x, outputs), *params,
                              *(t for n in normed for t in n))
        return outputs[-1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        layers, at = ctx.plan.layers, ctx.plan.starts
        saved = ctx.saved_tensors
        kept = len(layers) + (layers[-1].activation is not None)
        inputs, params = saved[:kept], saved[kept:kept + at[-1]]
        g, grads = _layers_backward(ctx.plan, grad, inputs, params, saved[kept + at[-1]:],
                                    ctx.needs_input_grad[1])
        return None, g, *grads


def _layer_inputs(plan: _Plan, x: torch.Tensor, outputs: list[torch.Tensor]
                  ) -> tuple[torch.Tensor, ...]:
    """What the backward keeps of a forward: each layer's input, and the last layer's output
    where its activation's backward needs it (a torso's, whose features go on into other
    layers)."""
    return (x, *(outputs if plan.layers[-1].activation is not None else outputs[:-1]))


def _layers_backward(plan: _Plan, grad: torch.Tensor, inputs: Sequence[torch.Tensor],
                     params: Sequence[torch.Tensor], normed: Sequence[torch.Tensor],
                     input_grad: bool) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
    """The gradients of the input (None unless ``input_grad``) and of every operand, from the
    gradient of the last layer's output (not changed in place). ``inputs``: each layer's
    input (and the last layer's output where its activation's backward needs it);
    ``normed``: what :func:`_run_layers` kept for each norm, in order."""
    layers, at = plan.layers, plan.starts
    kept = iter(normed)
    norms = [(next(kept), next(kept), next(kept)) if layer.norm is not None else None
             for layer in layers]
    grads: list[torch.Tensor] = [None] * len(params)  # type: ignore[list-item]
    g, owned = grad, False
    for i in reversed(range(len(layers))):
        layer, weight = layers[i], params[at[i]]
        if layer.activation is not None:  # its output is saved
            g, owned = layer.activation.backward(g if owned else g.clone(), inputs[i + 1]), True
        if layer.norm is not None:
            scale = at[i] + 1 + layer.bias
            g, grads[scale], grads[scale + 1] = _layer_norm_backward(
                g, *norms[i], params[scale], params[scale + 1])
        grads[at[i]] = _product(g.transpose(1, 2), inputs[i])
        if layer.bias:
            grads[at[i] + 1] = g.sum(dim=1, keepdim=True)
        if i or input_grad:
            g, owned = _product(g, weight), True
    return (g if input_grad else None), grads


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
        act = functional_forward(self.net) if isinstance(self.net, nn.Sequential) else self.net
        self._act = lambda x, *extra: act(x[0], *(e[0] for e in extra)).unsqueeze(0)

    def set_noise(self, on: bool) -> None:
        set_noise(self.net, on)

    def resample_noise(self, generators: Sequence[torch.Generator]) -> None:
        (generator,) = generators
        resample_noise(self.net, generator)

    def act_forward(self, x: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        """``extra``: further inputs ``[1, ...]`` of a network that takes them (IQN's
        quantile fractions)."""
        return self._act(x, *extra)

    def forward(self, x: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        return self.net(x[0], *(e[0] for e in extra)).unsqueeze(0)


def member_networks(nets: Sequence[nn.Sequential]) -> MemberNetworks:
    """The members' networks (one per member, of one architecture) as one module: stacked when
    they are MLPs, else (a convolutional network) only a population of one."""
    try:
        return StackedMLP(nets)
    except ValueError:
        if len(nets) > 1:
            modules = nets[0] if isinstance(nets[0], nn.Sequential) else [nets[0]]
            raise ValueError(f"population training batches MLP Q-networks; these are "
                             f"{', '.join(type(m).__name__ for m in modules)}: train them one "
                             "run per process (hydra/launcher=parallel)") from None
        return OneMember(nets[0])
