"""The package as a new user installs it: a wheel, no checkout on the path, the ``torchrl-awr``
command trains, evaluates and exports a run (the configs are package data)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

from recipe_helpers import ROOT, SMALL

# InvertedPendulum, two iterations: the recipe's small settings, shorter.
TINY = [
    "task=inverted_pendulum",
    *(o for o in SMALL if o.split("=")[0] not in ("task", "collector.total_frames", "buffer.size")),
    "collector.total_frames=512",
    "buffer.size=1024",
]


def build_wheel(tmp_path: Path) -> Path:
    """The wheel of a clean copy of the package's sources (an in-tree build would reuse the
    checkout's build/ folder, and files since deleted)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("torchrl_awr", "hydra_plugins"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, source]
    # This environment's setuptools (fast); one too old to build a wheel by itself (< 70.1, without
    # the wheel package) is replaced by pip's isolated build, which fetches setuptools.
    if subprocess.run([*build, "--no-build-isolation"], capture_output=True, timeout=120).returncode != 0:
        subprocess.run(build, check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("torchrl_awr-*.whl")
    return wheel


def test_the_wheel_installs_and_its_command_trains_evaluates_and_exports(tmp_path):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert {"torchrl_awr/recipe/config/config.yaml", "torchrl_awr/recipe/config/offline.yaml"} <= set(names)
    assert "torchrl_awr/recipe/config/task/inverted_pendulum.yaml" in names
    assert {
        "torchrl_awr/recipe/config/preset/modern.yaml",
        "torchrl_awr/recipe/config/preset_task/modern_hopper.yaml",
    } <= set(names)
    assert "hydra_plugins/torchrl_awr_optuna/awr_optuna_sweeper.py" in names  # hydra/sweeper=awr_optuna
    assert any(name.endswith(".dist-info/entry_points.txt") for name in names)

    # A fresh environment that sees this one's packages (the dependencies: nothing is downloaded)
    # after its own, where the wheel goes.
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (purelib / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel]
    subprocess.run(install, check=True, capture_output=True, timeout=120)

    work = tmp_path / "work"  # no checkout here, nor on the path
    work.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(VIRTUAL_ENV=str(env_dir), PATH=f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}", HYDRA_FULL_ERROR="0")

    def command(*words: str, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(words, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"{' '.join(words)}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        return result

    where = command(str(python), "-c", "import torchrl_awr; print(torchrl_awr.__file__)").stdout.strip()
    assert Path(where).is_relative_to(purelib), where  # the wheel's, not the checkout's

    torchrl_awr = str(env_dir / "bin" / "torchrl-awr")
    run = tmp_path / "run"
    trained = command(torchrl_awr, "train", *TINY, f"output_dir={run}")
    assert trained.stdout.startswith("AWR on InvertedPendulum-v5") and (run / "checkpoint.pt").is_file()
    assert not (work / "multirun").exists() and not list(work.iterdir())  # Hydra writes nothing of its own
    modern = tmp_path / "modern"  # the modern preset's files are in the wheel
    command(torchrl_awr, "train", *TINY, "preset=modern", f"output_dir={modern}")
    assert "optim:\n  name: adam" in (modern / "config.yaml").read_text()

    result = json.loads(command(torchrl_awr, "evaluate", str(run), "--episodes", "2", "--json").stdout)
    assert result["episodes"] == 2 and result["return_mean"] > 0

    command(torchrl_awr, "export", str(run))
    assert (run / "policy.onnx").is_file()
    assert json.loads((run / "policy.onnx.json").read_text())["env_id"] == "InvertedPendulum-v5"
