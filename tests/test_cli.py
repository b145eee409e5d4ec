"""The ``torchrl-awr`` command (``python -m torchrl_awr``): its subcommands, help, bad input, and
the public API that imports no Hydra."""

from __future__ import annotations

import subprocess
import sys

import pytest

from torchrl_awr import commands as cli

from recipe_helpers import ROOT


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``torchrl-awr argv`` in this process: (exit code, stdout, stderr)."""
    try:
        cli.main(list(argv))
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_the_public_api_imports_no_hydra():
    """The library (loss, trainer, store) is TorchRL's; Hydra and OmegaConf are the commands'."""
    code = (
        "import sys\n"
        "import torchrl_awr\n"
        "from torchrl_awr import AWRLoss, AWRTrainer, AWRTrainerConfig, ShuffledPassSampler, TrajectoryStore\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('hydra', 'omegaconf')]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_help_lists_every_command(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and out.startswith("usage: torchrl-awr <command>")
    for name in ("train", "train-offline", "evaluate", "export", "dataset", "plot", "report"):
        assert f"  {name} " in out


@pytest.mark.parametrize("argv", [["foo"], ["trian", "task=hopper"], []])
def test_an_unknown_or_missing_command_is_one_error_line_exit_2(capsys, argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert "train, train-offline, evaluate, export, dataset, plot" in err


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("evaluate", "--episodes"),
        ("export", "--format"),
        ("dataset", "make"),
        ("plot", "run_dir"),
        ("report", "--budgets"),
    ],
)
def test_each_command_has_its_help(capsys, name, says):
    code, out, _ = run_cli(capsys, name, "--help")
    assert code == 0 and out.startswith(f"usage: torchrl-awr {name}") and says in out


def test_train_help_is_hydras_and_lists_the_presets(capsys):
    code, out, _ = run_cli(capsys, "train", "--help")
    assert code == 0
    assert "task: ant, halfcheetah, hopper" in out and "preset: faithful, modern" in out and "collector:" in out


def test_train_keeps_the_recipes_exit_2_for_config_errors(capsys, tmp_path):
    code, out, err = run_cli(capsys, "train", "task=hoper", f"output_dir={tmp_path / 'run'}")
    assert code == 2 and err.startswith("error: ") and "task/hoper" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "train", "task=hopper", "foo=1", f"output_dir={tmp_path / 'run'}")
    assert code == 2 and "Unknown setting foo" in err
    code, _, err = run_cli(capsys, "train", "preset=moden", f"output_dir={tmp_path / 'run'}")
    assert code == 2 and "Could not find 'preset/moden'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_train_offline_refuses_a_run_without_a_dataset(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train-offline", "task=hopper", f"output_dir={tmp_path / 'run'}")
    assert code == 2 and err.strip() == (
        "error: torchrl-awr train-offline learns from a dataset: set dataset=<directory or Minari id>."
    )
    assert not (tmp_path / "run").exists()


def test_python_m_torchrl_awr_is_the_command():
    result = subprocess.run(
        [sys.executable, "-m", "torchrl_awr", "evaluate", str(ROOT / "no-such-run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "no-such-run" in result.stderr
