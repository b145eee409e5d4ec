"""Unit tests of the original AWR networks in :mod:`torchrl_awr.models`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torch import nn
from torchrl.data import Categorical, OneHot, Unbounded
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_awr import (
    GaussianSampler,
    ObservationNormalizer,
    make_awr_actor,
    make_awr_critic,
    make_collection_policy,
)
from torchrl_awr.models import GaussianHead, ResidualBlock, ValueScale, make_mlp

from conftest import OBS_DIM, box_spec, output_layer

# ------------------------------------------------------------------ ObservationNormalizer


def test_normalizer_matches_numpy_over_first_max_samples_then_freezes():
    rng = np.random.default_rng(0)
    data = rng.normal(loc=[1.0, -3.0, 10.0], scale=[0.5, 2.0, 7.0], size=(80, 3))
    norm = ObservationNormalizer(3, max_samples=50)
    # Uneven batches, one with two leading dims; the 4th crosses max_samples (41 + 25 rows).
    batches = [data[:7], data[7:20], data[20:21], data[21:41].reshape(4, 5, 3), data[41:66]]
    for i, batch in enumerate(batches):
        assert not norm.frozen
        norm.update(torch.as_tensor(batch, dtype=torch.float32))
        seen = min(sum(len(b.reshape(-1, 3)) for b in batches[: i + 1]), 50)
        assert norm.count.item() == seen
    assert norm.frozen
    first = data[:50].astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(norm.mean.numpy(), first.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(norm.loc.numpy(), first.mean(0), rtol=1e-6)
    np.testing.assert_allclose(norm.scale.numpy(), first.std(0), rtol=1e-6)  # population std
    obs = torch.as_tensor(data[66:], dtype=torch.float32)
    mean, std = (torch.as_tensor(x, dtype=torch.float32) for x in (first.mean(0), first.std(0)))
    expected = (obs - mean) / std
    torch.testing.assert_close(norm(obs), expected)
    # Frozen: more data (even wild data) changes nothing.
    state = {k: v.clone() for k, v in norm.state_dict().items()}
    norm.update(torch.full((30, 3), 1e6))
    for key, value in norm.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_normalizer_std_floor():
    obs = torch.stack(
        [
            torch.full((20,), 4.0),  # constant column: std 0
            5.0 + 1e-3 * torch.arange(20.0).remainder(2),  # std 5e-4
            torch.linspace(-1.0, 1.0, 20),  # well above the floor
        ],
        -1,
    )
    norm = ObservationNormalizer(3, max_samples=100)
    norm.update(obs)
    assert norm.scale[0].item() == pytest.approx(0.01)
    assert norm.scale[1].item() == pytest.approx(0.01)
    assert norm.scale[2].item() == pytest.approx(obs[:, 2].std(unbiased=False).item(), rel=1e-6)
    custom = ObservationNormalizer(3, max_samples=100, min_std=0.5)
    custom.update(obs)
    assert custom.scale[:2].tolist() == [0.5, 0.5]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_normalizer_rejects_non_finite_observations(bad):
    norm = ObservationNormalizer(3, max_samples=100)
    norm.update(torch.randn(5, 3))
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    obs = torch.randn(4, 3)
    obs[2, 1] = bad
    with pytest.raises(FloatingPointError, match="non-finite"):
        norm.update(obs)
    for key, value in norm.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_normalizer_initial_state_and_bad_arguments():
    norm = ObservationNormalizer(3)
    obs = torch.randn(4, 3)
    torch.testing.assert_close(norm(obs), obs)  # identity before any data
    assert list(norm.parameters()) == []
    assert {name for name, _ in norm.named_buffers()} == {"count", "mean", "m2", "loc", "scale"}
    empty = ObservationNormalizer(3, max_samples=0)
    assert empty.frozen
    empty.update(torch.randn(10, 3))
    assert empty.count.item() == 0
    torch.testing.assert_close(empty(obs), obs)
    with pytest.raises(ValueError, match="max_samples"):
        ObservationNormalizer(3, max_samples=-1)


def test_normalizer_state_dict_round_trip():
    norm = ObservationNormalizer(3, max_samples=30)
    norm.update(torch.randn(20, 3) * 4 + 2)
    fresh = ObservationNormalizer(3, max_samples=30)
    fresh.load_state_dict(norm.state_dict())
    obs = torch.randn(6, 3)
    torch.testing.assert_close(fresh(obs), norm(obs), rtol=0, atol=0)
    assert fresh.count.item() == 20 and not fresh.frozen


# ------------------------------------------------------------------------------ make_mlp


def test_make_mlp_structure_and_init():
    mlp = make_mlp(20, (128, 64), 7)
    linears = [m for m in mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(20, 128), (128, 64), (64, 7)]
    assert [type(m) for m in mlp] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    for layer in linears:
        bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))
        assert torch.count_nonzero(layer.bias) == 0
        assert layer.weight.abs().max() <= bound
        # Glorot-uniform fills the range: the max is close to the bound, the std is bound/sqrt(3).
        assert layer.weight.abs().max() > 0.9 * bound
        assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.15)
    assert mlp(torch.randn(5, 20)).shape == (5, 7)


def test_make_mlp_with_layer_norm_normalises_each_hidden_layer_before_its_relu():
    mlp = make_mlp(20, (16, 8), 3, layer_norm=True)
    kinds = [nn.Linear, nn.LayerNorm, nn.ReLU, nn.Linear, nn.LayerNorm, nn.ReLU, nn.Linear]
    assert [type(m) for m in mlp] == kinds
    assert [m.normalized_shape for m in mlp if isinstance(m, nn.LayerNorm)] == [(16,), (8,)]
    hidden = mlp[:2](torch.randn(5, 20) * 100 + 7)  # whatever the input's scale: zero mean, unit variance
    assert hidden.mean(-1).abs().max() < 1e-5
    assert hidden.var(-1, unbiased=False).sub(1).abs().max() < 1e-3
    actor = make_awr_actor(OBS_DIM, box_spec(), hidden_sizes=(8,), layer_norm=True)
    critic = make_awr_critic(OBS_DIM, hidden_sizes=(8,), layer_norm=True)
    for module in (actor, critic):
        assert sum(isinstance(m, nn.LayerNorm) for m in module.modules()) == 1


def test_residual_blocks_make_simbas_network():
    mlp = make_mlp(20, (16,), 3, residual_blocks=2)
    assert [type(m) for m in mlp] == [nn.Linear, ResidualBlock, ResidualBlock, nn.LayerNorm, nn.Linear]
    assert (mlp[1].inner.in_features, mlp[1].inner.out_features, mlp[1].outer.out_features) == (16, 64, 16)
    for layer in (m for m in mlp.modules() if isinstance(m, nn.Linear)):
        assert torch.count_nonzero(layer.bias) == 0
        assert layer.weight.abs().max() <= math.sqrt(6.0 / (layer.in_features + layer.out_features))
    assert mlp(torch.randn(5, 20)).shape == (5, 3)
    actor = make_awr_actor(OBS_DIM, box_spec(), hidden_sizes=(8,), residual_blocks=1)
    critic = make_awr_critic(OBS_DIM, hidden_sizes=(8,), residual_blocks=3)
    assert [sum(isinstance(m, ResidualBlock) for m in net.modules()) for net in (actor, critic)] == [1, 3]


def test_a_residual_block_adds_its_branch_to_its_input():
    block = ResidualBlock(2, expansion=1)
    with torch.no_grad():
        block.inner.weight.copy_(torch.eye(2))
        block.inner.bias.zero_()
        block.outer.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
        block.outer.bias.fill_(0.5)
    # LayerNorm([1, 3]) = [-1, 1] (eps aside); relu -> [0, 1]; outer -> [0.5, 3.5]; plus the input.
    assert block(torch.tensor([[1.0, 3.0]]))[0].tolist() == pytest.approx([1.5, 6.5], abs=1e-4)


@pytest.mark.parametrize(
    "hidden_sizes, layer_norm, residual_blocks, message",
    [
        ((64, 64), False, 1, r"residual_blocks=1 needs one width.*got hidden_sizes=\[64, 64\]"),
        ((64,), True, 1, r"layer_norm=true normalises the plain MLP's layers"),
        ((64,), False, -1, r"residual_blocks=-1 must be >= 0"),
    ],
)
def test_make_mlp_refuses_residual_blocks_it_cannot_build(hidden_sizes, layer_norm, residual_blocks, message):
    with pytest.raises(ValueError, match=message):
        make_mlp(20, hidden_sizes, 3, layer_norm=layer_norm, residual_blocks=residual_blocks)


def test_make_mlp_without_hidden_layers():
    mlp = make_mlp(3, (), 2)
    assert len(mlp) == 1 and isinstance(mlp[0], nn.Linear)
    assert (mlp[0].in_features, mlp[0].out_features) == (3, 2)


# ------------------------------------------------------------------------------- actors


def _obs(*batch):
    return TensorDict({"observation": torch.randn(*batch, OBS_DIM)}, list(batch))


@pytest.mark.parametrize(
    "spec,distribution,out_features",
    [
        (box_spec(), "normal", 2),
        (box_spec(), "tanh_normal", 4),
        (OneHot(5), "categorical", 5),
        (Categorical(5), "categorical", 5),
    ],
)
def test_actor_output_layer_init(spec, distribution, out_features):
    actor = make_awr_actor(OBS_DIM, spec, hidden_sizes=(32, 16), distribution=distribution)
    layer = output_layer(actor)
    assert layer.out_features == out_features
    assert layer.weight.abs().max() <= 0.01
    assert layer.weight.abs().max() > 0.005  # drawn from the whole U(-0.01, 0.01) range
    assert torch.count_nonzero(layer.bias) == 0
    hidden = [m for m in actor.modules() if isinstance(m, nn.Linear)][0]
    assert hidden.weight.abs().max() > 0.1  # the hidden layers keep Glorot init
    wide = make_awr_actor(OBS_DIM, spec, distribution=distribution, init_output_scale=0.2)
    assert 0.1 < output_layer(wide).weight.abs().max() <= 0.2


def test_fixed_std_is_a_buffer_of_0_4_half_range():
    spec = box_spec(low=(-1.0, 0.0), high=(1.0, 4.0))
    actor = make_awr_actor(OBS_DIM, spec, hidden_sizes=(8,))
    head = next(m for m in actor.modules() if isinstance(m, GaussianHead))
    assert "log_std" in dict(head.named_buffers())
    assert all(p is not head.log_std for p in actor.parameters())
    td = actor(_obs(6))
    torch.testing.assert_close(td["scale"], torch.tensor([0.4, 0.8]).expand(6, 2))
    # Output layer init: the initial mean sits near the centre of the box.
    torch.testing.assert_close(td["loc"], torch.tensor([0.0, 2.0]).expand(6, 2), atol=0.2, rtol=0)
    custom = make_awr_actor(OBS_DIM, spec, hidden_sizes=(8,), action_std=0.1)
    torch.testing.assert_close(custom(_obs(2))["scale"], torch.tensor([0.1, 0.2]).expand(2, 2))


def test_learn_std_makes_log_std_a_parameter():
    actor = make_awr_actor(OBS_DIM, box_spec(), hidden_sizes=(8,), learn_std=True)
    head = next(m for m in actor.modules() if isinstance(m, GaussianHead))
    assert isinstance(head.log_std, nn.Parameter)
    assert any(p is head.log_std for p in actor.parameters())
    assert "log_std" not in dict(head.named_buffers())
    torch.testing.assert_close(head.log_std.detach(), torch.full((2,), math.log(0.4)))
    data = actor(_obs(4))
    actor.get_dist(data.clone()).log_prob(data["action"]).sum().backward()
    assert head.log_std.grad is not None and head.log_std.grad.abs().sum() > 0


def test_gaussian_head_maps_normalised_mean_to_env_units():
    head = GaussianHead(torch.tensor([-2.0, 0.0, -math.inf]), torch.tensor([2.0, 1.0, math.inf]), 0.5, False)
    loc, scale = head(torch.tensor([[0.5, -1.0, 3.0]]))
    torch.testing.assert_close(loc, torch.tensor([[1.0, 0.0, 3.0]]))
    torch.testing.assert_close(scale, torch.tensor([[1.0, 0.25, 0.5]]))
    with pytest.raises(ValueError, match="std"):
        GaussianHead(torch.zeros(1), torch.ones(1), 0.0, False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_unbounded_spec_uses_centre_0_and_half_range_1(dtype):
    # torchrl's Unbounded spec reports the dtype's extreme finite values as its bounds.
    actor = make_awr_actor(OBS_DIM, Unbounded(shape=(2,), dtype=dtype), hidden_sizes=(8,))
    head = next(m for m in actor.modules() if isinstance(m, GaussianHead))
    torch.testing.assert_close(head.center, torch.zeros(2))
    torch.testing.assert_close(head.half_range, torch.ones(2))
    td = actor(_obs(3))
    assert torch.isfinite(td["loc"]).all()
    torch.testing.assert_close(td["scale"], torch.full((3, 2), 0.4))


def test_deterministic_interaction_returns_the_mean():
    actor = make_awr_actor(OBS_DIM, box_spec(), hidden_sizes=(8,), init_output_scale=1.0)
    data = _obs(5)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        deterministic = actor(data.clone())
        again = actor(data.clone())
    torch.testing.assert_close(deterministic["action"], deterministic["loc"])
    torch.testing.assert_close(again["action"], deterministic["action"])
    with set_exploration_type(ExplorationType.RANDOM):
        sampled = actor(data.clone())
    assert not torch.allclose(sampled["action"], sampled["loc"])


@pytest.mark.parametrize("learn_std", [False, True])
def test_collection_policy_samples_the_actors_gaussian(learn_std):
    actor = make_awr_actor(OBS_DIM, box_spec(), hidden_sizes=(8,), init_output_scale=1.0, learn_std=learn_std)
    policy = make_collection_policy(actor)
    assert isinstance(policy, GaussianSampler)
    assert (
        (policy.in_keys, policy.out_keys)
        == (["observation"], ["loc", "scale", "action"])
        == (actor.in_keys, actor.out_keys)
    )
    # The same parameters, not copies: the trainer's updates reach the collector.
    assert {id(p) for p in policy.parameters()} == {id(p) for p in actor.parameters()}
    data = _obs(5)
    want = actor(data.clone())
    for mode in (ExplorationType.DETERMINISTIC, ExplorationType.MODE, ExplorationType.MEAN):
        with set_exploration_type(mode):
            torch.testing.assert_close(policy(data.clone())["action"], want["loc"])
    with set_exploration_type(ExplorationType.RANDOM):
        torch.manual_seed(3)
        sampled = policy(data.clone())
    torch.manual_seed(3)
    torch.testing.assert_close(sampled["action"], want["loc"] + want["scale"] * torch.randn(5, 2))
    for key in ("loc", "scale"):
        torch.testing.assert_close(sampled[key], want[key])
    # Over many samples: the actor's mean and its std of 0.4 half-ranges ((high - low) / 2 = 1, 2).
    one = _obs(1)
    loc = actor(one.clone())["loc"][0].detach()
    torch.manual_seed(0)
    with set_exploration_type(ExplorationType.RANDOM):
        samples = policy(one.expand(20000).clone())["action"]
    torch.testing.assert_close(samples.mean(0), loc, atol=0.03, rtol=0)
    torch.testing.assert_close(samples.std(0), torch.tensor([0.4, 0.8]), atol=0.02, rtol=0)


@pytest.mark.parametrize("distribution,spec", [("tanh_normal", box_spec()), ("categorical", OneHot(4))])
def test_collection_policy_is_the_actor_for_other_distributions(distribution, spec):
    actor = make_awr_actor(OBS_DIM, spec, hidden_sizes=(8,), distribution=distribution)
    assert make_collection_policy(actor) is actor
    with pytest.raises(TypeError, match="needs the 'normal' actor"):
        GaussianSampler(actor)


def test_tanh_normal_actions_stay_in_bounds():
    spec = box_spec(low=(-1.0, 0.0), high=(1.0, 4.0))
    actor = make_awr_actor(OBS_DIM, spec, hidden_sizes=(8,), distribution="tanh_normal", init_output_scale=3.0)
    for exploration in (ExplorationType.RANDOM, ExplorationType.DETERMINISTIC):
        with set_exploration_type(exploration):
            action = actor(_obs(64))["action"]
        assert (action >= spec.space.low).all() and (action <= spec.space.high).all()


@pytest.mark.parametrize("spec", [OneHot(4), Categorical(4)], ids=["onehot", "index"])
def test_categorical_actor_actions_match_spec(spec):
    actor = make_awr_actor(OBS_DIM, spec, hidden_sizes=(8,), distribution="categorical")
    with set_exploration_type(ExplorationType.RANDOM):
        data = actor(_obs(7))
    assert data["logits"].shape == (7, 4)
    assert data["action"].shape == (7, *spec.shape)
    assert spec.is_in(data["action"].to(spec.dtype))  # OneHotCategorical samples int64
    log_prob = actor.get_dist(data.clone()).log_prob(data["action"])
    index = data["action"].long() if spec.shape == () else data["action"].long().argmax(-1)
    expected = data["logits"].log_softmax(-1).gather(-1, index.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(log_prob, expected)


@pytest.mark.parametrize(
    "spec,distribution,match",
    [
        (box_spec(), "beta", "normal, tanh_normal, categorical"),
        (box_spec(), "categorical", "does not fit"),
        (OneHot(3), "normal", "does not fit"),
        (Categorical(3), "tanh_normal", "does not fit"),
    ],
)
def test_bad_distribution_raises(spec, distribution, match):
    with pytest.raises(ValueError, match=match):
        make_awr_actor(OBS_DIM, spec, distribution=distribution)


def test_obs_key_and_device_arguments():
    actor = make_awr_actor(OBS_DIM, box_spec(), hidden_sizes=(8,), obs_key="pixels", device="cpu")
    critic = make_awr_critic(OBS_DIM, hidden_sizes=(8,), obs_key="pixels", device="cpu")
    assert actor.in_keys == ["pixels"] and critic.in_keys == ["pixels"]
    td = TensorDict({"pixels": torch.randn(2, OBS_DIM)}, [2])
    assert critic(actor(td))["state_value"].shape == (2, 1)


# ------------------------------------------------------------------------------- critic


@pytest.mark.parametrize("value_scale", [100.0, 2.5])
def test_critic_output_is_value_scale_times_mlp(value_scale):
    norm = ObservationNormalizer(OBS_DIM, max_samples=20)
    norm.update(torch.randn(20, OBS_DIM) * 3 + 2)
    critic = make_awr_critic(OBS_DIM, normalizer=norm, hidden_sizes=(16, 8), value_scale=value_scale)
    net = critic.module
    scale = next(m for m in critic.modules() if isinstance(m, ValueScale))
    assert scale.scale == value_scale
    mlp = next(m for m in net if isinstance(m, nn.Sequential))
    data = _obs(5)
    value = critic(data.clone())["state_value"]
    assert value.shape == (5, 1)
    torch.testing.assert_close(value, value_scale * mlp(norm(data["observation"])))
    layer = output_layer(critic)
    bound = math.sqrt(6.0 / (layer.in_features + 1))
    assert layer.weight.abs().max() <= bound and torch.count_nonzero(layer.bias) == 0


def test_default_critic_value_scale_is_100():
    critic = make_awr_critic(OBS_DIM, hidden_sizes=(8,))
    mlp = next(m for m in critic.module if isinstance(m, nn.Sequential))
    data = _obs(4)
    torch.testing.assert_close(critic(data.clone())["state_value"], 100 * mlp(data["observation"]))


def test_actor_and_critic_share_the_normalizer():
    norm = ObservationNormalizer(OBS_DIM, max_samples=100)
    actor = make_awr_actor(OBS_DIM, box_spec(), normalizer=norm, hidden_sizes=(8,))
    critic = make_awr_critic(OBS_DIM, normalizer=norm, hidden_sizes=(8,))
    assert sum(m is norm for m in actor.modules()) == 1
    assert sum(m is norm for m in critic.modules()) == 1
    data = _obs(4)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        loc_before = actor(data.clone())["loc"]
    value_before = critic(data.clone())["state_value"]
    norm.update(torch.randn(50, OBS_DIM) * 5 + 3)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        assert not torch.allclose(actor(data.clone())["loc"], loc_before)
    assert not torch.allclose(critic(data.clone())["state_value"], value_before)
