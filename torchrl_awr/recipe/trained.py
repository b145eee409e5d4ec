"""A trained run read back from its directory: its saved config and its trained actor, for the
commands that use a run after training (evaluate, export, a dataset from its policy). The models
are built the way the recipe built them and loaded as a resume loads them, so a checkpoint is
read the same way whoever reads it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torchrl.data import TensorSpec
from torchrl.modules import ProbabilisticActor

from torchrl_awr.checkpoint import fitting, load_checkpoint
from torchrl_awr.recipe.factories import make_loss, make_models, probe_env
from torchrl_awr.recipe.rundir import RunDir, checkpoint_path


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


def load_run(path: str | Path) -> TrainedRun:
    """The trained actor of the run at ``path`` (its directory or its checkpoint file), built
    from the run's config on a probe environment and loaded with the loss's weights as a resume
    loads them; any mismatch is one :class:`~torchrl_awr.checkpoint.CheckpointError`."""
    checkpoint = checkpoint_path(path)
    state = load_checkpoint(checkpoint)  # a missing or corrupt checkpoint is named first
    cfg = RunDir(checkpoint.parent).saved_config()
    with probe_env(cfg) as env:
        actor, critic, _ = make_models(cfg, env, torch.device("cpu"))
        loss = make_loss(cfg, actor, critic, env.action_spec)
        observation_dim = env.observation_spec["observation"].shape[-1]
        action_spec = env.action_spec
    with fitting(checkpoint):
        loss.load_state_dict(state["loss_module"])
    counters = state["counters"]
    return TrainedRun(
        checkpoint, cfg, actor.eval(), observation_dim, action_spec, counters["frames"], counters["iteration"]
    )
