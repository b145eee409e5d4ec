"""``torchrl-awr train`` and ``torchrl-awr train-offline`` (``recipes/mujoco_awr.py`` and
``recipes/offline_awr.py`` in a checkout): Hydra's command line over the package's configs.

    torchrl-awr train                                             # HalfCheetah-v5, 1M samples
    torchrl-awr train task=hopper seed=3 collector.total_frames=2_000_000
    torchrl-awr train resume=outputs/hopper/<run> collector.total_frames=2_000_000
    torchrl-awr train task=hopper init_from=outputs/hopper-offline/<run> init_dataset=true
    torchrl-awr train-offline task=hopper dataset=data/hopper-medium

What a run does: :mod:`torchrl_awr.recipe.training`. Exit codes (:mod:`torchrl_awr.commands.errors`):
0 when the run finishes, 130 when Ctrl-C or SIGTERM stopped it (after saving a checkpoint), 2 for
bad input, 3 when the collector was lost (a worker died or hung: the message names the checkpoint
to resume from), 1 for anything else.
"""

from __future__ import annotations

import functools
import gc
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from torchrl_awr.commands.errors import (
    BAD_INPUT,
    BAD_INPUT_EXIT,
    COLLECTOR_LOST_EXIT,
    INTERRUPTED_EXIT,
    config_errors_exit_2,
    exit_bad_input,
)
from torchrl_awr.commands.sweeps import sweep_job
from torchrl_awr.recipe.compose import CONFIG_DIR
from torchrl_awr.recipe.rundir import RunDir
from torchrl_awr.recipe.training import interrupted_state, run_dir_of, train
from torchrl_awr.trainer import AWRTrainer, CollectorFailure


def entry(cfg: DictConfig) -> float | None:
    """The command: runs ``cfg`` (or the run it resumes) and exits with the commands' codes; in a
    sweep (``-m``), one of its runs (:func:`torchrl_awr.commands.sweeps.sweep_job`)."""
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return sweep_job(cfg)
    code, message, _ = run_command(cfg)
    if message:
        print(message, file=sys.stderr)
    if code:
        sys.exit(code)
    return None


def run_command(
    cfg: DictConfig, run_dir: Path | None = None, *, last: bool = True, **train_kwargs
) -> tuple[int, str | None, AWRTrainer | None]:
    """Trains ``cfg`` (in ``run_dir``, the run's directory when the caller knows it) as the
    command does: ``(exit code, the message for it, the trainer)``. An error of the user's input,
    a lost collector and Ctrl-C become their codes; anything else (a bug) is raised. After the
    ``last`` run of a process, Ctrl-C and SIGTERM are ignored (the exit must not be cut short);
    otherwise (a sweep's run) they are what they were."""
    # Library INFO lines (TorchRL's storage shapes, PyOpenGL's missing accelerator) are not the user's.
    for name in ("torchrl", "OpenGL"):
        logging.getLogger(name).setLevel(logging.WARNING)
    previous = {stop: signal.getsignal(stop) for stop in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # until training starts, SIGTERM is Ctrl-C
    hydra_config = HydraConfig.get()
    code, message, trainer = 0, None, None
    try:
        run_dir = run_dir or run_dir_of(cfg)
        overrides = train_kwargs.pop("overrides", hydra_config.overrides.task)
        trainer = train(cfg, overrides=overrides, config_name=hydra_config.job.config_name, **train_kwargs)
        code = INTERRUPTED_EXIT if trainer.interrupted else 0
    except BAD_INPUT as err:
        code, message = BAD_INPUT_EXIT, f"error: {err}"
    except CollectorFailure as err:
        code, message = COLLECTOR_LOST_EXIT, f"error: {err}{continue_hint(run_dir)}"
    except KeyboardInterrupt:
        code, message = INTERRUPTED_EXIT, f"Stopped at once: {interrupted_state(run_dir)}"
    finally:
        for stop, handler in previous.items():  # the run is over: one more signal must not cut the exit short
            signal.signal(stop, signal.SIG_IGN if last else handler)
        # What a failed collector left (TorchRL's weight-sync objects) is finalised now: at interpreter
        # exit their finaliser would start a thread, which deadlocks there.
        gc.collect()
    return code, message, trainer


def continue_hint(run_dir: Path | None) -> str:
    """How to go on after a lost collector: from the run's checkpoint, if it has one."""
    if run_dir is None or not RunDir(run_dir).checkpoint.is_file():
        return ""
    return f" Continue with resume={run_dir}."


def hydra_main(config_name: str, task: Callable[[DictConfig], None]) -> Callable[[], None]:
    """``task`` as a Hydra command over the package's ``config_name`` config (``config`` or
    ``offline``): Hydra's command line (overrides, ``-m``, ``--help``) and config errors as one
    ``error:`` line, exit 2."""
    return config_errors_exit_2(
        sweep_stops_at_once(hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")(task))
    )


def sweep_stops_at_once(main: Callable[[], None]) -> Callable[[], None]:
    """A sweep stopped by Ctrl-C (a single run handles its own) ends with one line and exit 130."""

    @functools.wraps(main)
    def wrapped() -> None:
        try:
            main()
        except KeyboardInterrupt:
            print("Sweep stopped: relaunch the same command to resume its runs.", file=sys.stderr)
            sys.exit(INTERRUPTED_EXIT)

    return wrapped


def offline_entry(program: str) -> Callable[[DictConfig], None]:
    """:func:`entry` for the offline config, which refuses a new run without ``dataset=``
    (``program`` names the command in that message)."""

    def offline(cfg: DictConfig) -> None:
        if not cfg.dataset and not cfg.resume:
            exit_bad_input(f"{program} learns from a dataset: set dataset=<directory or Minari id>.")
        entry(cfg)

    return offline


main = hydra_main("config", entry)
"""``torchrl-awr train`` and ``recipes/mujoco_awr.py``: the command line is Hydra's (``sys.argv``)."""

offline_main = hydra_main("offline", offline_entry("torchrl-awr train-offline"))
"""``torchrl-awr train-offline``: :data:`main` with ``config/offline.yaml``."""
