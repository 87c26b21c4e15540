"""The networks (rlexp.nets): a population's stacked networks compute each member's network
and its gradients."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from gymnasium import spaces

from rlexp.agents.qlearning import chosen_td_loss, chosen_td_loss_gradient
from rlexp.nets import ACTIVATIONS, NORMS, member_networks, q_network, resample_noise, set_noise


@pytest.mark.parametrize(("hidden", "dueling", "bias"), [([6, 5], True, True),
                                                      ([16, 12], False, False)],
                         ids=["narrow-dueling", "wide-nobias"])
@pytest.mark.parametrize(("norm", "noisy"), [(None, False), *((n, False) for n in NORMS),
                                             (None, True)])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_stacked_networks_compute_each_members_network_and_gradients(activation, norm, noisy,
                                                                     hidden, dueling, bias):
    # The stacked layers have a backward of their own: products in either orientation (narrow
    # results are computed transposed: the 6- and 5-wide layers, the heads and a 3-wide
    # input's weight gradients; the 16- and 12-wide products directly) and activations
    # working in place. Each member's outputs and gradients, its inputs' too, must still be
    # those of its network alone.
    torch.manual_seed(0)
    nets = [q_network(spaces.Box(-1, 1, (3,)), 2, hidden, activation, bias or noisy,
                      dueling=dueling, norm=norm, noisy=noisy) for _ in range(3)]
    with torch.no_grad():  # biases and a norm's weights away from their initial zeros and ones
        for net in nets:
            for p in net.parameters():
                if p.dim() == 1:
                    p.add_(torch.randn_like(p) * 0.5)
    stacked = member_networks([copy.deepcopy(n) for n in nets])
    # Noisy layers: each member's noise drawn from its generator, as its network alone draws.
    stacked.resample_noise([torch.Generator().manual_seed(s) for s in range(3)])
    for s, net in enumerate(nets):
        resample_noise(net, torch.Generator().manual_seed(s))
    x = torch.randn(3, 8, 3, requires_grad=True)
    out = stacked(x)
    (out ** 2).sum().backward()
    for i, net in enumerate(nets):
        alone = x[i].detach().clone().requires_grad_(True)
        expected = net(alone)
        torch.testing.assert_close(out[i], expected, rtol=1e-6, atol=1e-6)  # other kernels
        (expected ** 2).sum().backward()
        torch.testing.assert_close(x.grad[i], alone.grad, rtol=1e-6, atol=1e-6)
        # A norm's backward cancels terms, and noise scales them: rounding errors are then
        # relative to the largest gradient.
        atol = 1e-5 if norm or noisy else 1e-7
        for k, (name, p) in enumerate(net.named_parameters()):
            torch.testing.assert_close(stacked.per_member(stacked.weights[k].grad, k)[i],
                                       p.grad, rtol=1e-6, atol=atol, msg=name)
    with torch.inference_mode():  # acting computes what learning does, bit for bit
        assert torch.equal(stacked.act_forward(x), out.detach())
    with torch.no_grad():  # and so does a target's forward
        assert torch.equal(stacked(x), out.detach())
    if noisy:  # greedy: the means alone, as each network alone computes with its noise off
        stacked.set_noise(False)
        for i, net in enumerate(nets):
            set_noise(net, False)
            torch.testing.assert_close(stacked(x)[i], net(x[i]), rtol=1e-6, atol=1e-6)
            set_noise(net, True)
            assert not torch.allclose(stacked(x)[i], net(x[i]))


@pytest.mark.parametrize(("hidden", "dueling", "bias"), [([6, 5], True, True),
                                                      ([16, 12], False, False),
                                                      ([16], False, True)],
                         ids=["narrow-dueling", "wide-nobias", "padded-bias"])
@pytest.mark.parametrize("norm", [None, *NORMS])
@pytest.mark.parametrize("kind", ["mse", "huber"])
@pytest.mark.parametrize("written_out", [False, True], ids=["autograd-loss", "written-out"])
def test_set_gradients_gives_autograds_gradients_bit_for_bit(written_out, kind, norm, hidden,
                                                             dueling, bias):
    # set_gradients runs the stacked layers outside autograd; the loss's gradient is autograd's
    # or written out (chosen_td_loss_gradient, used where no dueling head combines outputs).
    # Every parameter's gradient must be what backward() through the graph leaves, to the bit.
    torch.manual_seed(0)
    nets = [q_network(spaces.Box(-1, 1, (3,)), 3, hidden, "relu", bias, dueling=dueling,
                      norm=norm) for _ in range(3)]
    stacked = member_networks(nets)
    graph = stacked.clone()
    x, action = torch.randn(3, 12, 3), torch.randint(0, 3, (3, 12))
    target = torch.randn(3, 12) * 2  # Huber's both sides
    loss, q = chosen_td_loss(graph(x), action, target, kind)
    loss.sum().backward()
    assert stacked.sets_gradients
    returned = stacked.set_gradients(
        x, partial(chosen_td_loss, action=action, target=target, kind=kind),
        partial(chosen_td_loss_gradient, action=action, target=target, kind=kind)
        if written_out else None)
    assert torch.equal(returned[0], loss) and torch.equal(returned[1], q)
    for (name, ours), theirs in zip(stacked.named_parameters(), graph.parameters(), strict=True):
        assert torch.equal(ours.grad, theirs.grad), name
    assert not member_networks([q_network(spaces.Box(-1, 1, (3,)), 3, [4], "relu", True,
                                          noisy=True)]).sets_gradients  # autograd's
