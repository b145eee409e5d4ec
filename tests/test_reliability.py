"""Runs that survive their users: safe resume, one exit path, owned run directories, full disks,
logs that count each sample once, and clear errors for bad values (docs/reliability.md)."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict
from torchrl.collectors import Collector, MultiAsyncCollector, MultiSyncCollector
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

from torchrl_awr import AWRLoss, make_awr_actor, make_awr_critic
from torchrl_awr.checkpoint import PAIR_FILE, CheckpointError, buffer_dir, load_checkpoint, save_checkpoint
from torchrl_awr.envs import make_env
from torchrl_awr.recipe import compose, factories
from torchrl_awr.recipe.rundir import RunDir, RunDirectoryError, RunLock
from torchrl_awr.trainer import AWRTrainer, AWRTrainerConfig, CollectorFailure

from recipe_helpers import SMALL, breaking_env, compose_config, one_error_line, read_csv, run_command, run_recipe, tmpfs

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

ANT = [*(o for o in SMALL if not o.startswith("task=")), "task=ant"]


# ---------------------------------------------------------------- resume
@pytest.fixture(scope="module")
def ant_run(tmp_path_factory):
    """A finished small Ant run (a preset with env kwargs), made by the command line."""
    cwd = tmp_path_factory.mktemp("ant")
    result = run_command(cwd, *ANT, f"output_dir={cwd / 'run'}", "checkpoint.save_buffer=true", small=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd / "run"


def test_failed_resumes_change_nothing_and_the_right_one_works(ant_run, tmp_path):
    """Resuming an Ant run as the README shows works; wrong resumes fail with one line each and
    leave the run's config and logs as they were."""
    run_dir = tmp_path / "run"
    shutil.copytree(ant_run, run_dir)
    checkpoint = f"resume={run_dir / 'checkpoint.pt'}"
    config = (run_dir / "config.yaml").read_bytes()
    frames = (run_dir / "logs" / "scalars" / "frames.csv").read_bytes()
    failures = {
        "task=hopper": r"the checkpoint's run is task=ant; this command says task=hopper",
        f"output_dir={tmp_path / 'elsewhere'}": r"continues in its checkpoint's directory",
        "env.num_envs=2": r"saved buffer holds 2048 transitions of 4 environments per step; this config collects 2",
    }
    for override, message in failures.items():
        extra = ["resume_buffer=true"] if override == "env.num_envs=2" else []
        result = run_command(tmp_path, checkpoint, override, *extra, "collector.total_frames=1280", small=False)
        assert re.search(message, one_error_line(result)), (override, result.stderr[-2000:])
        assert (run_dir / "config.yaml").read_bytes() == config, override
        assert (run_dir / "logs" / "scalars" / "frames.csv").read_bytes() == frames, override
    result = run_command(tmp_path, checkpoint, "resume_buffer=true", "collector.total_frames=1280", small=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [step for step, _ in read_csv(run_dir, "frames")] == [256, 512, 768, 1024, 1280]
    assert load_checkpoint(run_dir / "checkpoint.pt")["counters"]["frames"] == 1280


def test_resume_without_its_buffer_or_config_fails_clearly(ant_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(ant_run, run_dir)
    shutil.rmtree(buffer_dir(run_dir / "checkpoint.pt"))
    checkpoint = f"resume={run_dir / 'checkpoint.pt'}"
    line = one_error_line(run_command(tmp_path, checkpoint, "resume_buffer=true", small=False))
    assert "has no saved replay buffer" in line
    (run_dir / "config.yaml").unlink()
    assert "No config.yaml beside" in one_error_line(run_command(tmp_path, checkpoint, small=False))


def test_a_buffer_from_another_moment_is_refused(tmp_path):
    """A double Ctrl-C can leave a newer buffer beside an older checkpoint: the pair id catches it."""
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(8))
    rb.extend(TensorDict({"x": torch.arange(4.0)}, [4]))
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"a": 1}, path, replay_buffer=rb, pair_id="256 samples")
    assert json.loads((buffer_dir(path) / PAIR_FILE).read_text()) == {"pair_id": "256 samples"}
    load_checkpoint(path, replay_buffer=TensorDictReplayBuffer(storage=LazyTensorStorage(8)))
    (buffer_dir(path) / PAIR_FILE).write_text(json.dumps({"pair_id": "512 samples"}))
    with pytest.raises(CheckpointError, match=r"saved at 512 samples\) does not belong .*saved at 256 samples"):
        load_checkpoint(path, replay_buffer=TensorDictReplayBuffer(storage=LazyTensorStorage(8)))


