"""TorchRL's loggers as the recipe configures them: each writes into the run directory, and each
tracker gets the run's hyperparameters (its config) and name."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf
from torchrl.record.loggers import Logger, get_logger
from torchrl.record.loggers.mlflow import MLFlowLogger  # imports mlflow only when one is made

from torchrl_awr.recipe.network import connect_error

LOGGERS = ("csv", "tensorboard", "wandb", "mlflow", "none")
# The package each backend needs; the extra of the same name installs it.
LOGGER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
MLFLOW_CONNECT_TIMEOUT = 5.0  # seconds; MLflow's client retries an address nobody answers for minutes


def check_logger(cfg: DictConfig) -> None:
    """The logger of ``logger.backend`` can start: its package is installed, W&B has a login (or
    runs offline), MLflow's tracking server answers. Checked before any work, where the logger
    itself would fail after the environments are built (W&B asks for a key on a terminal, MLflow
    retries for minutes)."""
    backend = cfg.logger.backend
    package = LOGGER_PACKAGES.get(backend)
    if package and importlib.util.find_spec(package) is None:
        raise ImportError(
            f"logger.backend={backend} needs the {package} package: "
            f"pip install -e '.[{package}]' (or use logger.backend=csv)."
        )
    if backend == "wandb":
        check_wandb_login()
    if backend == "mlflow" and cfg.logger.mlflow_uri:
        check_mlflow_uri(cfg.logger.mlflow_uri)


def check_wandb_login() -> None:
    """W&B runs offline or disabled (``WANDB_MODE``, ``wandb offline``), or finds a login where
    ``wandb.init`` looks for one (``WANDB_API_KEY``, an identity token file, the netrc file, its
    settings), without the network. Versions of wandb whose internals differ are not checked."""
    try:
        from wandb.errors import AuthenticationError
        from wandb.sdk import wandb_setup
        from wandb.sdk.lib import wbauth
        from wandb.sdk.lib.wbauth.authenticate import _use_system_auth

        settings = wandb_setup.singleton().settings
        if settings._offline or settings._noop:
            return
        host = wbauth.HostUrl(settings.base_url, app_url=settings.app_url)
        try:
            found = _use_system_auth(host=host, source="torchrl-awr", update_session=False)
        except AuthenticationError as err:
            raise ValueError(f"logger.backend=wandb: the W&B login is not usable: {err}") from None
    except (ImportError, AttributeError, TypeError):
        return
    if found is None:
        raise ValueError(
            f"logger.backend=wandb needs a W&B login for {settings.base_url} and finds none (WANDB_API_KEY, "
            "~/.netrc): run `wandb login`, or log offline with WANDB_MODE=offline (`wandb sync` uploads later), "
            "or use logger.backend=csv."
        )


def check_mlflow_uri(uri: str) -> None:
    """An ``http(s)`` tracking server answers within :data:`MLFLOW_CONNECT_TIMEOUT` seconds; a
    SQLite store's directory exists and takes files. Other stores are left to MLflow."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        error = connect_error(parsed.hostname or "", port, MLFLOW_CONNECT_TIMEOUT)
        if error is not None:
            raise ConnectionError(
                f"logger.mlflow_uri={uri}: no MLflow server answers at {parsed.hostname}:{port} ({error}); start "
                "one there (mlflow server --port <port>), or leave logger.mlflow_uri=null for a SQLite store in "
                "the run directory."
            ) from None
    elif parsed.scheme == "sqlite":
        database = uri.removeprefix("sqlite:///")
        if database in ("", ":memory:") or uri.startswith("sqlite://:memory:"):
            return
        directory = Path(database).parent
        try:
            with tempfile.TemporaryFile(dir=directory):
                pass
        except OSError as err:
            raise PermissionError(
                f"logger.mlflow_uri={uri}: its database cannot be written in {directory} ({err.strerror})."
            ) from None


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
        logger = RunEndingMLFlowLogger(exp_name=cfg.logger.project, tracking_uri=mlflow_uri(cfg, run_dir))
        logger.name_run(Path(run_dir).name)
        logger.log_hparams(hyperparameters(cfg))
        return logger
    if backend == "wandb":  # W&B takes the whole config as its run's config
        config = OmegaConf.to_container(cfg, resolve=True)
        kwargs = {"wandb_kwargs": {"project": cfg.logger.project, "config": config, "id": cfg.logger.run_id}}
        return get_logger(backend, logger_name=str(run_dir), experiment_name="logs", **kwargs)
    logger = get_logger(backend, logger_name=str(run_dir), experiment_name="logs")
    if backend == "tensorboard":  # TensorBoard's HPARAMS tab, in the run's own folder (not a dated one beside it)
        logger.experiment.add_hparams(hyperparameters(cfg), {}, run_name=".")
    return logger


def hyperparameters(cfg: DictConfig) -> dict[str, str | int | float | bool]:
    """The run's config as flat ``{dotted key: value}``, lists and nulls as text, as trackers take them."""

    def flat(node: dict, prefix: str = "") -> dict:
        items = {}
        for key, value in node.items():
            if isinstance(value, dict) and value:
                items.update(flat(value, f"{prefix}{key}."))
            else:
                items[f"{prefix}{key}"] = value if isinstance(value, (str, int, float, bool)) else str(value)
        return items

    return flat(OmegaConf.to_container(cfg, resolve=True))


def hide_logged_after(logger: Logger | None, step: int) -> None:
    """A resumed run redoes the iterations after its checkpoint's ``step``: TensorBoard is told
    to hide what an earlier session logged after it (TensorBoard's purge: the next event file
    starts with a session start at ``step + 1``, and TensorBoard drops earlier events at or past
    it), as the CSV logs are cut back. The events stay in the older files."""
    if type(logger).__name__ != "TensorboardLogger":
        return
    writer = logger.experiment
    writer.purge_step = step + 1
    writer.close()  # the next scalar opens a new event file, which starts with the purge


class RunEndingMLFlowLogger(MLFlowLogger):
    """TorchRL's MLflow logger, which also ends its MLflow run when closed: MLflow keeps one
    active run per process, so another run in the same process could not start otherwise."""

    def name_run(self, name: str) -> None:
        """Names its MLflow run (MLflow would draw a random name)."""
        import mlflow

        mlflow.set_tag("mlflow.runName", name)

    def shutdown(self, timeout: float | None = None) -> None:
        import mlflow

        super().shutdown(timeout)
        mlflow.end_run()
