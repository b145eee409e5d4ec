"""Training from a recipe config (``torchrl-awr train``): a new run in ``output_dir``, a resumed
one in its own directory (``resume=``), an offline one from a dataset (``dataset=``), or one that
starts from another run's networks (``init_from=``). Its command line and exit codes are
:mod:`torchrl_awr.commands.train`'s.

A resumed run keeps the settings saved in its ``config.yaml``; the keys given on the command line
replace them. Its checkpoint is read once, first, so that a corrupt one is named before anything
else is done.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from torchrl_awr.checkpoint import BufferDumpError, CheckpointError, check_room_to_continue, load_checkpoint
from torchrl_awr.plotting import plot_curves, plot_history
from torchrl_awr.recipe.compose import envs_per_batch, resolve_device, validate_config
from torchrl_awr.recipe.factories import make_dataset, make_trainer, probe_env
from torchrl_awr.recipe.loggers import hide_logged_after, mlflow_uri
from torchrl_awr.recipe.run_logs import logged_curves
from torchrl_awr.recipe.rundir import CHECKPOINT_NAME, RunDir, checkpoint_path
from torchrl_awr.trainer import AWRTrainer


def train(
    cfg: DictConfig,
    *,
    overrides: Sequence[str] = (),
    config_name: str = "config",
    state: dict | None = None,
    after_evaluation: Callable[[int, dict[str, float]], bool] | None = None,
) -> AWRTrainer:
    """Runs ``cfg``: a new run, or with ``resume=`` the run it names over its saved config with the
    keys of ``overrides`` (the command line's ``key=value`` strings) taken from ``cfg``.
    ``config_name`` is the config ``cfg`` was composed from (``config``, or ``offline``);
    ``state``: the checkpoint ``resume=`` names, if the caller has read it already;
    ``after_evaluation``: the trainer's (a search's pruner)."""
    if cfg.resume:
        checkpoint = checkpoint_path(cfg.resume)
        if state is None and checkpoint.is_file():
            state = load_checkpoint(checkpoint)  # a corrupt checkpoint is named first
        cfg = resume_config(cfg, overrides, config_name)
    return run(cfg, run_dir_of(cfg), state, after_evaluation=after_evaluation)


def run(
    cfg: DictConfig,
    run_dir: Path,
    state: dict | None = None,
    after_evaluation: Callable[[int, dict[str, float]], bool] | None = None,
) -> AWRTrainer:
    """Builds every component from ``cfg``, trains, and writes the learning-curve plot. ``state``:
    the checkpoint ``resume=`` names, read; None for a new run, or a resumed one that stopped
    before its first checkpoint, which starts over.

    The run directory is created only once the config is valid, and claimed for this run (a new
    run refuses a directory that holds another run or anything else; a lock stops two live runs
    sharing one). ``config.yaml`` is written once a resumed checkpoint, its buffer and its config
    (or the run it starts from) are known to fit the model built from them; if anything fails
    before, the directory is left as it was found. Any error shuts the collector's workers down
    and closes the logger.
    """
    validate_config(cfg)
    device = resolve_device(cfg.device)
    if cfg.dataset and Path(cfg.dataset).is_dir():
        cfg.dataset = str(Path(cfg.dataset).resolve())  # config.yaml names it for a resume from anywhere
    directory = RunDir(run_dir)
    checkpoint = checkpoint_path(cfg.resume) if cfg.resume else None
    source = None  # the checkpoint of the run that init_from names
    if state is not None:
        check_resume_length(cfg, state)
    elif not cfg.resume:
        directory.check_new()
        if cfg.init_from:
            source = load_checkpoint(checkpoint_path(cfg.init_from))
    with directory.claim(new=not cfg.resume):
        if state is not None:  # once a killed save's partial writes are gone: the next save must fit
            check_room_to_continue(checkpoint, with_buffer=cfg.checkpoint.save_buffer and not cfg.dataset)
        if cfg.logger.backend == "wandb" and cfg.logger.run_id is None:
            cfg.logger.run_id = secrets.token_hex(8)  # saved in config.yaml: a resume logs into the same W&B run
        torch.manual_seed(cfg.seed)
        torch.set_num_threads(cfg.threads)
        trainer = make_trainer(cfg, run_dir, device, after_evaluation=after_evaluation)
        try:
            if state is not None:
                resume_from(cfg, trainer, checkpoint, state)
            elif cfg.init_from:
                start_from(cfg, trainer, source)
            if cfg.resume:
                directory.truncate_logs(trainer.progress())
                hide_logged_after(trainer.logger, trainer.progress())
            OmegaConf.save(cfg, directory.config, resolve=True)
            directory.started()
            print(start_screen(cfg, run_dir, device, trainer), flush=True)
            trainer.train()
        finally:
            trainer.shutdown()
        plot_learning_curve(cfg, run_dir, trainer.history)
    print(end_screen(cfg, run_dir, trainer), flush=True)
    return trainer


def plot_learning_curve(cfg: DictConfig, run_dir: Path, history: list | None = None) -> Path | None:
    """``<run_dir>/learning_curve.png`` from what the run logged (all its sessions), or from a
    trainer's ``history`` where the logger keeps nothing to read back (W&B, none)."""
    xlabel = "iterations" if cfg.dataset else "environment samples"
    path = Path(run_dir) / "learning_curve.png"
    try:
        curves = logged_curves(cfg, Path(run_dir))
    except ValueError:
        curves = {}
    if curves:
        return plot_curves(curves, path, title=Path(run_dir).name, xlabel=xlabel)
    return plot_history(history or [], path, title=Path(run_dir).name, xlabel=xlabel)