def test_a_resumed_run_logs_each_sample_count_once(tmp_path):
    """As after kill -9: the logs ran past the last checkpoint; the resume redoes those iterations."""
    run_dir = tmp_path / "run"
    run_recipe(run_dir, "collector.total_frames=512")
    kept = tmp_path / "checkpoint_at_512.pt"
    shutil.copy(run_dir / "checkpoint.pt", kept)
    run_recipe(run_dir, "collector.total_frames=768", f"resume={run_dir / 'checkpoint.pt'}")
    shutil.copy(kept, run_dir / "checkpoint.pt")  # the 768 checkpoint "never landed"
    run_recipe(run_dir, "collector.total_frames=1024", f"resume={run_dir / 'checkpoint.pt'}")
    for name in ("frames", "loss_actor", "wall_time", "eval/return_mean"):
        steps = [step for step, _ in read_csv(run_dir, name)]
        assert steps == sorted(set(steps)), (name, steps)
    assert [step for step, _ in read_csv(run_dir, "frames")] == [256, 512, 768, 1024]


def test_truncate_logs_keeps_rows_up_to_the_checkpoint(tmp_path):
    scalars = tmp_path / "logs" / "scalars" / "eval"
    scalars.mkdir(parents=True)
    (scalars / "return_mean.csv").write_text("256,1.0\n512,2.0\n768,3.0\n")
    RunDir(tmp_path).truncate_logs(512)
    assert (scalars / "return_mean.csv").read_text() == "256,1.0\n512,2.0\n"


# ---------------------------------------------------------------- one exit path
@pytest.mark.parametrize("collector", ["multi_sync", "multi_async"])
def test_an_error_after_the_workers_exist_exits_at_once(collector, tmp_path):
    """A checkpoint that does not fit fails after the collector's processes exist: they are shut
    down and the command exits 2 within seconds, for each collector type with workers."""
    run_dir = tmp_path / "run"
    run_recipe(run_dir, "collector.total_frames=256", "eval.interval=0")
    # A hang would outlast the timeout (the command's whole life, start-up included, is seconds).
    result = run_command(
        tmp_path,
        f"resume={run_dir / 'checkpoint.pt'}",
        "model.hidden_sizes=[8]",
        f"collector.type={collector}",
        "collector.num_workers=2",
        "env.num_envs=2",
        timeout=150,
    )
    assert "does not fit the model" in one_error_line(result)


@pytest.mark.parametrize("kind", ["multi_sync", "multi_async"])
def test_a_failing_worker_stops_the_run_within_seconds(kind):
    """An environment that raises inside a collector's worker process: the run stops with an
    error within seconds, and the workers shut down (no hang)."""
    env = breaking_env()
    actor = make_awr_actor(4, env.action_spec_unbatched, hidden_sizes=(8,))
    loss = AWRLoss(actor, make_awr_critic(4, hidden_sizes=(8,)))
    collector_class = {"multi_sync": MultiSyncCollector, "multi_async": MultiAsyncCollector}[kind]
    collector = collector_class(
        [breaking_env] * 2, actor, frames_per_batch=64, total_frames=-1, auto_register_policy_transforms=False
    )
    trainer = AWRTrainer(
        collector=collector,
        replay_buffer=TensorDictReplayBuffer(storage=LazyTensorStorage(1024, ndim=2), batch_size=16),
        loss_module=loss,
        actor_optimizer=torch.optim.SGD(actor.parameters(), lr=1e-3),
        critic_optimizer=torch.optim.SGD(loss.critic_network.parameters(), lr=1e-3),
        config=AWRTrainerConfig(total_frames=100_000, critic_steps=2, actor_steps=2, eval_interval=0),
        progress=False,
    )
    tic = time.monotonic()
    try:
        with pytest.raises(
            CollectorFailure, match=r"failed after \d+ samples .*; no checkpoint was saved yet"
        ) as failure:
            trainer.train()
        # TorchRL's check or the watchdog's, whichever sees the dead worker first
        assert re.search("process failed|is gone", str(failure.value.__cause__))
    finally:
        collector.shutdown()
    assert time.monotonic() - tic < 60


