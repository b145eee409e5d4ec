"""Sweeps (``torchrl-awr train -m``) on the basic, joblib and submitit-local launchers, their
relaunch after a kill, a failed run in the last screen, an Optuna study that resumes, and
``torchrl-awr report`` over a set of runs: each through the command a user runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from torchrl_awr.checkpoint import load_checkpoint
from torchrl_awr.recipe.training import train
from torchrl_awr.recipe.tuning import TrialReporter, default_storage, open_study, search_space, trial_overrides

from recipe_helpers import SMALL, compose_config, read_csv

# InvertedPendulum, 256 samples an iteration (one process), eval and checkpoint every iteration.
TINY = [
    "task=inverted_pendulum",
    *(
        o
        for o in SMALL
        if o.split("=")[0] not in ("task", "collector.total_frames", "eval.interval", "checkpoint.interval")
    ),
    "collector.total_frames=512",
    "buffer.size=1024",
    "eval.interval=1",
    "checkpoint.interval=1",
]


def sweep(cwd: Path, *args: str, timeout: float = 240, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torchrl_awr", "train", "-m", *TINY, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def runs_in(sweep_dir: Path) -> list[str]:
    return sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and p.name not in ("outcomes", ".submitit"))


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_a_2x2_sweep_gives_each_run_its_directory(tmp_path, launcher):
    result = sweep(tmp_path, "seed=0,1", "loss.beta=0.5,1.0", f"hydra/launcher={launcher}", "hydra.sweep.dir=s")
    assert result.returncode == 0, result.stderr[-3000:]
    names = ["loss.beta=0.5,seed=0", "loss.beta=0.5,seed=1", "loss.beta=1.0,seed=0", "loss.beta=1.0,seed=1"]
    assert runs_in(tmp_path / "s") == names
    for name in names:
        assert [step for step, _ in read_csv(tmp_path / "s" / name, "frames")] == [256, 512]
    assert result.stdout.rstrip().endswith("Sweep s: 4 runs, 4 finished.")


def test_a_joblib_sweep_runs_collectors_with_worker_processes(tmp_path):
    # joblib's workers set multiprocessing's start method to loky, which TorchRL's collector
    # could not start its workers with (`benchmarks/learning.py --jobs 2` failed on MuJoCo).
    workers = ("collector.type=multi_sync", "collector.num_workers=2", "env.num_envs=2")
    result = sweep(tmp_path, "seed=0,1", *workers, "hydra/launcher=joblib", "hydra.sweep.dir=s")
    assert result.returncode == 0, result.stdout[-3000:]
    for seed in (0, 1):
        assert [step for step, _ in read_csv(tmp_path / "s" / f"seed={seed}", "frames")] == [256, 512]
    assert result.stdout.rstrip().endswith("Sweep s: 2 runs, 2 finished.")


def test_a_killed_sweep_relaunched_keeps_finished_runs_and_resumes_the_rest(tmp_path):
    args = ("seed=0,1,2", "collector.total_frames=4096", "hydra.sweep.dir=s")
    process = subprocess.Popen(
        [sys.executable, "-m", "torchrl_awr", "train", "-m", *TINY, *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    second = tmp_path / "s" / "seed=1" / "logs" / "scalars" / "frames.csv"
    deadline = time.monotonic() + 180
    while not (second.is_file() and len(second.read_text().splitlines()) >= 2):
        assert time.monotonic() < deadline and process.poll() is None, "the sweep did not reach its second run"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    first = (tmp_path / "s" / "seed=0" / "logs" / "scalars" / "frames.csv").read_bytes()
    assert not (tmp_path / "s" / "seed=2").exists()

    result = sweep(tmp_path, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "seed=0: finished before, kept" in result.stdout
    assert "(resumed at " in result.stdout and "(new run)" in result.stdout
    assert result.stdout.rstrip().endswith("Sweep s: 3 runs, 3 finished (1 before this launch).")
    assert (tmp_path / "s" / "seed=0" / "logs" / "scalars" / "frames.csv").read_bytes() == first
    for seed in (1, 2):  # each sample count once: the resumed run redid what its checkpoint lacked
        assert [step for step, _ in read_csv(tmp_path / "s" / f"seed={seed}", "frames")] == list(range(256, 4097, 256))


def test_a_failed_run_is_named_in_the_last_screen_and_the_others_finish(tmp_path):
    result = sweep(tmp_path, "seed=0,-1", "hydra.sweep.dir=s")
    assert result.returncode == 2
    screen = result.stdout.rstrip().splitlines()
    assert screen[-3:] == [
        "Sweep s: 2 runs, 1 finished, 1 did not:",
        "  seed=-1: exit 2: error: Invalid settings: seed=-1 (must be >= 0).",
        "Relaunch the same command to go on: finished runs are kept, the others resume in s.",
    ]
    assert (tmp_path / "s" / "seed=0" / "checkpoint.pt").is_file()
    assert not list((tmp_path / "s" / "seed=-1").iterdir())  # Hydra's empty job directory, nothing of ours


def test_a_sweep_refuses_the_keys_it_owns(tmp_path):
    result = sweep(tmp_path, "seed=0,1", "output_dir=mine", "hydra.sweep.dir=s")
    assert result.returncode == 2
    assert "output_dir cannot be set in a sweep (-m)" in result.stdout.splitlines()[-2]


def test_an_optuna_study_runs_its_trials_and_resumes(tmp_path):
    space = ("loss.beta=tag(log, interval(0.1, 3))", "train.actor_steps=choice(4, 8)")
    result = sweep(tmp_path, "hydra/sweeper=awr_optuna", "hydra.sweeper.n_trials=3", *space, "hydra.sweep.dir=s")
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="awr", storage=default_storage(tmp_path / "s"))
    assert len(study.trials) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert {t.params["train.actor_steps"] for t in study.trials} <= {4, 8}
    assert "Best of study awr: " in result.stdout
    assert len(runs_in(tmp_path / "s")) == 3
    # The same command with a larger total continues the study: one more trial, one more run.
    more = sweep(tmp_path, "hydra/sweeper=awr_optuna", "hydra.sweeper.n_trials=4", *space, "hydra.sweep.dir=s")
    assert more.returncode == 0, more.stderr[-3000:]
    study = optuna.load_study(study_name="awr", storage=default_storage(tmp_path / "s"))
    assert [t.number for t in study.trials] == [0, 1, 2, 3] and len(runs_in(tmp_path / "s")) == 4
    assert json.loads((tmp_path / "s" / "outcomes" / "job3.json").read_text())["return"] == study.trials[3].value


def test_the_search_space_comes_from_the_command_lines_sweeps():
    fixed, space = search_space(
        ["task=hopper", "seed=3", "loss.beta=tag(log, interval(0.1, 3))", "train.actor_steps=range(500, 1501, 500)"],
        {"optim.name": "choice(sgd, adam)", "model.hidden_sizes": "choice([128,64],[256,256])"},
    )
    assert fixed == ["task=hopper", "seed=3"]
    assert space["loss.beta"] == optuna.distributions.FloatDistribution(0.1, 3.0, log=True)
    assert space["train.actor_steps"] == optuna.distributions.IntDistribution(500, 1500, step=500)
    assert space["optim.name"] == optuna.distributions.CategoricalDistribution(["sgd", "adam"])
    assert space["model.hidden_sizes"] == optuna.distributions.CategoricalDistribution(["[128,64]", "[256,256]"])
    trial = optuna.trial.FixedTrial({"optim.name": "adam", "model.hidden_sizes": "[256,256]"})
    for key in ("optim.name", "model.hidden_sizes"):
        trial.suggest_categorical(key, space[key].choices)
    assert trial_overrides(trial) == ["optim.name='adam'", "model.hidden_sizes=[256,256]"]
    with pytest.raises(ValueError, match="must be a sweep"):
        search_space([], {"loss.beta": "0.5"})


def test_a_trial_reported_from_its_run_is_pruned_below_the_median(tmp_path):
    storage = default_storage(tmp_path)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = open_study("s", storage, direction="maximize", seed=0, pruner=pruner)
    good, bad = study.ask(), study.ask()
    for step in (256, 512):
        good.report(100.0, step)
    study.tell(good.number, 100.0)
    reporter = TrialReporter(storage, "s", bad.number, pruner)  # as the run's process makes it
    assert reporter(256, {"eval/return_mean": 5.0}) is True
    assert optuna.load_study(study_name="s", storage=storage).trials[bad.number].state == optuna.trial.TrialState.PRUNED
    # A sweep killed with trials running: the next open marks them failed.
    running = study.ask()
    assert (
        open_study("s", storage, direction="maximize", seed=0, pruner=optuna.pruners.NopPruner())
        .trials[running.number]
        .state
        == optuna.trial.TrialState.FAIL
    )


def fake_run(directory: Path, task: str, curve: dict[int, float], preset: str | None = None) -> None:
    scalars = directory / "logs" / "scalars" / "eval"
    scalars.mkdir(parents=True)
    named = f"preset_name: {preset}\n" if preset else ""  # configs from before presets have none
    (directory / "config.yaml").write_text(f"task_name: {task}\n{named}seed: 0\ndataset: null\n")
    (scalars / "return_mean.csv").write_text("".join(f"{step},{value}\n" for step, value in curve.items()))


def test_report_gives_the_table_csv_and_figure_of_any_runs(tmp_path):
    for seed, value in enumerate((3000.0, 4000.0, 5000.0)):
        fake_run(tmp_path / "sweep" / f"seed={seed}", "halfcheetah", {500_000: value / 2, 1_000_000: value})
    fake_run(tmp_path / "other" / "run", "hopper", {250_000: 500.0, 600_000: 1100.0})
    result = subprocess.run(
        [sys.executable, "-m", "torchrl_awr", "report", "sweep", "other/run", "--out", "out", "--reps", "2000"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "| task | samples | n | mean [95 % CI] | IQM | original AWR: mean ± sd (n) |"
    rows = {tuple(cell.strip() for cell in line.split("|")[1:3]): line for line in lines[2:] if line.startswith("|")}
    # No halfcheetah row at 250k: before the runs' first evaluation, none counts there.
    assert set(rows) == {
        ("halfcheetah", "500,000"),
        ("halfcheetah", "1,000,000"),
        ("hopper", "250,000"),
        ("hopper", "500,000"),
    }
    cells = [cell.strip() for cell in rows[("halfcheetah", "1,000,000")].split("|")[1:-1]]
    assert cells[2] == "3" and cells[3].startswith("4000 [") and cells[4] == "4000" and cells[5] == "3955 ± 349 (5)"
    low, high = map(float, cells[3].split("[")[1].rstrip("]").split(","))
    assert 3000 <= low < 4000 < high <= 5000
    # Hopper at 500k: interpolated between its evaluations at 250k and 600k.
    hopper = [cell.strip() for cell in rows[("hopper", "500,000")].split("|")[1:-1]]
    assert hopper[2] == "1" and hopper[3].startswith("929 [929, 929]")
    assert (tmp_path / "out" / "report.md").read_text().splitlines()[0] == lines[0]
    csv_lines = (tmp_path / "out" / "report.csv").read_text().splitlines()
    assert csv_lines[0] == "task,samples,n,mean,ci_low,ci_high,iqm,original_mean,original_sd,original_n"
    assert (tmp_path / "out" / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert lines[-1] == "4 runs; wrote out/report.csv, out/report.png"


def test_report_keeps_the_presets_apart_each_beside_the_original(tmp_path):
    fake_run(tmp_path / "old", "halfcheetah", {1_000_000: 4000.0})
    fake_run(tmp_path / "faithful", "halfcheetah", {1_000_000: 3000.0}, preset="faithful")
    fake_run(tmp_path / "modern", "halfcheetah", {1_000_000: 6000.0}, preset="modern")
    result = subprocess.run(
        [sys.executable, "-m", "torchrl_awr", "report", ".", "--reps", "500", "--figure", "both.png"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| halfcheetah")]
    assert rows == [
        "| halfcheetah | 1,000,000 | 2 | 3500 [3000, 4000] | 3500 | 3955 ± 349 (5) |",
        "| halfcheetah (modern) | 1,000,000 | 1 | 6000 [6000, 6000] | 6000 | 3955 ± 349 (5) |",
    ]
    assert (tmp_path / "both.png").read_bytes()[:4] == b"\x89PNG"


def test_report_without_runs_is_one_error_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "torchrl_awr", "report", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: no run with evaluation logs (CSV) at or under {tmp_path}."]


def test_a_run_stops_where_its_after_evaluation_hook_says(tmp_path):
    """A search's pruner ends a run at an evaluation: the trainer stops there, saves a checkpoint
    and says so on the end screen."""
    seen = []

    def prune_at_512(step: int, metrics: dict) -> bool:
        seen.append((step, sorted(metrics)))
        return step >= 512

    cfg = compose_config(
        *TINY[1:], "task=inverted_pendulum", "collector.total_frames=2048", f"output_dir={tmp_path / 'run'}"
    )
    trainer = train(cfg, after_evaluation=prune_at_512)
    assert trainer.stopped_early and not trainer.interrupted and trainer.frames == 512
    assert [step for step, _ in seen] == [256, 512] and "eval/return_mean" in seen[0][1]
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["counters"]["frames"] == 512


def test_ctrl_c_stops_the_whole_sweep_with_exit_130(tmp_path):
    """Ctrl-C stops the run under way (its checkpoint saved) and the sweep with it: exit 130,
    one line saying how to go on, and the next runs not begun."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torchrl_awr",
            "train",
            "-m",
            *TINY,
            "seed=0,1",
            "collector.total_frames=100000",
            "hydra.sweep.dir=s",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    frames = tmp_path / "s" / "seed=0" / "logs" / "scalars" / "frames.csv"
    deadline = time.monotonic() + 120
    while not (frames.is_file() and frames.read_text().strip()):
        assert time.monotonic() < deadline and process.poll() is None, "the first run did not start"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == "Sweep stopped: relaunch the same command to resume its runs."
    assert json.loads((tmp_path / "s" / "outcomes" / "job0.json").read_text())["code"] == 130
    assert (tmp_path / "s" / "seed=0" / "checkpoint.pt").is_file() and not (tmp_path / "s" / "seed=1").exists()


def test_the_sweeper_plugin_loads_without_optuna():
    """Hydra imports every plugin at each start: ours must not need the tune extra to load."""
    code = "import sys; import hydra_plugins.torchrl_awr_optuna.awr_optuna_sweeper; print('optuna' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr
