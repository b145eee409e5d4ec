"""A trained run's deterministic policy as one standalone file, to act without torchrl
(``torchrl-awr export``).

The policy maps observations ``[batch, obs_dim]`` (float32) to the action the deterministic
evaluation takes, with the run's frozen observation normaliser inside: for the Gaussian actors
the mean in the env's action units (``tanh_normal``: squashed into the bounds), ``[batch,
action_dim]`` float32; for a discrete task the argmax action index, ``[batch]`` int64. The JSON
beside it (``<out>.json``) records the shapes, the action bounds, the env id and kwargs and the
run's sample count. Load it with::

    onnxruntime.InferenceSession("policy.onnx").run(None, {"observation": obs})[0]
    torch.export.load("policy.pt2").module()(obs)

The ONNX format needs ``pip install onnx onnxscript`` (torch's ``torch.export``-based ONNX
exporter).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from torchrl_awr.models import action_bounds
from torchrl_awr.recipe.compose import env_kwargs
from torchrl_awr.recipe.trained import TrainedRun

FORMATS = ("onnx", "pt2")
INPUT_NAME, OUTPUT_NAME = "observation", "action"


class DeterministicPolicy(nn.Module):
    """The actor's network (normaliser included) and the deterministic action of its
    distribution as plain tensor operations, which ``torch.export`` can trace: the Gaussian's
    mean for ``normal`` (already in action units), ``TanhNormal``'s deterministic sample for
    ``tanh_normal`` and the most likely action for ``categorical``."""

    def __init__(self, run: TrainedRun):
        super().__init__()
        self.network = run.actor.module[0].module
        self.distribution = run.cfg.model.distribution
        if self.distribution == "tanh_normal":
            low, high = action_bounds(run.action_spec)
            self.register_buffer("center", (high + low) / 2)
            self.register_buffer("half_range", (high - low) / 2)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        output = self.network(observation)
        if self.distribution == "categorical":
            return output.argmax(-1)
        loc = output[0]
        if self.distribution == "tanh_normal":
            limit = 1 - torch.finfo(loc.dtype).resolution  # torchrl's safe tanh
            return self.center + self.half_range * loc.tanh().clamp(-limit, limit)
        return loc


def policy_metadata(run: TrainedRun, fmt: str) -> dict:
    """What a user of the exported file needs to feed it and to read its actions."""
    discrete = run.cfg.model.distribution == "categorical"
    metadata = {
        "format": fmt,
        "env_id": run.cfg.env.name,
        "env_kwargs": env_kwargs(run.cfg),
        "samples": run.frames,
        "trained": run.trained,
        "checkpoint": str(run.checkpoint),
        "distribution": run.cfg.model.distribution,
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "observation_shape": [run.observation_dim],
        "observation_dtype": "float32",
    }
    if discrete:
        return {
            **metadata,
            "action_shape": [],
            "action_dtype": "int64",
            "num_actions": int(run.action_spec.space.n),
            "action_bounds": None,
        }
    low, high = action_bounds(run.action_spec)
    return {
        **metadata,
        "action_shape": [low.numel()],
        "action_dtype": "float32",
        "action_bounds": {"low": low.tolist(), "high": high.tolist()},
    }


def check_onnx_packages() -> None:
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"--format onnx needs the {' and '.join(missing)} package{'s' * (len(missing) > 1)}: "
            f"pip install {' '.join(missing)} (or use --format pt2)."
        )


def check_output(out: Path) -> None:
    """``--out`` names a file this process can write, with its ``.json`` beside it: not a
    directory, and in a directory that takes files (the nearest existing one: the export makes
    the rest). Checked before any work."""
    for path in (out, Path(f"{out}.json")):
        if path.is_dir():
            raise ValueError(f"--out {out}: {path} is a directory; name the file to write, e.g. {out / 'policy.onnx'}.")
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(f"--out {out}: {path} exists and is read-only.")
    directory = out.parent
    while not directory.exists():
        directory = directory.parent
    if not directory.is_dir():
        raise ValueError(f"--out {out}: {directory} is a file, not a directory.")
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise PermissionError(f"--out {out}: no file can be written in {directory} ({err.strerror}).") from None


@contextlib.contextmanager
def quiet_onnx_exporter() -> Iterator[None]:
    """torch's ONNX exporter without its notes that are not the user's: one line per torchvision
    operator it skips (torchvision is not a dependency) and a deprecation inside torch's pytree."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning)
            yield
    finally:
        registration.setLevel(level)


def export_policy(run: TrainedRun, out: Path, fmt: str) -> dict:
    """Writes the policy of ``run`` to ``out`` in ``fmt`` and its metadata to ``<out>.json``;
    returns the metadata. The batch dimension stays dynamic."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}.")
    if fmt == "onnx":
        check_onnx_packages()
    example = torch.zeros(2, run.observation_dim)  # 2: a batch of 1 would be specialised
    with torch.no_grad():
        program = torch.export.export(
            DeterministicPolicy(run), (example,), dynamic_shapes=({0: torch.export.Dim("batch")},)
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "pt2":
        torch.export.save(program, out)
    else:
        with quiet_onnx_exporter():
            torch.onnx.export(
                program, f=out, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], external_data=False, verbose=False
            )
    metadata = policy_metadata(run, fmt)
    Path(f"{out}.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata
