"""One run of a Hydra multirun (a sweep): where it runs and how it goes on after a relaunch.

Each run of a sweep lives in the sweep's job directory, named by its overrides
(``hydra.sweep.subdir``), so relaunching the same sweep command finds it again: a finished run is
kept as it is, an interrupted one resumes from its checkpoint (with its replay buffer where it
saved one), and one that stopped before its first checkpoint starts over. A preempted job or a
killed machine loses at most a checkpoint interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from torchrl_awr.checkpoint import buffer_dir, load_checkpoint
from torchrl_awr.recipe.rundir import RunDir

# Keys a sweep sets itself for each run: its directory is the job's.
SWEEP_OWNED_KEYS = ("output_dir", "resume", "resume_buffer")


@dataclass
class SweepRun:
    """What a sweep's job does in its directory: ``cfg`` to train (None when the run there is
    finished), the checkpoint it resumes from, read (None for a run that starts), and what it found."""

    cfg: DictConfig | None
    state: dict | None
    found: str  # "new", "resumed", "started over" or "finished"
    last_return: float | None = None  # a finished run's last evaluation


def sweep_run(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> SweepRun:
    """The run of ``cfg`` in its job directory ``run_dir``. ``overrides`` (the job's) may not set
    the keys the sweep owns."""
    owned = sorted({o.partition("=")[0].lstrip("+~") for o in overrides} & set(SWEEP_OWNED_KEYS))
    if owned:
        raise ValueError(
            f"{', '.join(owned)} cannot be set in a sweep (-m): each run lives in its job directory under "
            "hydra.sweep.dir, and relaunching the same sweep resumes it there."
        )
    directory = RunDir(run_dir)
    cfg = cfg.copy()
    if directory.checkpoint.is_file():
        state = load_checkpoint(directory.checkpoint)
        counters = state["counters"]
        done, total = (
            (counters["iteration"], cfg.offline.iterations)
            if cfg.dataset
            else (counters["frames"], cfg.collector.total_frames)
        )
        last_eval = counters.get("last_eval") or {}
        if done >= total:
            return SweepRun(None, state, "finished", last_eval.get("eval/return_mean"))
        cfg.resume = str(run_dir)
        cfg.resume_buffer = bool(OmegaConf.select(directory.saved_config(), "checkpoint.save_buffer")) and (
            buffer_dir(directory.checkpoint).is_dir()
        )
        return SweepRun(cfg, state, "resumed")
    if directory.config.is_file():
        cfg.resume = str(run_dir)  # no checkpoint yet: the run starts over from its config
        return SweepRun(cfg, None, "started over")
    cfg.output_dir = str(run_dir)
    return SweepRun(cfg, None, "new")
