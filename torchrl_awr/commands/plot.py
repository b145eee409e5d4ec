"""``torchrl-awr plot RUN``: a run's learning curves, from its logs (CSV, TensorBoard or MLflow),
into ``RUN/learning_curve.png``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torchrl_awr.commands.errors import BAD_INPUT, CommandParser, exit_bad_input
from torchrl_awr.recipe.run_logs import logged_curves
from torchrl_awr.recipe.rundir import RunDir
from torchrl_awr.recipe.training import plot_learning_curve


def main(argv: Sequence[str] | None = None, prog: str = "torchrl-awr plot") -> None:
    parser = CommandParser(prog=prog, description=__doc__)
    parser.add_argument("run_dir", type=Path, help="a run directory written by torchrl-awr train")
    args = parser.parse_args(argv)
    try:
        cfg = RunDir(args.run_dir).saved_config()
        if not logged_curves(cfg, args.run_dir):
            raise ValueError(f"no return was logged under {args.run_dir} yet.")
        path = plot_learning_curve(cfg, args.run_dir)
    except BAD_INPUT as err:
        exit_bad_input(err)
    print(path)
