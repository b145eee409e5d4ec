"""A run touches only its own files, and a resume tells the truth (docs/reliability.md), each
through the command a user runs."""

from __future__ import annotations

import hashlib
import os
import pty
import subprocess
from pathlib import Path

import pytest

from torchrl_awr.checkpoint import load_checkpoint

from recipe_helpers import one_error_line, read_csv, recipe_command, run_command

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


def user_files(root: Path) -> Path:
    """A directory of a user's files, with the names a run's temporaries have."""
    root.mkdir(parents=True)
    (root / "db.old").write_text("records")
    (root / "notes.tmp").write_text("draft")
    (root / "checkpoint.pt.tmp").write_text("a file of the user's, named like a temporary")
    (root / "videos").mkdir()
    (root / "videos" / "talk.tmp").write_text("slides")
    (root / "important.old").mkdir()
    (root / "important.old" / "thesis.tex").write_text("\\chapter{AWR}")
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` and a hash of its bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize("where", ["a folder", "the current directory"])
def test_a_run_never_touches_a_directory_of_user_files(where, tmp_path):
    """``output_dir=`` a folder of the user's (or ``.``) is refused: every byte stays."""
    folder = user_files(tmp_path / "home")
    before = snapshot(folder)
    target = str(folder) if where == "a folder" else "."
    result = run_command(folder, f"output_dir={target}")
    assert "is not empty" in one_error_line(result) and "not a torchrl-awr run directory" in result.stderr
    assert snapshot(folder) == before


def test_a_run_removes_only_its_own_partial_writes_by_name(tmp_path):
    """On resume, what a killed save left (named as the run names its temporaries) goes; a
    user's file with a temporary-looking name in the run directory stays."""
    run_dir = tmp_path / "run"
    assert run_command(tmp_path, f"output_dir={run_dir}", "collector.total_frames=256").returncode == 0
    (run_dir / "checkpoint.pt.tmp").write_bytes(b"half")
    (run_dir / "checkpoint.pt.buffer.tmp").mkdir()
    (run_dir / "checkpoint.pt.buffer.old").mkdir()
    (run_dir / "videos").mkdir()
    (run_dir / "videos" / "recording.mp4.tmp").write_bytes(b"half")  # a run killed while writing a video
    (run_dir / "notes.tmp").write_text("mine")
    (run_dir / "videos" / "512.mp4.tmp").write_text("also mine")
    result = run_command(tmp_path, f"resume={run_dir}", "collector.total_frames=512")
    assert result.returncode == 0, result.stderr[-3000:]
    leftovers = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*.tmp")) + list(run_dir.glob("*.old"))
    assert leftovers == ["notes.tmp", "videos/512.mp4.tmp"]


def test_bad_input_found_after_the_directory_is_claimed_leaves_nothing(tmp_path):
    """A new run that fails before it starts (a run to start from that does not fit its model)
    removes the directories it made."""
    base = tmp_path / "base"
    assert run_command(tmp_path, f"output_dir={base}", "collector.total_frames=256").returncode == 0
    result = run_command(
        tmp_path, f"output_dir={tmp_path / 'new' / 'deep' / 'run'}", f"init_from={base}", "model.hidden_sizes=[8]"
    )
    assert "does not fit" in one_error_line(result)
    assert not (tmp_path / "new").exists()


def test_a_run_stopped_before_its_first_checkpoint_starts_over(tmp_path):
    """A run that wrote its config but no checkpoint (killed in its first iterations): a new run
    there is refused with the resume that works, and that resume runs it from the start."""
    run_dir = tmp_path / "run"
    result = run_command(tmp_path, f"output_dir={run_dir}", "checkpoint.interval=0")
    assert result.returncode == 0 and not (run_dir / "checkpoint.pt").exists(), result.stderr[-3000:]
    refused = one_error_line(run_command(tmp_path, f"output_dir={run_dir}"))
    assert f"start that run over from its config with resume={run_dir}" in refused
    result = run_command(tmp_path, f"resume={run_dir}", "checkpoint.interval=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "started over: no checkpoint was saved" in result.stdout
    assert [step for step, _ in read_csv(run_dir, "frames")] == [256, 512, 768, 1024]


def test_a_resume_applies_or_refuses_each_override(tmp_path):
    """Optimizer settings given on resume are the ones it trains with; another optimizer, or a
    length below what is done, is refused with one line and changes nothing."""
    run_dir = tmp_path / "run"
    assert run_command(tmp_path, f"output_dir={run_dir}", "collector.total_frames=512").returncode == 0
    config = (run_dir / "config.yaml").read_bytes()
    refused = {
        "optim.name=adam": "the run trains with optim.name=sgd",
        "collector.total_frames=256": "the checkpoint is at 512 (collector.total_frames); collector.total_frames=256",
    }
    for override, message in refused.items():
        assert message in one_error_line(run_command(tmp_path, f"resume={run_dir}", override))
        assert (run_dir / "config.yaml").read_bytes() == config
    result = run_command(
        tmp_path, f"resume={run_dir}", "collector.total_frames=1024", "optim.actor_lr=0.003", "optim.momentum=0.5"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    state = load_checkpoint(run_dir / "checkpoint.pt")
    actor_group = state["actor_optimizer"]["param_groups"][0]
    assert (actor_group["lr"], actor_group["momentum"]) == (0.003, 0.5)
    assert state["critic_optimizer"]["param_groups"][0]["momentum"] == 0.5


def test_a_modern_run_resumes_with_its_preset_and_refuses_another(tmp_path):
    """The command that started a ``preset=modern`` run continues it (a sweep's relaunch, or
    ``learning.py --continue-from``, gives the same overrides); another preset is refused."""
    run_dir = tmp_path / "run"
    modern = ("task=halfcheetah", "preset=modern")  # a task the preset changes
    started = run_command(tmp_path, *modern, f"output_dir={run_dir}", "collector.total_frames=512")
    assert started.returncode == 0, started.stderr[-3000:]
    config = (run_dir / "config.yaml").read_bytes()
    message = "the checkpoint's run is preset=modern; this command says preset=faithful"
    assert message in one_error_line(run_command(tmp_path, f"resume={run_dir}", "task=halfcheetah", "preset=faithful"))
    assert (run_dir / "config.yaml").read_bytes() == config
    resumed = run_command(tmp_path, f"resume={run_dir}", *modern, "collector.total_frames=1024")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_checkpoint(run_dir / "checkpoint.pt")["counters"]["frames"] == 1024
    saved = (run_dir / "config.yaml").read_text()
    assert "preset_name: modern" in saved and "name: adam" in saved


def test_tensorboard_shows_each_step_once_after_a_resume(tmp_path):
    """Logs past the last checkpoint (a kill -9 after the logger wrote): a resume hides them in
    TensorBoard, as it cuts the CSVs back, so each sample count appears once."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    tensorboard = "logger.backend=tensorboard"
    assert run_command(tmp_path, f"output_dir={run_dir}", tensorboard, "collector.total_frames=512").returncode == 0
    at_512 = (run_dir / "checkpoint.pt").read_bytes()
    assert run_command(tmp_path, f"resume={run_dir}", "collector.total_frames=1024").returncode == 0
    (run_dir / "checkpoint.pt").write_bytes(at_512)  # the run was killed after logging 768 and 1024
    result = run_command(tmp_path, f"resume={run_dir}", "collector.total_frames=1024")
    assert result.returncode == 0, result.stderr[-3000:]
    events = EventAccumulator(str(run_dir / "logs"))
    events.Reload()
    assert [event.step for event in events.Scalars("frames")] == [256, 512, 768, 1024]


def test_the_progress_bar_shows_no_nan_training_return(tmp_path):
    """HalfCheetah's episodes last 1000 steps, so most batches finish none: the bar (on a
    terminal: here a pseudo-terminal) shows the newest finished episodes' return, or ``-``
    before the first, never ``nan`` (issue 41)."""
    terminal, screen = pty.openpty()
    try:
        result = subprocess.run(
            recipe_command("task=halfcheetah", "progress=true", f"output_dir={tmp_path / 'run'}"),
            cwd=tmp_path,
            stdout=screen,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(screen)
        os.close(terminal)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train -]" in result.stderr and "nan" not in result.stderr, result.stderr[-3000:]
