"""The Hydra recipe end to end: logs, checkpoints, resume, collectors, storages, bad input, Ctrl-C."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from torch.distributions import Categorical
from torchrl.data import LazyMemmapStorage, LazyTensorStorage, TensorDictReplayBuffer

from torchrl_awr.checkpoint import CheckpointError, buffer_dir, load_checkpoint
from torchrl_awr.models import ResidualBlock
from torchrl_awr.recipe import compose, factories
from torchrl_awr.recipe.rundir import RunDirectoryError

from recipe_helpers import (
    assert_time_ordered,
    compose_config,
    read_csv,
    recipe_command,
    run_command,
    run_commands,
    run_recipe,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One small Hopper run (4 iterations of 256 frames) that also saves its replay buffer."""
    run_dir = tmp_path_factory.mktemp("hopper") / "run"
    trainer = run_recipe(run_dir, "checkpoint.save_buffer=true")
    return run_dir, trainer


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


# ---------------------------------------------------------------- end to end
def test_run_writes_logs(trained_run):
    run_dir, trainer = trained_run
    assert trainer.frames == 1024 and trainer.iteration == 4
    assert [step for step, _ in read_csv(run_dir, "frames")] == [256, 512, 768, 1024]
    assert [value for _, value in read_csv(run_dir, "iteration")] == [1, 2, 3, 4]
    evals = read_csv(run_dir, "eval/return_mean")
    assert [step for step, _ in evals] == [512, 1024]  # eval.interval=2
    assert all(math.isfinite(value) for _, value in evals)
    for name in (
        "loss_actor",
        "loss_critic",
        "loss_action_bound",
        "weight_mean",
        "weight_max",
        "weight_ess",
        "weight_clip_fraction",
        "advantage_raw_std",
        "explained_variance",
        "buffer_size",
        "normalizer_samples",
        "wall_time",
        "time/collect",
        "time/targets",
        "time/critic",
        "time/actor",
        "time/buffer",
    ):
        rows = read_csv(run_dir, name)
        assert len(rows) == 4, name
        assert all(math.isfinite(value) for _, value in rows), name
    assert [step for step, _ in read_csv(run_dir, "time/eval")] == [512, 1024]
    assert [step for step, _ in read_csv(run_dir, "time/checkpoint")] == [512, 1024]
    assert [value for _, value in read_csv(run_dir, "buffer_size")] == [256, 512, 768, 1024]
    assert 0 < read_csv(run_dir, "weight_mean")[-1][1] <= 20  # clipped at max_weight
    wall = [value for _, value in read_csv(run_dir, "wall_time")]
    assert wall == sorted(wall) and wall[0] > 0
    assert_time_ordered(trainer.store)


def test_run_writes_checkpoint_plot_and_config(trained_run):
    run_dir, trainer = trained_run
    state = load_checkpoint(run_dir / "checkpoint.pt")
    for key in ("loss_module", "actor_optimizer", "critic_optimizer", "counters", "rng", "store", "config", "version"):
        assert key in state, key
    assert state["counters"]["frames"] == 1024 and state["counters"]["iteration"] == 4
    assert "eval/return_mean" in state["counters"]["last_eval"]
    assert state["config"]["total_frames"] == 1024 and state["config"]["batch_size"] == 64
    assert state["actor_optimizer"]["state"], "the optimizer state (momentum) is saved"
    counts = {k: v for k, v in state["loss_module"].items() if k.endswith(".count")}
    assert counts and all(v.item() == 1024 for v in counts.values())
    means = [v for k, v in state["loss_module"].items() if k.endswith(".mean")]
    assert means and all(v.abs().sum() > 0 for v in means)
    for name, value in trainer.loss_module.state_dict().items():
        torch.testing.assert_close(state["loss_module"][name], value)
    assert (buffer_dir(run_dir / "checkpoint.pt")).is_dir()
    png = run_dir / "learning_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    saved = (run_dir / "config.yaml").read_text()
    assert "name: Hopper-v5" in saved and "total_frames: 1024" in saved


