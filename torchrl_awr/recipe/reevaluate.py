"""Re-evaluates a trained run's policy with the run's own settings (task, env kwargs, model):
``torchrl-awr evaluate`` and ``benchmarks/learning.py evaluate``.

The episodes run as the run's evaluations do (its ``eval.num_envs`` environments stepped
together, the first episode of each counted) from a fresh env seed: by default the run's
re-evaluation seed (:data:`~torchrl_awr.recipe.factories.SEED_OFFSETS`), which neither its
collector nor its evaluations used. The same seed gives the same numbers, for the stochastic
policy as well. ``video`` also records one deterministic episode from that seed, with the run's
``eval.video_*`` settings (the ``video`` extra).
"""

from __future__ import annotations

import torch
from torchrl.envs.utils import ExplorationType

from torchrl_awr.envs import max_episode_steps
from torchrl_awr.evaluation import Evaluator
from torchrl_awr.recipe.factories import env_maker, env_seed, make_video
from torchrl_awr.recipe.trained import TrainedRun
from torchrl_awr.video import check_video_packages


def evaluate_run(
    run: TrainedRun,
    *,
    episodes: int = 32,
    stochastic: bool = False,
    seed: int | None = None,
    video: bool = False,
    num_envs: int | None = None,
) -> dict:
    """``episodes`` episodes of the run's deterministic (or ``stochastic``) policy on ``num_envs``
    environments (default: the run's ``eval.num_envs``): the returns' mean and sd, the mean
    episode length and what was evaluated. The torch RNG that samples the stochastic actions is
    seeded with ``seed`` and restored afterwards. ``video`` also records a deterministic episode
    into the run's ``videos/<samples>_evaluate.mp4`` (``"video"``: its path)."""
    seed = env_seed(run.cfg, "reevaluation") if seed is None else seed
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}.")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}.")
    recorder = None
    if video:  # before the episodes, so a machine that cannot render says so at once
        check_video_packages()
        recorder = make_video(run.cfg, run.actor, run.checkpoint.parent / "videos", seed)
    num_envs = run.cfg.eval.num_envs if num_envs is None else num_envs
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}.")
    env = env_maker(run.cfg)(num_envs=min(num_envs, episodes), seed=seed)
    try:
        evaluator = Evaluator(
            env,
            run.actor,
            num_episodes=episodes,
            max_episode_steps=max_episode_steps(run.cfg.env.name),
            exploration_type=ExplorationType.RANDOM if stochastic else ExplorationType.DETERMINISTIC,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            metrics = evaluator()
        video_path = recorder.save(recorder.record(), f"{run.frames}_evaluate") if recorder is not None else None
    finally:
        env.close()
        if recorder is not None:
            recorder.close()
    result = {
        "return_mean": metrics["eval/return_mean"],
        "return_std": metrics["eval/return_std"],
        "episode_length_mean": metrics["eval/episode_length_mean"],
        "time_limit_fraction": metrics["eval/time_limit_fraction"],
        "episodes": episodes,
        "stochastic": stochastic,
        "seed": seed,
        "env_id": run.cfg.env.name,
        "checkpoint": str(run.checkpoint),
        "frames": run.frames,
        "trained": run.trained,
    }
    if video_path is not None:
        result["video"] = str(video_path)
    return result


def summary(result: dict) -> str:
    """One readable line of :func:`evaluate_run`'s result."""
    policy = "stochastic" if result["stochastic"] else "deterministic"
    line = (
        f"{result['env_id']} at {result['trained']}, {result['episodes']} {policy} episodes "
        f"(seed {result['seed']}): return {result['return_mean']:.1f} ± {result['return_std']:.1f}, "
        f"episode length {result['episode_length_mean']:.1f}"
    )
    return f"{line}\nvideo {result['video']}" if "video" in result else line
