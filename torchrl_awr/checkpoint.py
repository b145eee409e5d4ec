"""Atomic checkpoints: a half-written file never replaces a good one.

A checkpoint and the replay-buffer dump beside it are a pair: both carry the same ``pair_id``
(the trainer's sample count), checked on load, so a buffer from another moment is refused.
Free space is checked before writing; a failed write removes its temporary files and leaves the
previous checkpoint as it was.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from torchrl.data import ReplayBuffer

CHECKPOINT_VERSION = 1
FREE_SPACE_MARGIN = 64 * 2**20  # bytes left free after a save
PAIR_FILE = "awr_pair.json"


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
    checkpoint; both record ``pair_id``. Raises :class:`CheckpointError`, before writing
    anything, if the disk lacks the space, and after cleaning up if a write fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = io.BytesIO()
    torch.save({**state, "version": CHECKPOINT_VERSION, "pair_id": pair_id}, payload)
    needed = payload.tell() + (int(buffer_bytes * 1.05) if replay_buffer is not None else 0) + FREE_SPACE_MARGIN
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise CheckpointError(
            f"Not enough free space to save {path}: about {needed / 2**20:.0f} MiB needed (checkpoint"
            f"{' and replay buffer' if replay_buffer is not None else ''} plus a margin), {free / 2**20:.0f} MiB "
            "free. The previous checkpoint is kept."
        )
    tmp = path.with_name(path.name + ".tmp")
    target = buffer_dir(path)
    staging = target.with_name(target.name + ".tmp")
    try:
        if replay_buffer is not None:
            shutil.rmtree(staging, ignore_errors=True)
            replay_buffer.dumps(staging)
            (staging / PAIR_FILE).write_text(json.dumps({"pair_id": pair_id}))
            previous = target.with_name(target.name + ".old")
            shutil.rmtree(previous, ignore_errors=True)
            if target.exists():
                target.rename(previous)
            staging.rename(target)
            shutil.rmtree(previous, ignore_errors=True)
        with open(tmp, "wb") as handle:
            handle.write(payload.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        raise CheckpointError(f"Saving {path} failed ({err}); the previous checkpoint is kept.") from err


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
        pair = source / PAIR_FILE
        saved_pair = json.loads(pair.read_text())["pair_id"] if pair.is_file() else None
        if state.get("pair_id") is not None and saved_pair != state["pair_id"]:
            raise CheckpointError(
                f"The replay buffer at {source} (saved at {saved_pair}) does not belong to the checkpoint {path} "
                f"(saved at {state['pair_id']}): a save was interrupted between the two. Resume without "
                "resume_buffer=true."
            )
        replay_buffer.loads(source)
    return state


def partial_writes(path: str | Path) -> list[Path]:
    """The temporary paths an interrupted save of the checkpoint ``path`` may leave behind, by
    name, so that whoever owns the directory removes exactly these."""
    path = Path(path)
    staging = buffer_dir(path)
    return [
        path.with_name(path.name + ".tmp"),
        staging.with_name(staging.name + ".tmp"),
        staging.with_name(staging.name + ".old"),
    ]
