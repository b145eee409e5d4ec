"""A set of runs (run directories, sweep directories, any mix) as the results table and figure:
per task and sample budget, the runs' mean evaluation return with its 95 % bootstrap interval
(rliable), the interquartile mean and n, beside the original AWR's published runs where the task
has them (``torchrl-awr report``; the ``stats`` extra).

A run counts at a budget its evaluation curve reaches (interpolated there). Runs are grouped by
their task preset (``task_name`` of their ``config.yaml``) and preset (``preset_name``: a run of
``preset=modern`` is reported as ``<task> (modern)``; a config without one is the faithful
preset's), offline runs apart, whose budgets are iterations; the curves are read from the CSV
logs.
"""

from __future__ import annotations

import csv
import math
import statistics
import warnings
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from torchrl_awr.plotting import EVAL_RETURN, plot_reference, pyplot, read_scalar
from torchrl_awr.recipe.original_awr import ORIGINAL_RUNS, original_points
from torchrl_awr.recipe.rundir import CONFIG_NAME, RunDir

BUDGETS = (250_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000)
STATS_EXTRA = "pip install 'torchrl-awr[stats]'"


@dataclass
class RunCurve:
    """One run's evaluation curve and what it ran."""

    run_dir: Path
    task: str  # its group: the task preset, "<task> (<preset>)" for a preset other than the faithful one,
    # "<task> offline" for an offline run
    steps: list[float]
    returns: list[float]
    original: str | None = None  # the task whose original AWR runs it compares with (None offline)


def find_runs(paths: list[str | Path]) -> list[RunCurve]:
    """The runs at or under ``paths`` (a run directory holds ``config.yaml``) that logged an
    evaluation to CSV, each once, in path order."""
    found: dict[Path, None] = {}
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; give run or sweep directories.")
        candidates = [path] if (path / CONFIG_NAME).is_file() else sorted(p.parent for p in path.rglob(CONFIG_NAME))
        for candidate in candidates:
            found.setdefault(candidate.resolve())
    runs = []
    for run_dir in found:
        steps, returns = read_scalar(run_dir, EVAL_RETURN)
        if not steps:
            continue
        saved = OmegaConf.load(RunDir(run_dir).config)
        task = original = str(OmegaConf.select(saved, "task_name", default=run_dir.name))
        preset = OmegaConf.select(saved, "preset_name", default="faithful")
        if preset != "faithful":
            task += f" ({preset})"
        if OmegaConf.select(saved, "dataset"):
            task, original = f"{task} offline", None
        runs.append(RunCurve(run_dir, task, steps, returns, original))
    return runs


def budgets_of(runs: list[RunCurve], budgets: tuple[int, ...] | None = None) -> list[int]:
    """The budgets to report for one task's runs: ``budgets`` (all of them), or those of
    :data:`BUDGETS` that a run reaches, or else the shortest run's length."""
    if budgets:
        return sorted(budgets)
    reached = [b for b in BUDGETS if any(run.steps[-1] >= b for run in runs)]
    return reached or [int(min(run.steps[-1] for run in runs))]


def interpolate(steps: list[float], values: list[float], at: float) -> float | None:
    """Linear interpolation of a logged curve at ``at`` samples (None beyond its end)."""
    if not steps or at > steps[-1] or at < steps[0]:
        return None
    for (s0, v0), (s1, v1) in zip(zip(steps, values), zip(steps[1:], values[1:])):
        if s0 <= at <= s1:
            return v0 + (v1 - v0) * (at - s0) / (s1 - s0)
    return values[-1]


