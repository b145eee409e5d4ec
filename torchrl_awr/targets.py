"""Value targets and advantages over a whole, time-ordered replay storage.

The replay buffer keeps the collector's ``[n_envs, T]`` batches in a ring of shape
``[capacity_T, n_envs]`` (a TorchRL storage with ``ndim=2``), so each column is one
environment's transitions in time order, wrapped around at the write cursor. TD(lambda) needs
them chronologically: we read the columns starting at the cursor, solve TD(lambda) once over
all environments (blockwise, without a loop over time), and scatter the result back. One critic pass over the
buffer gives V(s); V(s') is the next step's V(s) except at done steps and each env's newest
step, which get their own (small) critic call. The newest step of every
environment is treated as a cut (bootstrap V(s')) since its episode continues in the next
batch; that target is recomputed, with the continuation, on the next iteration.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torchrl.data import ReplayBuffer
from torchrl.data.replay_buffers.storages import TensorStorage

ADVANTAGE_EPS = 1e-5


@dataclass(frozen=True)
class TargetKeys:
    """Where the storage holds its inputs and receives the targets."""

    observation: NestedKey = "observation"
    reward: NestedKey = ("next", "reward")
    done: NestedKey = ("next", "done")
    terminated: NestedKey = ("next", "terminated")
    next_observation: NestedKey = ("next", "observation")
    value: NestedKey = "state_value"
    value_target: NestedKey = "value_target"
    advantage: NestedKey = "advantage"


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


def storage_of(replay_buffer: ReplayBuffer) -> TensorStorage:
    """The buffer's storage, checked to be a TensorDict storage usable for buffer-wide targets."""
    storage = replay_buffer.storage
    if not isinstance(storage, TensorStorage):
        raise TypeError(
            "AWR needs a TensorStorage (LazyTensorStorage or LazyMemmapStorage) to compute "
            f"targets over the whole buffer; got {type(storage).__name__}."
        )
    if storage.ndim not in (1, 2):
        raise ValueError(f"AWR expects a storage with ndim 1 or 2 (time[, env]); got {storage.ndim}.")
    return storage


def filled_rows(storage: TensorStorage) -> int:
    """Rows written along the time dim (a lazy ``ndim=2`` storage reports None before any write)."""
    return storage._len_along_dim0 or 0


def filled_storage(replay_buffer: ReplayBuffer) -> TensorDictBase:
    """The filled rows of the storage as a ``[T, n_envs]`` TensorDict view (no copy)."""
    storage = storage_of(replay_buffer)
    rows = filled_rows(storage)
    if rows == 0:
        raise ValueError("AWR: the replay buffer is empty; extend it with collected data first.")
    data = storage._storage[:rows]
    return data.unsqueeze(-1) if storage.ndim == 1 else data


def chronological_rows(replay_buffer: ReplayBuffer) -> torch.Tensor:
    """Row indices of the filled storage, oldest first (once full, the write cursor is the oldest)."""
    storage = storage_of(replay_buffer)
    rows = filled_rows(storage)
    order = torch.arange(rows)
    if rows and rows == storage._storage.shape[0]:
        order = (order + replay_buffer._writer._cursor) % rows
    return order


def end_trajectories(replay_buffer: ReplayBuffer, keys: TargetKeys = TargetKeys()) -> None:
    """Marks the newest step of every env done (a truncation: V(s') is still bootstrapped).

    For a restored buffer: the environments restart, so new data does not continue it.
    """
    if filled_rows(storage_of(replay_buffer)) == 0:
        return
    newest = chronological_rows(replay_buffer)[-1]
    done = filled_storage(replay_buffer).get(keys.done)
    done[newest] = True


def _check_finite_targets(value_target: torch.Tensor, advantage: torch.Tensor) -> None:
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
    observation: torch.Tensor,
    value_key: NestedKey = "state_value",
    chunk_rows: int = VALUE_CHUNK_ROWS,
) -> torch.Tensor:
    """The critic's values for observations of any leading shape, ``chunk_rows`` rows per call.

    A whole 50k buffer in one call moves every hidden activation through main memory (50k x 128
    floats per layer); chunks of a few thousand rows stay in cache: half the time on CPU.
    """
    flat = observation.reshape(-1, observation.shape[-1])
    values = [
        critic(TensorDict({critic.in_keys[0]: rows}, batch_size=rows.shape[:1], device=rows.device)).get(value_key)
        for rows in flat.split(chunk_rows)
    ]
    return torch.cat(values).reshape(*observation.shape[:-1], -1)


