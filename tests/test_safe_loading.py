"""Files a user hands us are read without running code, and a save that cannot fit is refused.

Every command that loads a checkpoint, a replay-buffer dump or a dataset is given one crafted
to run code when unpickled (it would create a marker file): each refuses it with one ``error:``
line naming the file, exit code 2, and the marker never appears (docs/reliability.md, "Files a
user hands us").
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

from torchrl_awr.checkpoint import PAIR_FILE, CheckpointError, buffer_dir, load_checkpoint, save_checkpoint
from torchrl_awr.commands.dataset import main as datasets_main

from recipe_helpers import OFFLINE_RECIPE, ROOT, SMALL, one_error_line, recipe_command, run_command, run_commands, tmpfs

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

MORE = "collector.total_frames=1280"  # one iteration past the fixture run, then a save


class Payload:
    """What a crafted file holds: unpickling it creates ``marker`` (a command could run instead)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A small run saved with its buffer, and a small dataset, made once."""
    root = tmp_path_factory.mktemp("made")
    result = run_command(root, f"output_dir={root / 'run'}", "checkpoint.save_buffer=true")
    assert result.returncode == 0, result.stderr[-3000:]
    datasets_main(["make", "--from", "random", "--task", "hopper", "--episodes", "2", "--out", str(root / "data")])
    return root


@pytest.fixture
def run_dir(made, tmp_path):
    shutil.copytree(made / "run", tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture
def marker(tmp_path):
    """The file a payload creates; a payload does create it when plainly unpickled."""
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Payload(probe)))
    assert probe.exists()
    return tmp_path / "payload-ran"


def error_naming(result, names: Path | str) -> str:
    """The ``error:`` line of a refused command, naming ``names``."""
    line = one_error_line(result)
    assert str(names) in line, line
    return line


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file of a run directory but its lock (which holds the last holder's process id)."""
    files = (p for p in sorted(directory.rglob("*")) if p.is_file() and p.name != ".lock")
    return {str(p.relative_to(directory)): p.read_bytes() for p in files}


# ---------------------------------------------------------------- checkpoints
# Each command that loads a run, as Python's arguments for the run at ``run`` (a scratch
# directory ``tmp`` beside it), and the directory it runs in.
COMMANDS = {
    "resume": lambda run, tmp: (recipe_command(f"resume={run / 'checkpoint.pt'}", MORE)[1:], tmp),
    "init_from": lambda run, tmp: (recipe_command(f"init_from={run}", f"output_dir={tmp / 'new'}")[1:], tmp),
    "evaluate": lambda run, tmp: (["-m", "torchrl_awr", "evaluate", str(run), "--episodes", "1"], ROOT),
    "export": lambda run, tmp: (["-m", "torchrl_awr", "export", str(run), "--out", str(tmp / "policy.onnx")], ROOT),
    "datasets make --from policy": lambda run, tmp: (
        ["-m", "torchrl_awr", "dataset", "make", "--from", "policy", str(run), "--episodes", "1"]
        + ["--out", str(tmp / "data")],
        ROOT,
    ),
    "datasets make --from buffer": lambda run, tmp: (
        ["-m", "torchrl_awr", "dataset", "make", "--from", "buffer", str(run), "--out", str(tmp / "data")],
        ROOT,
    ),
}


def command_for(command: str, run: Path, *extra: str) -> tuple[list[str], Path, dict]:
    """``command`` of :data:`COMMANDS` on ``run`` with ``extra`` arguments, for :func:`run_commands`."""
    args, cwd = COMMANDS[command](run, run.parent)
    return [*args, *extra], cwd, {**os.environ, "HYDRA_FULL_ERROR": "0"}


def copy_of_the_run(made: Path, directory: Path) -> tuple[Path, Path]:
    """A copy of the fixture's run in ``directory``, and the marker file its payload would create."""
    directory.mkdir()
    shutil.copytree(made / "run", directory / "run")
    return directory / "run", directory / "payload-ran"


def test_a_crafted_checkpoint_runs_no_code_in_any_command(made, marker, tmp_path):
    """Every command on its own copy of a run whose checkpoint holds a payload."""
    cases = []
    for i, command in enumerate(COMMANDS):
        run, payload_marker = copy_of_the_run(made, tmp_path / str(i))
        state = load_checkpoint(run / "checkpoint.pt")
        state["counters"]["note"] = Payload(payload_marker)
        torch.save(state, run / "checkpoint.pt")
        cases.append((command, run, payload_marker, snapshot(run)))
    results = run_commands([command_for(command, run) for command, run, *_ in cases])
    for (command, run, payload_marker, before), result in zip(cases, results):
        line = error_naming(result, run / "checkpoint.pt")
        assert "does not hold only tensors and plain values" in line, command
        assert not payload_marker.exists(), command
        assert snapshot(run) == before, command


