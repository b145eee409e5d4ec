"""``torchrl-awr export RUN``: a trained run's deterministic policy as one standalone file.

    torchrl-awr export outputs/hopper/<run>                  # <run>/policy.onnx
    torchrl-awr export outputs/hopper/<run> --format pt2     # <run>/policy.pt2
    torchrl-awr export <run>/checkpoint.pt --out hopper.onnx

What the file holds and how to load it: :mod:`torchrl_awr.recipe.export`.
"""

from __future__ import annotations

from pathlib import Path

from torchrl_awr.commands.errors import BAD_INPUT, CommandParser, exit_bad_input
from torchrl_awr.recipe.export import FORMATS, check_output, export_policy
from torchrl_awr.recipe.trained import load_run


def main(argv: list[str] | None = None, prog: str = "torchrl-awr export") -> None:
    parser = CommandParser(
        prog=prog,
        description="Export a trained run's deterministic policy (observation -> action) as ONNX or torch.export.",
    )
    parser.add_argument("run", type=Path, help="the run directory, or its checkpoint file")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (default) or pt2 (torch.export)")
    parser.add_argument("--out", type=Path, default=None, help="output file (default: <run dir>/policy.<format>)")
    args = parser.parse_args(argv)
    try:
        if args.out is not None:
            check_output(args.out)  # before any work
        run = load_run(args.run)
        out = args.out
        if out is None:
            out = run.checkpoint.parent / f"policy.{args.format}"
            check_output(out)
        metadata = export_policy(run, out, args.format)
    except BAD_INPUT as err:
        exit_bad_input(err)
    print(f"wrote {out} and {out}.json: the {metadata['env_id']} policy at {run.trained}")
