"""No hang, whatever dies: every wait on the collector is bounded (docs/reliability.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from torchrl_awr.watchdog import CollectorStalled, CollectorWatchdog

from recipe_helpers import SMALL, recipe_command, the_error_line

HANGING_RECIPE = Path(__file__).with_name("hanging_env.py")
ENDLESS = [o for o in SMALL if not o.startswith("collector.total_frames")] + ["collector.total_frames=10_000_000"]


def test_the_limit_is_the_longer_of_the_timeout_and_ten_slowest_batches(monkeypatch):
    clock = iter([0.0, 100.0, 100.0, 100.0, 130.0])  # a first batch (not timed), then 0 s and 30 s
    monkeypatch.setattr("torchrl_awr.watchdog.time.monotonic", lambda: next(clock))
    watchdog = CollectorWatchdog(SimpleNamespace(), timeout=60.0)
    assert watchdog.limit() == 60.0
    for _ in range(3):
        with watchdog.waiting("a batch", batch=True):
            pass
    assert watchdog.slowest == 30.0  # the first batch (the workers' start) is not counted
    assert watchdog.limit() == 300.0
    assert CollectorWatchdog(SimpleNamespace(), timeout=None).waiting  # None: no limit, no error
    with pytest.raises(ValueError, match="timeout=0 must be > 0 seconds"):
        CollectorWatchdog(SimpleNamespace(), timeout=0)


def test_a_wait_past_its_limit_or_on_a_dead_worker_ends_at_once():
    watchdog = CollectorWatchdog(SimpleNamespace(), timeout=0.5, poll=0.05)
    tic = time.monotonic()
    with pytest.raises(CollectorStalled, match=r"no answer from the collector within 0 s, waiting for a batch"):
        with watchdog.waiting("a batch"):
            time.sleep(30)
    assert time.monotonic() - tic < 5
    dead = SimpleNamespace(procs=[SimpleNamespace(pid=123, exitcode=None), SimpleNamespace(pid=456, exitcode=-9)])
    watchdog = CollectorWatchdog(dead, timeout=60, poll=0.05)
    with pytest.raises(CollectorStalled, match=r"process 456 is gone \(killed by signal 9\), while waiting for the"):
        with watchdog.waiting("the weight sync"):
            time.sleep(30)
    assert signal.getsignal(signal.SIGALRM) == signal.SIG_DFL  # the handler is put back


def start(
    run_dir: Path, *overrides: str, script: Path | None = None, env: dict | None = None, new_session: bool = False
) -> subprocess.Popen:
    """The command on an endless run, with SIGINT's default handling as a terminal starts it (a
    background job, e.g. pytest under nohup, would pass it on ignored); in a process group of its
    own with ``new_session`` (a terminal's Ctrl-C reaches the whole group)."""
    command = recipe_command(*ENDLESS, f"output_dir={run_dir}", *overrides, small=False)
    if script is not None:
        command[1] = str(script)
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {}), "HYDRA_FULL_ERROR": "0"},
        start_new_session=new_session,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def finish(process: subprocess.Popen, timeout: float = 90) -> tuple[int, str, float]:
    """The exit code, the output (stdout then stderr) and the seconds it took to end."""
    tic = time.monotonic()
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout + stderr, time.monotonic() - tic


@pytest.mark.parametrize("collector", ["single", "multi_sync", "multi_async"])
def test_an_environment_that_hangs_stops_the_run_with_exit_3(collector, tmp_path):
    """An environment that never returns from a step (in the trainer's process or a worker):
    exit 3 once no batch came for ``collector.watchdog_s``, naming the checkpoint to resume."""
    process = start(
        tmp_path / "run",
        "env.name=HangingPendulum-v0",
        f"collector.type={collector}",
        "collector.watchdog_s=3",
        "checkpoint.interval=1",
        script=HANGING_RECIPE,
        env={"HANG_AT_STEP": "300"},  # in the second batch of each process's 4 envs
    )
    code, stderr, _ = finish(process)
    assert code == 3, stderr[-3000:]
    error = the_error_line(stderr)
    assert "no answer from the collector within 3 s, waiting for a batch" in error
    assert f"is intact: load it to continue. Continue with resume={tmp_path / 'run'}." in error


