"""Config -> components: the factories that build an :class:`AWRTrainer` from a recipe config.

Importable from any script (the recipes, the benchmarks, the tests, a user's own)::

    from torchrl_awr.builders import compose_config, make_trainer
    cfg = compose_config("task=hopper", "seed=3")
    trainer = make_trainer(cfg, run_dir, torch.device("cpu"))

``compose_config`` reads the package's Hydra configs (``torchrl_awr/config``, shipped in the wheel),
or any directory given as ``config_dir``.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import os
import signal
from pathlib import Path

import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException
from tensordict import TensorDict
from torchrl.collectors import Collector, MultiAsyncCollector, MultiSyncCollector
from torchrl.data import LazyMemmapStorage, LazyTensorStorage, TensorDictReplayBuffer

from torchrl_awr import AWRLoss, ObservationNormalizer, make_awr_actor, make_awr_critic, make_collection_policy
from torchrl_awr.envs import (
    GymnasiumBatchEnv,
    check_env_kwargs,
    check_env_name,
    is_mujoco,
    make_env,
    max_episode_steps,
    probe_env_kwargs,
)
from torchrl_awr.evaluation import Evaluator
from torchrl_awr.exploration import ActionStdSchedule
from torchrl_awr.loggers import LOGGERS, check_logger, make_logger
from torchrl_awr.loss import LOSS_CRITIC_TYPES, WEIGHTINGS
from torchrl_awr.models import ACTOR_DISTRIBUTIONS, action_bounds
from torchrl_awr.offline_data import load_dataset, load_training_data
from torchrl_awr.ray_cluster import head_node, import_ray, init_ray, make_ray_collector
from torchrl_awr.settings import check_settings
from torchrl_awr.store import ShuffledPassSampler
from torchrl_awr.trainer import AWRTrainer, AWRTrainerConfig, CollectorFailure
from torchrl_awr.video import EpisodeVideo, check_video_packages, use_renderer

CONFIG_DIR = Path(__file__).resolve().parent / "config"  # package data: config.yaml, offline.yaml, task/
COLLECTORS = ("single", "multi_sync", "multi_async", "ray")
STORAGES = ("memory", "memmap")
OPTIMIZERS = ("sgd", "adam")
VIDEO_SEED_OFFSET = 30_000  # the video's env seed, apart from the collectors' (seed) and evaluations' (+10000)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not valid; choose one of: {', '.join(allowed)}.")


# Every key of the recipe's config (torchrl_awr/config/*.yaml) and its rule: a tuple of choices, or a
# rule of :mod:`torchrl_awr.settings` (a type, a range or both). A key whose range the library's
# objects check (AWRTrainerConfig: TRAINER_KEYS, AWRLoss: LOSS_KEYS, ActionStdSchedule:
# STD_SCHEDULE_KEYS) has its type here. A key neither here nor in the config files is refused,
# but for those under env.kwargs, which go to gym.make (tests/test_bad_inputs.py keeps the table
# and the files in step).
RECIPE_RULES = {
    "task_name": "str",
    "seed": "int >= 0",
    "device": "str",
    "threads": "int >= 1",
    "output_dir": "path",
    "resume": "str or null",
    "resume_buffer": "bool",
    "progress": "bool",
    "dataset": "str or null",
    "init_from": "str or null",
    "init_dataset": "bool",
    "env.name": "str",
    "env.num_envs": "int >= 1",
    "env.keep_info": "bool",
    "env.kwargs": "dict",
    "collector.type": COLLECTORS,
    "collector.num_workers": "int >= 1",
    "collector.frames_per_batch": "int > 0",
    "collector.total_frames": "int",
    "collector.watchdog_s": "number or null",
    "collector.ray.address": "str or null",
    "collector.ray.sync": "bool",
    "collector.ray.worker_cpus": "> 0",
    "collector.ray.worker_memory_gib": "> 0",
    "collector.ray.local_cpus": "int >= 1 or null",
    "collector.ray.object_store_mib": "int > 0 or null",
    "buffer.size": "int > 0",
    "buffer.storage": STORAGES,
    "buffer.scratch_dir": "str or null",
    "loss.beta": "number",
    "loss.max_weight": "number",
    "loss.weighting": WEIGHTINGS,
    "loss.critic_type": LOSS_CRITIC_TYPES,
    "loss.action_bound_coeff": "number",
    "loss.logits_l2_coeff": "number",
    "loss.gamma": "number",
    "loss.lmbda": "number",
    "train.critic_steps": "int",
    "train.actor_steps": "int",
    "train.batch_size": "int",
    "train.compile": "bool",
    "offline.iterations": "int",
    "optim.name": OPTIMIZERS,
    "optim.momentum": ">= 0",
    "optim.critic_lr": "> 0",
    "optim.actor_lr": "> 0",
    "model.hidden_sizes": "widths",
    "model.distribution": ACTOR_DISTRIBUTIONS,
    "model.action_std": "> 0",
    "model.action_std_end": "number or null",
    "model.action_std_anneal_start": "int",
    "model.action_std_anneal_frames": "int",
    "model.learn_std": "bool",
    "model.value_scale": "> 0",
    "model.normalizer_samples": "int >= 0",
    "eval.interval": "int",
    "eval.episodes": "int >= 1",
    "eval.num_envs": "int >= 1",
    "eval.video": "bool",
    "eval.video_fps": "number",
    "eval.video_size": "list",
    "eval.video_renderer": "str or null",
    "logger.backend": LOGGERS,
    "logger.project": "str",
    "logger.log_interval": "int",
    "logger.run_id": "str or null",
    "logger.mlflow_uri": "str or null",
    "checkpoint.interval": "int",
    "checkpoint.save_buffer": "bool",
}
FREE_KEYS = ("env.kwargs",)  # keys under these are anyone's: gym.make's kwargs
# env.kwargs the recipe sets itself, and why a user may not.
RESERVED_ENV_KWARGS = {
    "render_mode": "the recipe renders its own videos (eval.video=true records them into the run directory); "
    "a window (human) would stop the run without a display",
}
# AWRLoss's settings and the recipe keys they come from.
LOSS_KEYS = {
    "beta": "loss.beta",
    "max_weight": "loss.max_weight",
    "action_bound_coeff": "loss.action_bound_coeff",
    "logits_l2_coeff": "loss.logits_l2_coeff",
    "gamma": "loss.gamma",
    "lmbda": "loss.lmbda",
}


def validate_config(cfg: DictConfig) -> None:
    """Every check that can fail fast, before any environment or network is built; each error
    names its key. The library's objects check their own settings with the same code. The last
    check, with ``env.kwargs`` set, makes one environment in this process with them, so that what
    ``gym.make`` refuses is named before any worker process or run directory exists."""
    check_known_keys(cfg)
    values = {key: _value(cfg, key) for key in RECIPE_RULES}
    for key, rule in RECIPE_RULES.items():
        if isinstance(rule, tuple):
            _choice(key, values[key], rule)
    typed = {key: rule for key, rule in RECIPE_RULES.items() if isinstance(rule, str)}
    check_settings(values, typed, "settings")
    resolve_device(cfg.device)
    check_env_name(cfg.env.name)
    kwargs = env_kwargs(cfg)
    check_env_kwargs(kwargs)
    for key, why in RESERVED_ENV_KWARGS.items():
        if key in kwargs:
            raise ValueError(f"env.kwargs.{key}={kwargs[key]!r} cannot be set: {why}. Remove +env.kwargs.{key}.")
    check_logger(cfg)
    if cfg.eval.video:
        check_video_config(cfg)
    make_trainer_config(cfg).validate(names=TRAINER_KEYS)
    AWRLoss.validate_settings(names=LOSS_KEYS, **{name: values[key] for name, key in LOSS_KEYS.items()})
    if cfg.train.batch_size > cfg.buffer.size:
        raise ValueError(f"train.batch_size ({cfg.train.batch_size}) is larger than buffer.size ({cfg.buffer.size}).")
    if cfg.collector.frames_per_batch % envs_per_batch(cfg):
        raise ValueError(
            f"collector.frames_per_batch ({cfg.collector.frames_per_batch}) must be a multiple "
            f"of the number of environments per batch ({envs_per_batch(cfg)})."
        )
    if cfg.model.action_std_end is not None:
        check_std_schedule(cfg)
    if cfg.collector.type == "ray":
        check_ray_config(cfg)
    if cfg.buffer.size < cfg.collector.frames_per_batch:
        raise ValueError(
            f"buffer.size ({cfg.buffer.size}) must hold at least one batch "
            f"(collector.frames_per_batch={cfg.collector.frames_per_batch})."
        )
    check_data_source(cfg)
    if kwargs:
        probe_env_kwargs(cfg.env.name, kwargs)


def _value(cfg: DictConfig, key: str):
    """The value of ``key``; a value left unset (``???``) or an interpolation that cannot be
    resolved is named as bad input."""
    try:
        return OmegaConf.select(cfg, key, throw_on_missing=True)
    except MissingMandatoryValue:
        raise ValueError(f"{key} has no value (???); set it: {key}=...") from None
    except OmegaConfBaseException as err:
        raise ValueError(f"{key}: {str(err).splitlines()[0]}") from None


def config_keys(tree: dict, prefix: str = "") -> list[str]:
    """The dotted keys of a config's leaves (a key of :data:`RECIPE_RULES` or under
    :data:`FREE_KEYS` counts as a leaf, whatever it holds)."""
    keys = []
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and value and key not in RECIPE_RULES and key not in FREE_KEYS:
            keys += config_keys(value, f"{key}.")
        else:
            keys.append(key)
    return keys


@functools.cache
def recipe_keys() -> frozenset[str]:
    """The keys of the recipe: those of :data:`RECIPE_RULES` and of the config files in
    :data:`CONFIG_DIR` (a key added there is known before its rule is written)."""
    keys = set(RECIPE_RULES)
    for path in CONFIG_DIR.rglob("*.yaml") if CONFIG_DIR.is_dir() else ():
        tree = OmegaConf.to_container(OmegaConf.load(path))
        keys |= {key for key in config_keys(tree) if key.partition(".")[0] not in ("defaults", "hydra")}
    return frozenset(keys)


def unknown_key_error(given: list[str]) -> ValueError:
    """The error for settings (``key`` or ``key=value``) that are not the recipe's."""
    keys = [item.partition("=")[0] for item in given]
    groups = {key.rpartition(".")[0] for key in recipe_keys()}
    if keys[0] in groups:
        return ValueError(
            f"{given[0]} would replace the group {keys[0]} of the recipe's config; set its keys: {keys[0]}.<key>=..."
        )
    close = difflib.get_close_matches(keys[0], sorted(recipe_keys()), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]}?" if close else ""
    return ValueError(
        f"Unknown setting{'s' * (len(given) > 1)} {', '.join(given)}: the recipe has no such key "
        f"(torchrl_awr/config/config.yaml lists them; only env.kwargs takes new keys: +env.kwargs.<name>=...).{hint}"
    )


