"""``hydra/sweeper=awr_optuna``: an Optuna study over any recipe key, its trials run as sweeps of
the train command on whatever launcher is configured (the basic one, joblib, submitit).

    torchrl-awr train -m hydra/sweeper=awr_optuna task=hopper collector.total_frames=300000 \\
        hydra.sweep.dir=sweeps/hopper-tune hydra.sweeper.n_trials=40 \\
        'loss.beta=tag(log, interval(0.1, 3))' 'optim.actor_lr=tag(log, interval(1e-5, 1e-3))'

``n_trials`` is the study's total: relaunching the same command continues the study (its
SQLite database is ``<sweep dir>/optuna.db`` unless ``storage`` names one) with the trials left.
Hydra's own Optuna sweeper (hydra-optuna-sweeper) pins optuna < 3 and SQLAlchemy < 2, which
current MLflow cannot share an environment with, and cannot prune; this one is small, uses
Optuna's ask-and-tell interface and prunes on each run's evaluations
(:mod:`torchrl_awr.recipe.tuning`).
"""

# No "from __future__ import annotations": Hydra imports its plugins without a sys.modules
# entry, where dataclasses cannot resolve string annotations.
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

# Optuna (the tune extra) is imported when a study runs: Hydra imports every plugin at each start,
# and a missing package there would warn on every command of an install without the extra.
OBJECTIVES = ("last", "best")


@dataclass
class AWROptunaSweeperConf:
    _target_: str = "hydra_plugins.torchrl_awr_optuna.awr_optuna_sweeper.AWROptunaSweeper"
    study_name: str = "awr"
    storage: Optional[str] = None  # noqa: UP045  # default: sqlite:///<sweep dir>/optuna.db
    direction: str = "maximize"
    n_trials: int = 20  # the study's total, counted over relaunches
    n_jobs: int = 2  # trials launched together, as one batch of the launcher
    seed: int = 0  # the TPE sampler's
    objective: str = "last"  # a run's value: its last evaluation return, or its best
    pruner: str = "median"  # median | none
    pruner_startup_trials: int = 4  # trials finished before the pruner stops any
    pruner_warmup: int = 0  # samples (iterations, offline) a run is left before it can be pruned
    # recipe key -> choice/range/interval, flat ({loss.beta: ...}) or nested (params.loss.beta=...)
    params: Any = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/sweeper", name="awr_optuna", node=AWROptunaSweeperConf, provider="torchrl-awr"
)


class AWROptunaSweeper(Sweeper):
    def __init__(self, **settings: Any):
        self.settings = settings
        if settings["objective"] not in OBJECTIVES:
            raise ValueError(
                f"hydra.sweeper.objective={settings['objective']!r}: choose one of {', '.join(OBJECTIVES)}."
            )
        if settings["n_trials"] < 1 or settings["n_jobs"] < 1:
            raise ValueError("hydra.sweeper.n_trials and hydra.sweeper.n_jobs must be >= 1.")

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list:
        from torchrl_awr.recipe.tuning import (
            default_storage,
            finished_trials,
            flat_params,
            make_pruner,
            open_study,
            search_space,
            tell,
            trial_overrides,
        )

        settings = self.settings
        params = flat_params(OmegaConf.to_container(OmegaConf.create(settings["params"])))
        arguments, space = search_space(arguments, params)
        if not space:
            raise ValueError(
                "the search space is empty: give it as sweeps on the command line "
                "('loss.beta=tag(log, interval(0.1, 3))' 'train.actor_steps=choice(500, 1000)') or in hydra.sweeper.params."
            )
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        storage = settings["storage"] or default_storage(sweep_dir)
        pruner = make_pruner(settings["pruner"], settings["pruner_startup_trials"], settings["pruner_warmup"])
        study = open_study(
            settings["study_name"], storage, direction=settings["direction"], seed=settings["seed"], pruner=pruner
        )
        returns = []
        while (left := settings["n_trials"] - finished_trials(study)) > 0:
            trials = [study.ask(space) for _ in range(min(settings["n_jobs"], left))]
            numbers = [trial.number for trial in trials]
            if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
                raise RuntimeError(
                    f"Another process added trials to study {settings['study_name']} meanwhile: {numbers}."
                )
            batch = [tuple([*arguments, *trial_overrides(trial)]) for trial in trials]
            self.validate_batch_is_legal(batch)
            # Job numbers are trial numbers: a run finds its trial, and relaunches add numbers.
            results = self.launcher.launch(batch, initial_job_idx=trials[0].number)
            for trial, result in zip(trials, results):
                tell(study, trial.number, result.return_value if result.status == JobStatus.COMPLETED else None)
            returns.extend(results)
        best = [t for t in study.trials if t.value is not None]
        if best:
            print(
                f"Best of study {settings['study_name']}: {study.best_value:.1f} with {study.best_params} "
                f"(trial {study.best_trial.number}; {storage})",
                flush=True,
            )
        return returns
