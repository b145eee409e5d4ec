"""Learning runs of the recipe over tasks x seeds, and their aggregate table and figure.

    # run (resumable: finished runs are skipped, interrupted ones resume from their checkpoint)
    python benchmarks/learning.py run --tasks hopper halfcheetah --seeds 0 1 2 --frames 1000000 --jobs 2
    # take runs further in a root of their own, each starting as a copy of the finished run
    python benchmarks/learning.py run --tasks hopper --seeds 0 1 2 --frames 5000000 --root runs/long \\
        --continue-from runs/learning
    # aggregate: markdown table (stdout and --table) and learning-curve figure (--figure)
    python benchmarks/learning.py export --to results/data   # keep the logs the report reads
    python benchmarks/learning.py report --tasks hopper halfcheetah --figure docs/learning_curves.png
    # re-evaluate each run's last checkpoint, deterministic and stochastic policy side by side
    python benchmarks/learning.py evaluate --tasks hopper --seeds 0 1 2 3 4 --episodes 32
    # when each run's evaluation first reached a return (e.g. Hopper's stable gait)
    python benchmarks/learning.py takeoff --tasks hopper --seeds 0 1 2 3 4 --threshold 2000
    # per task and budget: mean with a 95 % bootstrap CI, IQM, P(ours > original) (rliable; extra: stats)
    python benchmarks/learning.py stats --root results/data/fresh --tasks walker2d ant --seeds 20 21 22 23 24
    # the same against other runs of the same seeds (e.g. a variant beside the default), or of
    # other seeds with --against-seeds
    python benchmarks/learning.py stats --root runs/fast --against results/data/fresh --tasks hopper --seeds 20 21 22
    # issue 40's table: the modern preset at 1M and 5M beside the faithful one, the original and the goal
    python benchmarks/learning.py goal --root results/data/modern --long-root results/data/modern_5m \\
        --seeds 40 41 42 43 44 --faithful results/data/fresh --faithful-long results/data/long \\
        --faithful-seeds 20 21 22 23 24 --tasks halfcheetah walker2d ant humanoid hopper lunarlander
    # the report's table: per task, mean [95 % CI] (n) at 1M and 2M (--root) and 5M (--long-root)
    python benchmarks/learning.py summary --root results/data/fresh --long-root results/data/long \\
        --tasks hopper walker2d --seeds 20 21 22 23 24
    # every figure in docs/, redrawn from results/data (FIGURES lists them)
    python benchmarks/learning.py figures
    # per task: our mean curve with a 95 % bootstrap band (rliable) over the original's points,
    # continued by the runs that went on to 5M (--long-root)
    python benchmarks/learning.py figure --root results/data/fresh --long-root results/data/long \
        --tasks walker2d ant --seeds 20 21 22 23 24 --figure docs/fresh_seeds.png

``run`` is one sweep of the train command (``torchrl-awr train -m task=... seed=...``, see
docs/sweeps.md), each run in ``<root>/<task>/seed<S>`` with its replay buffer saved, the sweep's
output appended to ``<root>/sweep.log``; relaunching it keeps finished runs and resumes the
others. What is specific to the published study stays here: the fresh-seed layout, the copies for
``--continue-from``, the milestone tables and the figures of docs/. The statistics and the
original's numbers are the package's (``torchrl-awr report``: :mod:`torchrl_awr.recipe.report`,
:mod:`torchrl_awr.recipe.original_awr`).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from torchrl_awr.checkpoint import load_checkpoint
from torchrl_awr.plotting import EVAL_RETURN, plot_reference, read_scalar
from torchrl_awr.recipe.compose import compose_config
from torchrl_awr.recipe.original_awr import ORIGINAL, ORIGINAL_HOURS_PER_MILLION, ORIGINAL_RUNS, original_points
from torchrl_awr.recipe.reevaluate import evaluate_run
from torchrl_awr.recipe.report import (
    RunCurve,
    interpolate,
    mean_curve,
    mean_interval,
    results,
    rliable,
    seeded,
    task_panels,
)
from torchrl_awr.recipe.rundir import CHECKPOINT_NAME
from torchrl_awr.recipe.trained import load_run

ROOT = Path(__file__).resolve().parents[1]

MILESTONES = (250_000, 500_000, 1_000_000)
BUDGETS = (1_000_000, 2_000_000, 5_000_000)


def run_dir(root: Path, task: str, seed: int) -> Path:
    return root / task / f"seed{seed}"


def checkpoint_frames(directory: Path) -> int:
    """Samples reached by the run's last checkpoint (0 if it has none)."""
    path = directory / CHECKPOINT_NAME
    if not path.is_file():
        return 0
    return load_checkpoint(path)["counters"]["frames"]


