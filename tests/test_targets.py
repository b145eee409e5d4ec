"""Buffer-wide TD(lambda) targets over a time-ordered ring storage, against a Python loop."""
from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torch import nn
from torchrl.data import LazyTensorStorage, ListStorage, ReplayBuffer, TensorDictReplayBuffer
from torchrl.modules import ValueOperator

from torchrl_awr.targets import (
    ADVANTAGE_EPS,
    chronological_rows,
    compute_buffer_targets,
    critic_values,
    end_trajectories,
    next_values,
    td_lambda_returns,
)

OBS_DIM = 3
GAMMA, LMBDA = 0.9, 0.8


def linear_critic() -> ValueOperator:
    """A deterministic V(s) = s . w + b."""
    layer = nn.Linear(OBS_DIM, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -1.0, 2.0]]))
        layer.bias.fill_(0.25)
    return ValueOperator(layer, in_keys=["observation"])


def value_of(obs: torch.Tensor) -> float:
    return float(obs.double() @ torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64) + 0.25)


def random_steps(n_envs: int, steps: int, generator: torch.Generator, placeholders: bool = True):
    """``[n_envs, steps]`` transitions with ~15% terminations and ~15% truncations.

    As a collector writes them: inside an episode a step's observation is the previous step's
    next observation; after a done step the next one starts from a fresh (reset) observation.
    """
    u = torch.rand(n_envs, steps, 1, generator=generator)
    terminated = u < 0.15
    truncated = (u >= 0.15) & (u < 0.3)
    next_observation = torch.randn(n_envs, steps, OBS_DIM, generator=generator)
    observation = torch.randn(n_envs, steps, OBS_DIM, generator=generator)
    continues = ~(terminated | truncated)[:, :-1]
    observation[:, 1:] = torch.where(continues, next_observation[:, :-1], observation[:, 1:])
    data = {
        "observation": observation,
        "next": {
            "observation": next_observation,
            "reward": torch.randn(n_envs, steps, 1, generator=generator),
            "done": terminated | truncated,
            "terminated": terminated,
        },
    }
    if placeholders:
        data["value_target"] = torch.zeros(n_envs, steps, 1)
        data["advantage"] = torch.zeros(n_envs, steps, 1)
    return TensorDict(data, [n_envs, steps])


def reference_returns(steps: list[TensorDict]) -> list[float]:
    """TD(lambda) of one env's chronological steps by a plain backward loop.

    Terminated: bootstrap 0; truncated (done, not terminated): bootstrap V(s'); the newest step
    is a cut: bootstrap V(s') and no continuation.
    """
    returns = [0.0] * len(steps)
    following = None
    for t in reversed(range(len(steps))):
        step = steps[t]
        reward = float(step["next", "reward"])
        next_value = value_of(step["next", "observation"])
        if bool(step["next", "terminated"]):
            g = reward
        elif bool(step["next", "done"]) or following is None:
            g = reward + GAMMA * next_value
        else:
            g = reward + GAMMA * ((1 - LMBDA) * next_value + LMBDA * following)
        returns[t] = g
        following = g
    return returns


