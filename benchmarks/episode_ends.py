"""Why a trained run's evaluation episodes end, and what their return is made of.

    python benchmarks/episode_ends.py runs/fresh/ant/seed20 runs/fresh/ant/seed21 --episodes 32
    python benchmarks/episode_ends.py runs/fresh/ant/seed20 --stochastic --env-kwargs '{"healthy_z_range": [0.2, 100]}'

For each run (its directory or checkpoint), ``--episodes`` episodes of its deterministic policy
(``--stochastic``: the one that collects its data) as ``torchrl-awr evaluate`` runs
them (the run's settings, a fresh env seed), on environments that keep the task's ``info``;
``--env-kwargs`` (JSON) changes the run's ``gym.make`` kwargs, e.g. to ask what the same policy
earns without a termination condition. One row per run: the mean return and length, how
the episodes ended — at the time limit, or terminated with the torso's height below or above
the task's healthy range, or otherwise (an angle or a state out of range) — and the mean
per-episode sum of each reward term the task reports (``reward_*``: forward, ctrl, contact,
survive, ...). On the planar tasks (HalfCheetah, Hopper, Walker2d) it also counts the episodes
that end with the torso on its back (pitch beyond ±π/2, whole turns aside), HalfCheetah's known
way to run without ever terminating. The height is the first observation entry and the pitch
the second, as the v5 locomotion tasks give them when they leave the x (and y) position out of
the observation, their default.
"""

from __future__ import annotations

import argparse
import json

import torch
from torchrl.envs.utils import ExplorationType

from torchrl_awr.envs import make_env, max_episode_steps
from torchrl_awr.evaluation import Evaluator
from torchrl_awr.recipe.compose import env_kwargs
from torchrl_awr.recipe.factories import SEED_OFFSETS
from torchrl_awr.recipe.trained import load_run


def gym_task(env):
    """The first sub-env's unwrapped gymnasium task, for what the TorchRL env does not expose."""
    return env.base_env._envs[0].unwrapped


def healthy_z_range(env) -> tuple[float, float] | None:
    """The task's healthy torso height range (gymnasium's v5 locomotion tasks), or None."""
    return getattr(gym_task(env), "_healthy_z_range", None)


def is_planar(env) -> bool:
    """Whether the task's body moves in a plane, its third joint the torso's pitch (``rooty``)."""
    model = gym_task(env).model
    return model.njnt > 2 and model.joint(2).name == "rooty"


def on_its_back(pitch: torch.Tensor) -> torch.Tensor:
    """Whether a planar torso with this pitch (radians, 0 upright; the joint is unbounded, so
    after a whole turn it is upright again) is upside down."""
    return torch.cos(pitch) < 0


def episode_ends(path: str, episodes: int, stochastic: bool = False, changed_kwargs: dict | None = None) -> dict:
    """The row of :func:`main` for the run at ``path``, as numbers."""
    run = load_run(path)
    kwargs = {**env_kwargs(run.cfg), **(changed_kwargs or {})}
    if kwargs.get("exclude_current_positions_from_observation") is False:
        raise ValueError(f"{path}: its observation starts with the x position, not the torso's height.")
    env = make_env(
        run.cfg.env.name,
        num_envs=episodes,
        seed=run.cfg.seed + SEED_OFFSETS["reevaluation"],
        env_kwargs=kwargs,
        keep_info=True,
    )
    try:
        terms = tuple(sorted(key for key in env.observation_spec.keys() if key.startswith("reward_")))
        limit = max_episode_steps(run.cfg.env.name)
        evaluator = Evaluator(
            env,
            run.actor,
            num_episodes=episodes,
            max_episode_steps=limit,
            exploration_type=ExplorationType.RANDOM if stochastic else ExplorationType.DETERMINISTIC,
            sum_keys=terms,
            final_keys=("observation",),
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(run.cfg.seed + SEED_OFFSETS["reevaluation"])  # the same stochastic actions each time
            result = evaluator.episodes()
        z_range = healthy_z_range(env)
        planar = is_planar(env)
    finally:
        env.close()
    at_limit = result["length"] >= limit
    ended = ~at_limit
    height = result["observation"][:, 0]
    below = ended & (height < z_range[0]) if z_range else torch.zeros_like(ended)
    above = ended & (height > z_range[1]) if z_range else torch.zeros_like(ended)
    return {
        "run": str(path),
        "samples": run.frames,
        "return": result["return"].mean().item(),
        "length": result["length"].float().mean().item(),
        "time limit": int(at_limit.sum()),
        "z below": int(below.sum()),
        "z above": int(above.sum()),
        "other": int((ended & ~below & ~above).sum()),
        **({"on its back": int(on_its_back(result["observation"][:, 1]).sum())} if planar else {}),
        **{term: result[term].mean().item() for term in terms},
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories or checkpoints")
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--stochastic", action="store_true", help="the stochastic policy")
    parser.add_argument("--env-kwargs", type=json.loads, default={}, help="gym.make kwargs to change (JSON)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    if not isinstance(args.env_kwargs, dict):
        parser.error(f"--env-kwargs must be a JSON object, got {args.env_kwargs!r}")
    rows = [episode_ends(path, args.episodes, args.stochastic, args.env_kwargs) for path in args.runs]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    for row in rows:
        cells = (row.get(key, "–") for key in columns)
        print("| " + " | ".join(f"{cell:.1f}" if isinstance(cell, float) else str(cell) for cell in cells) + " |")


if __name__ == "__main__":
    main()
