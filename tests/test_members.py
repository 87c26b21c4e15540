"""A population's optimizer (rlexp.members): each member steps with its own learning rate
and clipping, as torch's optimizer would step its network alone."""

from __future__ import annotations

import copy
import dataclasses
from functools import partial

import pytest
import torch
from torch import nn

from rlexp.agents.qlearning import chosen_td_loss
from rlexp.build import build_optimizer
from rlexp.config import OPTIMIZERS, optimizer_class
from rlexp.members import MemberOptimizer
from rlexp.nets import member_networks
from tests.conftest import (
    compose_config,
)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_each_member_steps_with_its_own_learning_rate(optimizer):
    cfg = compose_config([f"optimizer={optimizer}"]).optimizer
    make = build_optimizer(cfg)
    lrs, clip = [1e-3, 4e-3, 2e-2], [None, 0.05, None]
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)) for _ in lrs]
    stacked = member_networks([copy.deepcopy(n) for n in nets])
    together = MemberOptimizer(stacked, make, lrs, clip)
    alone = [dataclasses.replace(cfg, lr=lr) for lr in lrs]
    alone = [build_optimizer(c)(n.parameters()) for c, n in zip(alone, nets, strict=True)]
    x = torch.randn(3, 8, 3)
    for _ in range(5):
        together.step((stacked(x) ** 2).mean(dim=(1, 2)).sum(), [1.0, 0.5, 1.0])
        for i, (net, opt) in enumerate(zip(nets, alone, strict=True)):
            opt.param_groups[0]["lr"] = lrs[i] * [1.0, 0.5, 1.0][i]
            opt.zero_grad()
            (net(x[i]) ** 2).mean().backward()
            if clip[i] is not None:
                nn.utils.clip_grad_norm_(net.parameters(), clip[i])
            opt.step()
    for i, net in enumerate(nets):
        for key, value in net.state_dict().items():
            torch.testing.assert_close(stacked.member_state_dict(i)[key], value, rtol=1e-5,
                                       atol=1e-7)
        assert together.member_state_dict(i, [1.0, 0.5, 1.0])["param_groups"][0]["lr"] == \
            pytest.approx(alone[i].param_groups[0]["lr"])


def test_a_network_that_never_joins_a_population_steps_at_its_rate_directly():
    # A convolutional network is only ever a population of one: its step is torch's at its
    # rate, with no displacement to scale (three passes over its parameters fewer).
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    alone = copy.deepcopy(net)
    member = member_networks([net])
    assert not member.joins_populations
    ours = MemberOptimizer(member, partial(torch.optim.Adam, lr=1.0), [2e-3], [None])
    theirs = torch.optim.Adam(alone.parameters(), lr=1e-3)
    x = torch.randn(5, 1, 4, 4)
    for _ in range(3):
        ours.step((member(x[None]) ** 2).mean(dim=(1, 2)).sum(), [0.5])
        theirs.zero_grad()
        (alone(x) ** 2).mean().backward()
        theirs.step()
    for key, value in alone.state_dict().items():
        assert torch.equal(member.member_state_dict(0)[key], value), key


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_rlexps_optimizers_step_and_save_as_torchs_do(optimizer):
    # eager_optimizer_class takes torch.compile's wrappers off; nothing else may change.
    cfg = compose_config([f"optimizer={optimizer}"]).optimizer
    kwargs = {k: v for k, v in vars(cfg).items() if k not in ("name", "_target_", "_partial_")}
    torch.manual_seed(0)
    nets = [nn.Linear(4, 3) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    ours = build_optimizer(cfg)(nets[0].parameters())
    torchs = optimizer_class(cfg._target_)(nets[1].parameters(), **kwargs)
    assert type(ours) is not type(torchs) and isinstance(ours, type(torchs))
    x = torch.randn(8, 4)
    for _ in range(3):
        for net, opt in zip(nets, (ours, torchs), strict=True):
            opt.zero_grad()
            (net(x) ** 2).mean().backward()
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(a, b) and a.grad is not None
    saved = ours.state_dict()
    assert str(saved) == str(torchs.state_dict())
    ours.load_state_dict(torchs.state_dict())
    torchs.load_state_dict(saved)
    assert str(ours.state_dict()) == str(saved)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_an_elementwise_optimizer_steps_the_parameters_as_one_tensor_bit_for_bit(optimizer):
    # The parameters become views of one flat tensor (a 2-value bias, not a whole vector,
    # stays alone); the steps, the state dict saved per parameter and its reload are torch's.
    cfg = compose_config([f"optimizer={optimizer}"]).optimizer
    make = build_optimizer(dataclasses.replace(cfg, lr=1.0))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 64, 3), nn.Flatten(), nn.Linear(256, 64), nn.LayerNorm(64),
                        nn.ReLU(), nn.Linear(64, 2))
    alone = copy.deepcopy(net)
    member = member_networks([net])
    ours = MemberOptimizer(member, make, [cfg.lr], [None])
    assert ours.flat is not None and ours.flat.alone == [len(ours.params) - 1]
    theirs = build_optimizer(cfg)(alone.parameters())
    x = torch.randn(7, 1, 4, 4)

    def step_both():
        ours.step((member(x[None]) ** 2).mean(dim=(1, 2)).sum(), [1.0])
        theirs.zero_grad()
        (alone(x) ** 2).mean().backward()
        theirs.step()

    for _ in range(3):
        step_both()
    saved, expected = ours.member_state_dict(0, [1.0]), theirs.state_dict()
    assert saved["param_groups"][0]["params"] == expected["param_groups"][0]["params"]
    assert saved["state"].keys() == expected["state"].keys()
    for k, entries in expected["state"].items():
        for key, value in entries.items():
            assert torch.equal(saved["state"][k][key], value), (k, key)
    ours.load_member_state_dicts([saved])  # back into the flat state: the steps go on alike
    step_both()
    for key, value in alone.state_dict().items():
        assert torch.equal(member.member_state_dict(0)[key], value), key


