"""The trajectory store: a TorchRL replay buffer kept as whole trajectories, in time order per env.

AWR recomputes TD(lambda) targets over the whole buffer each iteration, so the buffer must hold
each environment's transitions in the order they happened. :class:`TrajectoryStore` owns a
``TensorDictReplayBuffer`` whose ``TensorStorage`` is written round-robin and lays it out as a
``[time, env]`` grid: an ``ndim=2`` storage is that grid; an ``ndim=1`` storage holds it flat,
time-major (``num_envs`` consecutive rows per time step). The store adds collected batches,
marks cuts, gives the chronological view, computes and writes the targets and advantages (with
the functions of :mod:`torchrl_awr.targets`), and draws minibatches with the buffer's own
sampler. Every key comes from the loss (``loss_module.tensor_keys``) and the critic's and actor's
``in_keys``.

This class is the only place that reads TorchRL internals: the storage's ``_storage`` (the
TensorDict the data lives in), its ``_len_along_dim0`` (rows filled) and the writer's ``_cursor``
(the next row to overwrite, so the oldest once full), and :func:`batches_continue` reads a
``RayCollector``'s ``_sync``. They were checked against TorchRL :data:`TORCHRL_CHECKED`;
:func:`check_torchrl_internals` fails loudly if the storage's change.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey, unravel_key
from torchrl.collectors import MultiAsyncCollector
from torchrl.data import ReplayBuffer
from torchrl.data.replay_buffers.samplers import (
    ConsumingSampler,
    PrioritizedSampler,
    Sampler,
    SamplerEnsemble,
    SliceSampler,
)
from torchrl.data.replay_buffers.storages import LazyMemmapStorage, TensorStorage
from torchrl.data.replay_buffers.writers import RoundRobinWriter
from torchrl.envs.transforms import Compose

if TYPE_CHECKING:
    from torchrl.objectives import LossModule

from torchrl_awr.targets import (
    ADVANTAGE_EPS,
    check_finite_targets,
    critic_values,
    next_values,
    td_lambda_returns,
)

TORCHRL_CHECKED = "0.14.1"
MINIBATCH_CHUNK = 16  # update steps gathered at a time

# Samplers whose draws AWR cannot honour, and why.
REFUSED_SAMPLERS = {
    PrioritizedSampler: "its priorities would never be updated: AWR writes no TD-error priorities, "
    "and its exp(A/beta) weights already reweight the transitions",
    SliceSampler: "it draws sub-trajectory slices for sequence models, while AWR's update steps "
    "take single transitions",
    ConsumingSampler: "it removes the transitions it draws, while AWR reuses the whole buffer for "
    "every phase and recomputes targets over all of it",
    SamplerEnsemble: "it samples across several storages; the trajectory store holds one",
}


class ShuffledPassSampler(Sampler):
    """AWR's minibatches, as the original draws them: consecutive slices of shuffled passes.

    A pass is a random permutation of the stored transitions; when one is used up the next
    begins, so a batch may span two passes. :meth:`batches` draws a whole update phase at once
    (the trajectory store's path); :meth:`sample` (for ``replay_buffer.sample()``) is a phase
    of one batch. The generator is the sampler's own, so the draws depend on ``seed`` alone.
    """

    STATE_FILE = "shuffled_pass_sampler.pt"  # in a buffer dump's sampler directory

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)

    def batches(self, num_items: int, num_batches: int, batch_size: int) -> torch.Tensor:
        """``[num_batches, batch_size]`` indices into ``num_items`` transitions."""
        needed = num_batches * batch_size
        passes = math.ceil(needed / num_items)
        order = torch.cat([torch.randperm(num_items, generator=self.generator) for _ in range(passes)])
        return order[:needed].view(num_batches, batch_size)

    def sample(self, storage, batch_size: int) -> tuple[torch.Tensor | tuple[torch.Tensor, ...], dict]:
        if len(storage) == 0:
            raise RuntimeError("ShuffledPassSampler: cannot sample from an empty storage.")
        index = self.batches(len(storage), 1, batch_size)[0]
        if storage.ndim > 1:
            index = torch.unravel_index(index, tuple(storage.shape))
        return index, {}

    def _empty(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.generator.set_state(state_dict["generator"])

    def dumps(self, path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path / self.STATE_FILE)

    def loads(self, path) -> None:
        """Reads the state :meth:`dumps` wrote, as tensors only: a crafted file cannot run code."""
        state = Path(path) / self.STATE_FILE
        if not state.is_file():  # dumps made with another sampler hold none; the checkpoint restores it
            return
        try:
            self.load_state_dict(torch.load(state, weights_only=True))
        except (pickle.UnpicklingError, RuntimeError, KeyError, TypeError) as err:
            raise ValueError(
                f"{state} is not a ShuffledPassSampler state: only its generator's state tensor is read, never an object."
            ) from err


def batches_continue(collector) -> bool:
    """Whether each batch of ``collector`` continues the previous one env by env.

    True for single-process and synchronous collectors (every batch holds each env's next
    steps, a ``RayCollector(sync=True)`` stacking its workers in a fixed order) and for an
    asynchronous collector with one worker (the overlapped mode: one process, its envs
    continuing). Several asynchronous workers hand over batches of different environments, so
    TD(lambda) must not run from one batch into the next.
    """
    if isinstance(collector, MultiAsyncCollector):
        return collector.num_workers == 1
    if _is_ray_collector(collector):
        return collector._sync or collector.num_workers == 1
    return True


def _is_ray_collector(collector) -> bool:
    """Without importing Ray: a ``RayCollector`` exists only once its module is loaded."""
    module = sys.modules.get("torchrl.collectors.distributed.ray")
    return module is not None and isinstance(collector, module.RayCollector)


def memmap_disk(storage: LazyMemmapStorage) -> Path:
    """The existing directory on whose disk a memory-mapped storage's files go: its
    ``scratch_dir`` (or the temporary directory), or the nearest parent that exists yet."""
    where = Path(storage.scratch_dir or tempfile.gettempdir())
    while not where.exists():
        where = where.parent
    return where


def check_torchrl_internals(replay_buffer: ReplayBuffer) -> None:
    """Fails with one clear message if this TorchRL lacks the private attributes the store reads."""
    storage, writer = replay_buffer.storage, replay_buffer.writer
    missing = [
        name
        for name, present in (
            ("TensorStorage._storage", hasattr(storage, "_storage")),
            ("TensorStorage._len_along_dim0", isinstance(getattr(type(storage), "_len_along_dim0", None), property)),
            ("RoundRobinWriter._cursor", hasattr(writer, "_cursor")),
        )
        if not present
    ]
    if missing:
        raise RuntimeError(
            f"TrajectoryStore reads TorchRL internals checked against torchrl {TORCHRL_CHECKED}: "
            f"{', '.join(missing)} no longer exist in this TorchRL; update torchrl_awr/store.py."
        )


@dataclass(frozen=True)
class _Keys:
    """The entries the store reads and writes, all taken from the loss and its networks."""

    observations: tuple[NestedKey, ...]
    action: NestedKey
    reward: NestedKey
    done: NestedKey
    terminated: NestedKey
    value: NestedKey
    value_target: NestedKey
    advantage: NestedKey

    @classmethod
    def of(cls, loss_module) -> _Keys:
        keys = loss_module.tensor_keys
        observations = dict.fromkeys(
            unravel_key(key) for key in (*loss_module.critic_network.in_keys, *loss_module.actor_network.in_keys)
        )
        return cls(
            observations=tuple(observations),
            action=keys.action,
            reward=unravel_key(("next", keys.reward)),
            done=unravel_key(("next", keys.done)),
            terminated=unravel_key(("next", keys.terminated)),
            value=keys.value,
            value_target=keys.value_target,
            advantage=keys.advantage,
        )

    @property
    def collected(self) -> list[NestedKey]:
        """What each collected batch must carry."""
        nexts = [unravel_key(("next", key)) for key in self.observations]
        return [*self.observations, self.action, *nexts, self.reward, self.done, self.terminated]


class TrajectoryStore:
    """A replay buffer of whole, time-ordered trajectories, with AWR's buffer-wide targets.

    Args:
        replay_buffer: a ``TensorDictReplayBuffer`` over a ``TensorStorage``
            (``LazyTensorStorage``/``LazyMemmapStorage``, ``ndim`` 1 or 2, any device), written
            round-robin. Its sampler draws the minibatches (:class:`ShuffledPassSampler`, the
            original's draws, through one vectorised call per phase; any other sampler one call
            per step); samplers whose draws AWR cannot honour, other writers and buffer
            transforms are refused here, with the reason.
        loss_module: the :class:`~torchrl_awr.AWRLoss` whose ``tensor_keys`` and networks'
            ``in_keys`` name every entry the store reads and writes.
        batch_size: the minibatch size; defaults to the buffer's ``batch_size``. Both given and
            different is an error.
    """

    def __init__(self, replay_buffer: ReplayBuffer, loss_module: LossModule, *, batch_size: int | None = None):
        self.replay_buffer = replay_buffer
        self.storage = _check_buffer(replay_buffer)
        check_torchrl_internals(replay_buffer)
        self.batch_size = _resolve_batch_size(replay_buffer.batch_size, batch_size)
        if self.batch_size > self.storage.max_size:
            raise ValueError(
                f"The minibatch size ({self.batch_size}) is larger than the replay buffer "
                f"({self.storage.max_size} transitions)."
            )
        self.keys = _Keys.of(loss_module)
        self._num_envs: int | None = None

    def __len__(self) -> int:
        return len(self.storage)

    @property
    def num_envs(self) -> int | None:
        """Environments per time step: an ``ndim=2`` storage's columns; else fixed by the first batch."""
        if self.storage.ndim == 2 and len(self.storage):
            return self.storage._storage.shape[1]
        return self._num_envs

    def nbytes(self) -> int:
        """Bytes the storage holds (its whole capacity once allocated; 0 before the first batch)."""
        return self.storage._storage.bytes() if len(self.storage) else 0

    def capacity(self) -> int:
        """Transitions the allocated grid holds (0 before the first batch)."""
        if not self._rows():
            return 0
        return self.storage._storage.shape[0] * (self.storage._storage.shape[1] if self.storage.ndim == 2 else 1)

    # ------------------------------------------------------------------ writing
    def extend(self, batch: TensorDictBase) -> int:
        """Adds a collected ``[n_envs, T]`` batch (``[T]``: one env); returns its transitions.

        The target entries the store writes later are added as zeros, since a TorchRL storage
        fixes its entries at the first write.
        """
        batch = self._as_grid(batch)
        zeros = torch.zeros(*batch.shape, 1, device=batch.device)
        batch.set(self.keys.value_target, zeros)
        batch.set(self.keys.advantage, zeros.clone())
        first = len(self.storage) == 0
        if first:
            self._check_room(batch)
        # The first write makes the storage, which TorchRL announces at INFO (its shape): not the user's.
        with _torchrl_info_silenced() if first else contextlib.nullcontext():
            if self.storage.ndim == 2:
                self.replay_buffer.extend(batch)  # dim_extend=1: written as [T, n_envs] rows
            else:
                self.replay_buffer.extend(batch.transpose(0, 1).reshape(-1))  # time-major, flat
        if first:
            self._reserve_disk()
        return batch.numel()

    def extend_episodes(self, data: TensorDictBase, num_envs: int) -> int:
        """Adds transitions stored episode after episode (a dataset's ``[N]``) as ``num_envs``
        trajectories, the layout that the collector's batches will continue; returns the
        transitions added.

        The newest transitions that the buffer holds are split into ``num_envs`` consecutive
        runs of equal length (``N`` and the buffer's capacity rounded down to a multiple of
        ``num_envs``). Each run ends with a cut, so its last step bootstraps V(s') and new data
        does not continue it. Only the entries the store reads are kept.
        """
        per_env = min(data.shape[0], self.storage.max_size) // num_envs
        if per_env == 0:
            raise ValueError(
                f"{data.shape[0]} transitions cannot be laid out as {num_envs} trajectories in a buffer of "
                f"{self.storage.max_size}."
            )
        newest = data[data.shape[0] - per_env * num_envs :].select(*self.keys.collected)
        grid = newest.reshape(num_envs, per_env).clone()
        grid.get(self.keys.done)[:, -1] = True
        return self.extend(grid)

    def _check_room(self, batch: TensorDictBase) -> None:
        """Refuses a buffer the machine cannot hold (RAM, or disk for a memory-mapped storage),
        with the sizes, before the allocation fails without naming the buffer."""
        needed = batch.bytes() / batch.numel() * self.storage.max_size
        if isinstance(self.storage, LazyMemmapStorage):
            where = memmap_disk(self.storage)
            available, kind = shutil.disk_usage(where).free, f"free disk at {where}"
        elif batch.device is not None and batch.device.type == "cuda":
            return  # the CUDA allocator names the device and the sizes itself
        else:
            available, kind = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "available memory"
        if needed > available:
            raise ValueError(
                f"The replay buffer of {self.storage.max_size} transitions (buffer.size in the recipe) needs about "
                f"{needed / 2**30:.1f} GiB ({needed / self.storage.max_size:.0f} bytes each); this machine has "
                f"{available / 2**30:.1f} GiB of {kind}."
            )

    def _reserve_disk(self) -> None:
        """Allocates a memory-mapped storage's files in full once they exist: a disk that fills
        later then fails here, with a message, instead of killing the process with SIGBUS when
        a page of the sparse file is first written."""
        for tensor in self.storage._storage.values(True, True):
            filename = getattr(tensor, "filename", None)
            if filename is None:
                continue
            with open(filename, "r+b") as handle:
                try:
                    os.posix_fallocate(handle.fileno(), 0, tensor.numel() * tensor.element_size())
                except OSError as err:
                    raise OSError(
                        f"Cannot reserve {self.nbytes() / 2**20:.0f} MiB for the memory-mapped replay buffer in "
                        f"{Path(filename).parent} ({err.strerror}); free space there or give the storage another scratch_dir."
                    ) from err

    def _as_grid(self, batch: TensorDictBase) -> TensorDictBase:
        if any(name is not None for name in batch.names):
            # Dimension names (a collector's "time") are not stored: a storage first written
            # without them (a dataset's trajectories) refuses batches that carry them.
            batch = batch.clone(recurse=False)
            batch.names = None
        if batch.ndim == 1:
            batch = batch.unsqueeze(0)
        elif batch.ndim > 2:  # e.g. [workers, n_envs, T] stacked by a multi-process collector
            batch = batch.reshape(-1, batch.shape[-1])
        present = batch.keys(True)
        missing = [key for key in self.keys.collected if key not in present]
        if missing:
            raise KeyError(
                f"The collected batch has no {', '.join(map(repr, missing))} (keys from the loss's "
                f"tensor_keys and the networks' in_keys); it has "
                f"{sorted(str(k) for k in batch.keys(True, True))}. Rename with loss.set_keys(...) "
                "or the networks' in_keys."
            )
        num_envs = batch.shape[0]
        if batch.numel() > self.storage.max_size:
            raise ValueError(
                f"A collected batch ({batch.numel()} transitions) does not fit the replay buffer "
                f"({self.storage.max_size}); it must hold at least one batch."
            )
        if self.num_envs is None:
            if self.storage.ndim == 1 and self.storage.max_size % num_envs:
                raise ValueError(
                    f"The replay storage holds {self.storage.max_size} transitions, not a multiple of "
                    f"the {num_envs} environments per batch; an ndim=1 storage keeps them as "
                    "[time, env] rows, so make its size a multiple (or use ndim=2)."
                )
            self._num_envs = num_envs
        elif num_envs != self.num_envs:
            raise ValueError(
                f"The collected batch has {num_envs} environments but the store holds "
                f"{self.num_envs} per time step; every batch must come from the same environments."
            )
        return batch

    def cut(self) -> None:
        """Marks the newest step of every env done (a truncation: V(s') is still bootstrapped).

        For batches that new data will not continue: another worker's, or a restored buffer
        whose environments restart.
        """
        if self._rows() == 0:
            return
        newest = self.chronological_rows()[-1]
        self._grid().get(self.keys.done)[newest] = True

    # ------------------------------------------------------------------ reading
    def _rows(self) -> int:
        """Time steps stored (rows of the ``[time, env]`` grid)."""
        if self.storage.ndim == 2:
            return self.storage._len_along_dim0 or 0  # None before a lazy storage's first write
        return len(self.storage) // self.num_envs if self.num_envs else 0

    def _grid(self) -> TensorDictBase:
        """The filled storage as a ``[time, env]`` TensorDict view (storage order, no copy)."""
        rows = self._rows()
        if rows == 0:
            raise ValueError("AWR: the replay buffer is empty; extend it with collected data first.")
        if self.storage.ndim == 2:
            return self.storage._storage[:rows]
        return self.storage._storage[: rows * self.num_envs].reshape(rows, self.num_envs)

    def chronological_rows(self) -> torch.Tensor:
        """Row indices of the grid, oldest first (once full, the writer's cursor is the oldest)."""
        rows = self._rows()
        order = torch.arange(rows)
        if rows and rows * self.num_envs == self.capacity():
            cursor = self.replay_buffer.writer._cursor
            order = (order + (cursor if self.storage.ndim == 2 else cursor // self.num_envs)) % rows
        return order

    def chronological(self) -> TensorDictBase:
        """The stored transitions as ``[n_envs, T]``, each env's oldest first (a copy)."""
        return self._grid()[self.chronological_rows()].transpose(0, 1)

    # ------------------------------------------------------------------ targets
    @torch.no_grad()
    def compute_targets(
        self,
        critic: TensorDictModuleBase,
        *,
        gamma: float,
        lmbda: float,
        standardize: bool = True,
        device: torch.device | str | None = None,
    ) -> dict[str, torch.Tensor]:
        """Writes TD(lambda) value targets and advantages over the whole buffer, in place.

        ``advantage = value_target - V(s)``, standardized over the buffer when ``standardize``.
        The arithmetic runs on ``device`` (default: the critic's). Returns detached summary
        statistics.
        """
        keys = self.keys
        if device is None:
            device = next(critic.parameters()).device
        data = self._grid()
        critic_keys = [unravel_key(key) for key in critic.in_keys]
        value = critic_values(critic, data.select(*critic_keys).to(device, non_blocking=True), keys.value)
        rows = self.chronological_rows().to(device)

        def in_time(key: NestedKey) -> torch.Tensor:
            return data.get(key).to(device, non_blocking=True)[rows].transpose(0, 1)  # [n_envs, T, 1]

        done = in_time(keys.done).bool()
        next_inputs = data.get("next").select(*critic_keys)
        returns = td_lambda_returns(
            in_time(keys.reward),
            next_values(critic, value[rows].transpose(0, 1), done, next_inputs, rows, keys.value),
            done,
            in_time(keys.terminated),
            gamma=gamma,
            lmbda=lmbda,
        )
        value_target = torch.empty_like(value)
        value_target[rows] = returns.transpose(0, 1)
        advantage = value_target - value
        check_finite_targets(value_target, advantage)
        raw_mean, raw_std = advantage.mean(), advantage.std(unbiased=False)
        if standardize:
            advantage = (advantage - raw_mean) / (raw_std + ADVANTAGE_EPS)
        for key, tensor in ((keys.value_target, value_target), (keys.advantage, advantage)):
            stored = data.get(key)
            stored.copy_(tensor.reshape(stored.shape))
        return {
            "value_mean": value.mean(),
            "value_target_mean": value_target.mean(),
            "advantage_raw_mean": raw_mean,
            "advantage_raw_std": raw_std,
            "buffer_explained_variance": 1
            - (value_target - value).var(unbiased=False) / value_target.var(unbiased=False).clamp_min(1e-8),
        }

    # ------------------------------------------------------------------ minibatches
    def minibatches(
        self, keys: Sequence[NestedKey], num_steps: int, device: torch.device | str | None = None
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """``num_steps`` minibatches drawn by the buffer's sampler: per chunk of up to
        ``MINIBATCH_CHUNK`` steps, one ``[steps, batch_size, ...]`` tensor per key.

        The chunks are gathered into the same buffers (fresh allocations of this size cost page
        faults), so each chunk is overwritten by the next: consume it before asking for the
        next, as :meth:`~torchrl_awr.updates.UpdateStep.run` does.
        """
        data = self._grid().select(*keys).reshape(-1)
        sources = [data.get(key) for key in keys]
        indices = self._draw(num_steps).to(data.device)
        rows = min(num_steps, MINIBATCH_CHUNK) * self.batch_size
        buffers = [source.new_empty((rows, *source.shape[1:])) for source in sources]
        for start in range(0, num_steps, MINIBATCH_CHUNK):
            chunk = indices[start : start + MINIBATCH_CHUNK]
            flat = chunk.reshape(-1)
            yield tuple(
                torch.index_select(source, 0, flat, out=buffer[: flat.numel()])
                .view(*chunk.shape, *source.shape[1:])
                .to(device if device is not None else source.device, non_blocking=True)
                for source, buffer in zip(sources, buffers)
            )

    def _draw(self, num_steps: int) -> torch.Tensor:
        """``[num_steps, batch_size]`` flat indices into the ``[time, env]`` grid."""
        sampler = self.replay_buffer.sampler
        if isinstance(sampler, ShuffledPassSampler):
            return sampler.batches(len(self.storage), num_steps, self.batch_size)
        draws = [sampler.sample(self.storage, self.batch_size)[0] for _ in range(num_steps)]
        if self.storage.ndim == 2:  # (row, env) pairs
            return torch.stack([row * self.num_envs + env for row, env in draws])
        return torch.stack(draws)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"num_envs": self.num_envs, "sampler": self.replay_buffer.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self._num_envs = state["num_envs"]
        self.replay_buffer.sampler.load_state_dict(state["sampler"])


def _check_buffer(replay_buffer: ReplayBuffer) -> TensorStorage:
    """The buffer's storage, once its storage, writer, sampler and transform are known to keep
    whole time-ordered trajectories and to be honoured."""
    storage = replay_buffer.storage
    if not isinstance(storage, TensorStorage):
        raise TypeError(
            "AWR needs a TensorStorage (LazyTensorStorage or LazyMemmapStorage) to keep whole "
            f"trajectories in time order; got {type(storage).__name__}."
        )
    if storage.ndim not in (1, 2):
        raise ValueError(f"AWR expects a storage with ndim 1 or 2 ([time] or [time, env]); got {storage.ndim}.")
    writer = replay_buffer.writer
    if not isinstance(writer, RoundRobinWriter):
        raise TypeError(
            f"AWR cannot use the replay buffer's {type(writer).__name__}: it needs a round-robin "
            "writer (TorchRL's default), which keeps each environment's trajectory whole and in "
            "time order."
        )
    sampler = replay_buffer.sampler
    for refused, why in REFUSED_SAMPLERS.items():
        if isinstance(sampler, refused):
            raise TypeError(
                f"AWR cannot honour the replay buffer's {type(sampler).__name__}: {why}. Use "
                "ShuffledPassSampler (the original's draws), SamplerWithoutReplacement or RandomSampler."
            )
    transform = replay_buffer.transform
    if transform is not None and not (isinstance(transform, Compose) and len(transform) == 0):
        raise TypeError(
            f"AWR cannot apply the replay buffer's transform ({type(transform).__name__}): its "
            "minibatches are gathered from the storage as tensors. Transform in the environment "
            "or the collector instead."
        )
    return storage


def _resolve_batch_size(buffer_batch_size: int | None, batch_size: int | None) -> int:
    if batch_size is None and buffer_batch_size is None:
        raise ValueError("TrajectoryStore: give a batch_size, or create the replay buffer with one.")
    if batch_size is not None and buffer_batch_size is not None and batch_size != buffer_batch_size:
        raise ValueError(
            f"The minibatch size ({batch_size}) differs from the replay buffer's batch_size "
            f"({buffer_batch_size}); set one of them."
        )
    return batch_size if batch_size is not None else buffer_batch_size


@contextlib.contextmanager
def _torchrl_info_silenced() -> Iterator[None]:
    logger = logging.getLogger("torchrl")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
