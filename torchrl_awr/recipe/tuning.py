"""Hyperparameter search with Optuna over any recipe key: the search space written in Hydra's
override grammar (``choice(...)``, ``range(...)``, ``interval(...)``, ``tag(log, interval(...))``),
a study kept in SQLite beside the sweep so that relaunching it continues the same study, and a
pruner fed by each run's evaluations.

The Hydra side is the ``awr_optuna`` sweeper (``hydra/sweeper=awr_optuna``, the ``tune`` extra),
whose search space is the command line's sweeps (``'loss.beta=tag(log, interval(0.1, 3))'``) and
its ``params``:
it asks the study for trials, launches them as a batch of runs on the configured launcher, and
tells the study their returns. Each run reports its evaluations to its trial from its own process
(:class:`TrialReporter`), so the pruner can stop it early.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

PRUNERS = ("median", "none")
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


def default_storage(sweep_dir: str | Path) -> str:
    """The study's SQLite database in the sweep directory."""
    return f"sqlite:///{Path(sweep_dir).resolve() / 'optuna.db'}"


def distribution(override: Override) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution of one search-space entry: ``choice`` -> categorical, ``range`` ->
    integers (or floats) with its step, ``interval`` -> a float (an integer if both ends are),
    on a log scale when tagged ``log``."""
    value = override.value()
    if isinstance(value, ChoiceSweep):  # lists (model.hidden_sizes) as their override text: Optuna's are scalars
        return optuna.distributions.CategoricalDistribution([override_text(choice) for choice in value.list])
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        last = start + step * (math.ceil((stop - start) / step) - 1)  # Hydra's range stops before stop
        if all(isinstance(x, int) for x in (start, stop, step)):
            return optuna.distributions.IntDistribution(start, last, step=step)
        return optuna.distributions.FloatDistribution(start, last, step=step)
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return optuna.distributions.IntDistribution(value.start, value.end, log=log)
        return optuna.distributions.FloatDistribution(float(value.start), float(value.end), log=log)
    raise ValueError(
        f"{override.input_line}: a search-space entry is choice(...), range(...) or interval(...), "
        "optionally tag(log, interval(...))."
    )


def flat_params(params: Mapping, prefix: str = "") -> dict[str, str]:
    """``{loss: {beta: "interval(0.1, 3)"}}`` (as ``hydra.sweeper.params.loss.beta=...`` writes it)
    as ``{"loss.beta": "interval(0.1, 3)"}``."""
    flat = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            flat.update(flat_params(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def search_space(arguments: Sequence[str], params: Mapping[str, str]) -> tuple[list[str], dict]:
    """The command line's ``arguments`` split into the overrides every trial shares and the
    search space (``{recipe key: distribution}``): each sweep among them (``'loss.beta=interval(0.1,
    3)'``, ``seed=0,1``) and each entry of ``params`` (the sweeper's config)."""
    parser = OverridesParser.create()
    entries = [parser.parse_override(f"{key}={text}") for key, text in params.items()]
    fixed = []
    for override in parser.parse_overrides(list(arguments)):
        (entries if override.is_sweep_override() else fixed).append(override)
    space = {}
    for override in entries:
        if not override.is_sweep_override():
            raise ValueError(
                f"{override.input_line}: a search-space entry must be a sweep (choice, range or interval)."
            )
        space[override.key_or_group] = distribution(override)
    return [override.input_line for override in fixed if override.key_or_group not in space], space


def make_pruner(name: str, startup_trials: int, warmup: int) -> optuna.pruners.BasePruner:
    if name not in PRUNERS:
        raise ValueError(f"pruner={name!r} is not valid; choose one of: {', '.join(PRUNERS)}.")
    if name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup)


def open_study(
    name: str, storage: str, *, direction: str, seed: int, pruner: optuna.pruners.BasePruner
) -> optuna.Study:
    """The study ``name`` in ``storage``, created or continued. Trials left running by a sweep
    that was killed are marked failed: their runs are gone. The sampler's seed is ``seed`` plus
    the trials the study holds, so that a continued study does not draw its first trials again."""
    study = optuna.create_study(
        study_name=name, storage=storage, pruner=pruner, direction=direction, load_if_exists=True
    )
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.get_trials(deepcopy=False)))
    return study


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def override_text(value):
    """A choice as Optuna keeps it: a number, a bool or a string as it is, a list or a mapping as
    the text of the override grammar (``[256,256]``), which the trial's override gives back."""
    if isinstance(value, list):
        return "[" + ",".join(str(override_text(item)) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{override_text(item)}" for key, item in value.items()) + "}"
    return value


def trial_overrides(trial: optuna.Trial) -> list[str]:
    """A trial's sampled values as the command line's ``key=value`` overrides: a string quoted
    unless it is a list's or mapping's override text."""
    return [
        f"{key}={value!r}" if isinstance(value, str) and not value.startswith(("[", "{")) else f"{key}={value}"
        for key, value in trial.params.items()
    ]


def tell(study: optuna.Study, number: int, value: float | None) -> None:
    """The run of trial ``number`` ended with ``value`` (its return; None or NaN: it failed),
    unless the run itself ended the trial (pruned)."""
    if study.get_trials(deepcopy=False)[number].state in FINISHED:
        return
    if value is None or not math.isfinite(value):
        study.tell(number, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(number, value)


class TrialReporter:
    """A run's evaluations reported to its trial, from the run's own process: ``reporter(step,
    metrics)`` (the trainer's ``after_evaluation``) is True when the pruner stops the trial,
    which is then marked pruned."""

    def __init__(self, storage: str, study_name: str, number: int, pruner: optuna.pruners.BasePruner):
        # The pruner is the sweeper's: a study's storage does not keep it.
        self.study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
        trial_id = self.study._storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)
        # Optuna's way to act on a trial another process asked for (its RDB storage is shared).
        self.trial = optuna.trial.Trial(self.study, trial_id)
        self.number = number

    def __call__(self, step: int, metrics: Mapping[str, float]) -> bool:
        self.trial.report(metrics["eval/return_mean"], step)
        if not self.trial.should_prune():
            return False
        self.study.tell(self.number, state=optuna.trial.TrialState.PRUNED)
        return True
