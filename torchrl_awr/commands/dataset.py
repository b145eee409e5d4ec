"""``torchrl-awr dataset make``: a dataset for offline AWR.

    torchrl-awr dataset make --from random --task hopper --episodes 100 --out data/hopper-random
    torchrl-awr dataset make --from policy outputs/hopper/<run> --episodes 100 --out data/hopper-expert
    torchrl-awr dataset make --from policy outputs/hopper/<run> --stochastic --episodes 100 --out ...
    torchrl-awr dataset make --from buffer outputs/hopper/<run> --out data/hopper-replay
    torchrl-awr dataset make --from random --task hopper --minari awr/hopper/random-v0  # a Minari dataset

``--minari ID`` (also, or instead of, ``--out``) writes the episodes into the local Minari store
(``MINARI_DATASETS_PATH``, by default ``~/.minari/datasets``; the ``offline`` extra), from where
training reads them (``dataset=ID``) through TorchRL's ``MinariExperienceReplay``. How each
source's episodes are made: :mod:`torchrl_awr.recipe.dataset_makers`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torchrl_awr.commands.errors import BAD_INPUT, CommandParser, exit_bad_input
from torchrl_awr.offline_data import check_new_directory, check_new_minari_id, data_summary, write_dataset, write_minari
from torchrl_awr.recipe.dataset_makers import dataset_environment, from_buffer, from_policy, from_random


def main(argv: list[str] | None = None, prog: str = "torchrl-awr dataset") -> None:
    logging.getLogger("torchrl").setLevel(logging.WARNING)  # its INFO lines (storage shapes) are not the user's
    parser = CommandParser(prog=prog, description="Make a dataset for offline AWR.")
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
            write_dataset(data, args.out, **dataset_environment(cfg), source=source)
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
