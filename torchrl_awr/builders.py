"""Config -> components: the factories that build an :class:`AWRTrainer` from a recipe config.

Importable from any script (the recipes, the benchmarks, the tests, a user's own)::

    from torchrl_awr.builders import compose_config, make_trainer
    cfg = compose_config("task=hopper", "seed=3")
    trainer = make_trainer(cfg, run_dir, torch.device("cpu"))

``compose_config`` reads the Hydra configs of ``recipes/config`` (in a source checkout), or any
directory given as ``config_dir``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import signal
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDict
from torchrl.collectors import Collector, MultiAsyncCollector, MultiSyncCollector
from torchrl.data import LazyMemmapStorage, LazyTensorStorage, TensorDictReplayBuffer

from torchrl_awr import AWRLoss, ObservationNormalizer, make_awr_actor, make_awr_critic, make_collection_policy
from torchrl_awr.envs import GymnasiumBatchEnv, check_env_name, is_mujoco, make_env, max_episode_steps
from torchrl_awr.evaluation import Evaluator
from torchrl_awr.exploration import ActionStdSchedule
from torchrl_awr.loggers import LOGGER_PACKAGES, LOGGERS, make_logger
from torchrl_awr.loss import WEIGHTINGS
from torchrl_awr.models import action_bounds
from torchrl_awr.offline_data import load_training_data
from torchrl_awr.ray_cluster import head_node, import_ray, init_ray, make_ray_collector
from torchrl_awr.settings import check_settings
from torchrl_awr.store import ShuffledPassSampler
from torchrl_awr.trainer import AWRTrainer, AWRTrainerConfig
from torchrl_awr.video import EpisodeVideo, check_video_packages, use_renderer

CONFIG_DIR = Path(__file__).resolve().parents[1] / "recipes" / "config"
COLLECTORS = ("single", "multi_sync", "multi_async", "ray")
STORAGES = ("memory", "memmap")
OPTIMIZERS = ("sgd", "adam")
VIDEO_SEED_OFFSET = 30_000  # the video's env seed, apart from the collectors' (seed) and evaluations' (+10000)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not valid; choose one of: {', '.join(allowed)}.")


# Settings of the recipe that no library object checks, and their rules.
RECIPE_RULES = {
    "seed": ">= 0",
    "threads": ">= 1",
    "collector.frames_per_batch": "> 0",
    "collector.num_workers": ">= 1",
    "buffer.size": "> 0",
    "env.num_envs": ">= 1",
    "optim.critic_lr": "> 0",
    "optim.actor_lr": "> 0",
    "optim.momentum": ">= 0",
    "model.value_scale": "> 0",
    "model.normalizer_samples": ">= 0",
    "eval.episodes": ">= 1",
    "eval.num_envs": ">= 1",
}
# Checked only with collector.type=ray.
RAY_RULES = {
    "collector.ray.worker_cpus": "> 0",
    "collector.ray.worker_memory_gib": "> 0",
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
    names its key. The library's objects check their own settings with the same code."""
    _choice("collector.type", cfg.collector.type, COLLECTORS)
    _choice("buffer.storage", cfg.buffer.storage, STORAGES)
    _choice("optim.name", cfg.optim.name, OPTIMIZERS)
    _choice("loss.weighting", cfg.loss.weighting, WEIGHTINGS)
    _choice("logger.backend", cfg.logger.backend, LOGGERS)
    resolve_device(cfg.device)
    check_env_name(cfg.env.name)
    backend_module = LOGGER_PACKAGES.get(cfg.logger.backend)
    if backend_module and importlib.util.find_spec(backend_module) is None:
        raise ImportError(
            f"logger.backend={cfg.logger.backend} needs the {backend_module} package: "
            f"pip install -e '.[{backend_module}]' (or use logger.backend=csv)."
        )
    if cfg.eval.video:
        check_video_config(cfg)
    make_trainer_config(cfg).validate(names=TRAINER_KEYS)
    AWRLoss.validate_settings(names=LOSS_KEYS, **{name: OmegaConf.select(cfg, key) for name, key in LOSS_KEYS.items()})
    check_settings({key: OmegaConf.select(cfg, key) for key in RECIPE_RULES}, RECIPE_RULES, "settings")
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


def check_data_source(cfg: DictConfig) -> None:
    """The offline and offline-to-online settings agree with each other."""
    if cfg.init_dataset and not cfg.init_from:
        raise ValueError("init_dataset=true puts the dataset of the init_from run in the buffer; set init_from.")
    if cfg.dataset and cfg.init_dataset:
        raise ValueError("init_dataset=true is for online runs; an offline run (dataset=...) learns from its dataset.")
    if cfg.dataset and cfg.resume_buffer:
        raise ValueError(
            "resume_buffer=true: an offline run (dataset=...) saves no buffer; its dataset refills it on resume."
        )


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
    check_settings({key: OmegaConf.select(cfg, key) for key in RAY_RULES}, RAY_RULES, "settings")
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
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device={name!r} is not a device; use auto, cpu, cuda or cuda:N.") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device={name!r} is not supported; use auto, cpu, cuda or cuda:N.")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} was requested but CUDA is not available; use cpu or auto.")
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
            f"No recipe config at {config_dir}; pass config_dir= (the recipes/config folder of a torchrl-awr checkout)."
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
    with _sigint_ignored():
        if cfg.collector.type == "multi_sync":
            # Concatenate the workers' [n_envs, T] batches along the env dim: [workers * n_envs, T].
            collector = MultiSyncCollector(workers, policy, cat_results=0, use_buffers=True, **common)
        else:
            collector = MultiAsyncCollector(workers, policy, **common)
    return _seeded(collector, cfg.seed)


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