def test_resume_continues_counters(trained_run, tmp_path):
    run_dir = copy_run(trained_run[0], tmp_path)
    trainer = run_recipe(run_dir, "collector.total_frames=1536", f"resume={run_dir / 'checkpoint.pt'}")
    first = trainer.history[0]
    assert (first["frames"], first["iteration"]) == (1280, 5)
    assert (trainer.frames, trainer.iteration) == (1536, 6)
    assert first["normalizer_samples"] == 1280  # the normaliser statistics were restored
    assert first["buffer_size"] == 256  # a fresh buffer
    assert [step for step, _ in read_csv(run_dir, "frames")] == [256, 512, 768, 1024, 1280, 1536]
    assert [value for _, value in read_csv(run_dir, "iteration")][-2:] == [5, 6]
    state = load_checkpoint(run_dir / "checkpoint.pt")
    assert (state["counters"]["frames"], state["counters"]["iteration"]) == (1536, 6)


def test_checkpoint_wall_time_matches_log(trained_run):
    run_dir, trainer = trained_run
    state = load_checkpoint(run_dir / "checkpoint.pt")
    assert state["counters"]["wall_time"] == pytest.approx(read_csv(run_dir, "wall_time")[-1][1])
    assert state["counters"]["wall_time"] == pytest.approx(trainer.wall_time)


def test_resume_restores_buffer(trained_run, tmp_path):
    run_dir = copy_run(trained_run[0], tmp_path)
    saved = TensorDictReplayBuffer(storage=LazyTensorStorage(2048, ndim=2))
    saved.loads(buffer_dir(run_dir / "checkpoint.pt"))
    assert len(saved) == 1024
    trainer = run_recipe(
        run_dir,
        "collector.total_frames=1536",
        "checkpoint.save_buffer=true",
        "resume_buffer=true",
        f"resume={run_dir / 'checkpoint.pt'}",
    )
    first = trainer.history[0]
    assert (first["frames"], first["iteration"]) == (1280, 5)
    assert first["buffer_size"] == 1024 + 256  # the saved 1024 transitions, then one new batch
    assert len(trainer.replay_buffer) == 1536
    # The saved rows are intact: new data went after them (the write cursor was restored).
    rows = 1024 // 4
    stored = trainer.replay_buffer.storage._storage[:rows]
    torch.testing.assert_close(stored["observation"], saved.storage._storage[:rows]["observation"])
    torch.testing.assert_close(stored["action"], saved.storage._storage[:rows]["action"])
    assert_time_ordered(trainer.store)
    load_checkpoint(run_dir / "checkpoint.pt", replay_buffer=saved)
    assert len(saved) == 1536


