"""Advantage-Weighted Regression on MuJoCo (gymnasium v5), with the original's settings: the
training command (``torchrl-awr train``, ``recipes/mujoco_awr.py`` in a checkout).

    torchrl-awr train                                             # HalfCheetah-v5, 1M samples
    torchrl-awr train task=hopper seed=3 collector.total_frames=2_000_000
    torchrl-awr train resume=outputs/hopper/<run>/checkpoint.pt collector.total_frames=2_000_000
    torchrl-awr train task=hopper init_from=outputs/hopper-offline/<run> init_dataset=true

With ``dataset=`` the run learns offline from that dataset instead of collecting
(``torchrl-awr train-offline``, or ``recipes/offline_awr.py``, is this command with the offline
defaults of ``config/offline.yaml``); ``init_from=`` starts a run from another run's networks
(offline-to-online). A resumed run keeps the settings saved in its ``config.yaml``; the keys
given on the command line replace them. Exit codes: 0 when the run finishes, 130 when Ctrl-C or
SIGTERM stopped it (after saving a checkpoint), 2 for bad input, 1 for anything else (3 when the
collector failed, e.g. a Ray worker died: the message names the checkpoint to resume from).

The Hydra configs are the package's (:data:`torchrl_awr.builders.CONFIG_DIR`), so the command
runs from an installed wheel as from a checkout.
"""

from __future__ import annotations

import gc
import logging
import secrets
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
import torch
from hydra import compose
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from torchrl_awr.builders import (
    CONFIG_DIR,
    env_maker,
    envs_per_batch,
    make_dataset,
    make_trainer,
    resolve_device,
    validate_config,
)
from torchrl_awr.checkpoint import CheckpointError, check_room_to_continue, load_checkpoint
from torchrl_awr.cli_errors import config_errors_exit_2
from torchrl_awr.loggers import hide_logged_after, mlflow_uri
from torchrl_awr.plotting import plot_history, plot_run
from torchrl_awr.rundir import RunDir, RunDirectoryError, truncate_logs
from torchrl_awr.runs import checkpoint_path, exit_bad_input, merge_onto_preset, saved_task
from torchrl_awr.trainer import AWRTrainer, CollectorFailure
from torchrl_awr.video import RenderError

BAD_INPUT = 2
COLLECTOR_FAILED = 3
INTERRUPTED = 130  # the shell's code for a run stopped by Ctrl-C


def run(cfg: DictConfig, run_dir: Path) -> AWRTrainer:
    """Builds every component from ``cfg``, trains, and writes the learning-curve plot.

    The run directory is created only once the config is valid, and claimed for this run (a new
    run refuses a directory that holds another run or anything else; a lock stops two live runs
    sharing one). ``config.yaml`` is written once a resumed checkpoint, its buffer and its config
    (or the run it starts from) are known to fit the model built from them; if anything fails
    before, the directory is left as it was found. A run that stopped before its first
    checkpoint resumes from its start. Any error shuts the collector's workers down and closes
    the logger.
    """
    validate_config(cfg)
    device = resolve_device(cfg.device)
    if cfg.dataset and Path(cfg.dataset).is_dir():
        cfg.dataset = str(Path(cfg.dataset).resolve())  # config.yaml names it for a resume from anywhere
    directory = RunDir(run_dir)
    checkpoint = checkpoint_path(cfg.resume) if cfg.resume else None
    # A run that stopped before its first checkpoint (its config written, no checkpoint) starts over.
    resumed = checkpoint is not None and (checkpoint.exists() or not RunDir(checkpoint.parent).config.is_file())
    if resumed:
        check_resume_length(cfg, load_checkpoint(checkpoint))  # a missing or corrupt checkpoint fails here
    elif not cfg.resume:
        directory.check_new()
        if cfg.init_from:
            load_checkpoint(checkpoint_path(cfg.init_from))
    with directory.claim(new=not cfg.resume):
        if resumed:  # once a killed save's partial writes are gone: the next save must fit
            check_room_to_continue(checkpoint, with_buffer=cfg.checkpoint.save_buffer and not cfg.dataset)
        if cfg.logger.backend == "wandb" and cfg.logger.run_id is None:
            cfg.logger.run_id = secrets.token_hex(8)  # saved in config.yaml: a resume logs into the same W&B run
        torch.manual_seed(cfg.seed)
        torch.set_num_threads(cfg.threads)
        trainer = make_trainer(cfg, run_dir, device)
        try:
            if resumed:
                trainer.load(checkpoint, load_buffer=cfg.resume_buffer)
                if cfg.resume_buffer:
                    check_restored_buffer(cfg, trainer)
            elif cfg.init_from:
                start_from(cfg, trainer)
            if cfg.resume:
                truncate_logs(run_dir, trainer.progress())
                hide_logged_after(trainer.logger, trainer.progress())
            OmegaConf.save(cfg, directory.config, resolve=True)
            directory.started()
            print(start_screen(cfg, run_dir, device, trainer), flush=True)
            trainer.train()
        finally:
            trainer.shutdown()
        xlabel = "iterations" if trainer.offline else "environment samples"
        if plot_run(run_dir, xlabel=xlabel) is None:
            plot_history(trainer.history, run_dir / "learning_curve.png", title=run_dir.name, xlabel=xlabel)
    print(end_screen(cfg, run_dir, trainer), flush=True)
    return trainer


