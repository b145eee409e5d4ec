"""``torchrl-awr evaluate RUN``: re-evaluates a trained run's policy with the run's own settings.

    torchrl-awr evaluate outputs/hopper/<run>                      # 32 deterministic episodes
    torchrl-awr evaluate <run>/checkpoint.pt --stochastic --episodes 100 --json
    torchrl-awr evaluate outputs/hopper/<run> --video              # and <run>/videos/<samples>_evaluate.mp4

See :func:`torchrl_awr.recipe.reevaluate.evaluate_run` for the episodes and their seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from torchrl_awr.commands.errors import BAD_INPUT, CommandParser, exit_bad_input
from torchrl_awr.recipe.reevaluate import evaluate_run, summary
from torchrl_awr.recipe.trained import load_run


def main(argv: list[str] | None = None, prog: str = "torchrl-awr evaluate") -> None:
    parser = CommandParser(prog=prog, description="Re-evaluate a trained run's policy with the run's saved config.")
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
    except BAD_INPUT as err:
        exit_bad_input(err)
    print(json.dumps(result) if args.json else summary(result))
