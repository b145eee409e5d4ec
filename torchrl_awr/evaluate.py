"""Re-evaluates a trained run's policy with the run's own settings (task, env kwargs, model).

    python -m torchrl_awr.evaluate outputs/hopper/<run>                          # 32 deterministic episodes
    python -m torchrl_awr.evaluate <run>/checkpoint.pt --stochastic --episodes 100 --json

The episodes run as the run's evaluations do (its ``eval.num_envs`` environments stepped
together, the first episode of each counted) from a fresh env seed: by default the run's seed
+ 20000, which neither its collector (the seed) nor its evaluations (+ 10000) used, and
``benchmarks/learning.py evaluate`` uses too. The same seed gives the same numbers, for the
stochastic policy as well. Exit codes: 0, or 2 for bad input (one ``error:`` line).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torchrl.envs.utils import ExplorationType

from torchrl_awr.builders import env_maker
from torchrl_awr.envs import max_episode_steps
from torchrl_awr.evaluation import Evaluator
from torchrl_awr.runs import BAD_INPUT, CommandParser, TrainedRun, exit_bad_input, load_run

FRESH_SEED_OFFSET = 20_000


def evaluate_run(run: TrainedRun, *, episodes: int = 32, stochastic: bool = False, seed: int | None = None) -> dict:
    """``episodes`` episodes of the run's deterministic (or ``stochastic``) policy: the returns'
    mean and sd, the mean episode length and what was evaluated. The torch RNG that samples the
    stochastic actions is seeded with ``seed`` and restored afterwards."""
    seed = run.cfg.seed + FRESH_SEED_OFFSET if seed is None else seed
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}.")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}.")
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
    finally:
        env.close()
    return {
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
    }


def summary(result: dict) -> str:
    """One readable line of :func:`evaluate_run`'s result."""
    policy = "stochastic" if result["stochastic"] else "deterministic"
    return (
        f"{result['env_id']} at {result['frames']} samples, {result['episodes']} {policy} episodes "
        f"(seed {result['seed']}): return {result['return_mean']:.1f} ± {result['return_std']:.1f}, "
        f"episode length {result['episode_length_mean']:.1f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser(
        prog="python -m torchrl_awr.evaluate",
        description="Re-evaluate a trained run's policy with the run's saved config.",
    )
    parser.add_argument("run", type=Path, help="the run directory, or its checkpoint file")
    parser.add_argument("--episodes", type=int, default=32, help="episodes to average (default 32)")
    parser.add_argument("--stochastic", action="store_true", help="sample actions (default: the deterministic policy)")
    parser.add_argument("--seed", type=int, default=None, help="env and sampling seed (default: run seed + 20000)")
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of a line")
    args = parser.parse_args(argv)
    try:
        run = load_run(args.run)
        torch.set_num_threads(run.cfg.threads)
        result = evaluate_run(run, episodes=args.episodes, stochastic=args.stochastic, seed=args.seed)
    except BAD_INPUT as err:
        exit_bad_input(err)
    print(json.dumps(result) if args.json else summary(result))


if __name__ == "__main__":
    main()