# ---------------------------------------------------------------- run directories
def test_a_new_run_never_writes_into_another_runs_directory(tmp_path):
    run_dir = tmp_path / "run"
    run_recipe(run_dir, "collector.total_frames=256", "eval.interval=0")
    before = (run_dir / "checkpoint.pt").read_bytes()
    with pytest.raises(RunDirectoryError, match=r"already holds a run \(checkpoint.pt, config.yaml\).*resume="):
        run_recipe(run_dir, "collector.total_frames=256", "seed=1")
    assert (run_dir / "checkpoint.pt").read_bytes() == before


def test_two_live_runs_cannot_share_a_directory(tmp_path):
    run_dir = tmp_path / "run"
    with RunLock(run_dir):
        with pytest.raises(RunDirectoryError, match="in use by a live run"):
            run_recipe(run_dir, "collector.total_frames=256")
    assert not (run_dir / "config.yaml").exists()


# ---------------------------------------------------------------- full disks
@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs."""
    with tmpfs(tmp_path / "disk", "3m") as mount:
        yield mount


def test_a_full_disk_refuses_the_save_and_keeps_the_previous_checkpoint(small_disk, monkeypatch):
    import torchrl_awr.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "FREE_SPACE_MARGIN", 2**20)  # the 3 MiB disk holds one small checkpoint
    path = small_disk / "checkpoint.pt"
    save_checkpoint({"a": 1}, path)
    previous = path.read_bytes()
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(10_000))
    rb.extend(TensorDict({"x": torch.zeros(10_000, 100)}, [10_000]))  # 4 MB: more than the disk
    with pytest.raises(
        CheckpointError, match=r"Not enough free space .* MiB needed .* The previous checkpoint is kept"
    ):
        save_checkpoint({"a": 2}, path, replay_buffer=rb, buffer_bytes=4_000_000)
    # When the estimate is wrong (another process fills the disk meanwhile), the write fails
    # cleanly: no SIGBUS, no temporary files, the previous checkpoint intact.
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 0, 10**12))
    with pytest.raises(CheckpointError, match=r"failed .*No space left.*previous checkpoint is kept"):
        save_checkpoint({"a": torch.zeros(1_000_000)}, path)  # 4 MB into 3 MiB
    assert path.read_bytes() == previous
    assert sorted(p.name for p in small_disk.iterdir()) == ["checkpoint.pt"]


def test_a_memmap_buffer_on_a_full_disk_is_an_error_not_sigbus(small_disk, tmp_path, monkeypatch):
    """Too little disk for the memory-mapped buffer: named at the first batch. And if the disk
    fills between that check and the allocation, reserving the files fails with a message rather
    than a SIGBUS at the first write to a page of a sparse file."""
    import torchrl_awr.store as store

    overrides = ("buffer.storage=memmap", f"buffer.scratch_dir={small_disk / 'buffer'}", "buffer.size=20000")
    with pytest.raises(ValueError, match=r"replay buffer of 20000 transitions .* GiB of free disk at"):
        run_recipe(tmp_path / "a", *overrides, "eval.interval=0")
    monkeypatch.setattr(store.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 0, 10**12))
    with pytest.raises(OSError, match=r"Cannot reserve .* MiB for the memory-mapped replay buffer .*No space left"):
        run_recipe(tmp_path / "b", *overrides, "eval.interval=0")


# ---------------------------------------------------------------- bad values
BAD_VALUES = {
    "device=tpu": r"device='tpu' is not a device",
    "threads=0": r"threads=0 \(must be >= 1\)",
    "collector.num_workers=0": r"collector.num_workers=0 \(must be >= 1\)",
    "optim.actor_lr=abc": r"optim.actor_lr='abc' \(must be a number > 0\)",
    "model.value_scale=0": r"model.value_scale=0 \(must be > 0\)",
    "loss.lmbda=2": r"loss.lmbda=2 \(must be in \[0, 1\]\)",
    "loss.gamma=1.5": r"loss.gamma=1.5 \(must be in \[0, 1\]\)",
    "loss.beta=0": r"loss.beta=0 \(must be > 0\)",
    "train.actor_steps=-3": r"train.actor_steps=-3 \(must be >= 0\)",
    "logger.log_interval=0": r"logger.log_interval=0 \(must be > 0\)",
    "eval.episodes=0": r"eval.episodes=0 \(must be >= 1\)",
    "seed=-1": r"seed=-1 \(must be >= 0\)",
}


@pytest.mark.parametrize("override", BAD_VALUES)
def test_bad_values_are_named_before_any_environment_is_built(override, monkeypatch):
    def no_env(*args, **kwargs):
        raise AssertionError("an environment was built before the config was checked")

    monkeypatch.setattr(factories, "make_env", no_env)
    with pytest.raises(ValueError, match=BAD_VALUES[override]):
        compose.validate_config(compose_config(override))


# ---------------------------------------------------------------- the library API
def test_actions_of_the_wrong_dimension_are_refused():
    actor = make_awr_actor(4, make_env("Hopper-v5").action_spec_unbatched, hidden_sizes=(8,))
    loss = AWRLoss(actor, make_awr_critic(4, hidden_sizes=(8,)))
    batch = TensorDict(
        {"observation": torch.randn(5, 4), "action": torch.randn(5, 1), "advantage": torch.zeros(5, 1)}, [5]
    )
    with pytest.raises(ValueError, match=r"'action' entry has shape \(5, 1\).*actions of shape \(3,\)"):
        loss.actor_loss(batch)


def test_a_collector_that_stops_early_is_named():
    env = make_env("InvertedPendulum-v5", num_envs=1, seed=0)
    actor = make_awr_actor(4, env.action_spec_unbatched, hidden_sizes=(8,))
    loss = AWRLoss(actor, make_awr_critic(4, hidden_sizes=(8,)))
    trainer = AWRTrainer(
        collector=Collector(env, actor, frames_per_batch=32, total_frames=64, auto_register_policy_transforms=False),
        replay_buffer=TensorDictReplayBuffer(storage=LazyTensorStorage(256), batch_size=16),
        loss_module=loss,
        actor_optimizer=torch.optim.SGD(actor.parameters(), lr=1e-3),
        critic_optimizer=torch.optim.SGD(loss.critic_network.parameters(), lr=1e-3),
        config=AWRTrainerConfig(total_frames=256, critic_steps=2, actor_steps=2, eval_interval=0),
        progress=False,
    )
    with pytest.raises(RuntimeError, match=r"collector stopped after 64 samples, before total_frames=256.*-1"):
        trainer.train()
    trainer.collector.shutdown()


def test_a_buffer_too_large_for_the_machine_is_named(tmp_path):
    with pytest.raises(
        ValueError, match=r"replay buffer of 50000000000 transitions \(buffer.size.*GiB of available memory"
    ):
        run_recipe(tmp_path / "run", "buffer.size=50_000_000_000", "eval.interval=0")


def test_config_saved_is_the_whole_resolved_config(tmp_path):
    run_dir = tmp_path / "run"
    run_recipe(run_dir, "collector.total_frames=256", "eval.interval=0")
    saved = (run_dir / "config.yaml").read_text()
    assert "${" not in saved and "task_name: hopper" in saved and "name: Hopper-v5" in saved


def test_the_reliability_doc_names_tests_that_exist():
    """docs/reliability.md names a test for every case, and each named test exists."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "reliability.md").read_text()
    here = "".join(path.read_text() for path in Path(__file__).parent.glob("test_*.py"))
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", doc))
    assert len(named) >= 12
    missing = [name for name in named if f"def {name}(" not in here]
    assert not missing, missing