def test_a_checkpoint_written_before_this_release_still_resumes(run_dir, tmp_path):
    """Its numpy RNG state is an array (rebuilt from allow-listed numpy types) and its pair id
    None, in the checkpoint and in its buffer dump alike."""
    checkpoint = run_dir / "checkpoint.pt"
    state = load_checkpoint(checkpoint)
    name, key, *position = state["rng"]["numpy"]
    state["rng"]["numpy"] = (name, np.array(key, dtype=np.uint32), *position)
    state["pair_id"] = None
    torch.save(state, checkpoint)
    (buffer_dir(checkpoint) / PAIR_FILE).write_text(json.dumps({"pair_id": None}))
    result = run_command(tmp_path, f"resume={checkpoint}", "resume_buffer=true", MORE)
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_checkpoint(checkpoint)["counters"]["frames"] == 1280


# ---------------------------------------------------------------- buffer dumps
def craft_sampler_state(dump: Path, marker: Path) -> Path:
    path = dump / "sampler" / "shuffled_pass_sampler.pt"
    torch.save({"generator": Payload(marker)}, path)
    return path


def craft_prefetch_queue(dump: Path, marker: Path) -> Path:
    path = dump / "prefetch.pkl"
    path.write_bytes(pickle.dumps({"version": 1, "capacity": 1, "queue": (Payload(marker),)}))
    return path


def add_pickled_field(directory: Path, marker: Path) -> Path:
    """Adds a non-tensor field to the memory-mapped TensorDict at ``directory``: tensordict reads
    it from ``other.pickle``."""
    meta = json.loads((directory / "meta.json").read_text())
    meta["note"] = {"type": "NonTensorData"}
    (directory / "meta.json").write_text(json.dumps(meta))
    entry = directory / "note"
    entry.mkdir()
    kind = "<class 'tensordict.tensorclass.NonTensorData'>"
    (entry / "meta.json").write_text(json.dumps({"_type": kind, "_is_non_tensor": True, "_metadata": None}))
    (entry / "other.pickle").write_bytes(pickle.dumps({"data": Payload(marker)}))
    return entry / "other.pickle"


def craft_transform_state(dump: Path, marker: Path) -> Path:
    path = dump / "transform.t"
    torch.save(Payload(marker), path)
    return path


CRAFTS = {
    "sampler state": craft_sampler_state,
    "prefetch queue": craft_prefetch_queue,
    "non-tensor storage field": lambda dump, marker: add_pickled_field(dump / "storage", marker),
    "transform state": craft_transform_state,
}


# The commands that read a buffer dump, with the arguments that make them read it.
BUFFER_COMMANDS = {"resume": ["resume_buffer=true"], "datasets make --from buffer": []}


def test_a_crafted_buffer_dump_runs_no_code(made, marker, tmp_path):
    """Each crafted file of a buffer dump, in its own copy of the run, for both commands that
    read the dump."""
    cases = []
    for i, (craft, command) in enumerate(itertools.product(CRAFTS, BUFFER_COMMANDS)):
        run, payload_marker = copy_of_the_run(made, tmp_path / str(i))
        dump = buffer_dir(run / "checkpoint.pt")
        crafted = CRAFTS[craft](dump, payload_marker)
        cases.append((command, run, crafted.relative_to(dump), payload_marker, snapshot(run)))
    results = run_commands([command_for(command, run, *BUFFER_COMMANDS[command]) for command, run, *_ in cases])
    for (command, run, crafted, payload_marker, before), result in zip(cases, results):
        error_naming(result, crafted)
        assert not payload_marker.exists(), (command, crafted)
        assert snapshot(run) == before, (command, crafted)


