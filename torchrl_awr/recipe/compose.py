"""The recipe's config: composed from the package's Hydra configs and validated against one table
of its keys, before any environment, process or file exists.

    from torchrl_awr.recipe import compose_config, make_trainer
    cfg = compose_config("task=hopper", "seed=3")
    trainer = make_trainer(cfg, run_dir, torch.device("cpu"))

:data:`RECIPE_KEYS` is that table: every key of the config files (``torchrl_awr/recipe/config``),
its rule (a tuple of choices, or a rule of :mod:`torchrl_awr.validation`: a type, a range or
both) and the argument of the library's object it sets, where it sets one. An object whose
arguments are listed there checks their ranges itself, with the same code, and its messages
name the recipe's keys through this table.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
from pathlib import Path

import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from torchrl_awr.envs import check_env_kwargs, check_env_name, probe_env_kwargs
from torchrl_awr.exploration import ActionStdSchedule
from torchrl_awr.loss import LOSS_CRITIC_TYPES, WEIGHTINGS, AWRLoss
from torchrl_awr.models import ACTOR_DISTRIBUTIONS, check_network_shape
from torchrl_awr.offline_data import load_dataset
from torchrl_awr.recipe.loggers import LOGGERS, check_logger
from torchrl_awr.recipe.ray_cluster import head_node, import_ray
from torchrl_awr.trainer import AWRTrainerConfig
from torchrl_awr.validation import check_settings
from torchrl_awr.video import check_video_packages, use_renderer

CONFIG_DIR = Path(__file__).resolve().parent / "config"  # package data: config.yaml, offline.yaml, task/
COLLECTORS = ("single", "multi_sync", "multi_async", "ray")
STORAGES = ("memory", "memmap")
OPTIMIZERS = ("sgd", "adam")

# recipe key -> (its rule, the "Object.argument" it sets or None). A key neither here nor in the
# config files is refused, but for those under env.kwargs, which go to gym.make
# (tests/test_bad_inputs.py keeps the table and the files in step).
RECIPE_KEYS: dict[str, tuple[str | tuple[str, ...], str | None]] = {
    "task_name": ("str", None),
    "preset_name": ("str", None),
    "seed": ("int >= 0", None),
    "device": ("str", None),
    "threads": ("int >= 1", None),
    "output_dir": ("path", None),
    "resume": ("str or null", None),
    "resume_buffer": ("bool", None),
    "progress": ("bool", None),
    "dataset": ("str or null", None),
    "init_from": ("str or null", None),
    "init_dataset": ("bool", None),
    "env.name": ("str", None),
    "env.num_envs": ("int >= 1", None),
    "env.keep_info": ("bool", None),
    "env.kwargs": ("dict", None),
    "collector.type": (COLLECTORS, None),
    "collector.num_workers": ("int >= 1", None),
    "collector.frames_per_batch": ("int > 0", None),
    "collector.total_frames": ("int", "AWRTrainerConfig.total_frames"),
    "collector.watchdog_s": ("number or null", "AWRTrainerConfig.collector_timeout"),
    "collector.ray.address": ("str or null", None),
    "collector.ray.sync": ("bool", None),
    "collector.ray.worker_cpus": ("> 0", None),
    "collector.ray.worker_memory_gib": ("> 0", None),
    "collector.ray.local_cpus": ("int >= 1 or null", None),
    "collector.ray.object_store_mib": ("int > 0 or null", None),
    "buffer.size": ("int > 0", None),
    "buffer.storage": (STORAGES, None),
    "buffer.scratch_dir": ("str or null", None),
    "loss.beta": ("number", "AWRLoss.beta"),
    "loss.max_weight": ("number", "AWRLoss.max_weight"),
    "loss.weighting": (WEIGHTINGS, None),
    "loss.critic_type": (LOSS_CRITIC_TYPES, None),
    "loss.action_bound_coeff": ("number", "AWRLoss.action_bound_coeff"),
    "loss.logits_l2_coeff": ("number", "AWRLoss.logits_l2_coeff"),
    "loss.gamma": ("number", "AWRLoss.gamma"),
    "loss.lmbda": ("number", "AWRLoss.lmbda"),
    "train.critic_steps": ("int", "AWRTrainerConfig.critic_steps"),
    "train.actor_steps": ("int", "AWRTrainerConfig.actor_steps"),
    "train.batch_size": ("int", "AWRTrainerConfig.batch_size"),
    "train.compile": ("bool", "AWRTrainerConfig.compile"),
    "offline.iterations": ("int", "AWRTrainerConfig.total_iterations"),
    "optim.name": (OPTIMIZERS, None),
    "optim.momentum": (">= 0", None),
    "optim.critic_lr": ("> 0", None),
    "optim.actor_lr": ("> 0", None),
    "model.hidden_sizes": ("widths", "check_network_shape.hidden_sizes"),
    "model.layer_norm": ("bool", "check_network_shape.layer_norm"),
    "model.residual_blocks": ("int >= 0", "check_network_shape.residual_blocks"),
    "model.distribution": (ACTOR_DISTRIBUTIONS, None),
    "model.action_std": ("> 0", "ActionStdSchedule.std_init"),
    "model.action_std_end": ("number or null", "ActionStdSchedule.std_end"),
    "model.action_std_anneal_start": ("int", "ActionStdSchedule.start_frames"),
    "model.action_std_anneal_frames": ("int", "ActionStdSchedule.annealing_frames"),
    "model.learn_std": ("bool", None),
    "model.value_scale": ("> 0", None),
    "model.normalizer_samples": ("int >= 0", None),
    "eval.interval": ("int", "AWRTrainerConfig.eval_interval"),
    "eval.episodes": ("int >= 1", None),
    "eval.num_envs": ("int >= 1", None),
    "eval.video": ("bool", None),
    "eval.video_fps": ("number", None),
    "eval.video_size": ("list", None),
    "eval.video_renderer": ("str or null", None),
    "logger.backend": (LOGGERS, None),
    "logger.project": ("str", None),
    "logger.log_interval": ("int", "AWRTrainerConfig.log_interval"),
    "logger.run_id": ("str or null", None),
    "logger.mlflow_uri": ("str or null", None),
    "checkpoint.interval": ("int", "AWRTrainerConfig.checkpoint_interval"),
    "checkpoint.save_buffer": ("bool", None),
}
FREE_KEYS = ("env.kwargs",)  # keys under these are anyone's: gym.make's kwargs
# env.kwargs the recipe sets itself, and why a user may not.
RESERVED_ENV_KWARGS = {
    "render_mode": "the recipe renders its own videos (eval.video=true records them into the run directory); "
    "a window (human) would stop the run without a display",
}


def arguments(component: str) -> dict[str, str]:
    """``{argument: recipe key}`` for the arguments of ``component`` (``"AWRLoss"``...) that
    :data:`RECIPE_KEYS` sets."""
    return {
        target.partition(".")[2]: key
        for key, (_, target) in RECIPE_KEYS.items()
        if target and target.partition(".")[0] == component
    }


def settings_of(cfg: DictConfig, component: str) -> dict:
    """The values ``cfg`` gives ``component``'s arguments, by argument name."""
    return {argument: OmegaConf.select(cfg, key) for argument, key in arguments(component).items()}


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not valid; choose one of: {', '.join(allowed)}.")


