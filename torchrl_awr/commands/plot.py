"""``torchrl-awr plot RUN``: a run's learning curves, from its CSV logs, into ``RUN/learning_curve.png``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torchrl_awr.commands.errors import CommandParser, exit_bad_input
from torchrl_awr.plotting import plot_run


def main(argv: Sequence[str] | None = None, prog: str = "torchrl-awr plot") -> None:
    parser = CommandParser(prog=prog, description=__doc__)
    parser.add_argument("run_dir", type=Path, help="a run directory written by torchrl-awr train")
    args = parser.parse_args(argv)
    if not args.run_dir.is_dir():
        exit_bad_input(f"{args.run_dir} is not a directory; give a run directory.")
    path = plot_run(args.run_dir)
    if path is None:
        exit_bad_input(f"No return logs under {args.run_dir} (the plot reads the CSV logs of logger.backend=csv).")
    print(path)