def task_panels(tasks: list[str], path: Path, draw, ylabel: str, xlabel: str = "samples") -> None:
    """One panel per task (three to a row), drawn by ``draw(ax, task)``, with the shared axes,
    grid and legend; saved as a PNG at ``path``."""
    plt = pyplot()
    columns = min(3, len(tasks))
    rows = math.ceil(len(tasks) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        draw(ax, task)
        ax.set_title(task)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def seeded(seed: int):
    """A ``RandomState`` for rliable's ``random_state``, with numpy's global RNG seeded too:
    rliable's stratified bootstrap draws its resamples from ``np.random`` and ignores the state
    it is given, so without this the same command gives other intervals each time."""
    import numpy as np

    np.random.seed(seed)
    return np.random.RandomState(seed)


def rliable():
    """rliable's ``library`` and ``metrics`` (the ``stats`` extra), with the warning arch gives
    about the RNG argument rliable passes it silenced."""
    try:
        from rliable import library, metrics
    except ImportError as err:
        raise ImportError(f"the report's intervals need rliable: {STATS_EXTRA}") from err

    warnings.filterwarnings("ignore", "random_state is deprecated", FutureWarning)
    return library, metrics


def mean_curve(curves: list[tuple[list[float], list[float]]], grid, reps: int = 2000, seed: int = 0):
    """At each point of ``grid`` (samples): the mean return of the runs whose curves reach it
    (interpolated) with its 95 % percentile-bootstrap CI (rliable), and how many runs that is.
    Returns four arrays: mean, low, high, n (NaN where no run reaches the point)."""
    import numpy as np

    library, metrics = rliable()
    random_state = seeded(seed)
    mean, low, high, count = (np.full(len(grid), np.nan) for _ in range(4))
    for i, at in enumerate(grid):
        values = [v for v in (interpolate(steps, returns, at) for steps, returns in curves) if v is not None]
        count[i] = len(values)
        if not values:
            continue
        scores = np.array(values, dtype=float)[:, None]
        estimate, interval = library.get_interval_estimates(
            {"runs": scores}, metrics.aggregate_mean, reps=reps, random_state=random_state
        )
        mean[i] = float(estimate["runs"])
        low[i], high[i] = interval["runs"][:, 0]
    return mean, low, high, count


def mean_interval(values: list[float], reps: int, random_state) -> tuple[float, float, float]:
    """The mean of ``values`` (one per run) with its 95 % percentile-bootstrap interval (rliable)."""
    import numpy as np

    library, metrics = rliable()
    scores = np.array(values, dtype=float)[:, None]  # [runs, 1 task], as rliable takes them
    means, intervals = library.get_interval_estimates(
        {"ours": scores}, metrics.aggregate_mean, reps=reps, random_state=random_state
    )
    low, high = intervals["ours"][:, 0]
    return float(means["ours"]), float(low), float(high)


def results(
    runs: list[RunCurve], budgets: tuple[int, ...] | None = None, reps: int = 20_000, seed: int = 0
) -> list[dict]:
    """One row per task and budget that a run reaches: n, mean with its 95 % interval, IQM, and
    the original's mean, sd and n at that budget (None where it has none)."""
    import numpy as np

    _, metrics = rliable()
    rows = []
    tasks = sorted({run.task for run in runs})
    for task in tasks:
        mine = [run for run in runs if run.task == task]
        for budget in budgets_of(mine, budgets):
            values = [v for v in (interpolate(r.steps, r.returns, budget) for r in mine) if v is not None]
            if not values:
                continue
            mean, low, high = mean_interval(values, reps, seeded(seed))
            original = ORIGINAL_RUNS.get(mine[0].original, {}).get(budget)
            rows.append(
                {
                    "task": task,
                    "samples": budget,
                    "n": len(values),
                    "mean": mean,
                    "ci_low": low,
                    "ci_high": high,
                    "iqm": float(metrics.aggregate_iqm(np.array(values, dtype=float)[:, None])),
                    "original_mean": statistics.mean(original) if original else None,
                    "original_sd": statistics.stdev(original) if original and len(original) > 1 else None,
                    "original_n": len(original) if original else None,
                }
            )
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows of :func:`results` as the report's Markdown table."""
    lines = [
        "| task | samples | n | mean [95 % CI] | IQM | original AWR: mean ± sd (n) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        original = (
            f"{row['original_mean']:.0f} ± {row['original_sd']:.0f} ({row['original_n']})"
            if row["original_sd"] is not None
            else "–"
        )
        lines.append(
            f"| {row['task']} | {row['samples']:,} | {row['n']} | {row['mean']:.0f} [{row['ci_low']:.0f}, "
            f"{row['ci_high']:.0f}] | {row['iqm']:.0f} | {original} |"
        )
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def figure(runs: list[RunCurve], path: Path, points: int = 60, reps: int = 2000) -> None:
    """Per task: the runs' mean evaluation return against samples, with its 95 % bootstrap band
    where at least two runs reach the point, over the original's mean ± sd."""
    import numpy as np

    tasks = sorted({run.task for run in runs})

    def draw(ax, task):
        curves = [(run.steps, run.returns) for run in runs if run.task == task]
        grid = np.linspace(min(c[0][0] for c in curves), max(c[0][-1] for c in curves), points)
        mean, low, high, count = mean_curve(curves, grid, reps)
        several = count >= 2
        ax.fill_between(grid[several], low[several], high[several], alpha=0.25, color="C0", label="95 % CI of the mean")
        ax.plot(grid, mean, lw=1.5, color="C0", label=f"mean of {len(curves)} runs")
        reference = original_points(next(run.original for run in runs if run.task == task))
        if reference:
            plot_reference(ax, reference, "original AWR (gym v2): mean ± sd")

    xlabel = "iterations" if all(task.endswith(" offline") for task in tasks) else "samples"
    task_panels(tasks, path, draw, "eval return", xlabel=xlabel)
