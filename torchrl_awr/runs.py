"""A trained run read back from its directory: its saved config and its trained actor.

The commands that use a run after training (``python -m torchrl_awr.evaluate``, ``python -m
torchrl_awr.export``) build the models the way the recipe did and load them as a resume does,
so a checkpoint is read the same way whoever reads it. Their bad input (a path without a
checkpoint, a checkpoint without its ``config.yaml``, a bad argument) ends in one ``error:``
line and exit code 2, as the recipe's does.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torchrl.data import TensorSpec
from torchrl.modules import ProbabilisticActor

from torchrl_awr.builders import compose_config, env_maker, make_loss, make_models
from torchrl_awr.checkpoint import CheckpointError, load_checkpoint

CHECKPOINT_NAME = "checkpoint.pt"
BAD_INPUT_EXIT = 2
# What bad input raises, from a path without a checkpoint to a missing optional package.
BAD_INPUT = (CheckpointError, ValueError, ImportError, OSError)


@dataclass
class TrainedRun:
    """A run's trained actor (on the CPU, in eval mode) and what it was trained on."""

    checkpoint: Path
    cfg: DictConfig
    actor: ProbabilisticActor
    observation_dim: int
    action_spec: TensorSpec  # of one environment (batch dimension 1)
    frames: int  # samples collected when the checkpoint was saved
    iteration: int  # iterations done then

    @property
    def trained(self) -> str:
        """How far it trained, in its run's unit: samples collected, or offline iterations."""
        if OmegaConf.select(self.cfg, "dataset"):
            return f"{self.iteration} offline iterations"
        return f"{self.frames} samples"


def checkpoint_path(path: str | Path) -> Path:
    """A run directory's checkpoint, or ``path`` itself when it names a file."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def saved_task(saved: DictConfig) -> str | None:
    """The task preset a saved config was made with (``task.name`` in configs written before
    the presets listed only their departures)."""
    return OmegaConf.select(saved, "task_name") or OmegaConf.select(saved, "task.name")


def run_config(checkpoint: Path) -> DictConfig:
    """The ``config.yaml`` beside ``checkpoint`` over its own task's preset, as a resume reads it,
    so keys that configs saved by older versions lack take the preset's values."""
    path = checkpoint.parent / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"No config.yaml beside {checkpoint}; it holds the run's settings.")
    try:
        saved = OmegaConf.load(path)
    except (yaml.YAMLError, OmegaConfBaseException) as err:
        raise CheckpointError(f"{path} is not a readable run config: {err}") from err
    task = saved_task(saved)
    if not task:
        raise CheckpointError(f"{path} names no task (task_name); it is not a torchrl-awr run config.")
    cfg = merge_onto_preset(compose_config(f"task={task}"), saved)
    OmegaConf.set_struct(cfg, True)
    return cfg


def merge_onto_preset(preset: DictConfig, saved: DictConfig) -> DictConfig:
    """A saved run config over its task's preset, not in struct mode: the keys that configs
    saved by older versions lack take the preset's values, and their extra keys are kept."""
    OmegaConf.set_struct(preset, False)
    return OmegaConf.merge(preset, saved)


def load_run(path: str | Path) -> TrainedRun:
    """The trained actor of the run at ``path`` (its directory or its checkpoint file), built
    from the run's config on a probe environment and loaded with the loss's weights as a resume
    loads them; any mismatch is one :class:`CheckpointError`."""
    checkpoint = checkpoint_path(path)
    state = load_checkpoint(checkpoint)  # a missing or corrupt checkpoint is named first
    cfg = run_config(checkpoint)
    env = env_maker(cfg)()
    try:
        actor, critic, _ = make_models(cfg, env, torch.device("cpu"))
        loss = make_loss(cfg, actor, critic, env.action_spec)
        observation_dim = env.observation_spec["observation"].shape[-1]
        action_spec = env.action_spec
    finally:
        env.close()
    try:
        loss.load_state_dict(state["loss_module"])
    except (RuntimeError, KeyError) as err:
        detail = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), str(err))
        raise CheckpointError(
            f"The checkpoint {checkpoint} does not fit the model its config.yaml builds: {detail.splitlines()[0]}"
        ) from err
    counters = state["counters"]
    return TrainedRun(
        checkpoint, cfg, actor.eval(), observation_dim, action_spec, counters["frames"], counters["iteration"]
    )


def exit_bad_input(message: object) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(BAD_INPUT_EXIT)


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``error:`` line and exit code 2, as every other
    bad input of these commands (argparse's own print the usage first)."""

    def error(self, message: str) -> NoReturn:
        exit_bad_input(message)
