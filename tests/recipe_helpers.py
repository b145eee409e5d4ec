"""Small-budget runs of training (:func:`torchrl_awr.recipe.training.train`), in process (Hydra compose)
or as a command (``recipes/mujoco_awr.py``, the script that runs it in a checkout)."""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from torchrl.envs import RewardSum, TransformedEnv

from torchrl_awr.envs import GymnasiumBatchEnv
from torchrl_awr.recipe import compose, factories
from torchrl_awr.recipe.training import train
from torchrl_awr.trainer import AWRTrainer

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "mujoco_awr.py"  # the command as a script: torchrl_awr.commands.train.main
OFFLINE_RECIPE = ROOT / "recipes" / "offline_awr.py"
FORKED_PYTHON = Path(__file__).with_name("forked_python.py")

# 4 iterations of 256 frames (4 envs x 64 steps, one process), eval and checkpoint every 2, eager
# updates (the compiled ones are the trainer's tests'; one command-line run keeps the default).
SMALL = [
    "task=hopper",
    "device=cpu",
    "collector.total_frames=1024",
    "collector.frames_per_batch=256",
    "collector.type=single",
    "env.num_envs=4",
    "buffer.size=2048",
    "train.critic_steps=4",
    "train.actor_steps=8",
    "train.batch_size=64",
    "eval.episodes=2",
    "eval.num_envs=2",
    "eval.interval=2",
    "checkpoint.interval=2",
    "train.compile=false",
    "progress=false",
]


def compose_config(*overrides: str) -> DictConfig:
    """The recipe's config with :data:`SMALL` and then ``overrides`` applied."""
    return compose.compose_config(*SMALL, *overrides)


def load_script(path: Path):
    """A script (a recipe or a benchmark: commands, not part of the package) as a module."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_recipe(run_dir: Path, *overrides: str):
    """:func:`~torchrl_awr.recipe.training.train` in this process, into ``run_dir`` (a new run)
    or the run that ``resume=`` names, as the command would; returns the trainer."""
    return train(compose_config(*overrides, f"output_dir={run_dir}"), overrides=[*SMALL, *overrides])


def recipe_command(*overrides: str, small: bool = True, script: Path = RECIPE) -> list[str]:
    return [sys.executable, str(script), *(SMALL if small else []), *overrides]


def run_command(
    cwd: Path,
    *overrides: str,
    small: bool = True,
    timeout: float = 120,
    env: dict | None = None,
    script: Path = RECIPE,
):
    """Runs the recipe (or ``script``, another recipe) as a command in ``cwd`` (where Hydra's
    default outputs go)."""
    return subprocess.run(
        recipe_command(*overrides, small=small, script=script),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**(os.environ if env is None else env), "HYDRA_FULL_ERROR": "0"},
    )


def run_commands(
    commands: list[tuple[list[str], Path, dict]], jobs: int = 2, timeout: float = 300
) -> list[subprocess.CompletedProcess]:
    """``subprocess.run([python, *args], cwd=cwd, env=env)`` for each ``(args, cwd, env)``, as forks of
    one interpreter that imported the recipe's packages once (``forked_python.py``): for commands
    that end before training (bad input), a fraction of a second each instead of three."""
    with tempfile.TemporaryDirectory() as scratch:
        requests = [
            {"args": args, "cwd": str(cwd), "env": env, "stdout": f"{scratch}/{i}.out", "stderr": f"{scratch}/{i}.err"}
            for i, (args, cwd, env) in enumerate(commands)
        ]
        server = subprocess.run(
            [sys.executable, str(FORKED_PYTHON), str(jobs)],
            input=json.dumps(requests),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return [
            subprocess.CompletedProcess(
                [sys.executable, *request["args"]],
                code,
                Path(request["stdout"]).read_text(),
                Path(request["stderr"]).read_text(),
            )
            for request, code in zip(requests, json.loads(server.stdout))
        ]


def run_module(module: str, *args: str, timeout: float = 120):
    """``python -m <module> <args>`` from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def read_csv(run_dir: Path, name: str) -> list[tuple[float, float]]:
    """(step, value) rows of one scalar written by the CSV logger."""
    path = Path(run_dir) / "logs" / "scalars" / f"{name}.csv"
    return [tuple(map(float, line.split(","))) for line in path.read_text().splitlines()]


def assert_time_ordered(store) -> None:
    """Each env's steps, read oldest first, are one trajectory: s_{t+1} = s'_t unless done."""
    data = store.chronological()  # [n_envs, T]
    continues = ~data["next", "done"][:, :-1].squeeze(-1)
    same = (data["observation"][:, 1:] == data["next", "observation"][:, :-1]).all(-1)
    broken = (continues & ~same).nonzero().tolist()
    assert not broken, f"{len(broken)} (time, env) steps do not continue their trajectory: {broken[:5]}"


def actor_matches_batch(actor, batch) -> float:
    """Largest gap between the locs the collector's policy wrote and this actor's on the same inputs."""
    with torch.no_grad():
        mine = actor(batch.select("observation").to(factories.module_device(actor)))
    return (mine["loc"].cpu() - batch["loc"].cpu()).abs().max().item()


class ProbedTrainer(AWRTrainer):
    """Records, for every batch, how far the collector's policy is from the trainer's actor now
    (``gaps``) and from the initial actor (``stale_gaps``, which shows the probe can tell)."""

    gaps: list[float] = []
    stale_gaps: list[float] = []

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.initial_actor = copy.deepcopy(self.loss_module.actor_network)

    def _iterate(self, batch, timer):
        ProbedTrainer.gaps.append(actor_matches_batch(self.loss_module.actor_network, batch))
        ProbedTrainer.stale_gaps.append(actor_matches_batch(self.initial_actor, batch))
        return super()._iterate(batch, timer)


class _BreakingEnv(GymnasiumBatchEnv):
    """Raises on its 20th step, as an environment that breaks mid-run."""

    def _step(self, tensordict):
        self.steps = getattr(self, "steps", 0) + 1
        if self.steps == 20:
            raise RuntimeError("the environment broke")
        return super()._step(tensordict)


def breaking_env():
    """Two InvertedPendulum copies that break on their 20th step (a collector worker's env: a
    module-level function, so that worker processes can import it)."""
    return TransformedEnv(_BreakingEnv("InvertedPendulum-v5", 2), RewardSum())


def the_error_line(stderr: str) -> str:
    """The single ``error:`` line a failed command printed (and no traceback)."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The ``error:`` line of a command refused as bad input (exit code 2)."""
    assert result.returncode == 2, result.stderr[-3000:]
    return the_error_line(result.stderr)


@contextlib.contextmanager
def tmpfs(directory: Path, size: str):
    """A tmpfs of ``size`` (e.g. ``3m``) mounted at ``directory`` (needs root and mount); the test
    is skipped with the reason elsewhere."""
    directory.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], capture_output=True
    )
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)
