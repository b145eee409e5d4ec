"""Unit tests of :class:`torchrl_awr.AWRLoss` against hand-computed references."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Categorical, OneHot
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives.utils import ValueEstimators
from torchrl.objectives.value import TD0Estimator

from torchrl_awr import (
    AWRLoss,
    NonFiniteLossInputError,
    ObservationNormalizer,
    make_awr_actor,
    make_awr_critic,
)

from conftest import (
    ACT_DIM,
    OBS_DIM,
    box_spec,
    critic_value,
    gaussian_log_prob,
    linear_critic,
    linear_gaussian_actor,
    output_layer,
    trajectory_batch,
)

# A 3-sample batch for the hand-checked cases. With box_spec() (centre (0, 2), half-range
# (1, 2)) the linear actor's loc is centre + half_range * (obs @ W.T + b) and its std is
# 0.4 * half_range = (0.4, 0.8).
OBS3 = torch.tensor([[0.5, -1.0, 2.0], [1.0, 0.0, -0.5], [-0.3, 0.7, 0.1]])
ACT3 = torch.tensor([[0.2, 1.5], [-0.5, 3.0], [0.9, 0.5]])
W3 = torch.tensor([[0.3, -0.2, 0.1], [0.0, 0.4, -0.3]])
B3 = torch.tensor([0.1, -0.2])
CENTER = torch.tensor([0.0, 2.0])
HALF = torch.tensor([1.0, 2.0])
STD3 = 0.4 * HALF
ADV3 = torch.tensor([-1.0, 0.0, 2.0])
# value_target - V(s): the residuals V - target are (-0.5, 2, -3), in both smooth_l1 regimes.
TARGET_OFFSET3 = torch.tensor([0.5, -2.0, 3.0])


def close(actual, expected, rtol=1e-5, atol=1e-6):
    """float32 results against (float64) references."""
    expected = torch.as_tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(actual.detach().double(), expected, rtol=rtol, atol=atol)


def hand_batch(adv_shape=(3,)) -> TensorDict:
    target = critic_value(OBS3).float() + TARGET_OFFSET3
    return TensorDict(
        {
            "observation": OBS3.clone(),
            "action": ACT3.clone(),
            "advantage": ADV3.reshape(adv_shape).clone(),
            "value_target": target.unsqueeze(-1),
        },
        [3],
    )


def hand_log_prob() -> torch.Tensor:
    loc = CENTER + HALF * (OBS3 @ W3.T + B3)
    return gaussian_log_prob(ACT3, loc, STD3)


def hand_loss(**kwargs) -> AWRLoss:
    return AWRLoss(linear_gaussian_actor(W3, B3), linear_critic(), **kwargs)


def small_networks(spec=None, distribution="normal", normalizer=None, **actor_kwargs):
    spec = box_spec() if spec is None else spec
    actor = make_awr_actor(
        OBS_DIM,
        spec,
        normalizer=normalizer,
        hidden_sizes=(8,),
        distribution=distribution,
        **actor_kwargs,
    )
    critic = make_awr_critic(OBS_DIM, normalizer=normalizer, hidden_sizes=(8,), value_scale=1.0)
    return actor, critic


# --------------------------------------------------------------------------- exact values


@pytest.mark.parametrize("adv_shape", [(3,), (3, 1)])
def test_actor_loss_exact_value(adv_shape):
    loss = hand_loss(beta=2.0, max_weight=2.0)
    out = loss(hand_batch(adv_shape))
    weight = torch.tensor([math.exp(-0.5), 1.0, 2.0], dtype=torch.float64)  # e^1 clipped at 2
    log_prob = hand_log_prob()
    close(out["loss_actor"], -(weight * log_prob).mean())
    close(out["log_prob_mean"], log_prob.mean())
    close(out["weight_mean"], weight.mean())
    torch.testing.assert_close(out["advantage_mean"], ADV3.mean())
    torch.testing.assert_close(out["advantage_std"], ADV3.std(unbiased=False))
    # Analytic Gaussian entropy: sum_i 0.5 * log(2 pi e sigma_i^2).
    entropy = sum(0.5 * math.log(2 * math.pi * math.e * s**2) for s in STD3.tolist())
    assert out["entropy"].item() == pytest.approx(entropy, rel=1e-6)


CRITIC_RESIDUALS = torch.tensor([-0.5, 2.0, -3.0])
CRITIC_PER_SAMPLE = {
    "l2": CRITIC_RESIDUALS**2,
    "l1": CRITIC_RESIDUALS.abs(),
    "smooth_l1": torch.tensor([0.5 * 0.5**2, 2.0 - 0.5, 3.0 - 0.5]),
}


@pytest.mark.parametrize("loss_critic_type", ["l2", "l1", "smooth_l1"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_loss_values_per_critic_type_and_reduction(loss_critic_type, reduction):
    loss = hand_loss(
        beta=2.0,
        max_weight=2.0,
        critic_coeff=0.5,
        loss_critic_type=loss_critic_type,
        reduction=reduction,
    )
    out = loss(hand_batch())
    critic = 0.5 * CRITIC_PER_SAMPLE[loss_critic_type]
    weight = torch.tensor([math.exp(-0.5), 1.0, 2.0], dtype=torch.float64)
    actor = -(weight * hand_log_prob())
    reduce = {"none": lambda x: x, "mean": torch.mean, "sum": torch.sum}[reduction]
    assert out["loss_critic"].shape == out["loss_actor"].shape
    assert out["loss_critic"].shape == ((3,) if reduction == "none" else ())
    torch.testing.assert_close(out["loss_critic"], reduce(critic))
    close(out["loss_actor"], reduce(actor))
    # Diagnostics stay scalars whatever the reduction.
    assert out["weight_mean"].shape == out["explained_variance"].shape == ()
    target = critic_value(OBS3) + TARGET_OFFSET3.double()
    explained = 1 - CRITIC_RESIDUALS.double().var(unbiased=False) / target.var(unbiased=False)
    close(out["explained_variance"], explained)


def test_separate_actor_and_critic_losses_match_forward():
    loss = hand_loss(beta=2.0, max_weight=2.0)
    data = hand_batch()
    out = loss(data)
    actor_out, critic_out = loss.actor_loss(data), loss.critic_loss(data)
    assert "loss_critic" not in actor_out.keys() and "loss_actor" not in critic_out.keys()
    torch.testing.assert_close(actor_out["loss_actor"], out["loss_actor"])
    torch.testing.assert_close(critic_out["loss_critic"], out["loss_critic"])


# ---------------------------------------------------------------------- weights and beta


def test_weight_clipping_and_diagnostics():
    advantage = torch.tensor([0.0, math.log(2.0), math.log(100.0), -math.log(4.0), 1e4])
    data = TensorDict(
        {
            "observation": torch.randn(5, OBS_DIM),
            "action": torch.rand(5, ACT_DIM),
            "advantage": advantage,
            "value_target": torch.zeros(5, 1),
        },
        [5],
    )
    loss = hand_loss(beta=1.0, max_weight=20.0)
    out = loss(data)
    weight = torch.tensor([1.0, 2.0, 20.0, 0.25, 20.0])  # exp(1e4) overflows to inf: clipped
    assert out["weight_max"].item() == pytest.approx(20.0)
    assert out["weight_clip_fraction"].item() == pytest.approx(2 / 5)
    assert out["weight_mean"].item() == pytest.approx(weight.mean().item(), rel=1e-6)
    ess = weight.sum().item() ** 2 / (5 * weight.pow(2).sum().item())
    assert out["weight_ess"].item() == pytest.approx(ess, rel=1e-6)
    log_prob = loss.actor_network.get_dist(data.clone()).log_prob(data["action"]).detach()
    torch.testing.assert_close(out["loss_actor"], -(weight * log_prob).mean())


@pytest.mark.parametrize(
    "weighting,weight",
    [
        ("exp", [math.exp(-0.5), 1.0, 2.0]),  # exp(A / 2), e^1 clipped at 2
        ("binary", [0.0, 0.0, 1.0]),  # 1[A > 0]: the tie at 0 counts as not better
        (
            "softmax",  # 3 softmax(A / 2): exp(-0.5), 1, e over their sum, times 3
            [3 * w / (math.exp(-0.5) + 1 + math.e) for w in (math.exp(-0.5), 1.0, math.e)],
        ),
    ],
)
def test_each_weighting_gives_its_exact_weights(weighting, weight):
    out = hand_loss(beta=2.0, max_weight=2.0, weighting=weighting)(hand_batch())
    weight = torch.tensor(weight, dtype=torch.float64)
    close(out["loss_actor"], -(weight * hand_log_prob()).mean())
    close(out["weight_mean"], weight.mean())
    close(out["weight_max"], weight.max())
    close(out["weight_ess"], weight.sum() ** 2 / (3 * weight.pow(2).sum()))
    assert out["weight_clip_fraction"].item() == pytest.approx(1 / 3 if weighting == "exp" else 0.0)


def test_softmax_weights_average_one_over_any_batch_shape():
    data = hand_batch().expand(2, 3).clone()  # [2, 3]: normalised over all six samples
    data["advantage"] = torch.tensor([[-1.0, 0.0, 2.0], [3.0, 0.5, -2.0]])
    out = hand_loss(beta=1.0, weighting="softmax")(data)
    assert out["weight_mean"].item() == pytest.approx(1.0, rel=1e-6)
    softmax = torch.softmax(data["advantage"].reshape(-1).double(), 0) * 6
    close(out["weight_max"], softmax.max())


def test_weight_at_max_weight_is_not_counted_as_clipped():
    data = hand_batch()
    data["advantage"] = torch.tensor([0.0, 0.0, 1.0])  # raw weights 1, 1, e
    out = hand_loss(beta=1.0, max_weight=1.0)(data)
    assert out["weight_clip_fraction"].item() == pytest.approx(1 / 3)
    assert out["weight_max"].item() == 1.0 and out["weight_ess"].item() == pytest.approx(1.0)


def test_no_clipping_gives_unit_ess_for_equal_advantages():
    data = hand_batch()
    data["advantage"] = torch.full((3,), 0.7)
    out = hand_loss(beta=0.5, max_weight=100.0)(data)
    assert out["weight_clip_fraction"].item() == 0.0
    assert out["weight_ess"].item() == pytest.approx(1.0)
    assert out["weight_max"].item() == pytest.approx(math.exp(1.4), rel=1e-6)


def _actor_grads(actor, loss_value):
    actor.zero_grad()
    loss_value.backward()
    return [p.grad.clone() for p in actor.parameters()]


def test_large_beta_is_behaviour_cloning():
    actor, critic = small_networks(init_output_scale=1.0, learn_std=True)
    data = TensorDict(
        {
            "observation": torch.randn(16, OBS_DIM),
            "action": torch.rand(16, ACT_DIM) * 2 - 1,
            "advantage": 5 * torch.randn(16),
            "value_target": torch.randn(16, 1),
        },
        [16],
    )
    awr = _actor_grads(actor, AWRLoss(actor, critic, beta=1e8)(data)["loss_actor"])
    bc_loss = -actor.get_dist(data.clone()).log_prob(data["action"]).mean()
    bc = _actor_grads(actor, bc_loss)
    for g_awr, g_bc in zip(awr, bc):
        torch.testing.assert_close(g_awr, g_bc, rtol=1e-5, atol=1e-7)
    # The comparison is sensitive: beta = 1 weights the samples and changes the gradient.
    weighted = _actor_grads(actor, AWRLoss(actor, critic, beta=1.0)(data)["loss_actor"])
    assert not all(torch.allclose(a, b, rtol=1e-3) for a, b in zip(weighted, bc))


def test_standardize_advantage():
    advantage = torch.tensor([3.0, -1.0, 6.0])
    data = hand_batch()
    data["advantage"] = advantage
    out = hand_loss(beta=0.7, max_weight=1e6, standardize_advantage=True)(data)
    standardized = (advantage - advantage.mean()) / (advantage.std(unbiased=False) + 1e-5)
    weight = torch.exp(standardized / 0.7).double()
    close(out["loss_actor"], -(weight * hand_log_prob()).mean())
    close(out["weight_mean"], weight.mean())
    assert out["advantage_mean"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["advantage_std"].item() == pytest.approx(1.0, abs=1e-4)
    # Without standardization the raw advantages are used.
    raw = hand_loss(beta=0.7, max_weight=1e6)(data)
    assert raw["weight_mean"].item() == pytest.approx(torch.exp(advantage / 0.7).mean().item())


# ------------------------------------------------------------------------ value estimators


def reference_targets(data, kind, gamma, lmbda):
    """Plain-Python advantage and value target of ``data`` ([B, T]) with the linear critic.

    With v = V(s_t), v' = V(s'_t) (s'_t = ("next", obs)), term/done of step t and G the target:
      TD0:  G_t = r_t + gamma * (1 - term_t) * v'_t
      TD1:  G_t = r_t + gamma * (1 - term_t) * (v'_t if done_t or t = T-1 else G_{t+1})
      TD(lambda): G_t = r_t + gamma * (1 - term_t) *
                  (v'_t if done_t or t = T-1 else (1 - lambda) v'_t + lambda G_{t+1})
      GAE:  delta_t = r_t + gamma * (1 - term_t) * v'_t - v_t,
            A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1} (A_T = 0), G_t = A_t + v_t
    and A_t = G_t - v_t for the TD estimators. A truncation (done, not terminated) thus
    bootstraps v'_t; a termination bootstraps 0.
    """
    value = critic_value(data["observation"]).tolist()
    next_value = critic_value(data["next", "observation"]).tolist()
    reward = data["next", "reward"].squeeze(-1).double().tolist()
    done = data["next", "done"].squeeze(-1).tolist()
    term = data["next", "terminated"].squeeze(-1).tolist()
    batch, time = data.batch_size
    advantage = [[0.0] * time for _ in range(batch)]
    target = [[0.0] * time for _ in range(batch)]
    for b in range(batch):
        later_return = later_adv = 0.0
        for t in reversed(range(time)):
            r, v, nv = reward[b][t], value[b][t], next_value[b][t]
            not_term = 0.0 if term[b][t] else 1.0
            end = done[b][t] or t == time - 1
            if kind == "GAE":
                delta = r + gamma * not_term * nv - v
                later_adv = delta + (0.0 if done[b][t] else gamma * lmbda * later_adv)
                advantage[b][t], target[b][t] = later_adv, later_adv + v
                continue
            if kind == "TD0" or end:
                tail = nv
            elif kind == "TD1":
                tail = later_return
            else:
                tail = (1 - lmbda) * nv + lmbda * later_return
            later_return = r + gamma * not_term * tail
            target[b][t], advantage[b][t] = later_return, later_return - v
    as_tensor = lambda x: torch.tensor(x, dtype=torch.float64).unsqueeze(-1)  # noqa: E731
    return as_tensor(advantage), as_tensor(target)


ESTIMATOR_CASES = [
    pytest.param(None, {}, "TDLambda", 0.99, 0.95, id="default-tdlambda"),
    pytest.param(ValueEstimators.TD0, {}, "TD0", 0.99, None, id="TD0-enum"),
    pytest.param("td0", {"gamma": 0.9}, "TD0", 0.9, None, id="td0-alias"),
    pytest.param(ValueEstimators.TD1, {}, "TD1", 0.99, None, id="TD1-enum"),
    pytest.param("TD1", {"gamma": 0.8}, "TD1", 0.8, None, id="TD1-name"),
    pytest.param(ValueEstimators.TDLambda, {}, "TDLambda", 0.99, 0.95, id="TDLambda-enum"),
    pytest.param("tdlambda", {"gamma": 0.9, "lmbda": 0.5}, "TDLambda", 0.9, 0.5, id="tdl-alias"),
    pytest.param(ValueEstimators.GAE, {}, "GAE", 0.99, 0.95, id="GAE-enum"),
    pytest.param("gae", {"gamma": 0.95, "lmbda": 0.7}, "GAE", 0.95, 0.7, id="gae-alias"),
]


@pytest.mark.parametrize("value_type,hyperparams,kind,gamma,lmbda", ESTIMATOR_CASES)
def test_value_estimators_match_reference(value_type, hyperparams, kind, gamma, lmbda):
    actor = linear_gaussian_actor(W3, B3)
    loss = AWRLoss(actor, linear_critic(), beta=1.5, max_weight=3.0)
    if value_type is not None:
        assert loss.make_value_estimator(value_type, **hyperparams) is loss
        assert loss.value_type == getattr(ValueEstimators, kind)
    data = trajectory_batch()
    ref_adv, ref_target = reference_targets(data, kind, gamma, lmbda)

    estimated = loss.value_estimator(data.clone())
    close(estimated["advantage"], ref_adv, atol=1e-5)
    close(estimated["value_target"], ref_target, atol=1e-5)

    # The loss computes the same targets itself when the input lacks them.
    out = loss(data)
    value = critic_value(data["observation"]).unsqueeze(-1)
    weight = torch.exp(ref_adv / 1.5).clamp(max=3.0)
    close(out["loss_critic"], (value - ref_target).pow(2).mean(), atol=1e-5)
    close(out["weight_mean"], weight.mean())
    close(out["advantage_mean"], ref_adv.mean())
    assert out["weight_clip_fraction"].item() == pytest.approx((torch.exp(ref_adv / 1.5) > 3.0).double().mean().item())


def test_estimators_really_differ_on_the_test_batch():
    """Guards the reference test: each estimator gives different targets on the batch."""
    data = trajectory_batch()
    targets = [reference_targets(data, kind, 0.99, 0.95)[1] for kind in ("TD0", "TD1", "TDLambda", "GAE")]
    for i in range(len(targets)):
        for j in range(i):
            assert not torch.allclose(targets[i], targets[j], atol=1e-3)


def test_provided_targets_are_used_as_they_are():
    loss = hand_loss(beta=2.0, max_weight=2.0)
    data = hand_batch()
    data["next"] = TensorDict(
        {
            "observation": torch.randn(3, OBS_DIM),
            "reward": torch.randn(3, 1),
            "done": torch.zeros(3, 1, dtype=torch.bool),
            "terminated": torch.zeros(3, 1, dtype=torch.bool),
        },
        [3],
    )
    out = loss(data)
    torch.testing.assert_close(out["loss_critic"], CRITIC_RESIDUALS.pow(2).mean())
    torch.testing.assert_close(out["advantage_mean"], ADV3.mean())


# ---------------------------------------------------------------------- gradient isolation


@pytest.mark.parametrize("learn_std", [False, True])
def test_gradient_isolation(learn_std):
    normalizer = ObservationNormalizer(OBS_DIM, max_samples=100)
    normalizer.update(torch.randn(40, OBS_DIM) * 3 + 1)
    actor, critic = small_networks(normalizer=normalizer, learn_std=learn_std)
    assert list(normalizer.parameters()) == []
    actor_params, critic_params = list(actor.parameters()), list(critic.parameters())
    assert not {id(p) for p in actor_params} & {id(p) for p in critic_params}
    loss = AWRLoss(actor, critic)
    for name, own, other in (
        ("loss_actor", actor_params, critic_params),
        ("loss_critic", critic_params, actor_params),
    ):
        loss.zero_grad(set_to_none=True)
        loss(trajectory_batch())[name].backward()
        assert all(p.grad is not None for p in own), name
        assert any(p.grad.abs().sum() > 0 for p in own), name
        assert all(p.grad is None for p in other), name
    assert set(loss.parameters()) == set(actor_params) | set(critic_params)


def test_diagnostics_are_detached():
    out = AWRLoss(*small_networks())(trajectory_batch())
    assert out["loss_actor"].requires_grad and out["loss_critic"].requires_grad
    for key in ("weight_mean", "weight_ess", "log_prob_mean", "entropy", "explained_variance"):
        assert not out[key].requires_grad, key


# -------------------------------------------------------------------------------- set_keys


def test_set_keys_renames_targets_action_and_value():
    actor = linear_gaussian_actor(W3, B3)
    loss = AWRLoss(actor, linear_critic(out_key="v"), beta=2.0, max_weight=2.0)
    loss.set_keys(advantage="adv", value_target=("targets", "vt"), action="act", value="v")
    reference = hand_loss(beta=2.0, max_weight=2.0)(hand_batch())
    data = hand_batch().rename_key_("advantage", "adv").rename_key_("action", "act")
    data["targets", "vt"] = data.pop("value_target")
    # Poison the default keys: using them would give NaN errors or other numbers.
    data["advantage"] = torch.full((3,), float("nan"))
    data["value_target"] = torch.full((3, 1), float("nan"))
    data["action"] = torch.zeros(3, ACT_DIM)
    out = loss(data)
    for key in ("loss_actor", "loss_critic", "weight_mean", "explained_variance"):
        torch.testing.assert_close(out[key], reference[key])


@pytest.mark.parametrize("estimator_first", [False, True])
def test_set_keys_reach_the_value_estimator(estimator_first):
    data = trajectory_batch()
    default = AWRLoss(linear_gaussian_actor(W3, B3), linear_critic())
    expected = default(data)
    loss = AWRLoss(linear_gaussian_actor(W3, B3), linear_critic(out_key="v"))
    loss.set_keys(value="v")
    if estimator_first:  # keys set afterwards must be forwarded to the existing estimator
        loss.make_value_estimator(ValueEstimators.TDLambda)
    loss.set_keys(reward="rew", done="fin", terminated="term", advantage="adv")
    renamed = data.clone()
    for old, new in (("reward", "rew"), ("done", "fin"), ("terminated", "term")):
        renamed["next"].rename_key_(old, new)
    out = loss(renamed)
    for key in ("loss_actor", "loss_critic", "weight_mean", "advantage_mean"):
        torch.testing.assert_close(out[key], expected[key])
    estimated = loss.value_estimator(renamed.clone())
    assert "adv" in estimated.keys() and "advantage" not in estimated.keys()
    assert "v" in estimated.keys() and "state_value" not in estimated.keys()


@pytest.mark.parametrize("drop", ["action", ("next", "reward"), ("next", "done"), ("next", "terminated")])
def test_missing_key_raises_key_error_naming_it(drop):
    loss = AWRLoss(linear_gaussian_actor(W3, B3), linear_critic())
    data = trajectory_batch()
    del data[drop]
    with pytest.raises(KeyError) as error:
        loss(data)
    assert f"no {drop!r} entry" in error.value.args[0]


def test_missing_renamed_key_is_named():
    loss = AWRLoss(linear_gaussian_actor(W3, B3), linear_critic())
    loss.set_keys(action="my_action")
    with pytest.raises(KeyError) as error:
        loss(hand_batch())
    assert "no 'my_action' entry" in error.value.args[0]


# ------------------------------------------------------------- discrete/continuous actors


def _rollout_batch(actor, batch=4, time=5):
    data = trajectory_batch(batch, time)
    del data["action"]
    with set_exploration_type(ExplorationType.RANDOM), torch.no_grad():
        actor(data)
    return data.select("observation", "action", "next")


ACTOR_CASES = [
    pytest.param(box_spec(), "normal", {}, id="normal-fixed-std"),
    pytest.param(box_spec(), "normal", {"learn_std": True}, id="normal-learn-std"),
    pytest.param(box_spec(), "tanh_normal", {}, id="tanh_normal"),
    pytest.param(OneHot(4), "categorical", {}, id="categorical-onehot"),
    pytest.param(Categorical(4), "categorical", {}, id="categorical-index"),
]


@pytest.mark.parametrize("spec,distribution,kwargs", ACTOR_CASES)
def test_actor_kinds_give_finite_losses(spec, distribution, kwargs):
    actor, critic = small_networks(spec, distribution, init_output_scale=1.0, **kwargs)
    data = _rollout_batch(actor)
    assert set(data.keys()) == {"observation", "action", "next"}
    loss = AWRLoss(actor, critic)
    out = loss(data)
    assert sorted(out.keys()) == sorted(loss.out_keys)
    for key, value in out.items():
        assert torch.isfinite(value).all(), key
    (out["loss_actor"] + out["loss_critic"]).backward()
    assert all(torch.isfinite(p.grad).all() for p in actor.parameters())
    # loss_actor is -mean(w * log pi(a|s)) with the actor's own distribution.
    advantage = loss.value_estimator(data.clone())["advantage"].squeeze(-1)
    weight = torch.exp(advantage).clamp(max=20.0)
    log_prob = actor.get_dist(data.clone()).log_prob(data["action"]).detach()
    assert log_prob.shape == data.shape
    torch.testing.assert_close(out["loss_actor"].detach(), -(weight * log_prob).mean())


@pytest.mark.parametrize("spec", [OneHot(4), Categorical(4)], ids=["onehot", "index"])
def test_categorical_entropy_and_logits_l2(spec):
    actor, critic = small_networks(spec, "categorical", init_output_scale=1.0)
    data = _rollout_batch(actor)
    loss = AWRLoss(actor, critic, logits_l2_coeff=0.01)
    out = loss(data)
    logits = actor.module[0](data.select("observation").clone())["logits"].detach()
    assert logits.shape == (*data.shape, 4)
    expected = 0.01 * 0.5 * logits.pow(2).sum(-1).mean()
    torch.testing.assert_close(out["loss_logits_l2"].detach(), expected)
    # The penalty is on the raw logits, not the log-softmax normalised ones.
    normalized = logits.log_softmax(-1)
    assert not torch.allclose(expected, 0.01 * 0.5 * normalized.pow(2).sum(-1).mean())
    log_p = logits.log_softmax(-1)
    torch.testing.assert_close(out["entropy"], -(log_p.exp() * log_p).sum(-1).mean())
    # d/d(output bias) of 0.5 * coeff * mean(sum(logits^2)) is coeff * mean(logits).
    actor.zero_grad()
    out["loss_logits_l2"].backward()
    torch.testing.assert_close(output_layer(actor).bias.grad, 0.01 * logits.mean((0, 1)))


def test_logits_l2_needs_a_logits_actor():
    with pytest.raises(ValueError, match="logits"):
        AWRLoss(*small_networks(), logits_l2_coeff=0.01)


def test_action_bound_penalty_exact_value():
    # Normalised mean u = (1.5, -2.5): 0.5 * ((1.5 - 1)^2 + (-2.5 + 1)^2) = 1.25 per sample.
    actor = linear_gaussian_actor(torch.zeros(ACT_DIM, OBS_DIM), [1.5, -2.5])
    spec = box_spec()
    loss = AWRLoss(
        actor,
        linear_critic(),
        action_bound_coeff=10.0,
        action_low=spec.space.low,
        action_high=spec.space.high,
        reduction="none",
    )
    assert "loss_action_bound" in loss.out_keys
    out = loss(hand_batch())
    torch.testing.assert_close(out["loss_action_bound"].detach(), torch.full((3,), 12.5))
    # One dimension out of bounds on one side only, with scalar bounds.
    inside = linear_gaussian_actor(torch.zeros(ACT_DIM, OBS_DIM), [0.5, -1.0])
    loss = AWRLoss(
        inside,
        linear_critic(),
        action_bound_coeff=2.0,
        action_low=-1.0,
        action_high=3.0,  # centre 1, half-range 2: loc (0.5, 0) maps to (-0.25, -0.5)
    )
    torch.testing.assert_close(loss(hand_batch())["loss_action_bound"].detach(), torch.tensor(0.0))
    loss = AWRLoss(inside, linear_critic(), action_bound_coeff=2.0, action_low=0.0, action_high=0.4)
    # centre 0.2, half 0.2: loc (0.5, 0) -> (1.5, -1); penalty 2 * 0.5 * 0.5^2 = 0.25.
    torch.testing.assert_close(loss(hand_batch())["loss_action_bound"].detach(), torch.tensor(0.25))


# ------------------------------------------------------------------------------- mutation


@pytest.mark.parametrize("with_targets", [False, True])
@pytest.mark.parametrize("method", ["forward", "actor_loss", "critic_loss"])
def test_input_is_not_mutated(with_targets, method):
    normalizer = ObservationNormalizer(OBS_DIM, max_samples=10)
    loss = AWRLoss(*small_networks(normalizer=normalizer), standardize_advantage=True)
    data = trajectory_batch()
    if with_targets:
        data["advantage"] = torch.randn(*data.shape, 1)
        data["value_target"] = torch.randn(*data.shape, 1)
    before = data.clone()
    next_before = data["next"]
    getattr(loss, method)(data)
    assert set(data.keys(True, True)) == set(before.keys(True, True))
    assert data["next"] is next_before
    for key in before.keys(True, True):
        assert torch.equal(data[key], before[key]), key


# ----------------------------------------------------------------------------- state_dict


def test_state_dict_round_trip():
    normalizer = ObservationNormalizer(OBS_DIM, max_samples=100)
    normalizer.update(torch.randn(50, OBS_DIM) * 2 + 1)
    spec = box_spec()
    kwargs = dict(action_low=spec.space.low, action_high=spec.space.high)
    loss = AWRLoss(
        *small_networks(normalizer=normalizer, learn_std=True),
        beta=0.3,
        max_weight=5.0,
        critic_coeff=0.7,
        action_bound_coeff=2.0,
        **kwargs,
    )
    data = trajectory_batch()
    expected = loss(data)
    torch.manual_seed(123)
    fresh = AWRLoss(
        *small_networks(normalizer=ObservationNormalizer(OBS_DIM), learn_std=True),
        action_bound_coeff=1.0,
        **kwargs,
    )
    assert not torch.allclose(fresh(data)["loss_actor"], expected["loss_actor"])
    fresh.load_state_dict(loss.state_dict())
    assert fresh.beta.item() == pytest.approx(0.3) and fresh.max_weight.item() == 5.0
    out = fresh(data)
    assert sorted(out.keys()) == sorted(expected.keys())
    for key in expected.keys():
        torch.testing.assert_close(out[key], expected[key], rtol=0, atol=0)


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"beta": 0.0}, "beta"),
        ({"beta": -1.0}, "beta"),
        ({"max_weight": 0.0}, "max_weight"),
        ({"loss_critic_type": "huber"}, "l2, l1, smooth_l1"),
        ({"reduction": "max"}, "none, mean, sum"),
        ({"weighting": "crr"}, "unknown weighting 'crr'; allowed: exp, binary, softmax"),
        ({"critic_coeff": -1.0}, "critic_coeff"),
        ({"action_bound_coeff": 1.0}, "action_low and action_high"),
        ({"action_bound_coeff": 1.0, "action_low": -1.0}, "action_low and action_high"),
        ({"action_bound_coeff": 1.0, "action_low": 1.0, "action_high": 1.0}, "action_high"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AWRLoss(linear_gaussian_actor(W3, B3), linear_critic(), **kwargs)


def test_non_probabilistic_actor_raises_type_error():
    with pytest.raises(TypeError, match="get_dist"):
        AWRLoss(linear_critic(), linear_critic())


@pytest.mark.parametrize("value_type", ["nope", "vtrace", ValueEstimators.VTrace, 3])
def test_unknown_value_estimator_raises_value_error(value_type):
    loss = AWRLoss(linear_gaussian_actor(W3, B3), linear_critic())
    with pytest.raises(ValueError, match="TD0, TD1, TDLambda, GAE"):
        loss.make_value_estimator(value_type)


def test_value_estimator_aliases_and_instances():
    loss = AWRLoss(linear_gaussian_actor(W3, B3), linear_critic())
    loss.make_value_estimator("td_lambda", gamma=0.9, lmbda=0.5)
    assert loss.value_type == ValueEstimators.TDLambda
    assert loss.value_estimator.gamma == pytest.approx(0.9)
    ready = TD0Estimator(value_network=loss.critic_network, gamma=0.5)
    loss.make_value_estimator(ready)
    assert loss.value_estimator is ready


@pytest.mark.parametrize("key", ["advantage", "value_target"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_targets_raise(key, bad):
    loss = hand_loss()
    data = hand_batch()
    data[key][1] = bad
    with pytest.raises(NonFiniteLossInputError, match=key):
        loss(data)
    assert issubclass(NonFiniteLossInputError, FloatingPointError)
    # check_finite=False lets them through (and the loss shows it).
    out = hand_loss(check_finite=False)(data)
    name = "loss_critic" if key == "value_target" else "advantage_mean"
    assert not torch.isfinite(out[name])


def test_non_finite_reward_raises_through_the_estimator():
    data = trajectory_batch()
    data["next", "reward"][0, 3] = float("nan")
    with pytest.raises(NonFiniteLossInputError):
        AWRLoss(linear_gaussian_actor(W3, B3), linear_critic())(data)


def test_non_finite_log_prob_raises():
    data = hand_batch()
    data["action"][0, 0] = float("nan")
    with pytest.raises(NonFiniteLossInputError, match="log_prob"):
        hand_loss().actor_loss(data)


# ---------------------------------------------------------------------------------- CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("with_targets", [False, True])
def test_cuda_matches_cpu(with_targets):
    normalizer = ObservationNormalizer(OBS_DIM, max_samples=100)
    normalizer.update(torch.randn(50, OBS_DIM))
    spec = box_spec()
    cpu_loss = AWRLoss(
        *small_networks(normalizer=normalizer, learn_std=True),
        action_bound_coeff=1.0,
        action_low=spec.space.low,
        action_high=spec.space.high,
    )
    cuda_loss = copy.deepcopy(cpu_loss).to("cuda")
    data = trajectory_batch()
    if with_targets:
        data["advantage"] = torch.randn(*data.shape, 1)
        data["value_target"] = torch.randn(*data.shape, 1)
    expected = cpu_loss(data)
    out = cuda_loss(data.to("cuda"))
    for key in expected.keys():
        assert out[key].device.type == "cuda", key
        torch.testing.assert_close(out[key].cpu(), expected[key], rtol=1e-4, atol=1e-5)
    (out["loss_actor"] + out["loss_critic"]).backward()
    assert all(p.grad.device.type == "cuda" for p in cuda_loss.parameters())


# ------------------------------------------------------------------------------- compile


def _batch_with_targets():
    data = trajectory_batch()
    data["advantage"] = torch.randn(*data.shape, 1)
    data["value_target"] = torch.randn(*data.shape, 1)
    return data


def test_torch_compile_matches_eager():
    """actor_loss/critic_loss traced forward and backward (aot_eager: the graphs inductor would
    take; the trainer's tests run inductor itself): same values and gradients."""
    torch._dynamo.reset()
    loss = AWRLoss(*small_networks(learn_std=True), beta=0.5, max_weight=4.0)
    data = _batch_with_targets()

    def losses(td):
        return loss.actor_loss(td)["loss_actor"], loss.critic_loss(td)["loss_critic"]

    def values_and_grads(fn):
        loss.zero_grad(set_to_none=True)
        actor_value, critic_value_ = fn(data)
        (actor_value + critic_value_).backward()
        return [actor_value, critic_value_] + [p.grad.clone() for p in loss.parameters()]

    expected = values_and_grads(losses)
    compiled = values_and_grads(torch.compile(losses, backend="aot_eager"))
    for got, want in zip(compiled, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_forward_compiles_without_graph_breaks():
    """The whole forward (targets given) traces as one graph; aot_eager keeps this test fast."""
    torch._dynamo.reset()
    spec = box_spec()
    loss = AWRLoss(
        *small_networks(),
        standardize_advantage=True,
        action_bound_coeff=1.0,
        action_low=spec.space.low,
        action_high=spec.space.high,
    )
    data = _batch_with_targets()
    expected = loss(data)
    out = torch.compile(loss, backend="aot_eager", fullgraph=True)(data)
    assert sorted(out.keys()) == sorted(expected.keys())
    for key in expected.keys():
        torch.testing.assert_close(out[key], expected[key], rtol=1e-5, atol=1e-6)
