"""``torchrl-awr export``: the exported policies act as the trained actor, their JSON
describes them, and bad input is one error line with exit code 2."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_awr.commands import export
from torchrl_awr.recipe.trained import load_run

from recipe_helpers import run_module, run_recipe

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

TINY = ("collector.total_frames=512",)
# The actor kinds and a run of each: the recipe's Gaussian, the squashed one, a discrete task.
KINDS = {
    "normal": (),
    "tanh_normal": ("model.distribution=tanh_normal", "model.action_std_end=null"),
    "categorical": ("task=lunarlander",),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny trained run directory per actor kind."""
    root = tmp_path_factory.mktemp("runs")
    for kind, overrides in KINDS.items():
        run_recipe(root / kind, *TINY, *overrides)
    return {kind: root / kind for kind in KINDS}


def observations(obs_dim: int) -> torch.Tensor:
    """Observations well beyond the few the normaliser saw, so the tanh saturates too."""
    return torch.randn(64, obs_dim, generator=torch.Generator().manual_seed(1)) * 5


def actor_actions(run_dir, obs: torch.Tensor) -> torch.Tensor:
    """The actions the deterministic evaluation takes (discrete: as indices, not one-hot)."""
    run = load_run(run_dir)
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        action = run.actor(TensorDict(observation=obs, batch_size=obs.shape[:1]))["action"]
    return action.argmax(-1) if run.cfg.model.distribution == "categorical" else action


def assert_same_actions(exported: torch.Tensor, expected: torch.Tensor) -> None:
    assert exported.shape == expected.shape and exported.dtype == expected.dtype
    if expected.is_floating_point():
        torch.testing.assert_close(exported, expected, atol=1e-5, rtol=0)
    else:
        assert torch.equal(exported, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_pt2_reproduces_the_actor(runs, kind, tmp_path):
    out = tmp_path / "policy.pt2"
    export.main([str(runs[kind] / "checkpoint.pt"), "--format", "pt2", "--out", str(out)])
    policy = torch.export.load(out).module()
    obs = observations(load_run(runs[kind]).observation_dim)
    with torch.no_grad():
        assert_same_actions(policy(obs), actor_actions(runs[kind], obs))
        assert_same_actions(policy(obs[:1]), actor_actions(runs[kind], obs[:1]))  # the batch is dynamic


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_reproduces_the_actor(runs, kind, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path / "policy.onnx"
    export.main([str(runs[kind]), "--out", str(out)])
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    obs = observations(load_run(runs[kind]).observation_dim)
    for batch in (obs, obs[:1]):
        (action,) = session.run(None, {"observation": batch.numpy()})
        assert_same_actions(torch.from_numpy(action), actor_actions(runs[kind], batch))


def test_sidecar_json_and_default_paths(runs, capsys):
    """The default output is <run dir>/policy.<format>, with <out>.json beside it."""
    hopper, lunar = runs["normal"], runs["categorical"]
    export.main([str(hopper), "--format", "pt2"])
    assert capsys.readouterr().out.strip() == (
        f"wrote {hopper / 'policy.pt2'} and {hopper / 'policy.pt2.json'}: the Hopper-v5 policy at 512 samples"
    )
    assert json.loads((hopper / "policy.pt2.json").read_text()) == {
        "format": "pt2",
        "env_id": "Hopper-v5",
        "env_kwargs": {},
        "samples": 512,
        "trained": "512 samples",
        "checkpoint": str(hopper / "checkpoint.pt"),
        "distribution": "normal",
        "input_name": "observation",
        "output_name": "action",
        "observation_shape": [11],
        "observation_dtype": "float32",
        "action_shape": [3],
        "action_dtype": "float32",
        "action_bounds": {"low": [-1.0] * 3, "high": [1.0] * 3},
    }
    export.main([str(lunar), "--format", "pt2"])
    metadata = json.loads((lunar / "policy.pt2.json").read_text())
    assert (lunar / "policy.pt2").is_file()
    assert metadata["env_id"] == "LunarLander-v3" and metadata["observation_shape"] == [8]
    assert metadata["num_actions"] == 4 and metadata["action_shape"] == [] and metadata["action_dtype"] == "int64"
    assert metadata["action_bounds"] is None and metadata["distribution"] == "categorical"


def no_checkpoint(runs, tmp_path):
    return [str(tmp_path)]


def no_config(runs, tmp_path):
    shutil.copy(runs["normal"] / "checkpoint.pt", tmp_path)
    return [str(tmp_path / "checkpoint.pt")]


def unknown_format(runs, tmp_path):
    return [str(runs["normal"]), "--format", "tflite"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (no_checkpoint, "No checkpoint at .*checkpoint.pt"),
        (no_config, "No config.yaml beside .*checkpoint.pt"),
        (unknown_format, r"argument --format: invalid choice: 'tflite' \(choose from 'onnx', 'pt2'\)"),
    ],
)
def test_bad_input_is_one_error_line(runs, tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        export.main(arguments(runs, tmp_path))
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ")
    assert re.search(message, line), line


def test_missing_onnx_package_is_named(runs, tmp_path, capsys, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "onnxscript" else real_find_spec(name, *args)
    )
    with pytest.raises(SystemExit) as exit_info:
        export.main([str(runs["normal"]), "--out", str(tmp_path / "policy.onnx")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: --format onnx needs the onnxscript package: pip install onnxscript (or use --format pt2)."
    )
    assert not (tmp_path / "policy.onnx").exists()


def test_command_line_error_has_no_traceback(tmp_path):
    result = run_module("torchrl_awr", "export", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: No checkpoint at {tmp_path / 'nowhere'}.", result.stderr


def test_the_onnx_command_prints_only_its_own_line(runs, tmp_path):
    """torch's exporter notes (torchvision operators it skips, a pytree deprecation) are not the
    user's: the command says what it wrote, and nothing else."""
    out = tmp_path / "policy.onnx"
    result = subprocess.run(
        [sys.executable, "-m", "torchrl_awr", "export", str(runs["normal"]), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines() == [f"wrote {out} and {out}.json: the Hopper-v5 policy at 512 samples"]
