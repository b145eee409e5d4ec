"""Bad input through the commands a user runs: one ``error:`` line naming the key, exit code 2,
before any environment is built, and nothing left behind (docs/reliability.md, "Bad input")."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import hydra
import pytest
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict

from torchrl_awr.commands.errors import config_errors_exit_2
from torchrl_awr.offline_data import DATA_FILE, META_FILE
from torchrl_awr.recipe import compose, factories

from recipe_helpers import OFFLINE_RECIPE, ROOT, compose_config, one_error_line, recipe_command, run_commands

# The recipe's command line: overrides -> what its one error line must say. DATA stands for the
# case's own temporary directory.
RECIPE_CASES = {
    "hidden sizes negative": (["model.hidden_sizes=[-1,64]"], r"model\.hidden_sizes=\[-1, 64\] \(must be a non-empty"),
    "hidden sizes a word": (["model.hidden_sizes=abc"], r"model\.hidden_sizes='abc' \(must be a non-empty list"),
    "hidden sizes a float": (["model.hidden_sizes=1.5"], r"model\.hidden_sizes=1\.5 \(must be a non-empty list"),
    "hidden sizes nested": (["model.hidden_sizes=[[1,2]]"], r"model\.hidden_sizes=\[\[1, 2\]\] \(must be"),
    "hidden sizes huge": (
        ["model.hidden_sizes=[1000000,1000000]"],
        r"model\.hidden_sizes=\[1000000, 1000000\] \(must be .* at most 100,000,000 weights\)",
    ),
    "hidden sizes empty": (["model.hidden_sizes=[]"], r"model\.hidden_sizes=\[\] \(must be a non-empty list"),
    "hidden sizes zero": (["model.hidden_sizes=[0]"], r"model\.hidden_sizes=\[0\] \(must be a non-empty list"),
    "residual blocks negative": (
        ["model.residual_blocks=-1"],
        r"model\.residual_blocks=-1 \(must be >= 0\)",
    ),
    "residual blocks of two widths": (
        ["model.residual_blocks=2"],
        r"model\.residual_blocks=2 needs one width.*got model\.hidden_sizes=\[128, 64\]",
    ),
    "residual blocks and layer_norm": (
        ["model.residual_blocks=1", "model.hidden_sizes=[64]", "model.layer_norm=true"],
        r"model\.layer_norm=true normalises the plain MLP's layers.*set model\.layer_norm=false",
    ),
    "fractional seed": (["seed=1.5"], r"seed=1\.5 \(must be an integer >= 0\)"),
    "compile maybe": (["train.compile=maybe"], r"train\.compile='maybe' \(must be true or false\)"),
    "save_buffer maybe": (["checkpoint.save_buffer=maybe"], r"checkpoint\.save_buffer='maybe' \(must be true or"),
    "progress a word": (["progress=abc"], r"progress='abc' \(must be true or false\)"),
    "keep_info a number": (["env.keep_info=2"], r"env\.keep_info=2 \(must be true or false\)"),
    "fractional buffer": (["buffer.size=4096.5"], r"buffer\.size=4096\.5 \(must be an integer > 0\)"),
    "fractional frames": (["collector.total_frames=4096.7"], r"collector\.total_frames=4096\.7 \(must be an integer\)"),
    "fractional normalizer": (
        ["model.normalizer_samples=0.5"],
        r"model\.normalizer_samples=0\.5 \(must be an integer >= 0\)",
    ),
    "cpu index": (["device=cpu:5"], r"device='cpu:5': the CPU has no index"),
    "unknown key": (["+foo=1"], r"Unknown setting foo=1: the recipe has no such key"),
    "unknown nested key": (["+train.foo=1"], r"Unknown setting train\.foo=1: the recipe has no such key"),
    "empty output_dir": (["output_dir=''"], r"output_dir='' \(must be a non-empty string \(a path\)\)"),
    "blank output_dir": (["output_dir=' '"], r"output_dir=' ' \(must be a non-empty string \(a path\)\)"),
    "output_dir a number": (["output_dir=5"], r"output_dir=5 \(must be a non-empty string \(a path\)\)"),
    "frame_skip 0": (["+env.kwargs.frame_skip=0"], r"env\.kwargs\.frame_skip=0 \(must be >= 1\)"),
    "frame_skip -1": (["+env.kwargs.frame_skip=-1"], r"env\.kwargs\.frame_skip=-1 \(must be >= 1\)"),
    "noise nan": (["+env.kwargs.reset_noise_scale=nan"], r"env\.kwargs\.reset_noise_scale=nan \(must be a number >= 0"),
    "render_mode": (["+env.kwargs.render_mode=human"], r"env\.kwargs\.render_mode='human' cannot be set.*eval\.video"),
    "kwarg gym.make refuses": (
        ["+env.kwargs.no_such_arg=1"],
        r"Hopper-v5 does not accept the env kwargs .*no_such_arg",
    ),
    "mlflow unreachable": (
        ["logger.backend=mlflow", "logger.mlflow_uri=http://127.0.0.1:9"],
        r"logger\.mlflow_uri=http://127\.0\.0\.1:9: no MLflow server answers",
    ),
    "wandb without a login": (["logger.backend=wandb"], r"logger\.backend=wandb needs a W&B login .*`wandb login`"),
    "dataset directory empty": (["dataset=DATA/empty"], r"No dataset at .*empty"),
    "dataset without transitions": (["dataset=DATA/none"], r"none: the dataset holds no transitions"),
    "dataset of float64": (["dataset=DATA/f64"], r"f64: its 'observation' entries are torch\.float64"),
}
# Hydra's own errors, which the recipe reports once it wraps its main (torchrl_awr.commands.errors).
HYDRA_CASES = {
    "unknown task": (["task=hoper"], r"Could not find 'task/hoper'.*hopper.*lunarlander"),
    "unknown preset": (["preset=moden"], r"Could not find 'preset/moden'.*faithful.*modern"),
    "unknown key without +": (["foo=1"], r"Unknown setting foo: the recipe has no such key"),
    "override syntax": (["seed=[1"], r"no viable alternative at input '\[1'"),
}
# python -m torchrl_awr commands: DATA stands for the case's own temporary directory.
MODULE_CASES = {
    "export --out a directory": (
        ["torchrl_awr", "export", "DATA/run", "--out", "DATA"],
        r"--out .*: .* is a directory; name the file to write",
    ),
    "export --out read-only": (
        ["torchrl_awr", "export", "DATA/run", "--out", "/proc/policy.onnx"],
        r"--out /proc/policy\.onnx: no file can be written in /proc",
    ),
    "datasets --seed -1": (
        ["torchrl_awr", "dataset", "make", "--from", "random", "--task", "hopper", "--seed", "-1", "--out", "DATA/d"],
        r"--seed must be >= 0",
    ),
}
NO_LOGIN = {"WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_DISABLED", "NETRC", "WANDB_BASE_URL"}


def write_dataset(directory: Path, n: int, dtype: torch.dtype = torch.float32) -> None:
    """A Hopper dataset directory of ``n`` transitions whose numbers are ``dtype``."""
    done = torch.zeros(n, 1, dtype=torch.bool)
    done[-1:] = True
    data = TensorDict(
        {
            "observation": torch.zeros(n, 11, dtype=dtype),
            "action": torch.zeros(n, 3),
            "episode": torch.zeros(n, dtype=torch.int64),
            "next": {
                "observation": torch.zeros(n, 11, dtype=dtype),
                "reward": torch.zeros(n, 1),
                "done": done,
                "terminated": done.clone(),
                "truncated": torch.zeros(n, 1, dtype=torch.bool),
            },
        },
        batch_size=[n],
    )
    directory.mkdir(parents=True)
    data.memmap(directory / DATA_FILE)
    (directory / META_FILE).write_text(json.dumps({"env_id": "Hopper-v5", "transitions": n}))


def make_inputs(directory: Path) -> None:
    """The files the cases name: an empty directory, two datasets AWR cannot use, and an empty
    home (no netrc) for W&B."""
    (directory / "empty").mkdir()
    (directory / "home").mkdir()
    write_dataset(directory / "none", 0)
    write_dataset(directory / "f64", 8, torch.float64)


def no_login_env(directory: Path) -> dict:
    """This environment without a W&B login or mode, with an empty home (no netrc)."""
    home = directory / "home"
    env = {key: value for key, value in os.environ.items() if key not in NO_LOGIN}
    return {**env, "HOME": str(home), "WANDB_CONFIG_DIR": str(home / "wandb"), "HYDRA_FULL_ERROR": "0"}


def command_of(case: str, cwd: Path) -> tuple[list[str], Path, dict]:
    """One case's command (Python's arguments, where it runs, its environment), its inputs made in
    ``cwd``."""
    make_inputs(cwd)
    if case in MODULE_CASES:
        return ["-m", *[arg.replace("DATA", str(cwd)) for arg in MODULE_CASES[case][0]]], ROOT, no_login_env(cwd)
    overrides = (RECIPE_CASES | HYDRA_CASES)[case][0]
    output = [] if "output_dir" in overrides[0] else [f"output_dir={cwd / 'run'}"]
    command = recipe_command(*[o.replace("DATA", str(cwd)) for o in overrides], *output)
    return command[1:], cwd, no_login_env(cwd)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every case's command, each in its own directory: ``(result, what the directory held before,
    the directory)``."""
    cases = [*RECIPE_CASES, *HYDRA_CASES, *MODULE_CASES]
    directories = {case: tmp_path_factory.mktemp("bad") for case in cases}
    commands = [command_of(case, directories[case]) for case in cases]
    before = {case: sorted(path.name for path in directories[case].iterdir()) for case in cases}
    done = run_commands(commands)
    return {case: (result, before[case], directories[case]) for case, result in zip(cases, done)}


def assert_one_error_line(result: subprocess.CompletedProcess, message: str) -> None:
    line = one_error_line(result)
    assert re.search(message, line), line


@pytest.mark.parametrize("case", [*RECIPE_CASES, *HYDRA_CASES, *MODULE_CASES])
def test_bad_input_is_one_error_line_and_leaves_nothing(case, results):
    result, before, cwd = results[case]
    assert_one_error_line(result, (RECIPE_CASES | HYDRA_CASES | MODULE_CASES)[case][1])
    assert sorted(path.name for path in cwd.iterdir()) == before  # no run directory, no outputs/
    assert not (cwd / "d").exists() and not (cwd / "policy.onnx").exists()


class EnvironmentBuilt(Exception):
    """Raised where an environment would be made (no handler of ours catches it)."""


@pytest.mark.parametrize(
    "case", [case for case in RECIPE_CASES if case not in ("wandb without a login", "kwarg gym.make refuses")]
)
def test_bad_input_is_named_before_any_environment_is_built(case, tmp_path, monkeypatch):
    """The recipe's checks in this process, with every way to an environment closed (W&B's login
    is left to the command: its settings, once read, stay for the process)."""

    def no_env(*args, **kwargs):
        raise EnvironmentBuilt

    monkeypatch.setattr(factories, "make_env", no_env)
    monkeypatch.setattr(gym, "make", no_env)
    make_inputs(tmp_path)
    overrides, message = RECIPE_CASES[case]
    cfg = compose_config(*[o.replace("DATA", str(tmp_path)) for o in overrides])
    with pytest.raises((ValueError, OSError), match=message):
        compose.validate_config(cfg)


