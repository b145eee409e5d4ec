"""Datasets of whole trajectories for offline AWR, in a TorchRL-native format.

    python -m torchrl_awr.datasets make --from random --task hopper --episodes 100 --out data/hopper-random
    python -m torchrl_awr.datasets make --from policy outputs/hopper/<run> --episodes 100 --out data/hopper-expert
    python -m torchrl_awr.datasets make --from policy outputs/hopper/<run> --stochastic --episodes 100 --out ...
    python -m torchrl_awr.datasets make --from buffer outputs/hopper/<run> --out data/hopper-replay
    python -m torchrl_awr.datasets make --from random --task hopper --minari awr/hopper/random-v0  # a Minari dataset

The format is :mod:`torchrl_awr.offline_data`'s.

Episodes from a policy or from random actions are whole, run on ``--envs`` copies of the task
seeded with ``--seed``; one still running when the last one needed ends is dropped. A run's
replay buffer gives its environments' stored trajectories: each may start mid-episode, and each
ends truncated where the buffer stops.

``--minari ID`` (also, or instead of, ``--out``) writes the episodes into the local Minari store
(``MINARI_DATASETS_PATH``, by default ``~/.minari/datasets``; the ``offline`` extra), from where
the recipes read them (``dataset=ID``) through TorchRL's ``MinariExperienceReplay``.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_awr.builders import compose_config, env_maker, make_trainer
from torchrl_awr.checkpoint import load_checkpoint
from torchrl_awr.envs import max_episode_steps
from torchrl_awr.offline_data import (
    check_new_directory,
    check_new_minari_id,
    data_summary,
    dataset_fields,
    episode_indices,
    write_dataset,
    write_minari,
)
from torchrl_awr.runs import BAD_INPUT, CommandParser, checkpoint_path, exit_bad_input, load_run, run_config


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
    load_checkpoint(checkpoint)  # names a missing or corrupt checkpoint first
    cfg = run_config(checkpoint)
    cfg.collector.type = "single"
    cfg.eval.interval = 0
    cfg.eval.video = False
    cfg.logger.backend = "none"
    cfg.progress = False
    with tempfile.TemporaryDirectory() as scratch:
        trainer = make_trainer(cfg, Path(scratch), torch.device("cpu"))
        try:
            trainer.load(checkpoint, load_buffer=True)  # and cuts every env's newest step
            grid = trainer.store.chronological()  # [n_envs, T]
            frames = trainer.frames
        finally:
            trainer.shutdown()
    data = dataset_fields(grid).reshape(-1)  # each env's trajectory after the other's
    data["episode"] = episode_indices(data.get(("next", "done")))
    return cfg, data, {"from": "buffer", "checkpoint": str(checkpoint), "frames": frames}


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    logging.getLogger("torchrl").setLevel(logging.WARNING)  # its INFO lines (storage shapes) are not the user's
    parser = CommandParser(prog=prog or "python -m torchrl_awr.datasets", description="Make a dataset for offline AWR.")
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("make", help="write a dataset from a policy, random actions or a replay buffer")
    make.add_argument("--from", dest="source", choices=("policy", "random", "buffer"), required=True)
    make.add_argument("run", nargs="?", type=Path, help="the run (policy, buffer): its directory or checkpoint")
    make.add_argument("--task", help="the task preset (random)")
    make.add_argument("--episodes", type=int, default=100, help="whole episodes to keep (policy, random)")
    make.add_argument("--stochastic", action="store_true", help="sample the policy's actions (policy)")
    make.add_argument("--envs", type=int, default=8, help="environment copies stepped together")
    make.add_argument("--seed", type=int, default=0, help="the environments' and the actions' seed")
    make.add_argument("--out", type=Path, help="a new directory for the dataset")
    make.add_argument("--minari", metavar="ID", help="also (or instead) write it as this Minari dataset")
    args = parser.parse_args(argv)
    try:
        if args.out is None and args.minari is None:
            raise ValueError("say where the dataset goes: --out DIR, --minari ID, or both.")
        if args.source != "buffer" and (args.episodes < 1 or args.envs < 1):
            raise ValueError(f"--episodes and --envs must be >= 1, got {args.episodes} and {args.envs}.")
        if args.seed < 0:
            raise ValueError(f"--seed must be >= 0 (numpy seeds the environments with it), got {args.seed}.")
        if args.minari is not None:
            check_new_minari_id(args.minari)
        if args.out is not None:
            check_new_directory(args.out)
        if args.source == "random":
            if not args.task:
                raise ValueError("--from random needs --task (a preset, e.g. hopper).")
            cfg, data, source = from_random(args.task, args.episodes, envs=args.envs, seed=args.seed)
        elif args.run is None:
            raise ValueError(f"--from {args.source} needs a run: its directory or checkpoint.")
        elif args.source == "policy":
            cfg, data, source = from_policy(
                args.run, args.episodes, stochastic=args.stochastic, envs=args.envs, seed=args.seed
            )
        else:
            cfg, data, source = from_buffer(args.run)
        written = []
        if args.out is not None:
            write_dataset(data, args.out, cfg, source)
            written.append(str(args.out))
        if args.minari is not None:
            write_minari(data, args.minari, cfg.env.name, source)
            written.append(f"Minari dataset {args.minari}")
    except BAD_INPUT as err:
        exit_bad_input(err)
    size = data_summary(data)
    print(
        f"{' and '.join(written)}: {size['episodes']} episodes, {size['transitions']} transitions of {cfg.env.name}, "
        f"return {size['return_mean']:.1f} ± {size['return_std']:.1f}"
    )


if __name__ == "__main__":
    main()