def test_a_clipped_member_steps_in_a_population_as_alone_bit_for_bit():
    # The clip sums each member's squares over rows of the flat gradient: a member's norm, its
    # clipped gradient and its step must not depend on the population around it. The limits
    # clip every step (the gradients' norms are in the tens); the third member is unclipped.
    # And step_on (the network's own gradients) steps as step (autograd's), to the bit.
    cfg = compose_config(["optimizer=radam"]).optimizer
    make = build_optimizer(dataclasses.replace(cfg, lr=1.0))
    lrs, clip = [1e-2, 1e-2, 3e-2], [0.5, 2.0, None]
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(3, 64), nn.LayerNorm(64), nn.ReLU(), nn.Linear(64, 3))
            for _ in lrs]
    x, action, target = torch.randn(3, 16, 3), torch.randint(0, 3, (3, 16)), torch.randn(3, 16)
    together = member_networks([copy.deepcopy(n) for n in nets])
    optimizers = [MemberOptimizer(together, make, lrs, clip)]
    alone = [member_networks([copy.deepcopy(n)]) for n in nets]
    optimizers += [MemberOptimizer(a, make, [lr], [c]) for a, lr, c in zip(alone, lrs, clip,
                                                                            strict=True)]
    by_graph = member_networks([copy.deepcopy(nets[0])])
    graph_optimizer = MemberOptimizer(by_graph, make, lrs[:1], clip[:1])
    assert all(o.flat is not None for o in optimizers)
    for _ in range(4):
        for i, (net, optimizer) in enumerate(zip([together, *alone], optimizers, strict=True)):
            rows = slice(None) if i == 0 else slice(i - 1, i)
            loss = partial(chosen_td_loss, action=action[rows], target=target[rows] * 50,
                           kind="mse")
            optimizer.step_on(x[rows], loss, [1.0] * net.members)
        loss, _ = chosen_td_loss(by_graph(x[:1]), action[:1], target[:1] * 50, "mse")
        graph_optimizer.step(loss.sum(), [1.0])
    for i, a in enumerate(alone):
        for key, value in a.member_state_dict(0).items():
            assert torch.equal(together.member_state_dict(i)[key], value), (i, key)
    for key, value in by_graph.member_state_dict(0).items():
        assert torch.equal(alone[0].member_state_dict(0)[key], value), key