def continue_from(source: Path, root: Path, jobs: list[tuple[str, int]]) -> None:
    """Start each run that ``root`` lacks as a copy of the same run under ``source``.

    Every run must have a checkpoint in one of the two roots: the check comes before anything is
    copied or launched, so a wrong path never starts a run from scratch.
    """
    to_copy = [(task, seed) for task, seed in jobs if not checkpoint_frames(run_dir(root, task, seed))]
    missing = [f"{task} seed {seed}" for task, seed in to_copy if not checkpoint_frames(run_dir(source, task, seed))]
    if missing:
        raise SystemExit(f"error: --continue-from {source}: no checkpoint for {', '.join(missing)}")
    for task, seed in to_copy:
        target = run_dir(root, task, seed)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(run_dir(source, task, seed), target, ignore=shutil.ignore_patterns(".lock"))


def sweep_command(
    root: Path, tasks: list[str], seeds: list[int], frames: int, jobs: int, overrides: list[str]
) -> list[str]:
    """The study's runs as one sweep of the train command: ``<root>/<task>/seed<S>`` each, with
    its replay buffer saved (a relaunch resumes exactly), ``jobs`` at a time (joblib)."""
    launcher = ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"] if jobs > 1 else []
    return [
        sys.executable,
        "-m",
        "torchrl_awr",
        "train",
        "-m",
        f"task={','.join(tasks)}",
        f"seed={','.join(map(str, seeds))}",
        f"collector.total_frames={frames}",
        "progress=false",
        "checkpoint.save_buffer=true",
        *overrides,
        f"hydra.sweep.dir={root}",
        "hydra.sweep.subdir=${task_name}/seed${seed}",
        *launcher,
    ]


def run(
    root: Path, tasks: list[str], seeds: list[int], frames: int, jobs: int, overrides: list[str]
) -> tuple[int, str]:
    """Runs the sweep (finished runs are kept, interrupted ones resume); its output goes to
    ``<root>/sweep.log``. Returns its exit code and last screen."""
    command = sweep_command(root, tasks, seeds, frames, jobs, overrides)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "sweep.log", "a") as log:
        log.write(f"\n$ {shlex.join(command)}\n")
        log.flush()
        start = log.tell()
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    output = (root / "sweep.log").read_text()[start:].splitlines()
    last = max((n for n, line in enumerate(output) if line.startswith("Sweep ")), default=len(output) - 1)
    return code, "\n".join(output[last:])


def _fmt(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.0f} (n=1)"
    return f"{statistics.mean(values):.0f} ± {statistics.stdev(values):.0f} (n={len(values)})"


def report(root: Path, tasks: list[str], seeds: list[int], figure: Path | None) -> str:
    rows = [
        "| task | seeds | "
        + " | ".join(f"@{m // 1000}k ours" for m in MILESTONES)
        + " | original @1M | wall h / 1M ours | original h / 1M |",
        "|---" * (5 + len(MILESTONES)) + "|",
    ]
    curves = {}
    for task in tasks:
        task_curves, at_milestone, hours = [], {m: [] for m in MILESTONES}, []
        for seed in seeds:
            directory = run_dir(root, task, seed)
            steps, values = read_scalar(directory, EVAL_RETURN)
            if not steps:
                continue
            task_curves.append((seed, steps, values))
            for milestone in MILESTONES:
                value = interpolate(steps, values, milestone)
                if value is not None:
                    at_milestone[milestone].append(value)
            wall_steps, wall = read_scalar(directory, "wall_time")
            if wall_steps:
                hours.append(wall[-1] / 3600 * 1e6 / wall_steps[-1])
        curves[task] = task_curves
        reference = ORIGINAL.get(task, {}).get(1_000_000)
        reference_text = f"{reference[0]} ± {reference[1]}" if reference else "–"
        hours_text = f"{statistics.mean(hours):.2f}" if hours else "–"
        milestones_text = " | ".join(_fmt(at_milestone[m]) for m in MILESTONES)
        rows.append(
            f"| {task} | {len(task_curves)} | {milestones_text} | {reference_text} | {hours_text} "
            f"| {ORIGINAL_HOURS_PER_MILLION.get(task, '–')} |"
        )
    table = "\n".join(rows)
    if figure is not None:
        _plot(curves, figure)
    return table


