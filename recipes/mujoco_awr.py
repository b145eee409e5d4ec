"""Advantage-Weighted Regression on MuJoCo (gymnasium v5), with the original's settings.

    python recipes/mujoco_awr.py                                  # HalfCheetah-v5, 1M samples
    python recipes/mujoco_awr.py task=hopper seed=3 collector.total_frames=2_000_000
    python recipes/mujoco_awr.py resume=outputs/hopper/<run>/checkpoint.pt collector.total_frames=2_000_000

A resumed run keeps the settings saved in its ``config.yaml``; the keys given on the command
line replace them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import torch
from hydra import compose
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from torchrl_awr.builders import check_writable, make_trainer, resolve_device, validate_config
from torchrl_awr.checkpoint import CheckpointError, load_checkpoint
from torchrl_awr.plotting import plot_history, plot_run
from torchrl_awr.trainer import AWRTrainer


def run(cfg: DictConfig, run_dir: Path) -> AWRTrainer:
    """Builds every component from ``cfg``, trains, and writes the learning-curve plot."""
    validate_config(cfg)
    device = resolve_device(cfg.device)
    check_writable(run_dir)
    if cfg.resume:
        load_checkpoint(cfg.resume)  # a corrupt checkpoint fails here, before any long work
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)

    trainer = make_trainer(cfg, run_dir, device)
    if cfg.resume:
        trainer.load(cfg.resume, load_buffer=cfg.resume_buffer)
    try:
        trainer.train()
    finally:
        trainer.collector.shutdown()
    if plot_run(run_dir) is None:
        plot_history(trainer.history, run_dir / "learning_curve.png", title=run_dir.name)
    return trainer


def run_dir_of(cfg: DictConfig) -> Path:
    """A resumed run continues in its checkpoint's directory; a new one in ``output_dir``."""
    if cfg.resume:
        return Path(cfg.resume).resolve().parent
    return Path(cfg.output_dir)


def saved_task(saved: DictConfig) -> str:
    """The task preset a saved config was made with (``task.name`` in configs written before
    the presets listed only their departures)."""
    return OmegaConf.select(saved, "task_name") or OmegaConf.select(saved, "task.name")


def resume_config(cfg: DictConfig) -> DictConfig:
    """The resumed run's saved config, over its own task's preset, with the keys set on this
    command line taken from ``cfg``."""
    path = Path(cfg.resume).resolve().parent / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"resume: no config.yaml beside {cfg.resume}; it holds the run's settings.")
    saved = OmegaConf.load(path)
    overrides = OverridesParser.create().parse_overrides(HydraConfig.get().overrides.task)
    task = saved_task(saved)
    if any(override.key_or_group == "task" for override in overrides) and cfg.task_name != task:
        raise ValueError(f"resume: the checkpoint's run is task={task}; this command says task={cfg.task_name}.")
    resumed = compose("config", overrides=[f"task={task}"])
    OmegaConf.set_struct(resumed, False)  # keeps the keys of configs saved by older versions
    resumed = OmegaConf.merge(resumed, saved)
    for override in overrides:
        key = override.key_or_group
        if key != "task":
            OmegaConf.update(resumed, key, OmegaConf.select(cfg, key), merge=False)
    OmegaConf.set_struct(resumed, True)
    return resumed


@hydra.main(config_path="config", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        run(resume_config(cfg) if cfg.resume else cfg, run_dir_of(cfg))
    except (ValueError, KeyError, ImportError, PermissionError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