def check_resume_length(cfg: DictConfig, state: dict) -> None:
    """A resume goes forward: a length below what its checkpoint has done is refused."""
    counters = state["counters"]
    key, done, total = (
        ("offline.iterations", counters["iteration"], cfg.offline.iterations)
        if cfg.dataset
        else ("collector.total_frames", counters["frames"], cfg.collector.total_frames)
    )
    if total < done:
        raise ValueError(
            f"resume: the checkpoint is at {done:,} ({key}); {key}={total:,} is below it. A resume continues a run; "
            "give a length of at least what is done."
        )


def start_from(cfg: DictConfig, trainer: AWRTrainer) -> None:
    """Offline-to-online: the networks of the ``init_from`` run and, with ``init_dataset``, its
    dataset in the replay buffer, laid out as the collector's environments."""
    checkpoint = checkpoint_path(cfg.init_from)
    trainer.load_networks(checkpoint)
    if not cfg.init_dataset:
        return
    saved = checkpoint.parent / "config.yaml"
    dataset = OmegaConf.select(OmegaConf.load(saved), "dataset") if saved.is_file() else None
    if not dataset:
        raise ValueError(f"init_dataset=true: {saved} names no dataset; the run at {cfg.init_from} learned online.")
    env = env_maker(cfg)()
    try:
        data = make_dataset(cfg, dataset, env)
    finally:
        env.close()
    trainer.fill_from_dataset(data, envs_per_batch(cfg))


def start_screen(cfg: DictConfig, run_dir: Path, device: torch.device, trainer: AWRTrainer) -> str:
    """What will run: the task, the device, the data (collection or dataset), the length and
    where it all goes."""
    if cfg.resume:
        start = f"resumed at {trainer.progress():,}" if trainer.progress() else "started over: no checkpoint was saved"
    else:
        start = "new run"
    if cfg.init_from and not cfg.resume:
        start += f", from the networks of {cfg.init_from}" + (" and its dataset" if cfg.init_dataset else "")
    head = f"AWR on {cfg.env.name} (task={cfg.task_name}, seed={cfg.seed}), device {device}"
    if trainer.offline:
        steps = f"{cfg.train.critic_steps} critic + {cfg.train.actor_steps} actor updates"
        return "\n".join(
            [
                head,
                f"dataset    {cfg.dataset} ({trainer.dataset.shape[0]:,} transitions), offline",
                f"iterations {cfg.offline.iterations:,} of {steps} ({start})",
                f"run        {run_dir}",
            ]
        )
    collector, workers, envs = cfg.collector.type, cfg.collector.num_workers, cfg.env.num_envs
    if collector == "single":
        collection = f"single: one process x {envs} envs"
    elif collector == "ray":
        mode = "sync" if cfg.collector.ray.sync else "async"
        collection = f"ray ({mode}, {cfg.collector.ray.address or 'local Ray'}): {workers} workers x {envs} envs"
    else:
        collection = f"{collector}: {workers} workers x {envs} envs"
    return "\n".join(
        [
            head,
            f"collector  {collection}, {cfg.collector.frames_per_batch} samples per iteration",
            f"samples    {cfg.collector.total_frames:,} ({start})",
            f"run        {run_dir}",
        ]
    )


