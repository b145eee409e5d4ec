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
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))

from awr_utils import (  # noqa: E402
    batches_continue,
    check_writable,
    make_collector,
    make_evaluator,
    make_logger,
    make_loss,
    make_models,
    make_optimizers,
    make_replay_buffer,
    make_trainer_config,
    resolve_device,
    validate_config,
)

from torchrl_awr.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from torchrl_awr.envs import make_env  # noqa: E402
from torchrl_awr.plotting import plot_history, plot_run  # noqa: E402
from torchrl_awr.trainer import AWRTrainer  # noqa: E402


def run(cfg: DictConfig, run_dir: Path) -> AWRTrainer:
    """Builds every component from ``cfg``, trains, and writes the learning-curve plot."""
    validate_config(cfg)
    device = resolve_device(cfg.device)
    check_writable(run_dir)
    checkpoint_path = run_dir / "checkpoint.pt"
    if cfg.resume:
        load_checkpoint(cfg.resume)  # a corrupt checkpoint fails here, before any long work
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    OmegaConf.save(cfg, run_dir / "config.yaml")

    spec_env = make_env(cfg.env.name)
    actor, critic, normalizer = make_models(cfg, spec_env, device)
    loss = make_loss(cfg, actor, critic, spec_env.action_spec)
    spec_env.close()
    loss.make_value_estimator(gamma=cfg.loss.gamma, lmbda=cfg.loss.lmbda)
    actor_optimizer, critic_optimizer = make_optimizers(cfg, loss)
    replay_buffer = make_replay_buffer(cfg, run_dir, device)
    collector = make_collector(cfg, actor, device)
    trainer = AWRTrainer(
        collector=collector,
        replay_buffer=replay_buffer,
        loss_module=loss,
        actor_optimizer=actor_optimizer,
        critic_optimizer=critic_optimizer,
        config=make_trainer_config(cfg),
        normalizer=normalizer,
        evaluator=make_evaluator(cfg, actor),
        logger=make_logger(cfg, run_dir),
        checkpoint_path=checkpoint_path,
        save_buffer=cfg.checkpoint.save_buffer,
        device=device,
        seed=cfg.seed,
        contiguous_batches=batches_continue(cfg),
        progress=cfg.progress,
    )
    if cfg.resume:
        trainer.load(cfg.resume, load_buffer=cfg.resume_buffer)
    try:
        trainer.train()
    finally:
        collector.shutdown()
    if plot_run(run_dir) is None:
        plot_history(trainer.history, run_dir / "learning_curve.png", title=run_dir.name)
    return trainer


def run_dir_of(cfg: DictConfig) -> Path:
    """A resumed run continues in its checkpoint's directory; a new one in Hydra's run dir."""
    if cfg.resume:
        return Path(cfg.resume).resolve().parent
    return Path(HydraConfig.get().runtime.output_dir)


def resume_config(cfg: DictConfig) -> DictConfig:
    """The resumed run's saved config, with the keys set on this command line taken from ``cfg``."""
    saved = Path(cfg.resume).resolve().parent / "config.yaml"
    if not saved.is_file():
        return cfg
    resumed = OmegaConf.merge(cfg, OmegaConf.load(saved))
    for override in OverridesParser.create().parse_overrides(HydraConfig.get().overrides.task):
        key = override.key_or_group
        OmegaConf.update(resumed, key, OmegaConf.select(cfg, key), merge=False)
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
