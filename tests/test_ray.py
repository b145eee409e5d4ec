"""Collection on Ray (``collector.type=ray``): a local Ray of 2 CPUs, no dashboard, a small
object store; the recipe in process and as a command, and a user-made ``RayCollector``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import ray
import torch
from torchrl.collectors.distributed import RayCollector

from torchrl_awr.checkpoint import load_checkpoint
from torchrl_awr.recipe import compose
from torchrl_awr.recipe.ray_cluster import check_resources, head_node
from torchrl_awr.store import batches_continue

from recipe_helpers import (
    assert_time_ordered,
    compose_config,
    load_script,
    read_csv,
    recipe_command,
    run_command,
    run_recipe,
)

ROOT = Path(__file__).resolve().parents[1]
SCALING = ROOT / "docs" / "scaling.md"
BENCHMARKS = ROOT / "benchmarks"
RAY = ["collector.type=ray", "collector.num_workers=2", "env.num_envs=2"]
# A command's own local Ray, as small as the in-process one.
LOCAL_RAY = ["collector.ray.local_cpus=2", "collector.ray.object_store_mib=128", "collector.ray.worker_memory_gib=0.5"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray for the in-process runs of this module (the recipe joins an initialised Ray)."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 2**20, log_to_driver=False)
    yield
    ray.shutdown()


def test_sync_workers_collect_with_the_current_weights_std_and_normaliser(tmp_path, probed):
    trainer = run_recipe(
        tmp_path / "run",
        *RAY,
        "model.action_std=0.6",
        "model.action_std_end=0.2",
        "model.action_std_anneal_frames=768",
        "model.action_std_anneal_start=256",
    )
    assert trainer.frames == 1024 and trainer.contiguous_batches
    assert trainer.replay_buffer.storage._storage.shape[:2] == (512, 4)  # [T, workers * envs]
    assert_time_ordered(trainer.store)  # each column continues one env across the 4 batches
    # Every batch's actions came from the learner's actor and normaliser of that moment...
    assert len(probed.gaps) == 4 and max(probed.gaps) < 1e-5, probed.gaps
    assert min(probed.stale_gaps[1:]) > 1e-3, probed.stale_gaps
    # ... and its annealed std (Hopper's actions lie in [-1, 1]: scale = std).
    scale = trainer.replay_buffer.storage._storage["scale"][..., 0]
    for batch, std in enumerate((0.6, 0.6, 0.6 - 0.4 / 3, 0.6 - 0.8 / 3)):
        torch.testing.assert_close(scale[64 * batch : 64 * (batch + 1)], torch.full((64, 4), std))
    assert [step for step, _ in read_csv(tmp_path / "run", "eval/return_mean")] == [512, 1024]


def test_async_workers_never_join_trajectories(tmp_path):
    trainer = run_recipe(tmp_path / "run", *RAY, "collector.ray.sync=false", "eval.interval=0")
    assert trainer.frames == 1024 and not trainer.contiguous_batches
    # Each batch is one worker's [2 envs, 128 steps]; consecutive batches of a column may come
    # from different workers, so every batch ends done there.
    assert trainer.store.num_envs == 2
    assert_time_ordered(trainer.store)
    done = trainer.store.chronological()["next", "done"]
    assert done[:, 127::128].all()


def test_a_user_made_ray_collector_drives_the_trainer(capsys):
    """The docs' Python example, as written."""
    text = SCALING.read_text().split("<!-- docs-example: ray-trainer -->", 1)[1]
    namespace: dict = {}
    exec(compile(text.split("```python", 1)[1].split("```", 1)[0], str(SCALING), "exec"), namespace)
    trainer = namespace["trainer"]
    assert trainer.frames == 1024 and trainer.iteration == 2 and trainer.contiguous_batches
    assert capsys.readouterr().out.strip() == "1024 samples from 8 environments"
    assert_time_ordered(trainer.store)


def test_resources_the_cluster_lacks_are_refused_at_once():
    with pytest.raises(ValueError, match=r"need 3 CPUs \(collector.num_workers x collector.ray.worker_cpus\)"):
        check_resources(3, 1, 0.5)
    with pytest.raises(ValueError, match=r"GiB \(collector.num_workers x collector.ray.worker_memory_gib\)"):
        check_resources(2, 1, 10_000)
    check_resources(2, 1, 0.5)


def ray_collectors_of(pid: int) -> list[int]:
    """The PIDs of the Ray actor processes running a ``Collector`` below process ``pid``."""
    parents, titles = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                titles[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, IndexError, ValueError):
                continue

    def descends(child: int) -> bool:
        while child in parents and child != 1:
            if parents[child] == pid:
                return True
            child = parents[child]
        return False

    return [child for child, title in titles.items() if title.startswith("ray::Collector") and descends(child)]


