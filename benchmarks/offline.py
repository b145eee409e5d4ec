"""Offline AWR against behaviour cloning and d3rlpy, and offline-to-online (docs/offline.md).

    # the four datasets of a task: random actions, a medium policy, its replay buffer, an expert
    python benchmarks/offline.py datasets --task hopper --medium RUN --expert RUN --out runs/data
    # offline runs, equal gradient steps: AWR, BC (AWR with beta=1e6), d3rlpy's IQL / CRR / AWAC
    python benchmarks/offline.py run --data runs/data/hopper-medium --methods awr bc iql --seeds 0 1 2 \\
        --iterations 30 --root runs/offline --d3rlpy-python ../d3rlpy-venv/bin/python
    # online from the offline AWR runs (their networks and dataset) against online from scratch
    python benchmarks/offline.py online --task hopper --init runs/offline/hopper-medium/awr --seeds 0 1 2 \\
        --frames 250000 --root runs/offline_online
    # keep what the report reads, then the tables (markdown); the figure: learning.py figures
    python benchmarks/offline.py export --root runs/offline --data runs/data --online runs/offline_online
    python benchmarks/offline.py report --root results/data/offline/runs --data results/data/offline/data \\
        --online results/data/offline/online

An offline iteration is ``train.critic_steps`` (200) critic and ``train.actor_steps`` (1000)
actor updates of 256 transitions, so ``--iterations N`` gives every method ``1000 N`` policy
updates; d3rlpy's run ``1000 N`` steps (each updates its critics and its policy once). Every run
is evaluated with 10 deterministic episodes every 5000 policy updates; its score is the last
evaluation, normalised between the random and the expert datasets' average returns.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from torchrl_awr.offline_data import load_dataset
from torchrl_awr.plotting import EVAL_RETURN, read_scalar
from torchrl_awr.recipe.rundir import CHECKPOINT_NAME

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("random", "medium", "medium-replay", "expert")
METHODS = {
    "awr": [],
    "bc": ["loss.beta=1e6"],  # exp(A / 1e6) = 1 for every transition: plain log-likelihood
}
D3RLPY = ("iql", "crr", "awac")
EVAL = ["eval.interval=5", "eval.episodes=10", "eval.num_envs=10", "checkpoint.interval=5"]


def make_datasets(task: str, medium: Path, expert: Path, out: Path, random_episodes: int, episodes: int) -> None:
    """The four datasets of ``task`` into ``out/<task>-<kind>`` (existing ones are kept)."""
    sources = {
        "random": ["--from", "random", "--task", task, "--episodes", str(random_episodes)],
        "medium": ["--from", "policy", str(medium), "--stochastic", "--episodes", str(episodes)],
        "medium-replay": ["--from", "buffer", str(medium)],
        "expert": ["--from", "policy", str(expert), "--stochastic", "--episodes", str(episodes)],
    }
    for kind, args in sources.items():
        target = out / f"{task}-{kind}"
        if not (target / "dataset.json").is_file():
            command = [
                sys.executable,
                "-m",
                "torchrl_awr",
                "dataset",
                "make",
                *args,
                "--seed",
                "1",
                "--out",
                str(target),
            ]
            subprocess.run(command, check=True, cwd=ROOT)


def export_npz(data_dir: Path, path: Path) -> Path:
    """The dataset as d3rlpy's arrays: observations, actions, rewards, terminals, timeouts."""
    if not path.is_file():
        data, _ = load_dataset(data_dir)
        np.savez(
            path,
            observations=data["observation"].numpy(),
            actions=data["action"].numpy(),
            rewards=data["next", "reward"].reshape(-1).numpy(),
            terminals=data["next", "terminated"].reshape(-1).numpy().astype(np.float32),
            timeouts=data["next", "truncated"].reshape(-1).numpy().astype(np.float32),
        )
    return path