def test_a_killed_async_worker_stops_the_run_with_exit_3(tmp_path):
    """kill -9 of a ``multi_async`` worker, at three moments of the run (it once hung TorchRL's
    weight sync 5 times in 9): exit 3 within seconds each time."""
    for trial, delay in enumerate([0.0, 0.7, 1.9]):
        process = start(tmp_path / f"run{trial}", "collector.type=multi_async", "collector.num_workers=2")
        assert process.stdout.readline().startswith("AWR on")  # the start screen: the workers are up
        time.sleep(delay)
        workers = subprocess.run(["pgrep", "-P", str(process.pid), "-f", "spawn_main"], capture_output=True, text=True)
        os.kill(int(workers.stdout.split()[0]), signal.SIGKILL)
        code, stderr, seconds = finish(process)
        assert code == 3, stderr[-3000:]
        assert "The collector failed after" in the_error_line(stderr)
        assert seconds < 30, f"trial {trial}: {seconds:.0f} s"


def test_a_worker_that_dies_while_starting_is_exit_3(tmp_path):
    """TorchRL's error for a worker that died before it answered is the collector lost (exit 3,
    one line), and the run exits (the weight-sync objects it left would deadlock at exit)."""
    process = start(
        tmp_path / "run",
        "env.name=HangingPendulum-v0",
        "collector.type=multi_sync",
        script=HANGING_RECIPE,
        env={"DIE_IN_WORKER": "1"},
    )
    code, stderr, _ = finish(process, timeout=120)
    assert code == 3, stderr[-3000:]
    assert "The collector's worker processes did not start" in the_error_line(stderr)
    assert not (tmp_path / "run").exists()


def test_sigterm_while_the_environment_hangs_stops_the_run(tmp_path):
    """A SIGTERM is never absorbed: while the trainer waits on a hanging environment it ends the
    wait, saves a checkpoint and exits 130; a second signal exits 130 at once, without a
    traceback."""
    process = start(
        tmp_path / "run",
        "env.name=HangingPendulum-v0",
        "collector.type=single",
        "checkpoint.interval=1",
        script=HANGING_RECIPE,
        env={"HANG_AT_STEP": "300"},
    )
    assert process.stdout.readline().startswith("AWR on")
    time.sleep(3)  # the environment hangs in the second batch
    process.send_signal(signal.SIGTERM)
    code, stderr, seconds = finish(process)
    assert code == 130 and seconds < 20, stderr[-3000:]
    assert "Interrupted: checkpoint saved" in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert (tmp_path / "run" / "checkpoint.pt").is_file()

    process = start(tmp_path / "run2", "collector.type=single", "checkpoint.interval=1", "train.actor_steps=50000")
    assert process.stdout.readline().startswith("AWR on")
    time.sleep(2)  # in the first iteration's updates (tens of seconds of them)
    for _ in range(3):  # the first asks to stop, the second stops at once, the third changes nothing
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
    code, stderr, _ = finish(process)
    assert code == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith("Stopped at once: ")


def test_ctrl_c_while_the_workers_start_stops_at_once_and_leaves_nothing(tmp_path):
    """A terminal's Ctrl-C (the whole process group) while the collector's two workers build their
    environments (here for two minutes): exit 130 at once, the workers ended, no run directory.
    It was once lost: the trainer's process ignored SIGINT while its workers started."""
    started = tmp_path / "started"  # each worker adds a file, then takes 120 s to make its envs
    started.mkdir()
    process = start(
        tmp_path / "run",
        "env.name=HangingPendulum-v0",
        "collector.type=multi_sync",
        "collector.num_workers=2",
        script=HANGING_RECIPE,
        env={"SLOW_IN_WORKER": str(started)},
        new_session=True,
    )
    while len(list(started.iterdir())) < 2:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    workers = [int(path.name) for path in started.iterdir()]
    os.killpg(process.pid, signal.SIGINT)
    code, stderr, seconds = finish(process)
    assert code == 130 and seconds < 30, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == "Stopped at once: the run had not started; nothing was written."
    assert not (tmp_path / "run").exists()
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-n", "0", "-q"]))