def test_td_lambda_returns_matches_loop():
    g = torch.Generator().manual_seed(1)
    batch = random_steps(2, 9, g)
    with torch.no_grad():
        next_value = linear_critic()(batch["next"].clone())["state_value"]
    returns = td_lambda_returns(
        batch["next", "reward"],
        next_value,
        batch["next", "done"],
        batch["next", "terminated"],
        gamma=GAMMA,
        lmbda=LMBDA,
    )
    for env in range(2):
        expected = reference_returns(list(batch[env].unbind(0)))
        torch.testing.assert_close(
            returns[env, :, 0].double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("length,block", [(1, 8), (8, 8), (9, 8), (700, 8), (700, 3), (64, 64)])
def test_td_lambda_returns_blockwise_match_a_backward_loop(length, block):
    """Sequences shorter, equal and longer than a block, and several levels of blocks."""
    g = torch.Generator().manual_seed(length + block)
    reward = torch.randn(3, length, 1, generator=g)
    next_value = torch.randn(3, length, 1, generator=g)
    done = torch.rand(3, length, 1, generator=g) < 0.01
    done[1] = False  # one env without any episode end: the longest carry
    terminated = done & (torch.rand(3, length, 1, generator=g) < 0.5)
    expected = torch.zeros(3, length, 1, dtype=torch.float64)
    for env in range(3):
        following = 0.0
        for t in reversed(range(length)):
            r, v = float(reward[env, t]), float(next_value[env, t])
            if terminated[env, t]:
                following = r
            elif done[env, t] or t == length - 1:
                following = r + GAMMA * v
            else:
                following = r + GAMMA * ((1 - LMBDA) * v + LMBDA * following)
            expected[env, t] = following
    got = td_lambda_returns(reward, next_value, done, terminated, gamma=GAMMA, lmbda=LMBDA, block=block)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_envs,capacity_t,steps,batches", [(3, 7, 3, 9), (2, 5, 4, 6), (4, 30, 5, 3)])
def test_buffer_targets_match_python_loop(n_envs, capacity_t, steps, batches):
    """Several envs, a ring that wraps several times (cursor mid-array), terminations, truncations."""
    g = torch.Generator().manual_seed(n_envs * 100 + capacity_t)
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(capacity_t * n_envs, ndim=2))
    full = random_steps(n_envs, steps * batches, g)  # [n_envs, all steps] in time order
    for batch in full.split(steps, dim=1):
        rb.extend(batch)
    total = full.shape[1]
    kept = min(total, capacity_t)
    assert len(rb) == kept * n_envs

    critic = linear_critic()
    stats = compute_buffer_targets(rb, critic, gamma=GAMMA, lmbda=LMBDA, standardize=False)
    storage = rb.storage._storage[:kept]  # [T, n_envs]

    expected_target = torch.zeros(kept, n_envs, dtype=torch.float64)
    expected_value = torch.zeros(kept, n_envs, dtype=torch.float64)
    for env in range(n_envs):
        steps_kept = list(full[env, total - kept :].unbind(0))
        for t, g_t in zip(range(total - kept, total), reference_returns(steps_kept)):
            row = t % capacity_t
            expected_target[row, env] = g_t
            expected_value[row, env] = value_of(full[env, t]["observation"])
    # The storage rows hold the transitions we think they do.
    for env in range(n_envs):
        for t in range(total - kept, total):
            torch.testing.assert_close(storage[t % capacity_t, env]["observation"], full[env, t]["observation"])
    torch.testing.assert_close(storage["value_target"][..., 0].double(), expected_target, rtol=1e-5, atol=1e-5)
    raw_advantage = expected_target - expected_value
    torch.testing.assert_close(storage["advantage"][..., 0].double(), raw_advantage, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stats["advantage_raw_mean"].double(), raw_advantage.mean(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        stats["advantage_raw_std"].double(), raw_advantage.std(unbiased=False), rtol=1e-5, atol=1e-5
    )

    # Standardized over the whole buffer: mean 0, std 1 (population), same ordering.
    compute_buffer_targets(rb, critic, gamma=GAMMA, lmbda=LMBDA, standardize=True)
    advantage = rb.storage._storage[:kept]["advantage"][..., 0].double()
    standardized = (raw_advantage - raw_advantage.mean()) / (raw_advantage.std(unbiased=False) + ADVANTAGE_EPS)
    torch.testing.assert_close(advantage, standardized, rtol=1e-4, atol=1e-4)
    assert abs(advantage.mean().item()) < 1e-5
    assert advantage.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)
    torch.testing.assert_close(rb.storage._storage[:kept]["value_target"][..., 0].double(), expected_target, rtol=1e-5, atol=1e-5)


def test_buffer_targets_single_env_ndim1():
    capacity = 7
    g = torch.Generator().manual_seed(3)
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(capacity, ndim=1))
    full = random_steps(1, 20, g)[0]  # [T]
    for batch in full.split(4, dim=0):
        rb.extend(batch)
    total = full.shape[0]
    compute_buffer_targets(rb, linear_critic(), gamma=GAMMA, lmbda=LMBDA, standardize=False)
    expected = reference_returns(list(full[total - capacity :].unbind(0)))
    stored = rb.storage._storage["value_target"][:, 0].double()
    for t, g_t in zip(range(total - capacity, total), expected):
        assert stored[t % capacity].item() == pytest.approx(g_t, abs=1e-5)
    assert chronological_rows(rb).tolist() == [(total % capacity + i) % capacity for i in range(capacity)]