def test_a_killed_worker_stops_the_run_and_its_checkpoint_resumes_on_ray(tmp_path):
    """kill -9 of a remote collector: exit 3 within seconds, one line naming the checkpoint, which
    then resumes (with its buffer) on another Ray to the end."""
    run_dir = tmp_path / "run"
    settings = [*RAY, "checkpoint.interval=1", "checkpoint.save_buffer=true", "eval.interval=0"]
    command = recipe_command(*settings, *LOCAL_RAY, "collector.total_frames=1_000_000", f"output_dir={run_dir}")
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "checkpoint.pt").exists():
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
            time.sleep(0.5)
        workers = ray_collectors_of(process.pid)
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert time.monotonic() - killed < 60
    assert process.returncode == 3, stderr[-3000:]
    error = [line for line in stderr.splitlines() if line.startswith("error:")]
    # The death shows where the run meets it first: Ray's ActorDiedError while collecting, or the
    # weight sync's closed connection.
    assert len(error) == 1 and error[0].startswith("error: The collector failed after "), stderr[-3000:]
    assert f"Continue with resume={run_dir}." in error[0]
    frames = load_checkpoint(run_dir / "checkpoint.pt")["counters"]["frames"]
    assert frames >= 256
    # The resume, on this module's Ray.
    run_recipe(
        run_dir,
        *settings,
        f"resume={run_dir / 'checkpoint.pt'}",
        "resume_buffer=true",
        f"collector.total_frames={frames + 512}",
    )
    assert load_checkpoint(run_dir / "checkpoint.pt")["counters"]["frames"] == frames + 512
    assert [step for step, _ in read_csv(run_dir, "frames")][-3:] == [frames, frames + 256, frames + 512]


def test_an_environment_that_hangs_in_a_ray_worker_stops_the_run_with_exit_3(tmp_path):
    """The watchdog bounds Ray's waits too: an environment that never returns from a step in a
    remote collector (a user's task, named ``module:EnvId`` so that each worker imports it)."""
    command = recipe_command(
        *RAY,
        *LOCAL_RAY,
        "env.name=hanging_env:HangingPendulum-v0",
        "collector.watchdog_s=3",
        "collector.total_frames=1_000_000",
        f"output_dir={tmp_path / 'run'}",
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "HANG_AT_STEP": "300", "HYDRA_FULL_ERROR": "0"}
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 3, result.stderr[-3000:]
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "no answer from the collector within 3 s" in error[0], result.stderr[-3000:]


def test_a_local_ray_starts_without_rays_advice_to_cluster_owners():
    """Ray >= 2.59 warns that a local cluster turned token authentication on: not this run's news."""
    code = "import ray; from torchrl_awr.recipe.ray_cluster import init_ray; init_ray(None, num_cpus=1); ray.shutdown()"
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}  # not this module's cluster
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Token authentication is enabled" not in result.stdout + result.stderr


def test_an_unreachable_address_fails_within_seconds(tmp_path):
    tic = time.monotonic()
    result = run_command(tmp_path, *RAY, "collector.ray.address=127.0.0.1:1", f"output_dir={tmp_path / 'run'}")
    assert time.monotonic() - tic < 30
    assert result.returncode == 2, result.stderr[-3000:]
    assert "No Ray head node answers at collector.ray.address=127.0.0.1:1" in result.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_bad_ray_settings_are_named_before_any_work(monkeypatch):
    for overrides, message in (
        (["collector.ray.address=head-node"], r"collector.ray.address='head-node' is not an address"),
        (["collector.ray.worker_cpus=0"], r"collector.ray.worker_cpus=0 \(must be > 0\)"),
        (["collector.ray.worker_memory_gib=-1"], r"collector.ray.worker_memory_gib=-1"),
    ):
        with pytest.raises(ValueError, match=message):
            compose.validate_config(compose_config(*RAY, *overrides))
    assert head_node("ray://10.0.0.5:10001") == ("10.0.0.5", 10001)
    assert head_node(None) is None and head_node("auto") is None
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(ImportError, match=r"collector.type=ray needs Ray.*pip install -e '.\[ray\]'"):
        compose.validate_config(compose_config(*RAY))


def test_batches_continue_unless_several_workers_hand_over_in_turn():
    for sync, workers, continues in ((True, 2, True), (False, 1, True), (False, 2, False)):
        collector = RayCollector.__new__(RayCollector)
        collector._sync, collector.num_collectors = sync, workers
        assert batches_continue(collector) is continues


def test_throughput_compares_ray_with_multi_sync_and_projects_the_scaling(tmp_path):
    out = tmp_path / "result.json"
    result = load_script(BENCHMARKS / "throughput.py").main(
        ["--smoke", "--collectors", "multi_sync", "ray", "--out", str(out), "--run-dir", str(tmp_path / "run")]
    )
    assert set(result["by_collector"]) == {"multi_sync", "ray"}
    for summary in result["by_collector"].values():
        assert summary["num_workers"] == 2 and summary["samples_per_second"] > 0
        assert sum(summary["phase_share"].values()) == pytest.approx(1.0, abs=1e-6)
    assert result["ray_overhead_per_iteration"] > -1
    table = load_script(BENCHMARKS / "scaling_projection.py").main([str(out)])
    assert table.splitlines()[-1].startswith("- GPU learner (assumed), 0.5 min per 1M of learning: ")
    assert sum(line.startswith("| ") for line in table.splitlines()) == 8  # header and 1..64 workers


def test_the_recipe_joins_a_cluster_started_with_ray_start(tmp_path):
    """``ray start --head`` (its own processes, stopped with it), then the recipe with its address:
    the multi-node path on one machine."""
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    ray_dir = tempfile.mkdtemp(prefix="ray")  # short: Ray's sockets live there
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}", "--num-cpus=2", "--block"]
        + ["--include-dashboard=false", f"--temp-dir={ray_dir}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, head)
        run_dir = tmp_path / "run"
        result = run_command(
            tmp_path,
            *RAY,
            f"collector.ray.address=127.0.0.1:{port}",
            "collector.ray.worker_memory_gib=0.5",
            "collector.total_frames=512",
            "eval.interval=0",
            f"output_dir={run_dir}",
            timeout=240,
            env=env,
        )
    finally:
        head.terminate()
        head.wait(timeout=60)
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_checkpoint(run_dir / "checkpoint.pt")["counters"]["frames"] == 512


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "ray start --head did not come up"
            time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