def test_command_line_run_and_resume(tmp_path):
    """The real command, with the default compiled updates; a resume keeps the run's settings
    but for the ones it names."""
    out = tmp_path / "cli"
    result = run_command(
        tmp_path,
        "train.compile=true",
        "collector.total_frames=512",
        "collector.type=multi_sync",
        "collector.num_workers=2",
        "env.num_envs=2",
        f"output_dir={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The first screen says what runs, the last how it ended and where its files are; no
    # library chatter (TorchRL's storage INFO, its use_buffers warning) in between.
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        "AWR on Hopper-v5 (task=hopper, seed=0), device cpu",
        "collector  multi_sync: 2 workers x 2 envs, 256 samples per iteration",
        "samples    512 (new run)",
        f"run        {out}",
    ]
    # Not a terminal: a line says why the first iteration is slow, then one line per evaluation.
    assert lines[4] == "compiling the update steps (torch.compile): the first iteration takes longer"
    assert re.fullmatch(
        r"512 of 512 samples \(iteration 2\): eval -?\d+\.\d ± \d+\.\d(, train -?\d+\.\d)? \(\d+\.\d min\)", lines[5]
    )
    assert lines[-5].startswith("Done: 512 samples in ") and lines[-4].startswith("evaluation ")
    assert " deterministic episodes at 512 samples (mean length " in lines[-4]
    assert lines[-3:] == [
        f"checkpoint {out / 'checkpoint.pt'}",
        f"logs       {out / 'logs' / 'scalars'}",
        f"plot       {out / 'learning_curve.png'}",
    ]
    for chatter in ("use_buffer", "Initialized LazyTensorStorage"):
        assert chatter not in result.stdout + result.stderr
    assert (out / "checkpoint.pt").is_file() and (out / "learning_curve.png").is_file()
    assert [step for step, _ in read_csv(out, "frames")] == [256, 512]
    result = run_command(
        tmp_path, f"resume={out / 'checkpoint.pt'}", "collector.total_frames=768", "train.compile=false", small=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [step for step, _ in read_csv(out, "frames")] == [256, 512, 768]
    assert load_checkpoint(out / "checkpoint.pt")["counters"]["iteration"] == 3
    saved = (out / "config.yaml").read_text()
    assert "name: Hopper-v5" in saved and "num_envs: 2" in saved and "type: multi_sync" in saved
    assert "total_frames: 768" in saved and "compile: false" in saved


# ---------------------------------------------------------------- collectors and storages
def test_the_collectors_worker_processes_ignore_ctrl_c():
    """A terminal's Ctrl-C reaches the workers too: they ignore it and go on collecting, so the
    trainer alone answers it (TorchRL's worker would end its collection quietly)."""
    cfg = compose_config("collector.type=multi_sync", "collector.num_workers=2", "env.num_envs=2")
    with factories.probe_env(cfg) as env:
        actor, _, _ = factories.make_models(cfg, env, torch.device("cpu"))
    collector = factories.make_collector(cfg, actor, torch.device("cpu"))
    try:
        batches = iter(collector)
        next(batches)
        for worker in collector.procs:
            os.kill(worker.pid, signal.SIGINT)
        assert next(batches).numel() == 256
        assert all(worker.is_alive() for worker in collector.procs)
    finally:
        collector.shutdown()


def test_multi_sync_collector(tmp_path, probed):
    trainer = run_recipe(tmp_path / "run", "collector.type=multi_sync", "collector.num_workers=2", "env.num_envs=2")
    assert trainer.frames == 1024
    assert math.isfinite(trainer.last_eval["eval/return_mean"])
    assert trainer.replay_buffer.storage._storage.shape[:2] == (512, 4)  # [T, workers * envs]
    assert_time_ordered(trainer.store)
    # Every batch was collected with the weights (and normaliser) the trainer had at that time,
    # not with the initial ones.
    assert len(probed.gaps) == 4 and max(probed.gaps) < 1e-5, probed.gaps
    assert min(probed.stale_gaps[1:]) > 1e-3, probed.stale_gaps


def test_multi_async_collector(tmp_path):
    trainer = run_recipe(tmp_path / "run", "collector.type=multi_async", "collector.num_workers=2", "eval.interval=0")
    assert trainer.frames >= 1024
    assert not trainer.contiguous_batches
    # Consecutive batches of a column come from different workers: each batch ends done there.
    assert_time_ordered(trainer.store)
    done = trainer.store.chronological()["next", "done"]  # [n_envs, T, 1]
    assert done[:, 63::64].all()


def test_envs_per_batch_counts_one_worker_for_asynchronous_collectors():
    """Each asynchronous batch is one worker's; a synchronous one stacks every worker's envs."""
    for overrides, envs in (
        (["collector.type=single"], 4),
        (["collector.type=multi_sync", "collector.num_workers=2"], 8),
        (["collector.type=multi_async", "collector.num_workers=2"], 4),
        (["collector.type=ray", "collector.num_workers=3"], 12),
        (["collector.type=ray", "collector.num_workers=3", "collector.ray.sync=false"], 4),
    ):
        assert compose.envs_per_batch(compose_config(*overrides)) == envs, overrides


def test_memmap_storage(tmp_path):
    run_dir = tmp_path / "run"
    trainer = run_recipe(run_dir, "buffer.storage=memmap", "collector.total_frames=512", "eval.interval=0")
    assert isinstance(trainer.replay_buffer.storage, LazyMemmapStorage)
    assert trainer.frames == 512 and len(trainer.replay_buffer) == 512
    files = list((run_dir / "buffer").rglob("*.memmap"))
    assert any(f.name == "observation.memmap" for f in files), files
    assert all(f.stat().st_size > 0 for f in files)
    assert_time_ordered(trainer.store)


def test_discrete_lunarlander(tmp_path):
    trainer = run_recipe(tmp_path / "run", "task=lunarlander", "collector.total_frames=512")
    actor = trainer.loss_module.actor_network
    batch = trainer.replay_buffer.storage._storage[:4].reshape(-1)
    with torch.no_grad():
        dist = actor.get_dist(batch.select("observation").clone())
    assert isinstance(dist, Categorical) and dist.logits.shape[-1] == 4
    action = batch["action"]
    assert not action.is_floating_point() and set(action.unique().tolist()) <= {0, 1, 2, 3}
    assert trainer.frames == 512 and math.isfinite(trainer.last_eval["eval/return_mean"])
    assert "loss_logits_l2" in trainer.history[-1]


def test_same_seed_same_run(tmp_path):
    overrides = ("collector.total_frames=512", "seed=7")
    first = run_recipe(tmp_path / "a", *overrides)
    second = run_recipe(tmp_path / "b", *overrides)
    varying = ("wall_time",)
    for a, b in zip(first.history, second.history, strict=True):
        a = {k: v for k, v in a.items() if not k.startswith("time/") and k not in varying}
        b = {k: v for k, v in b.items() if not k.startswith("time/") and k not in varying}
        assert a == b
    for (name, x), y in zip(first.loss_module.state_dict().items(), second.loss_module.state_dict().values()):
        assert torch.equal(x, y), name
    third = run_recipe(tmp_path / "c", "collector.total_frames=512", "seed=8")
    assert third.history[-1]["loss_actor"] != first.history[-1]["loss_actor"]


# ---------------------------------------------------------------- bad input
def garbage_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "old" / "checkpoint.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00not a checkpoint\xff" * 10)
    return path