def end_screen(cfg: DictConfig, run_dir: Path, trainer: AWRTrainer) -> str:
    """How the run ended, its last evaluation, its wall time, and where its files are."""
    minutes = trainer.wall_time / 60
    reached = f"{trainer.iteration:,} iterations" if trainer.offline else f"{trainer.frames:,} samples"
    if trainer.interrupted:
        head = f"Stopped at {reached} ({minutes:.1f} min); continue with resume={run_dir / 'checkpoint.pt'}"
    else:
        head = f"Done: {reached} in {minutes:.1f} min"
    last = trainer.last_eval
    if last:
        evaluation = (
            f"{last['eval/return_mean']:.1f} ± {last['eval/return_std']:.1f} over {cfg.eval.episodes} deterministic "
            f"episodes (mean length {last['eval/episode_length_mean']:.0f})"
        )
    else:
        evaluation = "none (eval.interval=0)"
    lines = [
        head,
        f"evaluation {evaluation}",
        f"checkpoint {run_dir / 'checkpoint.pt'}",
        f"logs       {logs_location(cfg, run_dir)}",
        f"plot       {run_dir / 'learning_curve.png'}",
    ]
    if cfg.eval.video:
        lines.append(f"videos     {run_dir / 'videos'}")
    return "\n".join(lines)


def logs_location(cfg: DictConfig, run_dir: Path) -> str:
    """Where the run's logger wrote."""
    backend = cfg.logger.backend
    if backend == "mlflow":
        return f"MLflow {mlflow_uri(cfg, run_dir)}, experiment {cfg.logger.project}"
    if backend == "wandb":
        return f"W&B run {cfg.logger.run_id} of project {cfg.logger.project} (local files: {run_dir / 'wandb'})"
    if backend == "tensorboard":
        return f"TensorBoard: tensorboard --logdir {run_dir / 'logs'}"
    if backend == "none":
        return "none (logger.backend=none)"
    return str(run_dir / "logs" / "scalars")


