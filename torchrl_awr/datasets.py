"""Datasets of whole trajectories for offline AWR, in a TorchRL-native format.

    python -m torchrl_awr.datasets make --from random --task hopper --episodes 100 --out data/hopper-random
    python -m torchrl_awr.datasets make --from policy outputs/hopper/<run> --episodes 100 --out data/hopper-expert
    python -m torchrl_awr.datasets make --from policy outputs/hopper/<run> --stochastic --episodes 100 --out ...
    python -m torchrl_awr.datasets make --from buffer outputs/hopper/<run> --out data/hopper-replay

A dataset is a directory holding a memory-mapped TensorDict (``TensorDict.load_memmap``) of
transitions ``[N]`` in time order, episode after episode — ``observation``, ``action``,
``("next", observation / reward / done / terminated / truncated)`` and ``episode`` (its index) —
and ``dataset.json``: the env id, how the data was made, and the episodes' returns. An episode
ends where ``("next", "done")`` is set: ``terminated`` (a failure: no value after it) or
``truncated`` (a time limit, or data that stops: its last state's value is bootstrapped).

Episodes from a policy or from random actions are whole, run on ``--envs`` copies of the task
seeded with ``--seed``; one still running when the last one needed ends is dropped. A run's
replay buffer gives its environments' stored trajectories: each may start mid-episode, and each
ends truncated where the buffer stops.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import torch
from omegaconf import DictConfig
from tensordict import TensorDict, TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_awr.builders import compose_config, env_maker, make_trainer
from torchrl_awr.checkpoint import load_checkpoint
from torchrl_awr.envs import max_episode_steps
from torchrl_awr.runs import BAD_INPUT, CommandParser, checkpoint_path, exit_bad_input, load_run, run_config

DATA_FILE = "data"
META_FILE = "dataset.json"
NEXT_KEYS = ("observation", "reward", "done", "terminated", "truncated")


class DatasetError(ValueError):
    """A dataset that cannot be trained on: the message names the problem and the path."""


# ------------------------------------------------------------------ making
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


def dataset_fields(data: TensorDictBase) -> TensorDict:
    """The dataset's keys of collected transitions; ``truncated`` is a ``done`` that is not
    ``terminated`` (a time limit, or a cut where the data stops)."""
    done = data.get(("next", "done")).bool()
    terminated = data.get(("next", "terminated")).bool()
    return TensorDict(
        {
            "observation": data.get("observation").float(),
            "action": data.get("action").float(),
            "next": {
                "observation": data.get(("next", "observation")).float(),
                "reward": data.get(("next", "reward")).float(),
                "done": done,
                "terminated": terminated,
                "truncated": done & ~terminated,
            },
        },
        batch_size=data.shape,
    )


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


def episode_indices(done: torch.Tensor) -> torch.Tensor:
    """Each transition's episode index, from the ``done`` flags of transitions in episode order."""
    done = done.reshape(-1).long()
    return done.cumsum(0) - done


def write_dataset(data: TensorDict, out: str | Path, cfg: DictConfig, source: dict) -> dict:
    """Writes ``data`` and its ``dataset.json`` into the new directory ``out``; returns the meta."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} exists and is not empty; a dataset goes into a new directory.")
    check_transitions(data, out)
    returns = episode_returns(data)
    meta = {
        "env_id": cfg.env.name,
        "env_kwargs": dict(cfg.env.kwargs),
        "task": cfg.task_name,
        "transitions": data.shape[0],
        "episodes": len(returns),
        "return_mean": returns.mean().item(),
        "return_std": returns.std(unbiased=False).item(),
        "source": source,
    }
    out.mkdir(parents=True, exist_ok=True)
    data.memmap(out / DATA_FILE)
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def episode_returns(data: TensorDictBase) -> torch.Tensor:
    """The return of each episode (``episode`` index order)."""
    episode = data.get("episode")
    reward = data.get(("next", "reward")).reshape(-1).double()
    return torch.zeros(int(episode.max()) + 1, dtype=torch.float64).index_add_(0, episode, reward)


# ------------------------------------------------------------------ reading
def load_dataset(path: str | Path, *, observation_dim: int | None = None, action_dim: int | None = None):
    """A dataset directory's transitions (memory-mapped) and its meta, checked: every key
    present, every value finite, episodes that end, and (if given) the task's shapes."""
    path = Path(path)
    if not (path / META_FILE).is_file() or not (path / DATA_FILE).is_dir():
        raise DatasetError(
            f"No dataset at {path}: it needs {META_FILE} and {DATA_FILE}/ (python -m torchrl_awr.datasets make)."
        )
    meta = json.loads((path / META_FILE).read_text())
    data = TensorDict.load_memmap(path / DATA_FILE)
    check_transitions(data, path)
    for name, expected, key in (("observation", observation_dim, "observation"), ("action", action_dim, "action")):
        if expected is not None and data.get(key).shape[-1] != expected:
            raise DatasetError(
                f"{path}: its {name}s have {data.get(key).shape[-1]} dimensions; the task's have {expected}."
            )
    return data, meta


