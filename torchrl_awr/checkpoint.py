"""Atomic checkpoints, read without running code: a half-written file never replaces a good one,
and a crafted one is refused.

A checkpoint and the replay-buffer dump beside it are a pair: both carry the same ``pair_id``
(the trainer makes a fresh one per save), checked on load, so a buffer from another moment is
refused. Free space for both is checked before writing; a failed write removes its temporary
files and leaves the previous checkpoint as it was.

Loading never unpickles arbitrary objects, since checkpoints and buffer dumps are files people
share: the checkpoint is read with ``torch.load(weights_only=True)``, and a buffer dump is handed
to TorchRL (whose loaders unpickle some files) only once every file in it is known to be data.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import random
import secrets
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from numpy.core.multiarray import _reconstruct
from torchrl.data import LazyMemmapStorage, ReplayBuffer

from torchrl_awr.messages import first_line
from torchrl_awr.store import ShuffledPassSampler, memmap_disk

CHECKPOINT_VERSION = 1
FREE_SPACE_MARGIN = 64 * 2**20  # bytes left free after a save
PAIR_FILE = "awr_pair.json"
# numpy's RNG state as checkpoints written before this release hold it (an array); torch.load
# rebuilds it from these alone, none of which runs code.
NUMPY_STATE_GLOBALS = [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
# What a buffer dump may hold: JSON and raw memory-mapped tensors, the ShuffledPassSampler's state
# (read with weights_only) and TorchRL's prefetch queue (a pickle, checked to hold plain values).
DATA_SUFFIXES = (".json", ".memmap")
PREFETCH_FILE = Path("prefetch.pkl")
SAMPLER_FILE = Path("sampler") / ShuffledPassSampler.STATE_FILE


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not belong to this trainer."""


class BufferDumpError(CheckpointError):
    """A checkpoint's replay-buffer dump that is missing, not its pair, unsafe or cannot be
    restored: the checkpoint itself may still be loaded without it."""


def buffer_dir(path: str | Path) -> Path:
    """Where the replay buffer of the checkpoint at ``path`` is dumped."""
    path = Path(path)
    return path.with_name(path.name + ".buffer")


def partial_writes(path: str | Path) -> list[Path]:
    """What a save of the checkpoint ``path`` killed half-way may leave: the checkpoint's temporary
    file, the buffer dump being written and the previous dump being replaced."""
    path, dump = Path(path), buffer_dir(path)
    return [path.with_name(path.name + ".tmp"), dump.with_name(dump.name + ".tmp"), dump.with_name(dump.name + ".old")]


def new_pair_id(moment: str) -> str:
    """An id for one save's checkpoint and buffer dump: ``moment`` (how far the run is) and a
    random token, so that a resumed run saving at the same moment again gets another id."""
    return f"{moment}, {secrets.token_hex(4)}"


def rng_state() -> dict:
    """Every generator's state, as tensors and plain values (numpy's key as a list)."""
    name, key, *position = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (name, key.tolist(), *position),
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(
    state: dict,
    path: str | Path,
    *,
    replay_buffer: ReplayBuffer | None = None,
    buffer_bytes: int = 0,
    pair_id: str | None = None,
) -> None:
    """Writes ``state`` to ``path`` via a temporary file and an atomic rename.

    With ``replay_buffer`` (about ``buffer_bytes`` on disk), the buffer is dumped to
    ``<path>.buffer`` the same way (a fresh directory renamed over the old one), before the
    checkpoint; both record ``pair_id``. What an earlier save killed half-way left is removed
    first. Raises :class:`CheckpointError`, before writing anything, if the disk lacks the space,
    and after cleaning up if a write fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, staging, previous = partial_writes(path)
    _remove(tmp, staging)
    payload = io.BytesIO()
    torch.save({**state, "version": CHECKPOINT_VERSION, "pair_id": pair_id}, payload)
    _check_room(path, payload.tell(), int(buffer_bytes * 1.05) if replay_buffer is not None else None)
    target = buffer_dir(path)
    try:
        if replay_buffer is not None:
            replay_buffer.dumps(staging)
            (staging / PAIR_FILE).write_text(json.dumps({"pair_id": pair_id}))
            _remove(previous)
            if target.exists():
                target.rename(previous)
            staging.rename(target)
            _remove(previous)
        with open(tmp, "wb") as handle:
            handle.write(payload.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch reports a full disk under a memory map as a RuntimeError
        _remove(tmp, staging)
        raise CheckpointError(f"Saving {path} failed ({err}); the previous checkpoint is kept.") from err


def _check_room(path: Path, checkpoint_bytes: int, buffer_bytes: int | None) -> None:
    """Refuses a save of about these sizes (no buffer: None) that the disk cannot hold with a margin."""
    needed = checkpoint_bytes + (buffer_bytes or 0) + FREE_SPACE_MARGIN
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise CheckpointError(
            f"Not enough free space to save {path}: about {needed / 2**20:.0f} MiB needed (checkpoint"
            f"{' and replay buffer' if buffer_bytes is not None else ''} plus a margin), {free / 2**20:.0f} MiB "
            "free. The previous checkpoint is kept."
        )


def check_room_to_continue(path: str | Path, *, with_buffer: bool) -> None:
    """Before a run resumes from the checkpoint ``path``: its next save (the size of this one, and
    of its buffer dump if ``with_buffer``) must fit, so a full disk is named at start-up rather
    than after the first iterations."""
    path = Path(path)
    dump = buffer_dir(path)
    buffer_bytes = sum(file.stat().st_size for file in dump.rglob("*") if file.is_file()) if with_buffer else None
    _check_room(path, path.stat().st_size, buffer_bytes)


def _remove(*paths: Path) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, *, replay_buffer: ReplayBuffer | None = None) -> dict:
    """Reads a checkpoint written by :func:`save_checkpoint`; a clear error if it is unusable,
    and one that refuses it if it holds anything but tensors and plain values.

    With ``replay_buffer``, its dump is restored too, once known to be this checkpoint's and to
    hold only data. A restored ``replay_buffer`` has the newest step of every env marked done,
    since the environments restart and new data does not continue those trajectories.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}.")
    try:
        with torch.serialization.safe_globals(NUMPY_STATE_GLOBALS), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols it did not write
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # garbage, or objects that weights_only refuses: torch tells neither apart
        raise CheckpointError(
            f"Checkpoint {path} is corrupt or unreadable: it does not hold only tensors and plain values, as a "
            "torchrl-awr checkpoint does (anything else is refused, since loading it could run code)."
        ) from err
    except Exception as err:  # torch raises several types for truncated/corrupt files
        raise CheckpointError(f"Checkpoint {path} is corrupt or unreadable: {first_line(err)}") from err
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} is not a torchrl-awr checkpoint (version {CHECKPOINT_VERSION} expected).")
    if replay_buffer is not None:
        load_buffer_dump(path, state.get("pair_id"), replay_buffer)
    return state


def load_buffer_dump(path: Path, pair_id: str | None, replay_buffer: ReplayBuffer) -> None:
    """Restores the buffer dump of the checkpoint ``path`` (saved as ``pair_id``)."""
    source = buffer_dir(path)
    if not source.is_dir():
        raise BufferDumpError(
            f"Checkpoint {path} has no saved replay buffer at {source}; load it without its buffer "
            "(load_buffer=False), or save with the buffer (save_buffer=True)."
        )
    saved_pair = _saved_pair(source)
    if saved_pair != pair_id:
        raise BufferDumpError(
            f"The replay buffer at {source} (saved at {saved_pair or 'an unrecorded moment'}) does not belong to the "
            f"checkpoint {path} (saved at {pair_id or 'an unrecorded moment'}): a save was interrupted between the "
            "two, or the buffer was copied from another save. Load the checkpoint without it (load_buffer=False)."
        )
    check_buffer_files(source)
    if isinstance(replay_buffer.storage, LazyMemmapStorage):
        check_room_to_restore(source, memmap_disk(replay_buffer.storage))
    try:
        replay_buffer.loads(source)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        raise BufferDumpError(f"The replay buffer at {source} could not be restored: {first_line(err)}") from err


def check_room_to_restore(source: Path, where: Path) -> None:
    """A memory-mapped storage is written in full at ``where`` as it is restored: too little disk
    there is one error now, not a SIGBUS when a page of its sparse files is first written."""
    needed = sum(file.stat().st_size for file in source.rglob("*.memmap"))
    free = shutil.disk_usage(where).free
    if free < needed:
        raise BufferDumpError(
            f"Restoring the replay buffer at {source} into its memory-mapped storage needs about {needed / 2**20:.1f} "
            f"MiB at {where} (the storage's scratch_dir); {free / 2**20:.1f} MiB are free. Free space there, or load "
            "the checkpoint without its buffer (load_buffer=False)."
        )


def _saved_pair(source: Path) -> str | None:
    """The pair id a buffer dump records; ``""`` (never a checkpoint's) if it records none."""
    try:
        saved = json.loads((source / PAIR_FILE).read_text())
    except (OSError, ValueError):
        return ""
    return saved.get("pair_id", "") if isinstance(saved, dict) else ""


def check_buffer_files(source: Path) -> None:
    """Refuses a buffer dump holding a file that TorchRL's loaders could unpickle objects from
    (a crafted sampler state, a tensordict's ``other.pickle``, a ``transform.t``...): every file
    must be data, and no link may lead outside the dump."""
    for file in sorted(source.rglob("*")):
        relative = file.relative_to(source)
        if file.is_symlink():
            bad = "a link"
        elif file.is_dir() or file.suffix in DATA_SUFFIXES or relative == SAMPLER_FILE:
            continue
        elif relative == PREFETCH_FILE:
            if _holds_plain_values(file):
                continue
            bad = "a pickle of objects other than plain values"
        else:
            bad = "a file that is not data"
        raise BufferDumpError(
            f"The replay buffer at {source} holds {relative}, {bad}, which loading could run code from: it is "
            "refused. Load the checkpoint without it (load_buffer=False)."
        )


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles numbers, strings and containers only: any class or function is refused."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"{module}.{name} is not a plain value")


def _holds_plain_values(file: Path) -> bool:
    try:
        with open(file, "rb") as handle:
            _PlainUnpickler(handle).load()
    except Exception:  # a refused class, or no pickle at all
        return False
    return True


@contextlib.contextmanager
def fitting(path: str | Path) -> Iterator[None]:
    """Loading the checkpoint ``path``'s state into modules or optimizers that it does not fit is
    one :class:`CheckpointError` naming the first mismatch (torch lists every one)."""
    try:
        yield
    except (RuntimeError, ValueError, KeyError) as err:
        detail = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), first_line(err))
        raise CheckpointError(f"The checkpoint {path} does not fit the model built from this config: {detail}") from err
