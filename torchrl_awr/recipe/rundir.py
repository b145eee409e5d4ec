"""A run directory belongs to one run: created only when the run can start, claimed by a new
run, locked while a run lives in it, its logs cut back to the checkpoint a resume starts from,
and cleaned of what an interrupted save left behind, by name. A run never deletes a file it
did not write: a directory that holds anything else is refused. Its saved config is read here
for every command that reads a run (resume, evaluate, export, a dataset from its buffer)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from torchrl_awr.checkpoint import CheckpointError, partial_writes
from torchrl_awr.recipe.compose import compose_config
from torchrl_awr.video import PARTIAL_VIDEO_NAME

CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.yaml"
LOCK_NAME = ".lock"


def checkpoint_path(path: str | Path) -> Path:
    """A run directory's checkpoint, or ``path`` itself when it names a file."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


class RunDirectoryError(RuntimeError):
    """A run directory that another run owns or is using, or that is not a run's."""


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
        handle = open(self.run_dir / LOCK_NAME, "a+")
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


class RunDir:
    """The directory of one run and the names it writes there.

    :meth:`claim` is the only way in: it creates the directory (and its missing parents),
    refuses one that belongs to someone else, locks it, and removes the partial writes of an
    interrupted save, each by its name. If the run fails before :meth:`started` is called,
    every entry the claim found missing is removed again, and so are the directories it made:
    bad input leaves nothing behind.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_NAME

    @property
    def config(self) -> Path:
        return self.path / CONFIG_NAME

    def saved_config(self, config_name: str = "config") -> DictConfig:
        """The run's ``config.yaml`` over its own task's preset and preset (of the ``config_name``
        config; a config without ``preset_name`` is the faithful preset's), in struct mode: keys
        that configs saved by earlier versions lack take the presets' values, and keys they have
        that the presets lack are kept."""
        if not self.config.is_file():
            raise CheckpointError(f"No config.yaml beside {self.checkpoint}; it holds the run's settings.")
        try:
            saved = OmegaConf.load(self.config)
        except (yaml.YAMLError, OmegaConfBaseException) as err:
            raise CheckpointError(f"{self.config} is not a readable run config: {err}") from err
        task = OmegaConf.select(saved, "task_name")
        if not task:
            raise CheckpointError(f"{self.config} names no task (task_name); it is not a torchrl-awr run config.")
        preset_name = OmegaConf.select(saved, "preset_name", default="faithful")
        preset = compose_config(f"task={task}", f"preset={preset_name}", config_name=config_name)
        OmegaConf.set_struct(preset, False)
        cfg = OmegaConf.merge(preset, saved)
        OmegaConf.set_struct(cfg, True)
        return cfg

    def holds_run(self) -> bool:
        """Whether a run has started here (its config is written when it starts)."""
        return self.config.is_file() or self.checkpoint.is_file()

    def check_new(self) -> None:
        """Refuses, for a new run, a directory that holds a run or anything a run did not write."""
        if not self.path.exists():
            return
        if not self.path.is_dir():
            raise RunDirectoryError(f"output_dir={self.path} is a file, not a directory.")
        owned = [name for name in (CHECKPOINT_NAME, CONFIG_NAME) if (self.path / name).exists()]
        if owned:
            hint = "continue that run" if self.checkpoint.is_file() else "start that run over from its config"
            raise RunDirectoryError(
                f"{self.path} already holds a run ({', '.join(owned)}); choose another output_dir, or {hint} "
                f"with resume={self.path}."
            )
        others = sorted(entry.name for entry in self.path.iterdir() if entry.name != LOCK_NAME)
        if others:
            shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
            raise RunDirectoryError(
                f"output_dir={self.path} is not empty ({shown}) and is not a torchrl-awr run directory; a run only "
                "writes into a new or empty directory. Choose another output_dir."
            )

    @contextlib.contextmanager
    def claim(self, *, new: bool) -> Iterator[RunDir]:
        """Creates and locks the directory for a new run (``new``) or a resumed one."""
        if new:
            self.check_new()
        made = self._missing_dirs()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunDirectoryError(f"Cannot create the output directory {self.path}: {err.strerror}.") from None
        self._started = False
        self._found = {entry.name for entry in self.path.iterdir()}
        try:
            if not os.access(self.path, os.W_OK):
                raise RunDirectoryError(f"The output directory {self.path} is not writable.")
            with RunLock(self.path):
                if new:
                    self.check_new()  # again under the lock: a run may have started meanwhile
                self.remove_partial_writes()
                yield self
        except BaseException:
            if not self._started:
                self._abandon(made)
            raise

    def started(self) -> None:
        """The run has begun (its config is written): from now on its files stay, whatever happens."""
        self._started = True

    def _missing_dirs(self) -> list[Path]:
        """The directory and those of its parents that do not exist yet, innermost first."""
        missing, path = [], self.path.absolute()
        while not path.exists():
            missing.append(path)
            path = path.parent
        return missing

    def _abandon(self, made: list[Path]) -> None:
        """Removes what this claim added (entries it did not find), then the directories it made."""
        for entry in self.path.iterdir() if self.path.is_dir() else ():
            if entry.name not in self._found:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        for directory in made:
            with contextlib.suppress(OSError):  # not empty: someone else wrote there meanwhile
                directory.rmdir()

    def remove_partial_writes(self) -> list[Path]:
        """Deletes what an interrupted save left behind: the checkpoint's and the buffer dump's
        temporaries and the video being written, each by its name. Returns what it removed."""
        removed = []
        for path in [*partial_writes(self.checkpoint), self.path / "videos" / PARTIAL_VIDEO_NAME]:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
            removed.append(path)
        return removed

    def truncate_logs(self, frames: int) -> None:
        """Drops every CSV log row after ``frames`` samples: a resumed run redoes those
        iterations, so each sample count appears once."""
        for path in (self.path / "logs" / "scalars").rglob("*.csv"):
            lines = path.read_text().splitlines(keepends=True)
            kept = [line for line in lines if line.strip() and float(line.split(",", 1)[0]) <= frames]
            if len(kept) != len(lines):
                path.write_text("".join(kept))