def check_transitions(data: TensorDictBase, path: Path) -> None:
    """One clear error for data AWR cannot use: missing keys, NaN/inf, no episode end."""
    keys = ["observation", "action", "episode", *(("next", key) for key in NEXT_KEYS)]
    missing = [key for key in keys if key not in data.keys(True)]
    if missing:
        raise DatasetError(f"{path}: the dataset lacks {missing}.")
    for key in ("observation", "action", ("next", "observation"), ("next", "reward")):
        bad = ~torch.isfinite(data.get(key)).reshape(data.shape[0], -1).all(-1)
        if bad.any():
            raise DatasetError(
                f"{path}: {int(bad.sum())} transitions hold NaN or inf in {key!r} (the first at index "
                f"{int(bad.nonzero()[0])})."
            )
    done = data.get(("next", "done")).reshape(-1)
    if not done.any():
        raise DatasetError(f"{path}: no transition is marked done, so no episode ends; TD(lambda) needs the ends.")
    if not done[-1]:
        raise DatasetError(f"{path}: its last transition is not done: the last episode has no end.")


# ------------------------------------------------------------------ command
def main(argv: list[str] | None = None) -> None:
    logging.getLogger("torchrl").setLevel(logging.WARNING)  # its INFO lines (storage shapes) are not the user's
    parser = CommandParser(prog="python -m torchrl_awr.datasets", description="Make a dataset for offline AWR.")
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("make", help="write a dataset from a policy, random actions or a replay buffer")
    make.add_argument("--from", dest="source", choices=("policy", "random", "buffer"), required=True)
    make.add_argument("run", nargs="?", type=Path, help="the run (policy, buffer): its directory or checkpoint")
    make.add_argument("--task", help="the task preset (random)")
    make.add_argument("--episodes", type=int, default=100, help="whole episodes to keep (policy, random)")
    make.add_argument("--stochastic", action="store_true", help="sample the policy's actions (policy)")
    make.add_argument("--envs", type=int, default=8, help="environment copies stepped together")
    make.add_argument("--seed", type=int, default=0, help="the environments' and the actions' seed")
    make.add_argument("--out", type=Path, required=True, help="a new directory for the dataset")
    args = parser.parse_args(argv)
    try:
        if args.source != "buffer" and (args.episodes < 1 or args.envs < 1):
            raise ValueError(f"--episodes and --envs must be >= 1, got {args.episodes} and {args.envs}.")
        if args.source == "random":
            if not args.task:
                raise ValueError("--from random needs --task (a preset, e.g. hopper).")
            made = from_random(args.task, args.episodes, envs=args.envs, seed=args.seed)
        elif args.run is None:
            raise ValueError(f"--from {args.source} needs a run: its directory or checkpoint.")
        elif args.source == "policy":
            made = from_policy(args.run, args.episodes, stochastic=args.stochastic, envs=args.envs, seed=args.seed)
        else:
            made = from_buffer(args.run)
        meta = write_dataset(made[1], args.out, made[0], made[2])
    except BAD_INPUT as err:
        exit_bad_input(err)
    print(
        f"{args.out}: {meta['episodes']} episodes, {meta['transitions']} transitions of {meta['env_id']}, "
        f"return {meta['return_mean']:.1f} ± {meta['return_std']:.1f}"
    )


if __name__ == "__main__":
    main()