def check_known_keys(cfg: DictConfig) -> None:
    """Refuses a key that is not the recipe's (``+foo=1``, ``+train.foo=1``: Hydra adds any key
    given with ``+``, and nothing would read it). Keys under ``env.kwargs`` go to ``gym.make``.
    A resumed run may keep the keys of its own saved config, which older versions wrote."""
    known = set(recipe_keys())
    resume = OmegaConf.select(cfg, "resume")
    if resume:
        path = Path(resume)
        saved = (path if path.is_dir() else path.parent) / "config.yaml"
        with contextlib.suppress(OSError, yaml.YAMLError, OmegaConfBaseException):
            known |= set(config_keys(OmegaConf.to_container(OmegaConf.load(saved))))
    unknown = [key for key in config_keys(OmegaConf.to_container(cfg, resolve=False)) if key not in known]
    if unknown:
        raise unknown_key_error([f"{key}={OmegaConf.select(cfg, key, default=None)!r}" for key in unknown])


def check_data_source(cfg: DictConfig) -> None:
    """The offline and offline-to-online settings agree with each other, and a dataset directory
    holds data AWR can use (read as memory maps; its sizes are checked against the task's once
    its environment exists)."""
    if cfg.init_dataset and not cfg.init_from:
        raise ValueError("init_dataset=true puts the dataset of the init_from run in the buffer; set init_from.")
    if cfg.dataset and cfg.init_dataset:
        raise ValueError("init_dataset=true is for online runs; an offline run (dataset=...) learns from its dataset.")
    if cfg.dataset and cfg.resume_buffer:
        raise ValueError(
            "resume_buffer=true: an offline run (dataset=...) saves no buffer; its dataset refills it on resume."
        )
    if cfg.dataset and Path(cfg.dataset).is_dir():
        load_dataset(cfg.dataset)


