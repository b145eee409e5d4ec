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

import gc
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from torchrl_awr.commands.errors import (
    BAD_INPUT,
    BAD_INPUT_EXIT,
    COLLECTOR_LOST_EXIT,
    INTERRUPTED_EXIT,
    config_errors_exit_2,
    exit_bad_input,
)
from torchrl_awr.recipe.compose import CONFIG_DIR
from torchrl_awr.recipe.rundir import RunDir
from torchrl_awr.recipe.training import interrupted_state, run_dir_of, train
from torchrl_awr.trainer import CollectorFailure


def entry(cfg: DictConfig) -> None:
    """The command: runs ``cfg`` (or the run it resumes) and exits with the commands' codes."""
    # Library INFO lines (TorchRL's storage shapes, PyOpenGL's missing accelerator) are not the user's.
    for name in ("torchrl", "OpenGL"):
        logging.getLogger(name).setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # until training starts, SIGTERM is Ctrl-C
    run_dir, message = None, None
    try:
        run_dir = run_dir_of(cfg)
        hydra_config = HydraConfig.get()
        trainer = train(cfg, overrides=hydra_config.overrides.task, config_name=hydra_config.job.config_name)
        code = INTERRUPTED_EXIT if trainer.interrupted else 0
    except BAD_INPUT as err:
        code, message = BAD_INPUT_EXIT, f"error: {err}"
    except CollectorFailure as err:
        code, message = COLLECTOR_LOST_EXIT, f"error: {err}{continue_hint(run_dir)}"
    except KeyboardInterrupt:
        code, message = INTERRUPTED_EXIT, f"Stopped at once: {interrupted_state(run_dir)}"
    for stop in (signal.SIGINT, signal.SIGTERM):  # the run is over: one more signal must not cut the exit short
        signal.signal(stop, signal.SIG_IGN)
    # What a failed collector left (TorchRL's weight-sync objects) is finalised now: at interpreter
    # exit their finaliser would start a thread, which deadlocks there.
    gc.collect()
    if message:
        print(message, file=sys.stderr)
    if code:
        sys.exit(code)


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
        hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")(task)
    )


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