def test_next_values_reuse_the_next_steps_value_and_evaluate_only_the_cuts():
    """V(s') is the next step's V(s) inside an episode; the critic sees only done and newest steps."""
    critic = linear_critic()
    seen = []
    critic.register_forward_hook(lambda module, args, out: seen.append(out["observation"].shape[0]))
    value = torch.tensor([[[1.0], [2.0], [3.0], [4.0]]])  # [1 env, T=4, 1], time order
    done = torch.tensor([[[False], [True], [False], [False]]])
    next_observation = torch.zeros(4, 1, OBS_DIM)  # storage layout [rows, n_envs, D]
    next_observation[2, 0] = torch.tensor([1.0, 0.0, 0.0])  # chronological step 1 (done)
    next_observation[0, 0] = torch.tensor([0.0, 0.0, 1.0])  # chronological step 3 (newest)
    rows = torch.tensor([3, 2, 1, 0])  # the ring's rows, oldest first
    got = next_values(critic, value, done, next_observation, rows)
    assert got[0, :, 0].tolist() == [2.0, 0.75, 4.0, 2.25]
    assert seen == [2]


def test_critic_values_in_chunks():
    """Rows go through the critic a chunk at a time, and come back in their input shape."""
    critic = linear_critic()
    seen = []
    critic.register_forward_hook(lambda module, args, out: seen.append(out["observation"].shape[0]))
    observation = torch.arange(2 * 5 * OBS_DIM, dtype=torch.float32).view(2, 5, OBS_DIM)
    got = critic_values(critic, observation, chunk_rows=4)
    assert seen == [4, 4, 2]
    expected = observation @ torch.tensor([0.5, -1.0, 2.0]) + 0.25
    torch.testing.assert_close(got, expected.unsqueeze(-1))


def test_chronological_rows_before_and_after_fill():
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(5 * 2, ndim=2))
    assert chronological_rows(rb).tolist() == []
    g = torch.Generator().manual_seed(0)
    rb.extend(random_steps(2, 3, g))
    assert chronological_rows(rb).tolist() == [0, 1, 2]
    rb.extend(random_steps(2, 2, g))  # exactly full, cursor back at 0
    assert chronological_rows(rb).tolist() == [0, 1, 2, 3, 4]
    rb.extend(random_steps(2, 3, g))  # rows 0, 1, 2 overwritten; oldest is row 3
    assert chronological_rows(rb).tolist() == [3, 4, 0, 1, 2]
    rb.extend(random_steps(2, 4, g))  # rows 3, 4, 0, 1 overwritten; oldest is row 2
    assert chronological_rows(rb).tolist() == [2, 3, 4, 0, 1]


def test_empty_buffer_raises():
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(10, ndim=2))
    with pytest.raises(ValueError, match="empty"):
        compute_buffer_targets(rb, linear_critic())


def test_missing_placeholders_raise():
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(10, ndim=2))
    rb.extend(random_steps(2, 3, torch.Generator().manual_seed(0), placeholders=False))
    with pytest.raises(KeyError, match="value_target"):
        compute_buffer_targets(rb, linear_critic())


def test_unsupported_storages_raise():
    with pytest.raises(TypeError, match="TensorStorage"):
        compute_buffer_targets(ReplayBuffer(storage=ListStorage(10)), linear_critic())
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(24, ndim=3))
    with pytest.raises(ValueError, match="ndim"):
        compute_buffer_targets(rb, linear_critic())


@pytest.mark.parametrize("ndim", [1, 2])
def test_end_trajectories_cuts_the_newest_step(ndim):
    """A restored buffer is not continued by the restarted envs: its newest steps become cuts."""
    g = torch.Generator().manual_seed(4)
    n_envs = 2 if ndim == 2 else 1
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(5 * n_envs, ndim=ndim))
    for _ in range(3):
        batch = random_steps(n_envs, 3, g)
        batch["next", "done"].zero_()
        batch["next", "terminated"].zero_()
        rb.extend(batch if ndim == 2 else batch[0])
    end_trajectories(rb)
    done = rb.storage._storage["next", "done"].reshape(5, n_envs)
    assert chronological_rows(rb)[-1] == 3  # 9 steps in a ring of 5: the newest is row 3
    assert done[3].all() and done.sum() == n_envs
    assert not rb.storage._storage["next", "terminated"].any()  # a truncation, not a termination
    end_trajectories(TensorDictReplayBuffer(storage=LazyTensorStorage(10, ndim=ndim)))  # empty: no-op