def check_std_schedule(cfg: DictConfig) -> None:
    """An annealed std needs the fixed-std Gaussian actor and positive numbers."""
    if cfg.model.distribution != "normal" or cfg.model.learn_std:
        raise ValueError(
            "model.action_std_end anneals the fixed std of the 'normal' actor; it cannot be used "
            f"with model.distribution={cfg.model.distribution} and model.learn_std={cfg.model.learn_std}. "
            "Add model.action_std_end=null (the halfcheetah and hopper presets anneal the std)."
        )
    ActionStdSchedule.validate_settings(names=STD_SCHEDULE_KEYS, **std_schedule_settings(cfg))


def check_video_config(cfg: DictConfig) -> None:
    """Videos are recorded at evaluations, in frames that H.264 can hold, with the video extra."""
    if not cfg.eval.interval:
        raise ValueError("eval.video=true records at each evaluation, and eval.interval=0 runs none.")
    size = list(cfg.eval.video_size)
    if len(size) != 2 or any(not isinstance(n, int) or n < 2 or n % 2 for n in size):
        raise ValueError(f"eval.video_size={size} must be [width, height], two even numbers >= 2.")
    if cfg.eval.video_fps <= 0:
        raise ValueError(f"eval.video_fps={cfg.eval.video_fps} must be > 0.")
    use_renderer(cfg.eval.video_renderer)
    check_video_packages(for_logger=cfg.logger.backend in ("tensorboard", "wandb"))


