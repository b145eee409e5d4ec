"""``torchrl-awr evaluate``: a trained run re-evaluated with its saved config, as a
line or JSON, reproducibly; bad input is one error line with exit code 2."""

from __future__ import annotations

import json
import math
import re
import shutil

import pytest
from omegaconf import OmegaConf

from torchrl_awr.commands import evaluate
from torchrl_awr.recipe.factories import SEED_OFFSETS
from torchrl_awr.recipe.trained import load_run

from recipe_helpers import run_module, run_recipe

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

TINY = ("collector.total_frames=512",)
NUMBER = r"-?\d+\.\d"


@pytest.fixture(scope="module")
def hopper(tmp_path_factory):
    """A tiny Hopper run whose env kwargs add the x position to the observation (12 numbers, not 11)."""
    run_dir = tmp_path_factory.mktemp("hopper") / "run"
    run_recipe(run_dir, *TINY, "seed=3", "+env.kwargs.exclude_current_positions_from_observation=false")
    return run_dir


def evaluate_json(capsys, *arguments: str) -> dict:
    evaluate.main([*arguments, "--json"])
    return json.loads(capsys.readouterr().out)


def test_prints_one_readable_line(hopper, capsys):
    evaluate.main([str(hopper), "--episodes", "4", "--seed", "5"])
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(
        rf"Hopper-v5 at 512 samples, 4 deterministic episodes \(seed 5\): return {NUMBER} ± {NUMBER}, "
        rf"episode length {NUMBER}",
        line,
    ), line


def test_json_uses_the_runs_config_and_checkpoint(hopper, capsys):
    result = evaluate_json(capsys, str(hopper / "checkpoint.pt"), "--episodes", "3")
    assert result["episodes"] == 3 and result["stochastic"] is False
    assert result["seed"] == 3 + SEED_OFFSETS["reevaluation"]  # the run's seed, shifted to fresh episodes
    assert result["checkpoint"] == str(hopper / "checkpoint.pt") and result["frames"] == 512
    assert result["env_id"] == "Hopper-v5" and load_run(hopper).observation_dim == 12  # the run's env kwargs
    assert all(math.isfinite(result[key]) for key in ("return_mean", "return_std", "episode_length_mean"))
    assert 1 <= result["episode_length_mean"] <= 1000


@pytest.mark.parametrize("policy", [[], ["--stochastic"]])
def test_same_seed_same_numbers(hopper, capsys, policy):
    arguments = (str(hopper), "--episodes", "4", "--seed", "11", *policy)
    first, second = evaluate_json(capsys, *arguments), evaluate_json(capsys, *arguments)
    assert first == second and first["stochastic"] == bool(policy)


def test_stochastic_policy_samples(hopper, capsys):
    """The same episodes with sampled actions end otherwise: the flag reaches the actor."""
    one = evaluate_json(capsys, str(hopper), "--episodes", "4", "--seed", "11", "--stochastic")
    other = evaluate_json(capsys, str(hopper), "--episodes", "4", "--seed", "11")
    assert one["return_mean"] != other["return_mean"]


def test_discrete_task(tmp_path, capsys):
    run_recipe(tmp_path / "lunar", *TINY, "task=lunarlander")
    capsys.readouterr()  # the recipe's own screens
    result = evaluate_json(capsys, str(tmp_path / "lunar"), "--episodes", "2", "--seed", "0")
    assert result["env_id"] == "LunarLander-v3" and result["episodes"] == 2
    assert math.isfinite(result["return_mean"])


def test_a_saved_config_without_newer_keys_takes_them_from_its_preset(hopper, tmp_path, capsys):
    """A config saved before keys were added (here collector.ray and eval) takes them from its task's preset."""
    for name in ("checkpoint.pt", "config.yaml"):
        shutil.copy(hopper / name, tmp_path)
    saved = OmegaConf.load(tmp_path / "config.yaml")
    del saved["collector"]["ray"], saved["eval"]
    OmegaConf.save(saved, tmp_path / "config.yaml")
    assert evaluate_json(capsys, str(tmp_path), "--episodes", "2")["frames"] == 512


def no_config(hopper, tmp_path):
    shutil.copy(hopper / "checkpoint.pt", tmp_path)
    return [str(tmp_path)]


def corrupt_checkpoint(hopper, tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    return [str(tmp_path)]


def other_model(hopper, tmp_path):
    for name in ("checkpoint.pt", "config.yaml"):
        shutil.copy(hopper / name, tmp_path)
    saved = OmegaConf.load(tmp_path / "config.yaml")
    saved.model.hidden_sizes = [32]
    OmegaConf.save(saved, tmp_path / "config.yaml")
    return [str(tmp_path)]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (lambda hopper, tmp_path: [str(tmp_path / "missing")], "No checkpoint at .*missing"),
        (no_config, "No config.yaml beside .*checkpoint.pt"),
        (corrupt_checkpoint, "Checkpoint .*checkpoint.pt is corrupt or unreadable"),
        (other_model, "checkpoint .*checkpoint.pt does not fit the model built from this config: .*size mismatch"),
        (lambda hopper, tmp_path: [str(hopper), "--episodes", "0"], "episodes must be >= 1, got 0"),
        (lambda hopper, tmp_path: [str(hopper), "--seed", "-1"], "seed must be >= 0, got -1"),
        (lambda hopper, tmp_path: [str(hopper), "--episodes", "many"], "argument --episodes: invalid int value"),
    ],
    ids=[
        "no checkpoint",
        "no config",
        "corrupt checkpoint",
        "other model",
        "no episodes",
        "negative seed",
        "bad number",
    ],
)
def test_bad_input_is_one_error_line(hopper, tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(arguments(hopper, tmp_path))
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and re.search(message, line), line


def test_command_line_error_has_no_traceback(tmp_path):
    result = run_module("torchrl_awr", "evaluate", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: No checkpoint at {tmp_path / 'checkpoint.pt'}.", result.stderr
