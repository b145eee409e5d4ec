"""Re-evaluates a trained run's policy with the run's own settings (task, env kwargs, model).

    python -m torchrl_awr.evaluate outputs/hopper/<run>                          # 32 deterministic episodes
    python -m torchrl_awr.evaluate <run>/checkpoint.pt --stochastic --episodes 100 --json
    python -m torchrl_awr.evaluate outputs/hopper/<run> --video   # and <run>/videos/<samples>_evaluate.mp4

The episodes run as the run's evaluations do (its ``eval.num_envs`` environments stepped
together, the first episode of each counted) from a fresh env seed: by default the run's seed
+ 20000, which neither its collector (the seed) nor its evaluations (+ 10000) used, and
``benchmarks/learning.py evaluate`` uses too. The same seed gives the same numbers, for the
stochastic policy as well. ``--video`` also records one deterministic episode from that seed, with
the run's ``eval.video_*`` settings (the ``video`` extra). Exit codes: 0, or 2 for bad input (one
``error:`` line).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torchrl.envs.utils import ExplorationType

from torchrl_awr.builders import env_maker, make_video
from torchrl_awr.envs import max_episode_steps
from torchrl_awr.evaluation import Evaluator
from torchrl_awr.runs import BAD_INPUT, CommandParser, TrainedRun, exit_bad_input, load_run
from torchrl_awr.video import RenderError, check_video_packages

FRESH_SEED_OFFSET = 20_000


def evaluate_run(
    run: TrainedRun, *, episodes: int = 32, stochastic: bool = False, seed: int | None = None, video: bool = False
) -> dict:
    """``episodes`` episodes of the run's deterministic (or ``stochastic``) policy: the returns'
    mean and sd, the mean episode length and what was evaluated. The torch RNG that samples the
    stochastic actions is seeded with ``seed`` and restored afterwards. ``video`` also records a
    deterministic episode into the run's ``videos/<samples>_evaluate.mp4`` (``"video"``: its path)."""
    seed = run.cfg.seed + FRESH_SEED_OFFSET if seed is None else seed
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}.")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}.")
    recorder = None
    if video:  # before the episodes, so a machine that cannot render says so at once
        check_video_packages()
        recorder = make_video(run.cfg, run.actor, run.checkpoint.parent / "videos", seed)
    env = env_maker(run.cfg)(num_envs=min(run.cfg.eval.num_envs, episodes), seed=seed)
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


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = CommandParser(
        prog=prog or "python -m torchrl_awr.evaluate",
        description="Re-evaluate a trained run's policy with the run's saved config.",
    )
    parser.add_argument("run", type=Path, help="the run directory, or its checkpoint file")
    parser.add_argument("--episodes", type=int, default=32, help="episodes to average (default 32)")
    parser.add_argument("--stochastic", action="store_true", help="sample actions (default: the deterministic policy)")
    parser.add_argument("--seed", type=int, default=None, help="env and sampling seed (default: run seed + 20000)")
    parser.add_argument("--video", action="store_true", help="also record a deterministic episode (MP4 in the run)")
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of a line")
    args = parser.parse_args(argv)
    try:
        run = load_run(args.run)
        torch.set_num_threads(run.cfg.threads)
        result = evaluate_run(run, episodes=args.episodes, stochastic=args.stochastic, seed=args.seed, video=args.video)
    except (*BAD_INPUT, RenderError) as err:
        exit_bad_input(err)
    print(json.dumps(result) if args.json else summary(result))


if __name__ == "__main__":
    main()