def check_ray_config(cfg: DictConfig) -> None:
    """Ray is installed, its settings are numbers it can use, and the networks train on the CPU."""
    import_ray()
    head_node(cfg.collector.ray.address)
    if resolve_device(cfg.device).type != "cpu":
        raise ValueError(
            f"collector.type=ray sends the policy to CPU-only workers; device={cfg.device} would send it on "
            "the GPU. Use device=cpu with collector.type=ray."
        )


def envs_per_batch(cfg: DictConfig) -> int:
    """Environments in each collected batch: every worker's for the synchronous collectors, one
    worker's for the asynchronous ones (each batch comes from a single worker)."""
    kind = cfg.collector.type
    synchronous = kind == "multi_sync" or (kind == "ray" and cfg.collector.ray.sync)
    return (cfg.collector.num_workers if synchronous else 1) * cfg.env.num_envs


def resolve_device(name: str) -> torch.device:
    """The device ``device=`` names: one this machine has (``cpu:5`` would pass torch, which
    ignores a CPU's index; ``cuda:3`` on a one-GPU machine would fail at the first tensor)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={name!r} is not a device; use auto, cpu, cuda or cuda:N.") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device={name!r} is not supported; use auto, cpu, cuda or cuda:N.")
    if device.type == "cpu" and device.index not in (None, 0):
        raise ValueError(f"device={name!r}: the CPU has no index; use cpu (threads= sets its threads).")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} was requested but CUDA is not available; use cpu or auto.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"device={name!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}."
        )
    return device


def check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PermissionError(f"Cannot create the output directory {directory}: {err}") from err
    if not os.access(directory, os.W_OK):
        raise PermissionError(f"The output directory {directory} is not writable.")


def make_models(cfg: DictConfig, env, device: torch.device):
    """Actor and critic sharing one observation normaliser, as in the original."""
    obs_dim = env.observation_spec["observation"].shape[-1]
    normalizer = ObservationNormalizer(obs_dim, max_samples=cfg.model.normalizer_samples)
    actor = make_awr_actor(
        obs_dim,
        env.action_spec,
        normalizer=normalizer,
        hidden_sizes=list(cfg.model.hidden_sizes),
        distribution=cfg.model.distribution,
        action_std=cfg.model.action_std,
        learn_std=cfg.model.learn_std,
    ).to(device)
    critic = make_awr_critic(
        obs_dim,
        normalizer=normalizer,
        hidden_sizes=list(cfg.model.hidden_sizes),
        value_scale=cfg.model.value_scale,
    ).to(device)
    return actor, critic, normalizer


STD_SCHEDULE_KEYS = {
    "std_init": "model.action_std",
    "std_end": "model.action_std_end",
    "annealing_frames": "model.action_std_anneal_frames",
    "start_frames": "model.action_std_anneal_start",
}


def std_schedule_settings(cfg: DictConfig) -> dict:
    """The :class:`ActionStdSchedule` numbers of ``cfg``."""
    return {name: OmegaConf.select(cfg, key) for name, key in STD_SCHEDULE_KEYS.items()}


def make_std_schedule(cfg: DictConfig, actor) -> ActionStdSchedule | None:
    """The annealed action std, if ``model.action_std_end`` is set."""
    if cfg.model.action_std_end is None:
        return None
    return ActionStdSchedule(actor, **std_schedule_settings(cfg))


def make_loss(cfg: DictConfig, actor, critic, action_spec) -> AWRLoss:
    """AWRLoss with the original's critic loss 0.5*MSE measured in V/value_scale units."""
    low, high = action_bounds(action_spec) if cfg.loss.action_bound_coeff > 0 else (None, None)
    return AWRLoss(
        actor,
        critic,
        beta=cfg.loss.beta,
        max_weight=cfg.loss.max_weight,
        weighting=cfg.loss.weighting,
        critic_coeff=0.5 / cfg.model.value_scale**2,
        loss_critic_type=cfg.loss.critic_type,
        action_bound_coeff=cfg.loss.action_bound_coeff,
        action_low=low,
        action_high=high,
        logits_l2_coeff=cfg.loss.logits_l2_coeff,
    ).make_value_estimator(gamma=cfg.loss.gamma, lmbda=cfg.loss.lmbda)