def check_restored_buffer(cfg: DictConfig, trainer: AWRTrainer) -> None:
    """A restored replay buffer must have the layout this config collects into."""
    envs, capacity = envs_per_batch(cfg), (cfg.buffer.size // envs_per_batch(cfg)) * envs_per_batch(cfg)
    saved_envs, saved_capacity = trainer.store.num_envs, trainer.store.capacity()
    if (saved_envs, saved_capacity) != (envs, capacity):
        raise CheckpointError(
            f"resume_buffer: the saved buffer holds {saved_capacity} transitions of {saved_envs} environments per "
            f"step; this config collects {envs} per step (env.num_envs x collector.num_workers) into "
            f"{capacity} (buffer.size). Resume with the run's settings, or without resume_buffer=true."
        )


def run_dir_of(cfg: DictConfig) -> Path:
    """A resumed run continues in its directory (``resume=`` names it or its checkpoint); a new
    one in ``output_dir``."""
    if cfg.resume:
        return checkpoint_path(str(cfg.resume)).resolve().parent
    return Path(str(cfg.output_dir))  # a value that is no path is named by the config's checks


def resume_config(cfg: DictConfig) -> DictConfig:
    """The resumed run's saved config, over its own task's preset, with the keys set on this
    command line taken from ``cfg``."""
    directory = RunDir(run_dir_of(cfg))
    if directory.checkpoint.is_file():
        load_checkpoint(directory.checkpoint)  # a corrupt checkpoint is named first
    elif not directory.config.is_file():
        raise CheckpointError(
            f"resume={cfg.resume}: no {directory.checkpoint.name} and no config.yaml there; not a run."
        )
    path = directory.config
    if not path.is_file():
        raise CheckpointError(f"resume: no config.yaml beside {directory.checkpoint}; it holds the run's settings.")
    saved = OmegaConf.load(path)
    overrides = OverridesParser.create().parse_overrides(HydraConfig.get().overrides.task)
    task = saved_task(saved)
    keys = {override.key_or_group for override in overrides}
    if "task" in keys and cfg.task_name != task:
        raise ValueError(f"resume: the checkpoint's run is task={task}; this command says task={cfg.task_name}.")
    if "output_dir" in keys and Path(cfg.output_dir).resolve() != run_dir_of(cfg):
        raise ValueError(
            f"resume: a resumed run continues in its checkpoint's directory {run_dir_of(cfg)}; output_dir= cannot "
            "move it (copy the directory first)."
        )
    if "optim.name" in keys and cfg.optim.name != OmegaConf.select(saved, "optim.name"):
        raise ValueError(
            f"resume: the run trains with optim.name={OmegaConf.select(saved, 'optim.name')}, whose state its checkpoint "
            f"holds; optim.name={cfg.optim.name} cannot take it over (its learning rates and momentum can change)."
        )
    config_name = HydraConfig.get().job.config_name  # this recipe's (config) or the offline one's
    resumed = merge_onto_preset(compose(config_name, overrides=[f"task={task}"]), saved)
    for override in overrides:
        key = override.key_or_group
        if key != "task":
            OmegaConf.update(resumed, key, OmegaConf.select(cfg, key), merge=False)
    OmegaConf.set_struct(resumed, True)
    return resumed


def entry(cfg: DictConfig) -> None:
    """The command: runs ``cfg`` (or the run it resumes) and exits with the recipe's codes."""
    # Library INFO lines (TorchRL's storage shapes, PyOpenGL's missing accelerator) are not the user's.
    for name in ("torchrl", "OpenGL"):
        logging.getLogger(name).setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # until training starts, SIGTERM is Ctrl-C
    run_dir, message = None, None
    try:
        run_dir = run_dir_of(cfg)
        trainer = run(resume_config(cfg) if cfg.resume else cfg, run_dir)
        code = INTERRUPTED if trainer.interrupted else 0
    except (
        ValueError,
        KeyError,
        ImportError,
        OSError,
        CheckpointError,
        RunDirectoryError,
        FloatingPointError,
        RenderError,
    ) as err:
        code, message = BAD_INPUT, f"error: {err}"
    except CollectorFailure as err:
        code, message = COLLECTOR_FAILED, f"error: {err}"
    except KeyboardInterrupt:
        code, message = INTERRUPTED, f"Stopped at once: {interrupted_state(run_dir)}"
    for stop in (signal.SIGINT, signal.SIGTERM):  # the run is over: one more signal must not cut the exit short
        signal.signal(stop, signal.SIG_IGN)
    # What a failed collector left (TorchRL's weight-sync objects) is finalised now: at interpreter
    # exit their finaliser would start a thread, which deadlocks there.
    gc.collect()
    if message:
        print(message, file=sys.stderr)
    if code:
        sys.exit(code)


def interrupted_state(run_dir: Path | None) -> str:
    """What a run stopped at once (a second signal, or one before training began) left."""
    directory = RunDir(run_dir) if run_dir is not None else None
    if directory is None or not directory.holds_run():
        return "the run had not started; nothing was written."
    if directory.checkpoint.is_file():
        return f"the last checkpoint is whole; continue with resume={directory.path}"
    return f"no checkpoint was saved yet; start it over with resume={directory.path}"


def hydra_main(config_name: str, task: Callable[[DictConfig], None]) -> Callable[[], None]:
    """``task`` as a Hydra command over the package's ``config_name`` config (``config`` or
    ``offline``): Hydra's command line (overrides, ``-m``, ``--help``) and config errors as one
    ``error:`` line, exit 2."""
    return config_errors_exit_2(
        hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")(task)
    )


def offline_entry(program: str) -> Callable[[DictConfig], None]:
    """:func:`entry` for the offline config, which refuses a new run without ``dataset=``
    (``program`` names the command in that message)."""

    def offline(cfg: DictConfig) -> None:
        if not cfg.dataset and not cfg.resume:
            exit_bad_input(f"{program} learns from a dataset: set dataset=<directory or Minari id>.")
        entry(cfg)

    return offline


main = hydra_main("config", entry)
"""``torchrl-awr train`` and ``recipes/mujoco_awr.py``: the command line is Hydra's (``sys.argv``)."""

offline_main = hydra_main("offline", offline_entry("torchrl-awr train-offline"))
"""``torchrl-awr train-offline``: :data:`main` with ``config/offline.yaml``."""


if __name__ == "__main__":
    main()
