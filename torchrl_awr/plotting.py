"""Learning curves from a run's CSV logs (TorchRL's ``CSVLogger`` layout), and the original's
published returns beside them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

EVAL_RETURN = "eval/return_mean"
TRAIN_RETURN = "train/return_mean"


def pyplot():
    """matplotlib's pyplot on the Agg backend (files, no display), imported when a figure is drawn:
    every command imports this module, few draw (matplotlib is a third of a second to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_scalar(run_dir: str | Path, name: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one scalar logged by the CSV logger under ``run_dir``.

    Logs written before resumes cut them back may hold a step twice; the last value wins.
    """
    files = sorted(Path(run_dir).glob(f"**/scalars/{name}.csv"))
    points: dict[float, float] = {}
    for file in files:
        for line in file.read_text().splitlines():
            step, value = line.split(",")
            points[float(step)] = float(value)
    steps = sorted(points)
    return steps, [points[step] for step in steps]


def plot_reference(ax, reference: Mapping[int, tuple[float, float]], label: str) -> None:
    """The original's published returns (samples -> (mean, sd)) as black squares with sd bars."""
    xs = sorted(reference)
    ax.errorbar(
        xs,
        [reference[x][0] for x in xs],
        yerr=[reference[x][1] for x in xs],
        fmt="ks",
        capsize=3,
        label=label,
    )


def plot_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    *,
    title: str = "",
    reference: Mapping[float, tuple[float, float]] | None = None,
    xlabel: str = "environment samples",
) -> Path:
    """Plots return curves (label -> (steps, returns)); ``reference`` maps samples to (mean, sd)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (steps, values) in curves.items():
        ax.plot(steps, values, label=label, marker="o" if len(steps) == 1 else None)  # a lone point shows
    if reference:
        plot_reference(ax, reference, "original AWR (mean ± sd)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_history(
    history: Sequence[Mapping[str, float]], path: str | Path, *, title: str = "", xlabel: str = "environment samples"
) -> Path | None:
    """The learning-curve plot from a trainer's in-memory history (for a run whose logger keeps
    none to read back): against samples (``frames``), or iterations for an offline run's."""
    step = "frames" if any("frames" in row for row in history) else "iteration"
    curves = {}
    for label, name in (("eval (deterministic)", EVAL_RETURN), ("train (stochastic)", TRAIN_RETURN)):
        points = [(row[step], row[name]) for row in history if name in row]
        if points:
            curves[label] = ([p[0] for p in points], [p[1] for p in points])
    return plot_curves(curves, path, title=title, xlabel=xlabel) if curves else None
