"""Return against wall-clock seconds: our preset beside Stable-Baselines3's PPO and SAC with the
RL Zoo's settings (docs/results.md), one run at a time so each has the machine to itself.

    python benchmarks/wallclock.py run --tasks hopper halfcheetah --methods awr awr-modern ppo sac --seeds 0 \\
        --seconds 1800 --root runs/wallclock
    python benchmarks/wallclock.py export --root runs/wallclock      # into results/data/wallclock
    python benchmarks/wallclock.py report --root results/data/wallclock   # the table (markdown)
    python benchmarks/wallclock.py figure --root results/data/wallclock --figure docs/wallclock.png

Every method's clock counts training only, evaluations excluded: ours is the run's logged
``wall_time`` less its logged evaluation time, SB3's is kept by ``sb3_baseline.py``. Our run is
the recipe's preset (``awr``: the faithful one, ``awr-modern``: ``preset=modern``) evaluated
with 10 episodes every ``--awr-eval-interval`` iterations; it is
stopped (SIGTERM: it saves its checkpoint and exits) once its clock passes ``--seconds``. Each
run leaves ``<root>/<task>/<method>/seed<S>.json``: ``{"seconds", "steps", "returns"}``.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning import task_panels  # noqa: E402

from torchrl_awr.plotting import EVAL_RETURN, read_scalar  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Our methods: the recipe with each of its presets.
AWR_PRESETS = {"awr": "faithful", "awr-modern": "modern"}
METHODS = (*AWR_PRESETS, "ppo", "sac")
ENV_IDS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5"}
MINUTES = (5, 15, 30)
STOPPED = 130  # the recipe's exit code when a signal stopped it
# SB3 evaluates at the first step past each minute, a few milliseconds late: an evaluation that
# late still counts for that minute.
LATE_BY = 1.0


def awr_history(run: Path) -> dict[str, list[float]]:
    """Our run's evaluations against its training seconds: the logged wall time at each evaluation
    less the time spent in the evaluations up to it."""
    walls = dict(zip(*read_scalar(run, "wall_time")))
    evals = read_scalar(run, "time/eval")
    history = {"seconds": [], "steps": [], "returns": []}
    evaluating = 0.0
    returns = dict(zip(*read_scalar(run, EVAL_RETURN)))
    for step, spent in zip(*evals):
        evaluating += spent
        if step in walls and step in returns:
            history["seconds"].append(walls[step] - evaluating)
            history["steps"].append(step)
            history["returns"].append(returns[step])
    return history


def run_awr(task: str, seed: int, seconds: float, directory: Path, eval_interval: int, overrides: list[str]) -> int:
    """The preset, stopped once its training clock passes ``seconds``; returns its exit code."""
    command = [
        sys.executable,
        str(ROOT / "recipes" / "mujoco_awr.py"),
        f"task={task}",
        f"seed={seed}",
        "collector.total_frames=1000000000",
        f"output_dir={directory}",
        "progress=false",
        f"eval.interval={eval_interval}",
        "eval.episodes=10",
        "eval.num_envs=10",
        *overrides,
    ]
    with open(directory.parent / f"seed{seed}.log", "a") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        while process.poll() is None:
            time.sleep(1)
            clock = awr_history(directory)["seconds"]
            if clock and clock[-1] >= seconds:
                process.send_signal(signal.SIGTERM)
                process.wait()
    return process.returncode


def run_one(task: str, method: str, seed: int, seconds: float, root: Path, args) -> str:
    """One run (skipped when its result exists); returns a line for the log."""
    out = root / task / method / f"seed{seed}.json"
    if out.is_file():
        return f"{out}: done"
    out.parent.mkdir(parents=True, exist_ok=True)
    if method in AWR_PRESETS:
        directory = out.parent / f"seed{seed}"
        if directory.exists():
            raise SystemExit(f"{directory} holds an unfinished run: a wall-clock run cannot resume; remove it.")
        overrides = [f"preset={AWR_PRESETS[method]}", *args.override]
        code = run_awr(task, seed, seconds, directory, args.awr_eval_interval, overrides)
        history = awr_history(directory)
        if code != STOPPED or not history["seconds"] or history["seconds"][-1] < seconds:
            return f"{out}: exit {code} before the budget (see seed{seed}.log)"
        out.write_text(json.dumps({**history, "algo": method, "env": ENV_IDS[task], "seed": seed}))
        return f"{out}: exit 0"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "sb3_baseline.py"),
        f"--env={ENV_IDS[task]}",
        f"--algo={method}",
        f"--seconds={seconds}",
        f"--seed={seed}",
        f"--out={out}",
    ]
    with open(out.parent / f"seed{seed}.log", "a") as log:
        return f"{out}: exit {subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)}"


def results(root: Path, task: str, method: str) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted((root / task / method).glob("seed*.json"))]


def return_at(result: dict, seconds: float) -> float | None:
    """The last evaluation by ``seconds`` of training, allowing :data:`LATE_BY` (None before the
    first, or when the run stopped before ``seconds``)."""
    if result["seconds"][-1] < seconds:
        return None
    done = [value for at, value in zip(result["seconds"], result["returns"]) if at <= seconds + LATE_BY]
    return done[-1] if done else None


def report(root: Path, tasks: list[str], methods: list[str]) -> str:
    """Markdown: per task and method, the return at 5, 15 and 30 minutes of training (mean over
    seeds when there are several) and the samples used by 30 minutes."""
    lines = [
        "| task | method | " + " | ".join(f"{m} min" for m in MINUTES) + " | samples by 30 min | runs |",
        "|---|---|" + "---:|" * (len(MINUTES) + 2),
    ]
    for task in tasks:
        for method in methods:
            runs = results(root, task, method)
            if not runs:
                continue
            cells = []
            for minutes in MINUTES:
                values = [v for run in runs if (v := return_at(run, 60 * minutes)) is not None]
                cells.append(f"{statistics.mean(values):.0f}" if len(values) == len(runs) else "–")
            steps = [max(s for at, s in zip(run["seconds"], run["steps"]) if at <= 60 * MINUTES[-1]) for run in runs]
            lines.append(
                f"| {task} | {method} | " + " | ".join(cells) + f" | {statistics.mean(steps):,.0f} | {len(runs)} |"
            )
    return "\n".join(lines)


def figure(root: Path, tasks: list[str], methods: list[str], path: Path) -> None:
    """Per task, every run's evaluation return against minutes of training."""
    present = [task for task in tasks if any(results(root, task, method) for method in methods)]

    def draw(ax, task):
        for method in methods:
            for run in results(root, task, method):
                minutes = [s / 60 for s in run["seconds"]]
                ax.plot(minutes, run["returns"], lw=1, label=f"{method}, seed {run['seed']}")

    task_panels(present, path, draw, "eval return (10 episodes)", xlabel="minutes of training")


def export(root: Path, destination: Path) -> None:
    """Copies every run's result (its JSON) to ``destination``."""
    for path in root.glob("*/*/seed*.json"):
        target = destination / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "export", "report", "figure"))
    parser.add_argument("--tasks", nargs="+", default=list(ENV_IDS), choices=list(ENV_IDS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--seconds", type=float, default=1800.0, help="training wall-clock budget of each run")
    parser.add_argument("--root", type=Path, default=ROOT / "runs" / "wallclock")
    parser.add_argument("--to", type=Path, default=ROOT / "results" / "data" / "wallclock", help="export target")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "wallclock.png")
    parser.add_argument("--awr-eval-interval", type=int, default=25, help="our run: iterations between evaluations")
    parser.add_argument("--override", action="append", default=[], help="Hydra override for our runs")
    args = parser.parse_args(argv)
    if args.command == "run":
        for task in args.tasks:
            for method in args.methods:
                for seed in args.seeds:
                    print(run_one(task, method, seed, args.seconds, args.root, args), flush=True)
    elif args.command == "export":
        export(args.root, args.to)
    elif args.command == "report":
        print(report(args.root, args.tasks, args.methods))
    else:
        figure(args.root, args.tasks, args.methods, args.figure)


if __name__ == "__main__":
    main()
