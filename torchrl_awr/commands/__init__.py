"""``torchrl-awr``: the package's one command (installed with it; ``python -m torchrl_awr`` too).

    torchrl-awr train task=hopper seed=3                 # Hydra overrides, -m for a multirun, --help
    torchrl-awr train-offline task=hopper dataset=data/hopper-medium
    torchrl-awr evaluate outputs/hopper/<run> --json
    torchrl-awr export outputs/hopper/<run>
    torchrl-awr dataset make --from policy outputs/hopper/<run> --out data/hopper-medium
    torchrl-awr plot outputs/hopper/<run>
    torchrl-awr report multirun/<sweep>

Each subcommand is a module of this package (``train``: :mod:`torchrl_awr.commands.train`, the
same as ``recipes/mujoco_awr.py``), on one exit contract (:mod:`torchrl_awr.commands.errors`): 0
done, 2 bad input (one ``error:`` line), 3 the collector lost (training), 130 stopped. Only the
chosen subcommand's module is imported.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

PROG = "torchrl-awr"

# subcommand -> (module, its main, what it does)
COMMANDS = {
    "train": (
        "torchrl_awr.commands.train",
        "main",
        "train a policy: Hydra overrides (task=hopper seed=3 ...), -m, --help",
    ),
    "train-offline": (
        "torchrl_awr.commands.train",
        "offline_main",
        "train from a dataset (dataset=<directory or Minari id>), config offline.yaml",
    ),
    "evaluate": (
        "torchrl_awr.commands.evaluate",
        "main",
        "re-evaluate a run's policy (RUN [--episodes N] [--json] ...)",
    ),
    "export": ("torchrl_awr.commands.export", "main", "export a run's policy as ONNX or torch.export (RUN [--format])"),
    "dataset": ("torchrl_awr.commands.dataset", "main", "make a dataset for offline training (make --from ...)"),
    "plot": ("torchrl_awr.commands.plot", "main", "plot a run's learning curves (RUN)"),
    "report": ("torchrl_awr.commands.report", "main", "results table and figure of any set of runs (RUNS...)"),
}
HYDRA_COMMANDS = ("train", "train-offline")


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        f"usage: {PROG} <command> [arguments]",
        "",
        "Advantage-Weighted Regression for TorchRL. Commands:",
        *(f"  {name:<{width}}  {about}" for name, (_, _, about) in COMMANDS.items()),
        "",
        f"{PROG} <command> --help lists what a command takes.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the subcommand ``argv[0]`` (default: ``sys.argv[1:]``) with the rest of ``argv``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return
    if argv and argv[0] == "--version":
        from torchrl_awr import __version__

        print(f"{PROG} {__version__}")
        return
    from torchrl_awr.commands.errors import exit_bad_input  # loads the recipe: not for --help

    if not argv:
        exit_bad_input(f"give a command: {', '.join(COMMANDS)} ({PROG} --help says what each does).")
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        exit_bad_input(f"unknown command {name!r}: choose from {', '.join(COMMANDS)} ({PROG} --help).")
    module, function, _ = COMMANDS[name]
    command = getattr(importlib.import_module(module), function)
    prog = f"{PROG} {name}"
    if name not in HYDRA_COMMANDS:
        command(rest, prog=prog)
        return
    saved = sys.argv  # Hydra reads its command line from sys.argv
    sys.argv = [prog, *rest]
    try:
        command()
    finally:
        sys.argv = saved