def make_optimizers(cfg: DictConfig, loss: AWRLoss):
    def build(params, lr):
        if cfg.optim.name == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=cfg.optim.momentum, foreach=True)
        return torch.optim.Adam(params, lr=lr, foreach=True)

    return (
        build(loss.actor_network.parameters(), cfg.optim.actor_lr),
        build(loss.critic_network.parameters(), cfg.optim.critic_lr),
    )


def compose_config(*overrides: str, config_dir: str | Path = CONFIG_DIR) -> DictConfig:
    """The recipe's config with Hydra-style ``overrides``, for scripts that do not go through
    the command line (benchmarks, tests, users' own)."""
    if not Path(config_dir, "config.yaml").is_file():
        raise FileNotFoundError(
            f"No recipe config at {config_dir}; pass config_dir= (a folder with config.yaml and task/, as torchrl_awr/config)."
        )
    with initialize_config_dir(str(Path(config_dir).resolve()), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def env_kwargs(cfg: DictConfig) -> dict:
    """The ``gym.make`` kwargs of the configured task (``env.kwargs``)."""
    return OmegaConf.to_container(cfg.env.kwargs, resolve=True)


def env_maker(cfg: DictConfig) -> functools.partial:
    """``make_env`` for the configured task and its ``env.kwargs``; every env of a run uses it."""
    return functools.partial(make_env, cfg.env.name, env_kwargs=env_kwargs(cfg), keep_info=cfg.env.keep_info)


def make_collector(cfg: DictConfig, actor, device: torch.device):
    """A TorchRL collector over batched envs; it runs until the trainer stops it.

    The environments, the collection policy and the batches stay on the CPU whatever ``device``
    the learner uses: for a CUDA learner TorchRL's collector keeps a CPU copy of the actor, whose
    weights ``update_policy_weights_()`` copies from the learner's, and the trainer moves each
    batch to ``device`` through pinned memory. Worker processes then need no CUDA context.
    """
    policy = make_collection_policy(actor)
    env_fn = functools.partial(env_maker(cfg), num_envs=cfg.env.num_envs)
    common = dict(
        frames_per_batch=cfg.collector.frames_per_batch,
        total_frames=-1,
        storing_device="cpu",
        policy_device="cpu",
        auto_register_policy_transforms=False,
    )
    if cfg.collector.type == "single":
        return Collector(env_fn(seed=cfg.seed), policy, **common)
    if cfg.collector.type == "ray":
        ray = cfg.collector.ray
        init_ray(ray.address, num_cpus=ray.local_cpus, object_store_mib=ray.object_store_mib)
        collector = make_ray_collector(
            env_fn,
            policy,
            num_workers=cfg.collector.num_workers,
            frames_per_batch=cfg.collector.frames_per_batch,
            total_frames=cfg.collector.total_frames,
            sync=ray.sync,
            worker_cpus=ray.worker_cpus,
            worker_memory_gib=ray.worker_memory_gib,
        )
        return _seeded(collector, cfg.seed)
    # TorchRL would otherwise lower this process's threads to (threads - workers).
    common["num_threads"] = cfg.threads
    workers = [env_fn] * cfg.collector.num_workers
    # Worker processes inherit SIGINT ignored: a terminal's Ctrl-C reaches the whole process
    # group, and only the trainer should answer it (by stopping and saving).
    with _sigint_ignored(), _workers_starting():
        if cfg.collector.type == "multi_sync":
            # Concatenate the workers' [n_envs, T] batches along the env dim: [workers * n_envs, T].
            collector = MultiSyncCollector(workers, policy, cat_results=0, use_buffers=True, **common)
        else:
            collector = MultiAsyncCollector(workers, policy, **common)
    return _seeded(collector, cfg.seed)


@contextlib.contextmanager
def _workers_starting():
    """A worker process that dies while the collector starts (killed, out of memory) is the
    collector lost, exit 3 like any other: TorchRL raises a ``RuntimeError``."""
    try:
        yield
    except RuntimeError as err:
        cause = next((line for line in str(err).splitlines() if line.strip()), "")
        raise CollectorFailure(
            f"The collector's worker processes did not start ({cause}); nothing was trained."
        ) from err


def _seeded(collector, seed: int):
    """Seeds the collector's envs, shutting its workers down if that fails."""
    try:
        collector.set_seed(seed)
    except BaseException:
        collector.shutdown()
        raise
    return collector


@contextlib.contextmanager
def _sigint_ignored():
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are not ours to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def make_replay_buffer(
    cfg: DictConfig, run_dir: Path, device: torch.device, size: int | None = None
) -> TensorDictReplayBuffer:
    """FIFO storage of ``size`` (default ``buffer.size``) transitions kept as [time, env]
    (``ndim=2``), drawn in shuffled passes as the original."""
    size = cfg.buffer.size if size is None else size
    if cfg.buffer.storage == "memory":
        storage = LazyTensorStorage(size, device=device, ndim=2)
    else:
        scratch = Path(cfg.buffer.scratch_dir or run_dir / "buffer")
        storage = LazyMemmapStorage(size, scratch_dir=scratch, device=device, ndim=2)
    return TensorDictReplayBuffer(
        storage=storage, sampler=ShuffledPassSampler(seed=cfg.seed), batch_size=cfg.train.batch_size
    )


def module_device(module: torch.nn.Module | None) -> torch.device:
    """Where a module's parameters are (the CPU for none)."""
    parameter = next(module.parameters(), None) if module is not None else None
    return parameter.device if parameter is not None else torch.device("cpu")


def make_evaluator(cfg: DictConfig, actor) -> Evaluator | None:
    """Evaluation on envs of its own, whose tensors live where the actor does."""
    if not cfg.eval.interval:
        return None
    num_envs = min(cfg.eval.num_envs, cfg.eval.episodes)
    env = env_maker(cfg)(num_envs=num_envs, seed=cfg.seed + 10_000, device=module_device(actor))
    return Evaluator(env, actor, num_episodes=cfg.eval.episodes, max_episode_steps=max_episode_steps(cfg.env.name))


def make_video(cfg: DictConfig, actor, directory: Path, seed: int) -> EpisodeVideo:
    """A recorder of ``actor``'s episodes into ``directory``, on a one-copy env of the task that
    renders with ``eval.video_renderer`` (at ``eval.video_size`` for a MuJoCo task; other tasks
    render at their own size)."""
    use_renderer(cfg.eval.video_renderer)
    kwargs = {**env_kwargs(cfg), "render_mode": "rgb_array"}
    if is_mujoco(cfg.env.name):
        kwargs["width"], kwargs["height"] = cfg.eval.video_size
    env = GymnasiumBatchEnv(cfg.env.name, 1, env_kwargs=kwargs, device=module_device(actor))
    try:
        return EpisodeVideo(
            env, actor, directory, fps=cfg.eval.video_fps, max_episode_steps=max_episode_steps(cfg.env.name), seed=seed
        )
    except BaseException:
        env.close()
        raise


# AWRTrainerConfig's fields and the recipe keys they come from.
TRAINER_KEYS = {
    "total_frames": "collector.total_frames",
    "total_iterations": "offline.iterations",
    "critic_steps": "train.critic_steps",
    "actor_steps": "train.actor_steps",
    "batch_size": "train.batch_size",
    "eval_interval": "eval.interval",
    "checkpoint_interval": "checkpoint.interval",
    "log_interval": "logger.log_interval",
    "compile": "train.compile",
    "collector_timeout": "collector.watchdog_s",
}


def make_trainer_config(cfg: DictConfig) -> AWRTrainerConfig:
    return AWRTrainerConfig(**{field: OmegaConf.select(cfg, key) for field, key in TRAINER_KEYS.items()})


def make_dataset(cfg: DictConfig, name: str, env) -> TensorDict:
    """The dataset ``name`` (a directory or a Minari id) for the task of ``cfg``, checked
    against its environment ``env``."""
    data, _ = load_training_data(
        name,
        env_id=cfg.env.name,
        observation_dim=env.observation_spec["observation"].shape[-1],
        action_dim=env.action_spec.shape[-1],
    )
    return data


def make_trainer(cfg: DictConfig, run_dir: Path, device: torch.device) -> AWRTrainer:
    """Every component built from ``cfg`` and handed to an :class:`AWRTrainer`: online, with a
    collector; offline (``dataset`` set), with the dataset, loaded and checked first.

    The collector, whose worker processes must be shut down, is built last and shut down if the
    trainer cannot be made.
    """
    spec_env = env_maker(cfg)()
    try:
        dataset = make_dataset(cfg, cfg.dataset, spec_env) if cfg.dataset else None
        actor, critic, normalizer = make_models(cfg, spec_env, device)
        loss = make_loss(cfg, actor, critic, spec_env.action_spec)
    finally:
        spec_env.close()
    actor_optimizer, critic_optimizer = make_optimizers(cfg, loss)
    parts = dict(
        replay_buffer=make_replay_buffer(cfg, run_dir, device, size=None if dataset is None else dataset.shape[0]),
        loss_module=loss,
        actor_optimizer=actor_optimizer,
        critic_optimizer=critic_optimizer,
        config=make_trainer_config(cfg),
        normalizer=normalizer,
        std_schedule=make_std_schedule(cfg, actor) if dataset is None else None,
        evaluator=make_evaluator(cfg, actor),
        # A machine that cannot render fails here, before a logger starts.
        video=make_video(cfg, actor, run_dir / "videos", cfg.seed + VIDEO_SEED_OFFSET) if cfg.eval.video else None,
        logger=make_logger(cfg, run_dir),
        checkpoint_path=run_dir / "checkpoint.pt",
        save_buffer=cfg.checkpoint.save_buffer and dataset is None,
        device=device,
        progress=cfg.progress,
    )
    if dataset is not None:
        return AWRTrainer(dataset=dataset, **parts)
    collector = make_collector(cfg, actor, device)
    try:
        return AWRTrainer(collector=collector, **parts)
    except BaseException:
        collector.shutdown()
        raise
