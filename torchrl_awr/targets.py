"""TD(lambda) value targets over time-ordered tensors: pure functions, on any device.

The trajectory store (:mod:`torchrl_awr.store`) hands these its buffer as ``[n_envs, T]``
sequences in time order. TD(lambda) is solved once over all environments, blockwise, without a
loop over time. One critic pass over the buffer gives V(s); V(s') is the next step's V(s) except
at done steps and each env's newest step, which get their own (small) critic call. The newest
step of every environment is treated as a cut (bootstrap V(s')) since its episode continues in
the next batch; its target is recomputed, with the continuation, on the next iteration.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey

ADVANTAGE_EPS = 1e-5


def td_lambda_returns(
    reward: torch.Tensor,
    next_value: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor,
    *,
    gamma: float,
    lmbda: float,
    block: int = 8,
) -> torch.Tensor:
    r"""TD(:math:`\lambda`) returns of ``[..., T, F]`` sequences in time order.

    :math:`G_t = r_t + \gamma[(1-\lambda)V(s_{t+1}) + \lambda G_{t+1}]` inside an episode;
    :math:`G_t = r_t + \gamma V(s_{t+1})(1 - terminated_t)` at a done step and at the last step.

    Solved exactly as the linear recurrence :math:`G_t = a_t + c_t G_{t+1}` in blocks of
    ``block`` steps (one small matrix product per block, then the same on the blocks' first
    steps, recursively): O(T * block) work with no loop over time, where a convolution over
    whole trajectories (TorchRL's vectorised estimator) costs O(T * episode length).
    """
    done = done.bool().clone()
    done[..., -1, :] = True
    continues = (~done).to(reward.dtype)
    alive = (~terminated.bool()).to(reward.dtype)
    a = reward + gamma * next_value * alive * (1 - lmbda * continues)
    shape = a.transpose(-2, -1).shape
    returns = _linear_recurrence(
        a.transpose(-2, -1).reshape(-1, shape[-1]),
        done.transpose(-2, -1).reshape(-1, shape[-1]),
        gamma * lmbda,
        block,
    )
    return returns.reshape(shape).transpose(-2, -1)


def _linear_recurrence(a: torch.Tensor, stop: torch.Tensor, base: float, block: int) -> torch.Tensor:
    """``x_t = a_t + base * (1 - stop_t) * x_{t+1}`` (``x_T = 0``) for ``[N, T]`` inputs."""
    n, length = a.shape
    if length <= block:
        local, _ = _solve_blocks(a.unsqueeze(1), stop.unsqueeze(1), base)
        return local.squeeze(1)
    pad = -length % block
    a = torch.nn.functional.pad(a, (0, pad)).view(n, -1, block)
    stop = torch.nn.functional.pad(stop, (0, pad), value=True).view(n, -1, block)
    local, carry = _solve_blocks(a, stop, base)
    # x at each block's first step: the same recurrence over blocks, with factor base**block
    # across a block without a stop and 0 across one with a stop.
    starts = _linear_recurrence(local[..., 0], stop.any(-1), base**block, block)
    following = torch.nn.functional.pad(starts[:, 1:], (0, 1))
    return (local + carry * following.unsqueeze(-1)).view(n, -1)[:, :length]


def _solve_blocks(a: torch.Tensor, stop: torch.Tensor, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per ``[N, B, L]`` block: the solution with nothing after the block, and each step's factor
    on the value that follows the block (``base**(L - t)`` if no stop from t on, else 0)."""
    length = a.shape[-1]
    steps = torch.arange(length, device=a.device)
    distance = steps.view(1, -1) - steps.view(-1, 1)  # k - t
    powers = torch.where(distance >= 0, base ** distance.clamp(min=0).to(a.dtype), 0.0)
    stops_before = torch.cumsum(stop.to(torch.int32), -1) - stop.to(torch.int32)  # stops at j < t
    open_path = stops_before.unsqueeze(-1) == stops_before.unsqueeze(-2)  # no stop in [t, k-1]
    local = (torch.where(open_path, powers, 0.0) @ a.unsqueeze(-1)).squeeze(-1)
    total = stops_before[..., -1:] + stop[..., -1:].to(torch.int32)
    carry = (stops_before == total) * base ** (length - steps).to(a.dtype)
    return local, carry


def check_finite_targets(value_target: torch.Tensor, advantage: torch.Tensor) -> None:
    """Refuses to write NaN/inf targets: they would silently poison every later update."""
    if not (torch.isfinite(value_target).all() and torch.isfinite(advantage).all()):
        raise FloatingPointError(
            "AWR: non-finite value targets or advantages over the replay buffer "
            f"({(~torch.isfinite(value_target)).sum().item()} bad targets); the rewards, "
            "observations or critic contain NaN/inf."
        )


VALUE_CHUNK_ROWS = 4096


@torch.no_grad()
def critic_values(
    critic: TensorDictModuleBase,
    inputs: TensorDictBase,
    value_key: NestedKey = "state_value",
    chunk_rows: int = VALUE_CHUNK_ROWS,
) -> torch.Tensor:
    """The critic's values for ``inputs`` (its ``in_keys``, any batch shape), ``chunk_rows`` rows
    per call: ``[*inputs.batch_size, 1]``.

    A whole buffer in one call moves every hidden activation through main memory; chunks of a
    few thousand rows stay in cache.
    """
    flat = inputs.reshape(-1)
    values = [critic(rows).get(value_key) for rows in flat.split(chunk_rows)]
    return torch.cat(values).reshape(*inputs.batch_size, -1)


@torch.no_grad()
def next_values(
    critic: TensorDictModuleBase,
    value: torch.Tensor,
    done: torch.Tensor,
    next_inputs: TensorDictBase,
    rows: torch.Tensor,
    value_key: NestedKey = "state_value",
) -> torch.Tensor:
    """V(s') for ``[n_envs, T, 1]`` steps in time order, with one critic call on few rows.

    Inside an episode s' is the next step's s, so V(s') is that step's V(s); the critic runs
    only where s' is not stored as the next step: done steps and each env's newest step.
    ``next_inputs`` holds the critic's inputs at s' as stored, ``[rows, n_envs]``, and ``rows``
    the chronological order of its rows.
    """
    next_value = torch.empty_like(value)
    next_value[:, :-1] = value[:, 1:]
    cut = done.squeeze(-1).clone()
    cut[:, -1] = True
    env, step = cut.nonzero(as_tuple=True)
    where = next_inputs.device if next_inputs.device is not None else rows.device
    inputs = next_inputs[rows[step].to(where), env.to(where)].to(value.device, non_blocking=True)
    next_value[env, step] = critic_values(critic, inputs, value_key)
    return next_value