def run_one(
    data_dir: Path,
    method: str,
    seed: int,
    iterations: int,
    root: Path,
    d3rlpy_python: str | None,
    overrides: list[str] = (),
) -> str:
    """One offline run (skipped when its result exists); returns a line for the log."""
    _, meta = load_dataset(data_dir)
    directory = root / data_dir.name / method
    if method in METHODS:
        out = directory / f"seed{seed}"
        if (out / CHECKPOINT_NAME).is_file() and read_scalar(out, EVAL_RETURN)[0][-1:] == [float(iterations)]:
            return f"{out}: done"
        settings = [f"dataset={data_dir.resolve()}", f"offline.iterations={iterations}", *EVAL, *METHODS[method]]
        command = recipe_command("offline_awr.py", meta["task"], seed, out, *settings, *overrides)
        if out.exists():
            command.append(f"resume={(out / CHECKPOINT_NAME).resolve()}")
            command = [c for c in command if not c.startswith("output_dir=")]
    else:
        out = directory / f"seed{seed}.json"
        if out.is_file():
            return f"{out}: done"
        if d3rlpy_python is None:
            raise SystemExit(f"{method} runs in d3rlpy's own virtualenv: pass --d3rlpy-python.")
        npz = export_npz(data_dir, root / f"{data_dir.name}.npz")
        command = [
            d3rlpy_python,
            str(ROOT / "benchmarks" / "d3rlpy_baseline.py"),
            f"--data={npz}",
            f"--env={meta['env_id']}",
            f"--algo={method}",
            f"--steps={iterations * 1000}",
            f"--seed={seed}",
            f"--out={out}",
        ]
    return f"{out}: exit {call_logged(command, directory / f'seed{seed}.log')}"


def online_one(task: str, init: Path | None, seed: int, frames: int, root: Path, overrides: list[str] = ()) -> str:
    """An online run from an offline run's networks and dataset (``init``), or from scratch."""
    name = "from_offline" if init is not None else "scratch"
    out = root / task / name / f"seed{seed}"
    if (out / CHECKPOINT_NAME).is_file():
        return f"{out}: done"
    start = [] if init is None else [f"init_from={(init / f'seed{seed}').resolve()}", "init_dataset=true"]
    settings = [f"collector.total_frames={frames}", "eval.interval=10", *start]
    command = recipe_command("mujoco_awr.py", task, seed, out, *settings, *overrides)
    return f"{out}: exit {call_logged(command, out.parent / f'seed{seed}.log')}"


def recipe_command(script: str, task: str, seed: int, out: Path, *settings: str) -> list[str]:
    """A recipe's command line for a run of ``task`` and ``seed`` in ``out``."""
    return [
        sys.executable,
        str(ROOT / "recipes" / script),
        f"task={task}",
        f"seed={seed}",
        f"output_dir={out.resolve()}",
        "progress=false",
        *settings,
    ]