def _plot(curves: dict, path: Path) -> None:
    """Every run's curve, per task, over the original's published points."""
    tasks = [task for task, runs in curves.items() if runs]
    if not tasks:
        return

    def draw(ax, task):
        for seed, steps, values in curves[task]:
            ax.plot(steps, values, lw=1, label=f"ours, seed {seed}")
        reference = ORIGINAL.get(task, {})
        if reference:
            plot_reference(ax, reference, "original AWR (gym v2)")

    task_panels(tasks, path, draw, "eval return (32 episodes)")


TAKEOFF_DIAGNOSTICS = ("weight_ess", "explained_variance")
EVAL_EPISODE_LENGTH = "eval/episode_length_mean"


def takeoff(root: Path, tasks: list[str], seeds: list[int], threshold: float, early: float = 200_000) -> str:
    """Per run: the samples at its first evaluation returning >= ``threshold``, its last
    evaluation (return and mean episode length), and its weight and critic diagnostics at
    ``early`` samples.

    For bimodal tasks (Hopper: a stable hop or an early fall) this separates when a run found
    the good mode from whether it holds it at the end, and shows whether anything logged early
    tells the runs apart.
    """
    diagnostics = " | ".join(f"{name} @{early / 1000:g}k" for name in TAKEOFF_DIAGNOSTICS)
    rows = [
        f"| task | seed | first evaluation >= {threshold:g} (samples) | last evaluation | at samples "
        f"| last episode length | {diagnostics} |",
        "|---" * (6 + len(TAKEOFF_DIAGNOSTICS)) + "|",
    ]
    for task in tasks:
        for seed in seeds:
            directory = run_dir(root, task, seed)
            steps, values = read_scalar(directory, EVAL_RETURN)
            if not steps:
                continue
            first = next((step for step, value in zip(steps, values) if value >= threshold), None)
            first_text = "never" if first is None else f"{first:.0f}"
            _, lengths = read_scalar(directory, EVAL_EPISODE_LENGTH)
            length_text = f"{lengths[-1]:.0f}" if lengths else "–"
            early_values = []
            for name in TAKEOFF_DIAGNOSTICS:
                value = interpolate(*read_scalar(directory, name), early)
                early_values.append("–" if value is None else f"{value:.2f}")
            rows.append(
                f"| {task} | {seed} | {first_text} | {values[-1]:.0f} | {steps[-1]:.0f} | {length_text} "
                f"| {' | '.join(early_values)} |"
            )
    return "\n".join(rows)


EXPORTED = (
    EVAL_RETURN,
    EVAL_EPISODE_LENGTH,
    "train/return_mean",
    "wall_time",
    "frames",
    "action_std",
    *TAKEOFF_DIAGNOSTICS,
)


