"""Datasets of whole trajectories for offline AWR, from a trained run's policy, from random
actions on a task, or from a run's replay buffer (``torchrl-awr dataset make``); written in the
format of :mod:`torchrl_awr.offline_data`, or as a Minari dataset.

Episodes from a policy or from random actions are whole, run on ``envs`` copies of the task
seeded with ``seed``; one still running when the last one needed ends is dropped. A run's
replay buffer gives its environments' stored trajectories: each may start mid-episode, and each
ends truncated where the buffer stops.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from omegaconf import DictConfig
from tensordict import TensorDict, TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_awr.checkpoint import load_checkpoint
from torchrl_awr.envs import max_episode_steps
from torchrl_awr.offline_data import dataset_fields, episode_indices
from torchrl_awr.recipe.compose import compose_config, env_kwargs
from torchrl_awr.recipe.factories import env_maker, make_trainer
from torchrl_awr.recipe.rundir import RunDir, checkpoint_path
from torchrl_awr.recipe.trained import load_run


def dataset_environment(cfg: DictConfig) -> dict:
    """What a dataset made under ``cfg`` records of its environment (``write_dataset``'s arguments)."""
    return {"env_id": cfg.env.name, "env_kwargs": env_kwargs(cfg), "task": cfg.task_name}


@torch.no_grad()
def rollout_episodes(env, policy, episodes: int, max_steps: int) -> TensorDict:
    """``episodes`` whole episodes of ``policy`` on the batched ``env`` (reset here), as flat
    transitions, copy after copy. ``policy=None`` draws uniform random actions.

    Copy ``i`` gives its first ``quota[i]`` episodes (the quotas share ``episodes`` out), so
    that no episode is kept or dropped for its length, as keeping the first ones to end would.
    """
    n_envs = env.batch_size[0]
    quota = torch.full((n_envs,), episodes // n_envs)
    quota[: episodes % n_envs] += 1
    ended = torch.zeros(n_envs, dtype=torch.long)
    steps, history = env.reset(), []
    for _ in range(int(quota.max()) * max_steps):  # an episode lasts max_steps at the most
        steps = policy(steps) if policy is not None else env.rand_action(steps)
        steps, next_steps = env.step_and_maybe_reset(steps)
        history.append(steps)
        ended += steps.get(("next", "done")).reshape(n_envs).long()
        if (ended >= quota).all():
            break
        steps = next_steps
    trajectories = torch.stack(history, dim=1)  # [n_envs, T]
    kept = []
    for i in range(n_envs):
        ends = trajectories[i].get(("next", "done")).reshape(-1).nonzero().reshape(-1)[: int(quota[i])].tolist()
        starts = [0] + [end + 1 for end in ends[:-1]]
        kept += [trajectories[i, start : end + 1] for start, end in zip(starts, ends)]
    return flatten_episodes(kept)


def flatten_episodes(episodes: list[TensorDictBase]) -> TensorDict:
    """Episodes (``[T_i]`` each) as one ``[N]`` TensorDict of the dataset's keys."""
    parts = []
    for index, episode in enumerate(episodes):
        data = dataset_fields(episode)
        data["episode"] = torch.full((episode.shape[0],), index, dtype=torch.int64)
        parts.append(data)
    return torch.cat(parts)


def from_policy(run_path: str | Path, episodes: int, *, stochastic: bool, envs: int, seed: int) -> tuple:
    """Episodes of a trained run's policy (deterministic unless ``stochastic``)."""
    run = load_run(run_path)
    env = env_maker(run.cfg)(num_envs=envs, seed=seed)
    try:
        mode = ExplorationType.RANDOM if stochastic else ExplorationType.DETERMINISTIC
        with set_exploration_type(mode), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            data = rollout_episodes(env, run.actor, episodes, max_episode_steps(run.cfg.env.name))
    finally:
        env.close()
    source = {
        "from": "policy",
        "checkpoint": str(run.checkpoint),
        "frames": run.frames,
        "policy": "stochastic" if stochastic else "deterministic",
        "seed": seed,
    }
    return run.cfg, data, source


def from_random(task: str, episodes: int, *, envs: int, seed: int) -> tuple:
    """Episodes of uniform random actions on a task preset's environment."""
    cfg = compose_config(f"task={task}")
    env = env_maker(cfg)(num_envs=envs, seed=seed)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            data = rollout_episodes(env, None, episodes, max_episode_steps(cfg.env.name))
    finally:
        env.close()
    return cfg, data, {"from": "random", "seed": seed}


def from_buffer(run_path: str | Path) -> tuple:
    """A run's replay buffer (saved with ``checkpoint.save_buffer=true``): each environment's
    stored trajectory, oldest first, cut (truncated) where the buffer stops."""
    checkpoint = checkpoint_path(run_path)
    state = load_checkpoint(checkpoint)  # names a missing or corrupt checkpoint first
    cfg = RunDir(checkpoint.parent).saved_config()
    cfg.collector.type = "single"
    cfg.eval.interval = 0
    cfg.eval.video = False
    cfg.logger.backend = "none"
    cfg.progress = False
    with tempfile.TemporaryDirectory() as scratch:
        trainer = make_trainer(cfg, Path(scratch), torch.device("cpu"))
        try:
            trainer.load(checkpoint, load_buffer=True, state=state)  # and cuts every env's newest step
            grid = trainer.store.chronological()  # [n_envs, T]
            frames = trainer.frames
        finally:
            trainer.shutdown()
    data = dataset_fields(grid).reshape(-1)  # each env's trajectory after the other's
    data["episode"] = episode_indices(data.get(("next", "done")))
    return cfg, data, {"from": "buffer", "checkpoint": str(checkpoint), "frames": frames}