def validate_config(cfg: DictConfig) -> None:
    """Every check that can fail fast, before any environment or network is built; each error
    names its key. The library's objects check their own settings with the same code. The last
    check, with ``env.kwargs`` set, makes one environment in this process with them, so that what
    ``gym.make`` refuses is named before any worker process or run directory exists."""
    check_known_keys(cfg)
    values = {key: _value(cfg, key) for key in RECIPE_KEYS}
    for key, (rule, _) in RECIPE_KEYS.items():
        if isinstance(rule, tuple):
            _choice(key, values[key], rule)
    typed = {key: rule for key, (rule, _) in RECIPE_KEYS.items() if isinstance(rule, str)}
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
    AWRTrainerConfig(**settings_of(cfg, "AWRTrainerConfig")).validate(names=arguments("AWRTrainerConfig"))
    AWRLoss.validate_settings(names=arguments("AWRLoss"), **settings_of(cfg, "AWRLoss"))
    if cfg.train.batch_size > cfg.buffer.size:
        raise ValueError(f"train.batch_size ({cfg.train.batch_size}) is larger than buffer.size ({cfg.buffer.size}).")
    if cfg.collector.frames_per_batch % envs_per_batch(cfg):
        raise ValueError(
            f"collector.frames_per_batch ({cfg.collector.frames_per_batch}) must be a multiple "
            f"of the number of environments per batch ({envs_per_batch(cfg)})."
        )
    check_network_shape(**settings_of(cfg, "check_network_shape"), names=arguments("check_network_shape"))
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
    """The dotted keys of a config's leaves (a key of :data:`RECIPE_KEYS` or under
    :data:`FREE_KEYS` counts as a leaf, whatever it holds)."""
    keys = []
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and value and key not in RECIPE_KEYS and key not in FREE_KEYS:
            keys += config_keys(value, f"{key}.")
        else:
            keys.append(key)
    return keys


@functools.cache
def recipe_keys() -> frozenset[str]:
    """The keys of the recipe: those of :data:`RECIPE_KEYS` and of the config files in
    :data:`CONFIG_DIR` (a key added there is known before its rule is written)."""
    keys = set(RECIPE_KEYS)
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
    ActionStdSchedule.validate_settings(names=arguments("ActionStdSchedule"), **settings_of(cfg, "ActionStdSchedule"))


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


def compose_config(*overrides: str, config_dir: str | Path = CONFIG_DIR, config_name: str = "config") -> DictConfig:
    """The recipe's config (``config_name``: ``config``, or ``offline`` for offline training) with
    Hydra-style ``overrides``, for scripts that do not go through the command line (benchmarks,
    tests, users' own), and for a command that reads a run's preset while its own Hydra app runs."""
    if not Path(config_dir, "config.yaml").is_file():
        raise FileNotFoundError(
            f"No recipe config at {config_dir}; pass config_dir= (a folder with config.yaml and task/, as torchrl_awr/recipe/config)."
        )
    running = GlobalHydra.instance().hydra  # a Hydra app's (the train command's), set aside meanwhile
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(Path(config_dir).resolve()), version_base="1.3"):
            return compose(config_name, overrides=list(overrides))
    finally:
        if running is not None:
            GlobalHydra.instance().clear()
            GlobalHydra.instance().initialize(running)


def env_kwargs(cfg: DictConfig) -> dict:
    """The ``gym.make`` kwargs of the configured task (``env.kwargs``)."""
    return OmegaConf.to_container(cfg.env.kwargs, resolve=True)