def evaluate(root: Path, tasks: list[str], seeds: list[int], episodes: int) -> str:
    """Each run's last checkpoint evaluated with the deterministic and the stochastic policy
    (``torchrl-awr evaluate``'s :func:`evaluate_run`, all episodes at once on a fresh environment
    seed): mean return, mean episode length, and how many deterministic episodes reached the time
    limit. The models are rebuilt from each run's saved config."""
    rows = [
        "| task | seed | samples | deterministic return | stochastic return | "
        "deterministic episode length | stochastic episode length | "
        "deterministic episodes at the time limit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        for seed in seeds:
            if not (run_dir(root, task, seed) / CHECKPOINT_NAME).is_file():
                continue
            run = load_run(run_dir(root, task, seed))
            deterministic, stochastic = (
                evaluate_run(run, episodes=episodes, stochastic=mode, num_envs=episodes) for mode in (False, True)
            )
            rows.append(
                f"| {task} | {seed} | {run.frames} | {deterministic['return_mean']:.0f} "
                f"| {stochastic['return_mean']:.0f} "
                f"| {deterministic['episode_length_mean']:.0f} "
                f"| {stochastic['episode_length_mean']:.0f} "
                f"| {round(deterministic['time_limit_fraction'] * episodes)} / {episodes} |"
            )
    return "\n".join(rows)


def figure(
    root: Path,
    tasks: list[str],
    seeds: list[int],
    path: Path,
    points: int = 60,
    reps: int = 2000,
    long_root: Path | None = None,
) -> None:
    """Per task: our runs' mean evaluation return against samples, with its 95 % bootstrap band
    where at least two runs reach the point, over the original's mean ± sd. ``long_root``'s runs
    of the same seeds (those that went on to 5M) continue the curve, in a colour of their own,
    from where the runs of ``root`` end."""
    import numpy as np

    def curves_under(directory: Path | None) -> dict[str, list]:
        if directory is None:
            return {task: [] for task in tasks}
        found = {task: [read_scalar(run_dir(directory, task, seed), EVAL_RETURN) for seed in seeds] for task in tasks}
        return {task: [curve for curve in curves if curve[0]] for task, curves in found.items()}

    runs, long_runs = curves_under(root), curves_under(long_root)
    drawn = [task for task in tasks if runs[task]]
    if not drawn:
        raise ValueError(f"No evaluation logs under {root} for tasks {tasks} and seeds {seeds}.")

    def band(ax, curves, start, label, color):
        grid = np.linspace(start, max(c[0][-1] for c in curves), points)
        mean, low, high, count = mean_curve(curves, grid, reps)
        several = count >= 2
        ax.fill_between(grid[several], low[several], high[several], alpha=0.25, color=color)
        ax.plot(grid, mean, lw=1.5, color=color, label=f"{label}: mean ({len(curves)} runs)")
        return grid[-1]

    def draw(ax, task):
        end = band(ax, runs[task], min(c[0][0] for c in runs[task]), "ours", "C0")
        longer = [curve for curve in long_runs[task] if curve[0][-1] > end]
        if longer:
            band(ax, longer, end, "ours, runs to 5M", "C1")
        ax.fill_between([], [], [], alpha=0.25, color="grey", label="95 % CI of the mean")
        reference = original_points(task)
        if reference:
            plot_reference(ax, reference, "original AWR (gym v2): mean ± sd")

    task_panels(drawn, path, draw, "eval return")


def starts_figure(root: Path, tasks: list[str], seeds: list[int], path: Path) -> None:
    """Per task: every run's evaluation curve, coloured by how it started (each folder
    ``<root>/<task>/<start>/seed<S>``: e.g. from an offline run's networks, or from scratch)."""
    starts = {task: sorted(p.name for p in (root / task).iterdir() if p.is_dir()) for task in tasks}

    def draw(ax, task):
        for color, start in enumerate(starts[task]):
            curves = [read_scalar(root / task / start / f"seed{seed}", EVAL_RETURN) for seed in seeds]
            for i, (steps, values) in enumerate(curve for curve in curves if curve[0]):
                ax.plot(steps, values, color=f"C{color}", lw=1, label=start.replace("_", " ") if i == 0 else None)

    task_panels(tasks, path, draw, "eval return")


def returns_by_seed(root: Path, task: str, seeds: list[int], samples: int) -> dict[int, float]:
    """Seed -> evaluation return, for each run whose curve reaches ``samples`` (interpolated there)."""
    values = {seed: interpolate(*read_scalar(run_dir(root, task, seed), EVAL_RETURN), samples) for seed in seeds}
    return {seed: value for seed, value in values.items() if value is not None}


def returns_at(root: Path, task: str, seeds: list[int], samples: int) -> list[float]:
    """The evaluation return of each run whose curve reaches ``samples`` (interpolated there)."""
    return list(returns_by_seed(root, task, seeds, samples).values())


def layout_runs(root: Path, task: str, seeds: list[int]) -> list[RunCurve]:
    """The runs of ``<root>/<task>/seed<S>`` that logged an evaluation, as the report reads runs."""
    curves = [(run_dir(root, task, seed), read_scalar(run_dir(root, task, seed), EVAL_RETURN)) for seed in seeds]
    return [RunCurve(directory, task, steps, values) for directory, (steps, values) in curves if steps]


def _ours_cell(root: Path, task: str, seeds: list[int], budget: int, reps: int, seed: int) -> tuple[str, dict | None]:
    """``torchrl-awr report``'s numbers for the runs of ``seeds`` at ``budget``, as the tables'
    cell "mean [95 % CI] (n=...)" (or "–"), and those numbers with each run's value."""
    runs = layout_runs(root, task, seeds)
    found = results(runs, (budget,), reps=reps, seed=seed)
    if not found:
        return "–", None
    values = [interpolate(run.steps, run.returns, budget) for run in runs]
    ours = found[0] | {"values": [value for value in values if value is not None]}
    return f"{ours['mean']:.0f} [{ours['ci_low']:.0f}, {ours['ci_high']:.0f}] (n={ours['n']})", ours


def _original_cell(task: str, budget: int) -> str:
    original = ORIGINAL_RUNS.get(task, {}).get(budget)
    return f"{statistics.mean(original):.0f} ± {statistics.stdev(original):.0f}" if original else "–"


def summary_table(roots: dict[int, Path], tasks: list[str], seeds: list[int], reps: int = 20_000, seed: int = 0) -> str:
    """The report's table (``torchrl-awr report``'s numbers, laid out one row per task): at each
    budget of ``roots`` (samples -> the runs' root), our runs' mean with its 95 % bootstrap
    interval and n, beside the original's mean ± sd."""

    budgets = sorted(roots)
    rows = [
        "| task | "
        + " | ".join(f"{b / 1e6:g}M: ours, mean [95 % CI] (n) | {b / 1e6:g}M: original" for b in budgets)
        + " |",
        "|---" + "|---:|---:" * len(budgets) + "|",
    ]
    for task in tasks:
        cells = []
        for budget in budgets:
            cells += [_ours_cell(roots[budget], task, seeds, budget, reps, seed)[0], _original_cell(task, budget)]
        rows.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


# Issue 40's goal for the modern preset (gymnasium v5): per task, the mean return at 1M over at
# least 5 runs and at 5M over at least 3 (the original's final returns), each run at 50 % of its
# task's mean or more. LunarLander has no 5M goal.
MODERN_GOAL = {
    "halfcheetah": {1_000_000: 5800, 5_000_000: 9200},
    "walker2d": {1_000_000: 3500, 5_000_000: 6100},
    "ant": {1_000_000: 2000, 5_000_000: 5500},
    "humanoid": {1_000_000: 1000, 5_000_000: 6100},
    "hopper": {1_000_000: 3300, 5_000_000: 3550},
    "lunarlander": {1_000_000: 250},
}
GOAL_RUNS = {1_000_000: 5, 5_000_000: 3}
GOAL_FLOOR = 0.5


def modern_departs(task: str) -> bool:
    """Whether ``preset=modern`` changes any setting of ``task``'s faithful preset (beyond the
    preset's name and the run directory's): where it does not, the faithful runs are its runs."""

    def settings(preset: str) -> dict:
        config = OmegaConf.to_container(compose_config(f"task={task}", f"preset={preset}"))
        return {key: value for key, value in config.items() if key not in ("preset_name", "output_dir")}

    return settings("modern") != settings("faithful")


def _goal_cell(goal: int | None, budget: int, ours: dict | None) -> str:
    """The goal, "met" where the runs meet all of it, else by how much and which part they miss."""
    if goal is None:
        return "–"
    if ours is None:
        return f"{goal}"
    missed = [f"−{goal - ours['mean']:.0f}"] if ours["mean"] < goal else []
    worst = min(ours["values"]) / ours["mean"]
    if worst < GOAL_FLOOR:
        missed.append(f"worst run {worst * 100:.0f} %")
    if ours["n"] < GOAL_RUNS[budget]:
        missed.append(f"n={ours['n']} of {GOAL_RUNS[budget]}")
    return f"{goal}: met" if not missed else f"{goal} ({', '.join(missed)})"


def goal_table(
    modern: dict[int, Path],
    faithful: dict[int, Path],
    tasks: list[str],
    seeds: list[int],
    faithful_seeds: list[int],
    reps: int = 20_000,
    seed: int = 0,
) -> str:
    """Issue 40's table: per task, at 1M and 5M (samples -> each preset's root), the modern preset's
    runs beside the faithful preset's, the original's and the goal, met or missed by how much. A
    task whose modern preset is its faithful one ("= faithful") is judged on the faithful runs."""
    budgets = sorted(modern)
    rows = [
        "| task | "
        + " | ".join(
            f"modern {b / 1e6:g}M: mean [95 % CI] (n) | faithful {b / 1e6:g}M | original {b / 1e6:g}M | goal {b / 1e6:g}M"
            for b in budgets
        )
        + " |",
        "|---" + "|---:" * 4 * len(budgets) + "|",
    ]
    for task in tasks:
        departs = modern_departs(task)
        cells = []
        for budget in budgets:
            faithful_text, faithful_runs = _ours_cell(faithful[budget], task, faithful_seeds, budget, reps, seed)
            modern_text, modern_runs = (
                _ours_cell(modern[budget], task, seeds, budget, reps, seed)
                if departs
                else ("= faithful", faithful_runs)
            )
            goal = MODERN_GOAL.get(task, {}).get(budget)
            cells += [modern_text, faithful_text, _original_cell(task, budget), _goal_cell(goal, budget, modern_runs)]
        rows.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def stats_table(
    root: Path,
    tasks: list[str],
    seeds: list[int],
    budgets=BUDGETS,
    reps: int = 20_000,
    seed: int = 0,
    against: Path | None = None,
    against_seeds: list[int] | None = None,
) -> str:
    """Per task and budget, with rliable: our runs' mean with its 95 % percentile-bootstrap CI,
    their interquartile mean, the probability that one of our runs beats one of the baseline's
    (Mann-Whitney's P(X > Y), ties counted half) with its bootstrap CI, and each run's value by
    seed. The baseline is the original's published runs, or with ``against`` the runs of the
    same tasks under that root (e.g. the default beside a variant), of ``against_seeds`` where
    given and otherwise of the same seeds. A budget a run's
    curve does not reach leaves that run out; the bootstrap's RNG is seeded with ``seed``."""
    import numpy as np

    library, metrics = rliable()
    theirs_name = "original" if against is None else "baseline"
    rows = [
        f"| task | samples | n | ours: mean [95 % CI] | ours: IQM | {theirs_name}: mean ± sd (n) "
        f"| P(ours > {theirs_name}) [95 % CI] | ours: seed = return |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        for budget in budgets:
            by_seed = returns_by_seed(root, task, seeds, budget)
            if not by_seed:
                continue
            ours = list(by_seed.values())
            scores = np.array(ours, dtype=float)[:, None]  # [runs, 1 task], as rliable takes them
            random_state = seeded(seed)
            mean, low, high = mean_interval(ours, reps, random_state)
            iqm = metrics.aggregate_iqm(scores)
            if against is None:
                baseline = ORIGINAL_RUNS.get(task, {}).get(budget)
            else:
                baseline = returns_at(against, task, against_seeds or seeds, budget)
            if len(baseline or ()) > 1:
                theirs = np.array(baseline, dtype=float)[:, None]
                probability, interval = library.get_interval_estimates(
                    {"p": [scores, theirs]}, metrics.probability_of_improvement, reps=reps, random_state=random_state
                )
                p_low, p_high = interval["p"][:, 0]
                baseline_text = f"{statistics.mean(baseline):.0f} ± {statistics.stdev(baseline):.0f} ({len(baseline)})"
                p_text = f"{float(probability['p']):.2f} [{p_low:.2f}, {p_high:.2f}]" if len(ours) > 1 else "–"
            else:
                baseline_text, p_text = "–", "–"
            rows.append(
                f"| {task} | {budget / 1e6:g}M | {len(ours)} | {mean:.0f} [{low:.0f}, {high:.0f}] "
                f"| {iqm:.0f} | {baseline_text} | {p_text} | "
                + ", ".join(f"{seed} = {value:.0f}" for seed, value in by_seed.items())
                + " |"
            )
    return "\n".join(rows)


# Every learning-curve figure in docs/: its file, how it is drawn ("runs": every run's curve, as
# ``report``; "mean": the mean with its bootstrap band, as ``figure``, continued by a second
# folder's runs where one is given; "starts": every run's curve per way of starting, the folders
# under <task>/, as ``starts_figure``; "wallclock": return against minutes of training, as
# ``wallclock.py figure``), the data folder(s) under results/data, the tasks and the seeds.
# ``figures`` redraws them all.
FIGURES = (
    (
        "learning_curves.png",
        "runs",
        ".",
        ("hopper", "halfcheetah", "walker2d", "lunarlander", "ant", "humanoid"),
        range(5),
    ),
    (
        "learning_curves_two_process.png",
        "runs",
        "two_process_more",
        ("walker2d", "lunarlander", "ant", "humanoid", "hopper"),
        range(16),
    ),
    ("learning_curves_hopper_preset.png", "runs", "hopper_late_anneal", ("hopper",), range(14)),
    ("learning_curves_halfcheetah_preset.png", "runs", "halfcheetah_anneal", ("halfcheetah",), range(15)),
    (
        "fresh_seeds.png",
        "mean",
        ("fresh", "long"),
        ("walker2d", "ant", "halfcheetah", "humanoid", "hopper", "lunarlander"),
        range(20, 25),
    ),
    ("modern_preset.png", "mean", ("modern", "modern_5m"), ("halfcheetah", "walker2d"), range(40, 45)),
    ("offline_to_online.png", "starts", "offline/online", ("hopper", "halfcheetah"), range(3)),
    ("wallclock.png", "wallclock", "wallclock", ("hopper", "halfcheetah"), range(1)),
)


def figures(data: Path, out: Path, reps: int = 2000) -> list[Path]:
    """Redraws every figure of :data:`FIGURES` from the logs under ``data`` into ``out``; tasks
    without logs are left out of a figure. Returns the files written."""
    written = []
    for name, kind, folders, tasks, seeds in FIGURES:
        folder, *longer = (folders,) if isinstance(folders, str) else folders
        root, path = data / folder, out / name
        if kind == "wallclock":  # its runs' results are JSON files: wallclock.py reads and draws them
            if any(root.glob("*/*/seed*.json")):
                figure_command = [sys.executable, str(ROOT / "benchmarks" / "wallclock.py"), "figure"]
                subprocess.run([*figure_command, f"--root={root}", f"--figure={path}"], check=True)
                written.append(path)
            continue
        present = [task for task in tasks if any(root.glob(f"{task}/**/scalars/{EVAL_RETURN}.csv"))]
        if not present:
            continue
        if kind == "runs":
            report(root, present, list(seeds), path)
        elif kind == "starts":
            starts_figure(root, present, list(seeds), path)
        else:
            figure(root, present, list(seeds), path, reps=reps, long_root=data / longer[0] if longer else None)
        written.append(path)
    return written


def export(root: Path, destination: Path, tasks: list[str], seeds: list[int]) -> None:
    """Copies every run's ``config.yaml`` (its settings; what ``torchrl-awr report`` finds runs by)
    and the logs the report reads (small CSVs) to ``destination``."""
    for task in tasks:
        for seed in seeds:
            config = run_dir(root, task, seed) / "config.yaml"
            if config.is_file():
                run_dir(destination, task, seed).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(config, run_dir(destination, task, seed) / "config.yaml")
            source = run_dir(root, task, seed) / "logs" / "scalars"
            for name in EXPORTED:
                csv = source / f"{name}.csv"
                if csv.is_file():
                    target = run_dir(destination, task, seed) / "logs" / "scalars" / f"{name}.csv"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(csv.read_text())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, about: str, *, runs: bool = True, root: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=about, description=about)
        if runs:
            sub.add_argument("--tasks", nargs="+", default=["hopper", "halfcheetah", "walker2d"])
            sub.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
        if root:
            sub.add_argument("--root", type=Path, default=ROOT / "runs" / "learning", help="<root>/<task>/seed<S>")
        return sub

    sub = command("run", "run (or go on with) tasks x seeds as one sweep of the train command")
    sub.add_argument("--frames", type=int, default=1_000_000)
    sub.add_argument("--jobs", type=int, default=2, help="runs in parallel (joblib; one core each)")
    sub.add_argument("--continue-from", type=Path, default=None, help="start missing runs as copies of this root's")
    sub.add_argument("--override", action="append", default=[], help="Hydra override for every run")
    sub = command("report", "milestone table (and every run's curve with --figure)")
    sub.add_argument("--table", type=Path, help="also write the table here")
    sub.add_argument("--figure", type=Path, help="learning-curve PNG")
    sub = command("export", "copy the logs the report reads into --to")
    sub.add_argument("--to", type=Path, default=ROOT / "results" / "data")
    sub = command("evaluate", "re-evaluate each run's last checkpoint, deterministic and stochastic")
    sub.add_argument("--episodes", type=int, default=32)
    sub = command("takeoff", "when each run's evaluation first reached --threshold")
    sub.add_argument("--threshold", type=float, default=2000.0)
    sub.add_argument("--early", type=float, default=200_000, help="samples for the diagnostics")
    sub = command("stats", "per task and budget: mean [95 % CI], IQM, P(ours > baseline) (rliable)")
    sub.add_argument("--against", type=Path, help="compare with these runs instead of the original's")
    sub.add_argument("--against-seeds", nargs="+", type=int, help="the --against runs' seeds (default: --seeds)")
    sub.add_argument("--reps", type=int, default=20_000)
    sub.add_argument("--table", type=Path, help="also write the table here")
    sub = command("summary", "the report's table: mean [95 % CI] (n) at 1M and 2M (--root) and 5M (--long-root)")
    sub.add_argument("--long-root", type=Path, help="the runs to 5M (default: --root)")
    sub.add_argument("--reps", type=int, default=20_000)
    sub = command(
        "goal",
        "issue 40's table: the modern preset at 1M (--root) and 5M (--long-root) beside the faithful one and the goal",
    )
    sub.add_argument("--long-root", type=Path, help="the modern runs to 5M (default: --root)")
    sub.add_argument("--faithful", type=Path, required=True, help="the faithful preset's runs to 1M or more")
    sub.add_argument("--faithful-long", type=Path, help="the faithful runs to 5M (default: --faithful)")
    sub.add_argument("--faithful-seeds", nargs="+", type=int, required=True)
    sub.add_argument("--reps", type=int, default=20_000)
    sub = command("figure", "mean curve with a 95 % band per task, continued by --long-root's runs")
    sub.add_argument("--figure", type=Path, required=True)
    sub.add_argument("--long-root", type=Path)
    sub.add_argument("--reps", type=int, default=2000)
    sub = command("figures", "every figure in docs/, redrawn from --data", runs=False, root=False)
    sub.add_argument("--data", type=Path, default=ROOT / "results" / "data")
    sub.add_argument("--out", type=Path, default=ROOT / "docs")
    sub.add_argument("--reps", type=int, default=2000)
    args = parser.parse_args(argv)

    if args.command == "run":
        if args.continue_from is not None:
            continue_from(args.continue_from, args.root, [(task, seed) for seed in args.seeds for task in args.tasks])
        code, screen = run(args.root, args.tasks, args.seeds, args.frames, args.jobs, args.override)
        print(screen, flush=True)
        if code:
            raise SystemExit(code)
    elif args.command == "export":
        export(args.root, args.to, args.tasks, args.seeds)
    elif args.command == "evaluate":
        print(evaluate(args.root, args.tasks, args.seeds, args.episodes))
    elif args.command == "takeoff":
        print(takeoff(args.root, args.tasks, args.seeds, args.threshold, args.early))
    elif args.command == "figure":
        figure(args.root, args.tasks, args.seeds, args.figure, reps=args.reps, long_root=args.long_root)
    elif args.command == "figures":
        for path in figures(args.data, args.out, reps=args.reps):
            print(path)
    elif args.command == "summary":
        roots = {1_000_000: args.root, 2_000_000: args.root, 5_000_000: args.long_root or args.root}
        print(summary_table(roots, args.tasks, args.seeds, reps=args.reps))
    elif args.command == "goal":
        modern = {1_000_000: args.root, 5_000_000: args.long_root or args.root}
        faithful = {1_000_000: args.faithful, 5_000_000: args.faithful_long or args.faithful}
        print(goal_table(modern, faithful, args.tasks, args.seeds, args.faithful_seeds, reps=args.reps))
    elif args.command == "stats":
        if args.against_seeds and args.against is None:
            parser.error("--against-seeds names the seeds of the --against runs: give --against too")
        table = stats_table(
            args.root, args.tasks, args.seeds, reps=args.reps, against=args.against, against_seeds=args.against_seeds
        )
        print(table)
        if args.table is not None:
            args.table.write_text(table + "\n")
    else:  # report
        table = report(args.root, args.tasks, args.seeds, args.figure)
        print(table)
        if args.table is not None:
            args.table.write_text(table + "\n")


if __name__ == "__main__":
    main()
