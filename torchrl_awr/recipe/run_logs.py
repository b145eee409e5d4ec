"""A run's logged return curves, whichever logger wrote them: TorchRL's CSV files, TensorBoard's
event files, or MLflow's database. W&B keeps a run's history in its own service, where it is
plotted; a run with ``logger.backend=none`` logged nothing."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from torchrl_awr.plotting import EVAL_RETURN, TRAIN_RETURN, read_scalar
from torchrl_awr.recipe.loggers import mlflow_uri

CURVES = (("eval (deterministic)", EVAL_RETURN), ("train (stochastic)", TRAIN_RETURN))
Curve = tuple[list[float], list[float]]


def logged_curves(cfg: DictConfig, run_dir: Path) -> dict[str, Curve]:
    """``{label: (steps, returns)}`` of the evaluation and training returns the run at ``run_dir``
    (with its config ``cfg``) logged; only the curves it has. A step logged twice (a resume redid
    it) keeps its last value."""
    backend = cfg.logger.backend
    if backend == "csv":
        found = {label: read_scalar(run_dir, name) for label, name in CURVES}
    elif backend == "tensorboard":
        found = tensorboard_curves(run_dir / "logs")
    elif backend == "mlflow":
        found = mlflow_curves(mlflow_uri(cfg, run_dir), cfg.logger.project, Path(run_dir).name)
    elif backend == "wandb":
        raise ValueError(
            f"the run logged to W&B (run {cfg.logger.run_id} of project {cfg.logger.project}), which keeps its history "
            "and plots it; `wandb sync` uploads an offline run."
        )
    else:
        raise ValueError("the run logged nothing (logger.backend=none); its learning_curve.png is the one it drew.")
    return {label: curve for label, curve in found.items() if curve[0]}


def tensorboard_curves(log_dir: Path) -> dict[str, Curve]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    return {
        label: _last_wins([(event.step, event.value) for event in events.Scalars(name)] if name in tags else [])
        for label, name in CURVES
    }


def mlflow_curves(uri: str, experiment: str, run_name: str) -> dict[str, Curve]:
    """The curves of every MLflow run of ``experiment`` named ``run_name`` (a resumed run logs
    each session into a run of its own), merged."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], f"tags.`mlflow.runName` = '{run_name}'") if found else []
    curves = {}
    for label, name in CURVES:
        points = [
            (m.step, m.value)
            for run in sorted(runs, key=lambda r: r.info.start_time)
            for m in client.get_metric_history(run.info.run_id, name)
        ]
        curves[label] = _last_wins(points)
    return curves


def _last_wins(points: list[tuple[float, float]]) -> Curve:
    merged = dict(points)
    steps = sorted(merged)
    return [float(s) for s in steps], [float(merged[s]) for s in steps]