def call_logged(command: list[str], log: Path) -> int:
    """Runs ``command`` from the repository with its output appended to ``log``; its exit code.
    Every method gets one torch thread, as the recipe's runs (threads=1)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        handle.write(f"\n$ {' '.join(command)}\n")
        handle.flush()
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, env=env)


def final_return(directory: Path, method: str, seed: int) -> float | None:
    """A run's last evaluation return (None if it has none)."""
    if method in METHODS:
        values = read_scalar(directory / f"seed{seed}", EVAL_RETURN)[1]
        return values[-1] if values else None
    path = directory / f"seed{seed}.json"
    return json.loads(path.read_text())["returns"][-1] if path.is_file() else None


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def report(root: Path, data: Path, online: Path | None, seeds: list[int]) -> str:
    """Markdown: each dataset's size and return; each method's final return and normalised
    score per dataset (mean ± sd over ``seeds``), a column for each method that has runs;
    offline-to-online returns."""
    lines = ["| dataset | transitions | episodes | average return |", "|---|---:|---:|---:|"]
    metas = {}
    for path in sorted(data.iterdir()):
        if (path / "dataset.json").is_file():
            metas[path.name] = meta = json.loads((path / "dataset.json").read_text())
            lines.append(
                f"| {path.name} | {meta['transitions']:,} | {meta['episodes']} | "
                f"{meta['return_mean']:.1f} ± {meta['return_std']:.1f} |"
            )
    finals = {  # (dataset, method) -> the final returns of its runs
        (n, m): [r for s in seeds if (r := final_return(root / n / m, m, s)) is not None]
        for n in metas
        for m in (*METHODS, *D3RLPY)
    }
    methods = [m for m in (*METHODS, *D3RLPY) if any(finals[n, m] for n in metas)]  # those with runs
    lines += ["", "| dataset | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for name in sorted(metas):
        task = name.split("-")[0]
        bounds = [metas.get(f"{task}-{kind}", {}).get("return_mean") for kind in ("random", "expert")]
        cells = []
        for method in methods:
            returns = finals[name, method]
            if not returns:
                cells.append("–")
            elif None in bounds:  # no random or expert dataset to normalise with: the returns alone
                cells.append(f"({_mean_sd(returns)}, n={len(returns)})")
            else:
                scores = [100 * (r - bounds[0]) / (bounds[1] - bounds[0]) for r in returns]
                cells.append(f"{_mean_sd(scores)} ({_mean_sd(returns)}, n={len(returns)})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if online is not None:
        lines += ["", online_table(online, seeds)]
    return "\n".join(lines)


def online_table(root: Path, seeds: list[int]) -> str:
    """Eval return at 25k / 50k / 100k / 250k online samples (interpolated between evaluations),
    from offline and from scratch."""
    budgets = (25_000, 50_000, 100_000, 250_000)
    lines = ["| task | start | " + " | ".join(f"{b // 1000}k" for b in budgets) + " |", "|---|---|" + "---:|" * 4]
    for task_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for start in ("from_offline", "scratch"):
            runs = [read_scalar(task_dir / start / f"seed{s}", EVAL_RETURN) for s in seeds]
            runs = [run for run in runs if run[0]]
            if runs:
                cells = [
                    _mean_sd([float(np.interp(b, *run)) for run in runs if run[0][0] <= b <= run[0][-1]])
                    for b in budgets
                ]
                lines.append(f"| {task_dir.name} | {start} (n={len(runs)}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def export(root: Path, data: Path, online: Path | None, destination: Path) -> None:
    """What the report and the figure read, into ``destination`` (results/data/offline):
    each dataset's ``dataset.json``, each run's evaluation log or d3rlpy result, and the online
    runs' evaluation logs."""
    pairs = [(path, destination / "data" / path.parent.name / path.name) for path in data.glob("*/dataset.json")]
    pairs += [
        (path, destination / "runs" / path.relative_to(root)) for path in root.glob(f"*/*/seed*/**/{EVAL_RETURN}.csv")
    ]
    pairs += [(path, destination / "runs" / path.relative_to(root)) for path in root.glob("*/*/seed*.json")]
    if online is not None:
        pairs += [
            (path, destination / "online" / path.relative_to(online)) for path in online.glob(f"**/{EVAL_RETURN}.csv")
        ]
    for source, target in pairs:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("datasets", "run", "online", "report", "export"))
    parser.add_argument("--task")
    parser.add_argument("--medium", type=Path, help="the run whose policy and buffer make medium, medium-replay")
    parser.add_argument("--expert", type=Path, help="the run whose policy makes expert")
    parser.add_argument("--random-episodes", type=int, default=1000)
    parser.add_argument("--episodes", type=int, default=50, help="episodes of the medium and expert policies")
    parser.add_argument("--out", type=Path, default=Path("runs/data"))
    parser.add_argument("--data", type=Path, nargs="+", default=[Path("runs/data")])
    parser.add_argument("--methods", nargs="+", default=["awr", "bc"], choices=[*METHODS, *D3RLPY])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--root", type=Path, default=Path("runs/offline"))
    parser.add_argument("--online", type=Path, help="report: the online runs' root")
    parser.add_argument("--init", type=Path, help="online: the offline runs to start from (their method directory)")
    parser.add_argument("--frames", type=int, default=250_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--d3rlpy-python", help="the python of a virtualenv with d3rlpy")
    parser.add_argument("--override", action="append", default=[], help="Hydra override for our runs (run, online)")
    parser.add_argument("--to", type=Path, default=ROOT / "results" / "data" / "offline", help="export target")
    args = parser.parse_args(argv)
    if args.command == "datasets":
        make_datasets(args.task, args.medium, args.expert, args.out, args.random_episodes, args.episodes)
        return
    if args.command == "report":
        print(report(args.root, args.data[0], args.online, args.seeds))
        return
    if args.command == "export":
        export(args.root, args.data[0], args.online, args.to)
        return
    if args.command == "run":
        jobs = [(d, m, s) for d in args.data for m in args.methods for s in args.seeds]
        work = [
            lambda d=d, m=m, s=s: run_one(d, m, s, args.iterations, args.root, args.d3rlpy_python, args.override)
            for d, m, s in jobs
        ]
    else:
        work = [
            lambda init=init, s=s: online_one(args.task, init, s, args.frames, args.root, args.override)
            for s in args.seeds
            for init in (args.init, None)
        ]
    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(lambda job: job(), work):
            print(line, flush=True)


if __name__ == "__main__":
    main()