def not_a_directory(tmp_path: Path) -> Path:
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    return blocker / "run"


# Command lines that must fail with one message on stderr (run as real commands).
BAD_COMMANDS = {
    "unknown task": (["task=nope"], r"Could not find 'task/nope'.*hopper.*lunarlander"),
    "unknown key": (["foo=1"], r"error: Unknown setting foo: the recipe has no such key"),
    "unknown env": (["env.name=NoSuchEnv-v0"], r"error: Unknown gymnasium environment 'NoSuchEnv-v0'"),
    "bad env kwarg": (
        ["+env.kwargs.no_such_arg=1"],
        r"error: Hopper-v5 does not accept the env kwargs \{'no_such_arg': 1\}: .*no_such_arg",
    ),
}
# Settings rejected by validate_config; in process (the command prints the same message, as above).
BAD_SETTINGS = {
    "env typo": (["env.name=Hoper-v5"], r"Did you mean: Hopper-v5"),
    "zero frames": (
        ["collector.total_frames=0"],
        r"Invalid trainer settings: collector.total_frames=0 \(must be > 0\)",
    ),
    "batch > buffer": (["train.batch_size=4096"], r"train.batch_size \(4096\) is larger than buffer.size \(2048\)"),
    "collector type": (
        ["collector.type=rays"],
        r"collector.type='rays' is not valid; choose one of: single, multi_sync",
    ),
    "storage": (["buffer.storage=disk"], r"buffer.storage='disk' is not valid; choose one of: memory, memmap"),
    "optimizer": (["optim.name=rmsprop"], r"optim.name='rmsprop' is not valid; choose one of: sgd, adam"),
    "weighting": (["loss.weighting=crr"], r"loss.weighting='crr' is not valid; choose one of: exp, binary, softmax"),
    "uneven batch": (["collector.frames_per_batch=250"], r"frames_per_batch \(250\) must be a multiple .* \(4\)"),
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    """Every bad command line at once (they are independent): case -> (returncode, stderr, dir)."""
    launched = {}
    for case, (overrides, _) in BAD_COMMANDS.items():
        cwd = tmp_path_factory.mktemp("bad")
        launched[case] = (cwd, [*overrides, f"output_dir={cwd / 'run'}"])
    corrupt = tmp_path_factory.mktemp("bad")
    launched["corrupt checkpoint"] = (corrupt, [f"resume={garbage_checkpoint(corrupt)}"])
    unwritable = tmp_path_factory.mktemp("bad")
    launched["unwritable dir"] = (unwritable, [f"output_dir={not_a_directory(unwritable)}"])
    commands = [(recipe_command(*overrides)[1:], cwd, dict(os.environ)) for cwd, overrides in launched.values()]
    done = run_commands(commands)
    return {case: (result.returncode, result.stderr, cwd) for (case, (cwd, _)), result in zip(launched.items(), done)}


@pytest.mark.parametrize("case", BAD_COMMANDS)
def test_bad_command_fails_with_one_clear_message(case, bad_runs):
    returncode, stderr, cwd = bad_runs[case]
    assert returncode != 0
    assert re.search(BAD_COMMANDS[case][1], stderr, flags=re.S), stderr[-2000:]
    assert "Traceback" not in stderr
    assert not (cwd / "run" / "checkpoint.pt").exists()


def test_corrupt_checkpoint_is_reported_and_left_alone(bad_runs):
    returncode, stderr, cwd = bad_runs["corrupt checkpoint"]
    path = cwd / "old" / "checkpoint.pt"
    assert returncode == 2
    assert f"error: Checkpoint {path} is corrupt or unreadable" in stderr
    assert "Traceback" not in stderr
    assert path.read_bytes() == garbage_checkpoint(cwd / "again").read_bytes()
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]


