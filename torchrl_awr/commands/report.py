"""``torchrl-awr report RUNS...``: any set of runs as the results table and figure.

    torchrl-awr report multirun/hopper-seeds                      # a sweep directory
    torchrl-awr report outputs/hopper/* outputs/walker2d/* --out reports/today
    torchrl-awr report sweeps/fresh --budgets 1000000 2000000 --csv table.csv --figure curves.png

The Markdown table goes to stdout (and ``<out>/report.md``); ``--csv`` and ``--figure`` (or
``--out``, which writes ``report.md``, ``report.csv`` and ``report.png``) write the rest. What is
counted: :mod:`torchrl_awr.recipe.report`.
"""

from __future__ import annotations

from pathlib import Path

from torchrl_awr.commands.errors import BAD_INPUT, CommandParser, exit_bad_input
from torchrl_awr.recipe.report import figure, find_runs, markdown, results, write_csv


def main(argv: list[str] | None = None, prog: str = "torchrl-awr report") -> None:
    parser = CommandParser(prog=prog, description="Results table and figure of any set of runs.")
    parser.add_argument("runs", nargs="+", type=Path, help="run directories and directories holding runs (sweeps)")
    parser.add_argument("--budgets", type=int, nargs="+", help="sample counts (default: 250k...10M, those reached)")
    parser.add_argument("--out", type=Path, help="a directory for report.md, report.csv and report.png")
    parser.add_argument("--csv", type=Path, help="write the table as CSV here")
    parser.add_argument("--figure", type=Path, help="write the learning-curve figure here (PNG)")
    parser.add_argument("--reps", type=int, default=20_000, help="bootstrap resamples (default 20000)")
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (default 0)")
    args = parser.parse_args(argv)
    try:
        if args.reps < 100 or any(b <= 0 for b in args.budgets or ()):
            raise ValueError("--reps must be >= 100 and --budgets positive sample counts.")
        runs = find_runs(args.runs)
        if not runs:
            raise ValueError(f"no run with evaluation logs (CSV) at or under {', '.join(map(str, args.runs))}.")
        rows = results(runs, tuple(args.budgets or ()), reps=args.reps, seed=args.seed)
        table = markdown(rows)
        csv_path, figure_path = args.csv, args.figure
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "report.md").write_text(table + "\n")
            csv_path, figure_path = csv_path or args.out / "report.csv", figure_path or args.out / "report.png"
        if csv_path is not None:
            write_csv(rows, csv_path)
        if figure_path is not None:
            figure(runs, figure_path, reps=min(args.reps, 2000))
    except BAD_INPUT as err:
        exit_bad_input(err)
    print(table)
    written = [str(p) for p in (csv_path, figure_path) if p is not None]
    print(f"\n{len(runs)} runs" + (f"; wrote {', '.join(written)}" if written else ""))
