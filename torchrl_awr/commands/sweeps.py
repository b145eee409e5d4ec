"""Sweeps: ``torchrl-awr train -m task=hopper,walker2d seed=0,1,2`` on any Hydra launcher (the
basic one, joblib, submitit's Slurm or local executors).

Each run lives in its job directory under ``hydra.sweep.dir``, named by its overrides, and goes
on there after a relaunch (:mod:`torchrl_awr.recipe.sweeps`). A run that fails does not stop the
others: its outcome (exit code and message) is written under ``<sweep>/outcomes/``, and
:class:`SweepReport` ends the sweep with one line per run that did not finish and the sweep's
exit code: 130 if a run was stopped, else 3 if a collector was lost, else 2 for bad input, else
1 for anything else; 0 when every run finished.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from torchrl_awr.commands.errors import BAD_INPUT, BAD_INPUT_EXIT, COLLECTOR_LOST_EXIT, INTERRUPTED_EXIT
from torchrl_awr.recipe.sweeps import sweep_run

OUTCOMES = "outcomes"  # under the sweep directory: one JSON per job
# The keys that every run of the sweep sets alike, which the runs' directory names leave out: set by
# SweepReport in the launching process, inherited by the launcher's job processes.
FIXED_OVERRIDES_ENV = "TORCHRL_AWR_SWEEP_FIXED"
# The sweep's exit code: the first of these that a run ended with.
SEVERITY = (INTERRUPTED_EXIT, COLLECTOR_LOST_EXIT, BAD_INPUT_EXIT, 1)


def sweep_job(cfg: DictConfig) -> float:
    """One run of a sweep, in its job directory. Returns its last evaluation return (what Hydra's
    sweepers maximise; NaN when it has none or failed), never exits: its outcome is written for
    :class:`SweepReport`. A run stopped by Ctrl-C or SIGTERM (its checkpoint saved) stops the
    whole sweep after writing it."""
    from torchrl_awr.commands.train import run_command  # the train command imports this module

    hydra = HydraConfig.get()
    run_dir = Path(hydra.runtime.output_dir)
    overrides = list(hydra.overrides.task)
    outcome = {"job": hydra.job.num, "overrides": overrides, "run_dir": str(run_dir), "code": 0, "message": None}
    value = math.nan
    try:
        plan = sweep_run(cfg, run_dir, overrides)
    except BAD_INPUT as err:
        outcome.update(code=BAD_INPUT_EXIT, message=f"error: {err}")
    else:
        outcome["found"] = plan.found
        if plan.cfg is None:
            print(f"{run_dir.name}: finished before, kept ({run_dir})", flush=True)
            value = plan.last_return if plan.last_return is not None else math.nan
        else:
            try:
                reporter = trial_reporter(hydra)
                code, message, trainer = run_command(
                    plan.cfg, run_dir, last=False, state=plan.state, after_evaluation=reporter
                )
            except Exception as err:  # a bug: its traceback, and the other runs go on
                traceback.print_exc()
                code, message, trainer = 1, f"{type(err).__name__}: {err}", None
            outcome.update(code=code, message=message)
            if trainer is not None:
                outcome["stopped_early"] = trainer.stopped_early
                value = run_value(trainer, OmegaConf.select(hydra, "sweeper.objective", default="last"))
    outcome["return"] = None if math.isnan(value) else value
    write_outcome(Path(hydra.sweep.dir), outcome)
    if outcome["message"]:
        print(outcome["message"], file=sys.stderr, flush=True)
    if outcome["code"] == INTERRUPTED_EXIT:
        raise KeyboardInterrupt  # Ctrl-C (or SIGTERM) stopped the run, saved: it stops the sweep too
    return value


def override_key(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


def run_name(overrides: list[str]) -> str:
    """A run's directory name in its sweep: its overrides that differ between the runs (what
    the sweep varies), sorted by key, ``run`` when none does. ``/`` in values becomes ``_``."""
    fixed = set(json.loads(os.environ.get(FIXED_OVERRIDES_ENV, "[]")))
    varied = sorted((o for o in overrides if override_key(o) not in fixed), key=override_key)
    return ",".join(varied).replace("/", "_") or "run"


OmegaConf.register_new_resolver("awr_run_name", lambda overrides: run_name(list(overrides)), replace=True)


def trial_reporter(hydra: DictConfig):
    """The reporter of the run's Optuna trial (its job number), when the sweeper is ``awr_optuna``."""
    sweeper = hydra.sweeper
    if not str(OmegaConf.select(sweeper, "_target_", default="")).endswith(".AWROptunaSweeper"):
        return None
    from torchrl_awr.recipe.tuning import TrialReporter, default_storage, make_pruner  # the tune extra

    pruner = make_pruner(sweeper.pruner, sweeper.pruner_startup_trials, sweeper.pruner_warmup)
    storage = sweeper.storage or default_storage(hydra.sweep.dir)
    return TrialReporter(storage, sweeper.study_name, hydra.job.num, pruner)


def run_value(trainer, objective: str) -> float:
    """What a sweeper maximises: the run's ``last`` evaluation return, or its ``best`` one in this
    launch; NaN without an evaluation."""
    if objective == "best":
        returns = [row["eval/return_mean"] for row in trainer.history if "eval/return_mean" in row]
        return max(returns) if returns else math.nan
    return trainer.last_eval["eval/return_mean"] if trainer.last_eval else math.nan


def write_outcome(sweep_dir: Path, outcome: dict) -> None:
    directory = sweep_dir / OUTCOMES
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"job{outcome['job']}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(outcome, indent=1) + "\n")
    tmp.replace(path)


def read_outcomes(sweep_dir: Path, since: float = 0.0) -> list[dict]:
    """The outcomes of the sweep's runs written since ``since`` (a time), in job order."""
    paths = sorted((Path(sweep_dir) / OUTCOMES).glob("job*.json"), key=lambda p: int(p.stem[3:]))
    return [json.loads(path.read_text()) for path in paths if path.stat().st_mtime >= since]


def sweep_summary(outcomes: list[dict], sweep_dir: Path) -> tuple[int, str]:
    """The sweep's exit code and its last screen: how many runs finished, and each that did not."""
    failed = [o for o in outcomes if o["code"]]
    kept = sum(o.get("found") == "finished" for o in outcomes)
    head = f"Sweep {sweep_dir}: {len(outcomes)} runs, {len(outcomes) - len(failed)} finished"
    head += f" ({kept} before this launch)" if kept else ""
    lines = [head + (f", {len(failed)} did not:" if failed else ".")]
    for outcome in failed:
        lines.append(f"  {Path(outcome['run_dir']).name}: exit {outcome['code']}: {outcome['message']}")
    if failed:
        lines.append(f"Relaunch the same command to go on: finished runs are kept, the others resume in {sweep_dir}.")
    codes = {o["code"] for o in failed}
    code = next((c for c in SEVERITY if c in codes), 1) if failed else 0
    return code, "\n".join(lines)


class SweepReport(Callback):
    """Ends a sweep with its summary (:func:`sweep_summary`) and exit code; nothing for a single run."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time() - 1  # file times may be coarser than a second
        parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
        swept = {override.key_or_group for override in parsed if override.is_sweep_override()}
        fixed = {override.key_or_group for override in parsed} - swept
        os.environ[FIXED_OVERRIDES_ENV] = json.dumps(sorted(fixed))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        code, screen = sweep_summary(read_outcomes(sweep_dir, self.started), sweep_dir)
        print(screen, flush=True)
        if code:
            sys.exit(code)