def test_unwritable_output_dir(bad_runs):
    returncode, stderr, cwd = bad_runs["unwritable dir"]
    run_dir = cwd / "file" / "run"
    assert returncode == 2
    assert f"error: Cannot create the output directory {run_dir}" in stderr
    assert "Traceback" not in stderr
    # The in-process entry point checks it too, before building anything.
    with pytest.raises(RunDirectoryError, match="Cannot create the output directory"):
        run_recipe(run_dir)


@pytest.mark.parametrize("case", BAD_SETTINGS)
def test_bad_settings_fail_before_any_work(case, tmp_path, monkeypatch):
    """Rejected before the run directory or any environment is made."""

    def no_env(*args, **kwargs):
        raise AssertionError("an environment was built before the config was checked")

    monkeypatch.setattr(factories, "make_env", no_env)
    overrides, message = BAD_SETTINGS[case]
    with pytest.raises(ValueError, match=message):
        run_recipe(tmp_path / "run", *overrides)
    assert not (tmp_path / "run").exists()


def test_corrupt_checkpoint_fails_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(factories, "make_env", None)
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        run_recipe(tmp_path / "run", f"resume={garbage_checkpoint(tmp_path)}")
    with pytest.raises(CheckpointError, match="No checkpoint at"):
        run_recipe(tmp_path / "run", f"resume={tmp_path / 'missing.pt'}")


# ---------------------------------------------------------------- Ctrl-C
@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(stop, tmp_path):
    """Ctrl-C (SIGINT to the trainer's process) or SIGTERM finishes and logs the iteration under
    way, saves and exits 130."""
    out = tmp_path / "run"
    process = subprocess.Popen(
        recipe_command(
            "collector.total_frames=10000000", "checkpoint.interval=1000", "eval.interval=1000", f"output_dir={out}"
        ),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # SIGABRT on a hang dumps every thread
        # A shell's background job inherits SIGINT ignored, and Python keeps it so; a terminal's
        # Ctrl-C is what this test stands for.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    frames_log = out / "logs" / "scalars" / "wall_time.csv"
    try:
        deadline = time.monotonic() + 90
        while not (frames_log.exists() and frames_log.read_text().strip()):
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no iteration was logged in time"
            time.sleep(0.2)
        assert not (out / "checkpoint.pt").exists()  # only the interrupt will write one
        process.send_signal(getattr(signal, stop))
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            pytest.fail(f"no exit 60 s after Ctrl-C; stacks:\n{process.communicate()[1][-6000:]}")
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr[-3000:]  # interrupted, not finished
    assert f"Interrupted: checkpoint saved to {out / 'checkpoint.pt'}" in stdout + stderr
    assert "Stopping: the checkpoint is saved after this iteration (again: stop at once, unsaved)." in stderr
    assert "evaluation none yet (one every 1000 iterations, and at the end)" in stdout
    state = load_checkpoint(out / "checkpoint.pt")
    logged = read_csv(out, "frames")
    assert state["counters"]["frames"] >= 256 and state["counters"]["iteration"] >= 1
    # The iteration under way finished and was logged: checkpoint and log end on the same count.
    assert state["counters"]["frames"] == logged[-1][1]
    assert (out / "learning_curve.png").is_file()


@pytest.mark.parametrize("weighting", ["exp", "binary", "softmax"])
def test_the_weighting_setting_reaches_the_loss(weighting):
    cfg = compose_config(f"loss.weighting={weighting}")
    env = factories.env_maker(cfg)()
    actor, critic, _ = factories.make_models(cfg, env, torch.device("cpu"))
    assert factories.make_loss(cfg, actor, critic, env.action_spec).weighting == weighting
    env.close()


def test_the_layer_norm_setting_reaches_both_networks_and_a_resumed_run(tmp_path):
    trainer = run_recipe(
        tmp_path / "run", "model.layer_norm=true", "model.hidden_sizes=[16,8]", "checkpoint.interval=2"
    )
    for network in (trainer.loss_module.actor_network, trainer.loss_module.critic_network):
        assert sum(isinstance(m, torch.nn.LayerNorm) for m in network.modules()) == 2
    resumed = run_recipe(
        tmp_path / "run", f"resume={tmp_path / 'run' / 'checkpoint.pt'}", "collector.total_frames=1536"
    )
    assert resumed.frames == 1536
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in resumed.loss_module.actor_network.modules()) == 2


def test_residual_blocks_reach_both_networks_and_a_resumed_run(tmp_path):
    trainer = run_recipe(
        tmp_path / "run", "model.residual_blocks=2", "model.hidden_sizes=[16]", "checkpoint.interval=2"
    )
    networks = (trainer.loss_module.actor_network, trainer.loss_module.critic_network)
    assert [sum(isinstance(m, ResidualBlock) for m in network.modules()) for network in networks] == [2, 2]
    resumed = run_recipe(
        tmp_path / "run", f"resume={tmp_path / 'run' / 'checkpoint.pt'}", "collector.total_frames=1536"
    )
    assert resumed.frames == 1536
    assert sum(isinstance(m, ResidualBlock) for m in resumed.loss_module.critic_network.modules()) == 2


def test_missing_logger_package_is_named(tmp_path, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real_find_spec(name, *a)
    )
    with pytest.raises(ImportError, match=r"needs the wandb package: pip install -e '.\[wandb\]'"):
        run_recipe(tmp_path / "run", "logger.backend=wandb")
    assert not (tmp_path / "run").exists()


def test_overlapped_collection_with_one_async_worker(tmp_path):
    trainer = run_recipe(tmp_path / "run", "collector.type=multi_async", "collector.num_workers=1", "eval.interval=0")
    assert trainer.frames >= 1024 and trainer.contiguous_batches
    assert_time_ordered(trainer.store)
    done = trainer.store.chronological()["next", "done"]  # [n_envs, T, 1]
    assert not done[:, 63::64].all()  # batch ends are not forced to be cuts


def test_missing_mujoco_is_named_before_any_work(tmp_path, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mujoco" else real_find_spec(name, *a)
    )
    with pytest.raises(ImportError, match=r"Hopper-v5 needs MuJoCo.*pip install 'gymnasium\[mujoco\]'"):
        run_recipe(tmp_path / "run")
    assert not (tmp_path / "run").exists()
