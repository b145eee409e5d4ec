"""A run directory belongs to one run: claimed by a new run, locked while a run lives in it, its
logs cut back to the checkpoint a resume starts from, and no half-written file left in it."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path


class RunDirectoryError(RuntimeError):
    """A run directory that another run owns or is using."""


class RunLock:
    """An exclusive lock on ``<run_dir>/.lock`` held while a run lives in the directory.

    A second process that tries to run in the same directory fails at once; the operating
    system releases the lock when the holder exits, however it exits (``kill -9`` included).
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._handle = None

    def __enter__(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.run_dir / ".lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunDirectoryError(
                f"{self.run_dir} is in use by a live run (process {holder}); give this run its own output_dir."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()


def check_new_run_dir(run_dir: str | Path, checkpoint_name: str = "checkpoint.pt") -> None:
    """Refuses a directory that already holds a run, so a new run never overwrites one."""
    run_dir = Path(run_dir)
    owned = [name for name in (checkpoint_name, "config.yaml") if (run_dir / name).exists()]
    if owned:
        raise RunDirectoryError(
            f"{run_dir} already holds a run ({', '.join(owned)}); choose another output_dir, or continue that run "
            f"with resume={run_dir / checkpoint_name}."
        )


def remove_partial_writes(run_dir: str | Path) -> list[Path]:
    """Deletes what an interrupted save left behind (``*.tmp``, ``*.old``, in the run directory and
    its ``videos``); returns what it removed."""
    removed = []
    for path in [*Path(run_dir).glob("*"), *Path(run_dir).glob("videos/*")]:
        if path.suffix in (".tmp", ".old"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path)
    return removed


def truncate_logs(run_dir: str | Path, frames: int) -> None:
    """Drops every CSV log row after ``frames`` samples: a resumed run redoes those iterations,
    so each sample count appears once."""
    for path in (Path(run_dir) / "logs" / "scalars").rglob("*.csv"):
        lines = path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if line.strip() and float(line.split(",", 1)[0]) <= frames]
        if len(kept) != len(lines):
            path.write_text("".join(kept))