# ---------------------------------------------------------------- datasets
def test_a_crafted_dataset_runs_no_code(made, marker, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(made / "data", data)
    add_pickled_field(data / "data", marker)
    small = [o for o in SMALL if not o.startswith(("collector.", "env.num_envs", "buffer."))]
    result = run_command(
        tmp_path, f"dataset={data}", "offline.iterations=1", *small, small=False, script=OFFLINE_RECIPE
    )
    assert "a pickled object is refused" in error_naming(result, data / "data")
    assert not marker.exists()


# ---------------------------------------------------------------- checkpoint and buffer pairs
def test_a_buffer_dump_from_another_save_is_refused_on_resume(made, tmp_path):
    """Save, resume, then the older buffer dump (or one of a twin resume saved at the same sample
    count) beside the newer checkpoint: the resume refuses it and changes nothing."""
    run, twin = tmp_path / "run", tmp_path / "twin"
    for directory in (run, twin):
        shutil.copytree(made / "run", directory)
    older = tmp_path / "older.buffer"
    shutil.copytree(buffer_dir(run / "checkpoint.pt"), older)
    for directory in (run, twin):
        result = run_command(tmp_path, f"resume={directory / 'checkpoint.pt'}", "resume_buffer=true", MORE)
        assert result.returncode == 0, result.stderr[-3000:]
    for other in (older, buffer_dir(twin / "checkpoint.pt")):
        shutil.rmtree(buffer_dir(run / "checkpoint.pt"))
        shutil.copytree(other, buffer_dir(run / "checkpoint.pt"))
        before = snapshot(run)
        result = run_command(
            tmp_path, f"resume={run / 'checkpoint.pt'}", "resume_buffer=true", "collector.total_frames=1536"
        )
        assert "does not belong to the checkpoint" in error_naming(result, buffer_dir(run / "checkpoint.pt"))
        assert snapshot(run) == before


# ---------------------------------------------------------------- full disks
@pytest.fixture
def disk(tmp_path):
    """A 72 MiB tmpfs."""
    with tmpfs(tmp_path / "disk", "72m") as mount:
        yield mount


def fill(path: Path, leave: int) -> None:
    """Writes ``path`` so that its disk has ``leave`` bytes free."""
    with open(path, "wb") as handle:
        os.posix_fallocate(handle.fileno(), 0, shutil.disk_usage(path.parent).free - leave)


def test_a_save_that_cannot_fit_its_buffer_is_refused_before_writing(made, disk, tmp_path):
    """A disk filled up by the buffer dump of a killed save: the resume removes that dump at start;
    its buffer (84 MiB) is then larger than the disk's free space (about 71 MiB, more than the
    checkpoint and the 64 MiB margin alone need), so the save is refused before writing, in one
    line; the previous checkpoint and its buffer are intact and no temporary file is left. A
    memory-mapped buffer restored onto a disk too small for it is one line too, not a SIGBUS, and a
    resume onto a full disk is refused at start-up."""
    run = disk / "run"
    shutil.copytree(made / "run", run)
    (run / "checkpoint.pt.buffer.tmp").mkdir()  # what a save killed while dumping the buffer left
    fill(run / "checkpoint.pt.buffer.tmp" / "observation.memmap", leave=0)
    saved = {name: data for name, data in snapshot(run).items() if not name.startswith("checkpoint.pt.buffer.tmp")}
    result = run_command(tmp_path, f"resume={run / 'checkpoint.pt'}", "buffer.size=560000", MORE)
    line = error_naming(result, run / "checkpoint.pt")
    assert re.search(r"Not enough free space to save .* MiB needed \(checkpoint and replay buffer", line), line
    after = snapshot(run)
    assert {name: after[name] for name in saved if name.startswith("checkpoint.pt")} == {
        name: data for name, data in saved.items() if name.startswith("checkpoint.pt")
    }
    assert not [p for p in run.iterdir() if p.suffix in (".tmp", ".old")]

    fill(disk / "other.bin", leave=64 * 2**10)
    before = snapshot(run)
    result = run_command(tmp_path, f"resume={run / 'checkpoint.pt'}", "checkpoint.save_buffer=true", MORE)
    line = error_naming(result, run / "checkpoint.pt")  # at start-up: the next save could not fit
    assert re.search(r"Not enough free space to save .* \(checkpoint and replay buffer plus a margin\)", line), line
    assert snapshot(run) == before

    elsewhere = shutil.copytree(run, tmp_path / "elsewhere")  # the run on a large disk, its scratch on the full one
    memmap = ("buffer.storage=memmap", f"buffer.scratch_dir={disk / 'scratch'}", "resume_buffer=true")
    result = run_command(tmp_path, f"resume={elsewhere / 'checkpoint.pt'}", *memmap, MORE)
    line = error_naming(result, buffer_dir(elsewhere / "checkpoint.pt"))
    assert re.search(r"into its memory-mapped storage needs about .* MiB at .* MiB are free", line), line


def test_a_buffer_dump_that_fails_half_way_leaves_nothing(disk, monkeypatch):
    """The disk fills while the buffer is dumped (another process wrote meanwhile): one error,
    the dump's temporary directory removed, the previous checkpoint kept."""
    import torchrl_awr.checkpoint as checkpoint

    path = disk / "checkpoint.pt"
    save_checkpoint({"a": 1}, path)
    previous = path.read_bytes()
    fill(disk / "other.bin", leave=0)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 0, 10**12))
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(1000))
    buffer.extend(TensorDict({"x": torch.zeros(1000, 100)}, [1000]))
    with pytest.raises(
        CheckpointError, match=r"Saving .* failed .*No space left on device.*previous checkpoint is kept"
    ):
        save_checkpoint({"a": 2}, path, replay_buffer=buffer, buffer_bytes=400_000)
    assert path.read_bytes() == previous
    assert sorted(p.name for p in disk.iterdir()) == ["checkpoint.pt", "other.bin"]
