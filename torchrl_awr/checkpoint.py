"""Atomic checkpoints: a half-written file never replaces a good one."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from torchrl.data import ReplayBuffer

CHECKPOINT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not belong to this trainer."""


def buffer_dir(path: str | Path) -> Path:
    """Where the replay buffer of the checkpoint at ``path`` is dumped."""
    path = Path(path)
    return path.with_name(path.name + ".buffer")


def rng_state() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(state: dict, path: str | Path, *, replay_buffer: ReplayBuffer | None = None) -> None:
    """Writes ``state`` to ``path`` via a temporary file and an atomic rename.

    With ``replay_buffer``, the buffer is dumped to ``<path>.buffer`` the same way (a fresh
    directory renamed over the old one), before the checkpoint that refers to it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if replay_buffer is not None:
        target = buffer_dir(path)
        staging = target.with_name(target.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        replay_buffer.dumps(staging)
        previous = target.with_name(target.name + ".old")
        shutil.rmtree(previous, ignore_errors=True)
        if target.exists():
            target.rename(previous)
        staging.rename(target)
        shutil.rmtree(previous, ignore_errors=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({**state, "version": CHECKPOINT_VERSION}, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, *, replay_buffer: ReplayBuffer | None = None) -> dict:
    """Reads a checkpoint written by :func:`save_checkpoint`; a clear error if it is unusable.

    A restored ``replay_buffer`` has the newest step of every env marked done, since the
    environments restart and new data does not continue those trajectories.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for truncated/corrupt files
        raise CheckpointError(f"Checkpoint {path} is corrupt or unreadable: {err}") from err
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} is not a torchrl-awr checkpoint (version {CHECKPOINT_VERSION} expected).")
    if replay_buffer is not None:
        source = buffer_dir(path)
        if not source.is_dir():
            raise CheckpointError(
                f"Checkpoint {path} has no saved replay buffer at {source}; resume without the "
                "buffer or save with the buffer enabled."
            )
        replay_buffer.loads(source)
    return state