def test_a_kwarg_gym_make_refuses_is_named_before_any_worker_exists(monkeypatch):
    """The one environment made to check ``env.kwargs`` is made here, in this process, last."""
    monkeypatch.setattr(factories, "make_env", None)  # no collector's or evaluator's env
    with pytest.raises(ValueError, match=RECIPE_CASES["kwarg gym.make refuses"][1]):
        compose.validate_config(compose_config("+env.kwargs.no_such_arg=1"))
    compose.validate_config(compose_config("+env.kwargs.frame_skip=2", "+env.kwargs.reset_noise_scale=0.01"))


@pytest.mark.parametrize("case", HYDRA_CASES)
def test_hydras_errors_are_one_error_line(case, monkeypatch, capsys):
    @config_errors_exit_2
    @hydra.main(config_path=str(compose.CONFIG_DIR), config_name="config", version_base="1.3")
    def main(cfg):
        raise AssertionError("composed")

    monkeypatch.setattr(sys, "argv", ["recipe", *HYDRA_CASES[case][0]])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and re.search(HYDRA_CASES[case][1], line), line
    assert "HYDRA_FULL_ERROR" not in os.environ


def test_every_key_of_the_recipe_has_a_rule():
    """The table of rules is the recipe's schema: each key of its config files has a rule, and
    every rule a key, so a key added to config.yaml gets its type checked."""
    keys = set()
    for path in compose.CONFIG_DIR.rglob("*.yaml"):
        tree = OmegaConf.to_container(OmegaConf.load(path))
        keys |= {key for key in compose.config_keys(tree) if key.partition(".")[0] not in ("defaults", "hydra")}
    assert keys == set(compose.RECIPE_KEYS)


def test_a_resume_keeps_the_keys_its_saved_config_has(tmp_path):
    """A run saved by an older version (here with ``task.name``) resumes; a new key does not."""
    saved = OmegaConf.to_container(compose_config(), resolve=True)
    saved["task"] = {"name": "hopper"}
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(saved))
    cfg = compose_config(f"resume={tmp_path / 'checkpoint.pt'}")
    OmegaConf.set_struct(cfg, False)
    cfg.task = {"name": "hopper"}
    compose.check_known_keys(cfg)
    cfg.foo = 1
    with pytest.raises(ValueError, match="Unknown setting foo=1"):
        compose.check_known_keys(cfg)


def test_the_offline_recipe_without_a_dataset_is_refused(tmp_path):
    """``recipes/offline_awr.py`` with no ``dataset=`` would otherwise collect online."""
    result = subprocess.run(
        recipe_command("task=hopper", f"output_dir={tmp_path / 'run'}", small=False, script=OFFLINE_RECIPE),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_error_line(result, r"recipes/offline_awr\.py learns from a dataset: set dataset=")
    assert not list(tmp_path.iterdir())