@torch.no_grad()
def next_values(
    critic: TensorDictModuleBase,
    value: torch.Tensor,
    done: torch.Tensor,
    next_observation: torch.Tensor,
    rows: torch.Tensor,
    value_key: NestedKey = "state_value",
) -> torch.Tensor:
    """V(s') for ``[n_envs, T, 1]`` steps in time order, with one critic call on few rows.

    Inside an episode s' is the next step's s, so V(s') is that step's V(s); the critic runs
    only where s' is not stored as the next step: done steps and each env's newest step.
    ``next_observation`` is the storage's ``[rows, n_envs, ...]`` entry and ``rows`` the
    chronological order of its rows.
    """
    next_value = torch.empty_like(value)
    next_value[:, :-1] = value[:, 1:]
    cut = done.squeeze(-1).clone()
    cut[:, -1] = True
    env, step = cut.nonzero(as_tuple=True)
    where = next_observation.device
    observation = next_observation[rows[step].to(where), env.to(where)].to(value.device, non_blocking=True)
    next_value[env, step] = critic_values(critic, observation, value_key)
    return next_value


@torch.no_grad()
def compute_buffer_targets(
    replay_buffer: ReplayBuffer,
    critic: TensorDictModuleBase,
    *,
    gamma: float = 0.99,
    lmbda: float = 0.95,
    standardize: bool = True,
    keys: TargetKeys = TargetKeys(),
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """Writes TD(lambda) value targets and advantages over the whole buffer, in place.

    ``advantage = value_target - V(s)``, standardized over the buffer when ``standardize``.
    The storage must already hold ``value_target`` and ``advantage`` entries (the trainer adds
    zero placeholders to every batch before ``extend``). The arithmetic runs on ``device``
    (default: the critic's). Returns detached summary statistics.
    """
    if device is None:
        device = next(critic.parameters()).device
    data = filled_storage(replay_buffer)
    for key in (keys.observation, keys.next_observation, keys.reward, keys.done, keys.terminated,
                keys.value_target, keys.advantage):
        if key not in data.keys(True):
            raise KeyError(
                f"compute_buffer_targets: the replay storage has no {key!r} entry; present: "
                f"{sorted(str(k) for k in data.keys(True, True))}."
            )

    def read(key: NestedKey) -> torch.Tensor:
        return data.get(key).to(device, non_blocking=True)

    value = critic_values(critic, read(keys.observation), keys.value)
    rows = chronological_rows(replay_buffer).to(device)

    def in_time(tensor: torch.Tensor) -> torch.Tensor:
        return tensor[rows].transpose(0, 1)  # [n_envs, T, 1]

    done = in_time(read(keys.done)).bool()
    returns = td_lambda_returns(
        in_time(read(keys.reward)),
        next_values(critic, in_time(value), done, data.get(keys.next_observation), rows, keys.value),
        done,
        in_time(read(keys.terminated)),
        gamma=gamma,
        lmbda=lmbda,
    )
    value_target = torch.empty_like(value)
    value_target[rows] = returns.transpose(0, 1)
    advantage = value_target - value
    _check_finite_targets(value_target, advantage)
    raw_mean, raw_std = advantage.mean(), advantage.std(unbiased=False)
    if standardize:
        advantage = (advantage - raw_mean) / (raw_std + ADVANTAGE_EPS)
    data.get(keys.value_target).copy_(value_target.reshape(data.get(keys.value_target).shape))
    data.get(keys.advantage).copy_(advantage.reshape(data.get(keys.advantage).shape))
    return {
        "value_mean": value.mean(),
        "value_target_mean": value_target.mean(),
        "advantage_raw_mean": raw_mean,
        "advantage_raw_std": raw_std,
        "buffer_explained_variance": 1
        - (value_target - value).var(unbiased=False) / value_target.var(unbiased=False).clamp_min(1e-8),
    }