def resume_from(cfg: DictConfig, trainer: AWRTrainer, checkpoint: Path, state: dict) -> None:
    """The checkpoint's state into ``trainer`` and, with ``resume_buffer``, its replay buffer,
    which must have the layout this config collects into."""
    try:
        trainer.load(checkpoint, load_buffer=cfg.resume_buffer, state=state)
    except BufferDumpError as err:
        raise CheckpointError(f"{err} With this command: resume without resume_buffer=true.") from err
    if cfg.resume_buffer:
        check_restored_buffer(cfg, trainer)


def run_dir_of(cfg: DictConfig) -> Path:
    """A resumed run continues in its directory (``resume=`` names it or its checkpoint); a new
    one in ``output_dir``."""
    if cfg.resume:
        return checkpoint_path(str(cfg.resume)).resolve().parent
    return Path(str(cfg.output_dir))  # a value that is no path is named by the config's checks


# The config groups a run is made of, and the keys that record their choice in its config: a
# resume cannot change them (its saved settings are the group's).
RUN_GROUPS = {"task": "task_name", "preset": "preset_name"}
# This launch's keys, not the run's: a resume takes them from the command line.
LAUNCH_KEYS = {"resume", "resume_buffer"}


def resume_config(cfg: DictConfig, overrides: Sequence[str], config_name: str = "config") -> DictConfig:
    """The resumed run's saved config, over its own task's preset, with the keys set by
    ``overrides`` taken from ``cfg``."""
    checkpoint = checkpoint_path(cfg.resume)
    directory = RunDir(run_dir_of(cfg))
    if not checkpoint.is_file() and not directory.config.is_file():
        raise CheckpointError(
            f"No checkpoint at {checkpoint}, and no config.yaml beside it: resume={cfg.resume} is not a run."
        )
    resumed = directory.saved_config(config_name)
    keys = {override.key_or_group for override in OverridesParser.create().parse_overrides(list(overrides))}
    for group, name in RUN_GROUPS.items():
        if group in keys and cfg[name] != resumed[name]:
            raise ValueError(
                f"resume: the checkpoint's run is {group}={resumed[name]}; this command says {group}={cfg[name]}. "
                f"A resumed run keeps its saved settings: start a new run for another {group}."
            )
    if "output_dir" in keys and Path(cfg.output_dir).resolve() != run_dir_of(cfg):
        raise ValueError(
            f"resume: a resumed run continues in its checkpoint's directory {run_dir_of(cfg)}; output_dir= cannot "
            "move it (copy the directory first)."
        )
    if "optim.name" in keys and cfg.optim.name != resumed.optim.name:
        raise ValueError(
            f"resume: the run trains with optim.name={resumed.optim.name}, whose state its checkpoint holds; "
            f"optim.name={cfg.optim.name} cannot take it over (its learning rates and momentum can change)."
        )
    for key in (keys - RUN_GROUPS.keys()) | LAUNCH_KEYS:
        OmegaConf.update(resumed, key, OmegaConf.select(cfg, key), merge=False)
    return resumed


def start_from(cfg: DictConfig, trainer: AWRTrainer, state: dict | None = None) -> None:
    """Offline-to-online: the networks of the ``init_from`` run (``state``: its checkpoint, if
    read already) and, with ``init_dataset``, its dataset in the replay buffer, laid out as the
    collector's environments."""
    checkpoint = checkpoint_path(cfg.init_from)
    trainer.load_networks(checkpoint, state=state)
    if not cfg.init_dataset:
        return
    source = RunDir(checkpoint.parent)
    dataset = OmegaConf.select(source.saved_config(), "dataset") if source.config.is_file() else None
    if not dataset:
        raise ValueError(
            f"init_dataset=true: {source.config} names no dataset; the run at {cfg.init_from} learned online."
        )
    with probe_env(cfg) as env:
        data = make_dataset(cfg, dataset, env)
    trainer.fill_from_dataset(data, envs_per_batch(cfg))


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
        head = f"Stopped at {reached} ({minutes:.1f} min); continue with resume={run_dir / CHECKPOINT_NAME}"
    elif trainer.stopped_early:
        head = f"Stopped early by the search's pruner at {reached} ({minutes:.1f} min)"
    else:
        head = f"Done: {reached} in {minutes:.1f} min"
    last, unit = trainer.last_eval, "iterations" if trainer.offline else "samples"
    if last:
        at = f" at {trainer.last_eval_at:,} {unit}" if trainer.last_eval_at is not None else ""
        evaluation = (
            f"{last['eval/return_mean']:.1f} ± {last['eval/return_std']:.1f} over {cfg.eval.episodes} deterministic "
            f"episodes{at} (mean length {last['eval/episode_length_mean']:.0f})"
        )
    elif not cfg.eval.interval:
        evaluation = "none (eval.interval=0)"
    else:
        evaluation = f"none yet (one every {cfg.eval.interval} iterations, and at the end)"
    lines = [
        head,
        f"evaluation {evaluation}",
        f"checkpoint {run_dir / CHECKPOINT_NAME}",
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


def interrupted_state(run_dir: Path | None) -> str:
    """What a run stopped at once (a second signal, or one before training began) left."""
    directory = RunDir(run_dir) if run_dir is not None else None
    if directory is None or not directory.holds_run():
        return "the run had not started; nothing was written."
    if directory.checkpoint.is_file():
        return f"the last checkpoint is whole; continue with resume={directory.path}"
    return f"no checkpoint was saved yet; start it over with resume={directory.path}"
