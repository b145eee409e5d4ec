"""TorchRL's loggers as the recipe configures them: each writes into the run directory."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from torchrl.record.loggers import Logger, get_logger
from torchrl.record.loggers.mlflow import MLFlowLogger  # imports mlflow only when one is made

LOGGERS = ("csv", "tensorboard", "wandb", "mlflow", "none")
# The package each backend needs; the extra of the same name installs it.
LOGGER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def mlflow_uri(cfg: DictConfig, run_dir: Path) -> str:
    """``logger.mlflow_uri``, or a SQLite store in the run directory."""
    return cfg.logger.mlflow_uri or f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


def make_logger(cfg: DictConfig, run_dir: Path) -> Logger | None:
    """TorchRL's logger of ``logger.backend`` (None for ``none``).

    W&B logs into run ``logger.run_id`` (resumed if it exists). MLflow is TorchRL's
    ``MLFlowLogger`` on a database store: ``get_logger`` gives it a file store, which MLflow 3.10
    and later refuse.
    """
    backend = cfg.logger.backend
    if backend == "none":
        return None
    if backend == "mlflow":
        return RunEndingMLFlowLogger(exp_name=cfg.logger.project, tracking_uri=mlflow_uri(cfg, run_dir))
    kwargs = {}
    if backend == "wandb":
        config = OmegaConf.to_container(cfg, resolve=True)
        kwargs["wandb_kwargs"] = {"project": cfg.logger.project, "config": config, "id": cfg.logger.run_id}
    return get_logger(backend, logger_name=str(run_dir), experiment_name="logs", **kwargs)


class RunEndingMLFlowLogger(MLFlowLogger):
    """TorchRL's MLflow logger, which also ends its MLflow run when closed: MLflow keeps one
    active run per process, so another run in the same process could not start otherwise."""

    def shutdown(self, timeout: float | None = None) -> None:
        import mlflow

        super().shutdown(timeout)
        mlflow.end_run()
