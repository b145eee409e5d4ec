"""Config -> components: the ``make_*`` factories that build an :class:`AWRTrainer` and its
parts from a validated recipe config (:mod:`torchrl_awr.recipe.compose`)."""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import signal
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig
from tensordict import TensorDict
from torchrl.collectors import Collector, MultiAsyncCollector, MultiSyncCollector
from torchrl.data import LazyMemmapStorage, LazyTensorStorage, TensorDictReplayBuffer

from torchrl_awr import AWRLoss, ObservationNormalizer, make_awr_actor, make_awr_critic, make_collection_policy
from torchrl_awr.envs import GymnasiumBatchEnv, is_mujoco, make_env, max_episode_steps
from torchrl_awr.evaluation import Evaluator
from torchrl_awr.exploration import ActionStdSchedule
from torchrl_awr.messages import first_line
from torchrl_awr.models import action_bounds
from torchrl_awr.offline_data import load_training_data
from torchrl_awr.recipe.compose import env_kwargs, settings_of
from torchrl_awr.recipe.loggers import make_logger
from torchrl_awr.recipe.ray_cluster import init_ray, make_ray_collector
from torchrl_awr.recipe.rundir import CHECKPOINT_NAME
from torchrl_awr.store import ShuffledPassSampler
from torchrl_awr.trainer import AWRTrainer, AWRTrainerConfig, CollectorFailure
from torchrl_awr.video import EpisodeVideo, use_renderer

# Each use of a run's environments has a seed of its own, the run's seed plus this offset, so
# that no two see the same episodes: the collectors', the evaluations', a re-evaluation's after
# training (``torchrl-awr evaluate``) and the videos'.
SEED_OFFSETS = {"collector": 0, "evaluation": 10_000, "reevaluation": 20_000, "video": 30_000}


def env_seed(cfg: DictConfig, use: str) -> int:
    """The seed of the environments of ``use`` (a key of :data:`SEED_OFFSETS`) in the run of ``cfg``."""
    return cfg.seed + SEED_OFFSETS[use]


def env_maker(cfg: DictConfig) -> functools.partial:
    """``make_env`` for the configured task and its ``env.kwargs``; every env of a run uses it."""
    return functools.partial(make_env, cfg.env.name, env_kwargs=env_kwargs(cfg), keep_info=cfg.env.keep_info)


@contextlib.contextmanager
def probe_env(cfg: DictConfig) -> Iterator[GymnasiumBatchEnv]:
    """One environment of the task, for its specs (the networks' sizes, the dataset's checks),
    closed after use."""
    env = env_maker(cfg)()
    try:
        yield env
    finally:
        env.close()


def make_models(cfg: DictConfig, env, device: torch.device):
    """Actor and critic sharing one observation normaliser, as in the original."""
    obs_dim = env.observation_spec["observation"].shape[-1]
    normalizer = ObservationNormalizer(obs_dim, max_samples=cfg.model.normalizer_samples)
    actor = make_awr_actor(
        obs_dim,
        env.action_spec,
        normalizer=normalizer,
        hidden_sizes=list(cfg.model.hidden_sizes),
        layer_norm=cfg.model.layer_norm,
        residual_blocks=cfg.model.residual_blocks,
        distribution=cfg.model.distribution,
        action_std=cfg.model.action_std,
        learn_std=cfg.model.learn_std,
    ).to(device)
    critic = make_awr_critic(
        obs_dim,
        normalizer=normalizer,
        hidden_sizes=list(cfg.model.hidden_sizes),
        layer_norm=cfg.model.layer_norm,
        residual_blocks=cfg.model.residual_blocks,
        value_scale=cfg.model.value_scale,
    ).to(device)
    return actor, critic, normalizer


def make_std_schedule(cfg: DictConfig, actor) -> ActionStdSchedule | None:
    """The annealed action std, if ``model.action_std_end`` is set."""
    if cfg.model.action_std_end is None:
        return None
    return ActionStdSchedule(actor, **settings_of(cfg, "ActionStdSchedule"))


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
        return Collector(env_fn(seed=env_seed(cfg, "collector")), policy, **common)
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
        return _seeded(collector, env_seed(cfg, "collector"))
    # TorchRL would otherwise lower this process's threads to (threads - workers).
    common["num_threads"] = cfg.threads
    workers = [env_fn] * cfg.collector.num_workers
    # A terminal's Ctrl-C reaches the whole process group: only the trainer answers it (by stopping
    # and saving), the workers ignore it from their first step.
    common["init_fn"] = ignore_ctrl_c
    _use_a_start_method_torchrl_knows()
    with _workers_starting():
        if cfg.collector.type == "multi_sync":
            # Concatenate the workers' [n_envs, T] batches along the env dim: [workers * n_envs, T].
            collector = MultiSyncCollector(workers, policy, cat_results=0, use_buffers=True, **common)
        else:
            collector = MultiAsyncCollector(workers, policy, **common)
    return _seeded(collector, env_seed(cfg, "collector"))


def ignore_ctrl_c() -> None:
    """A collector worker's first step (TorchRL's ``init_fn``): SIGINT is the trainer's alone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _use_a_start_method_torchrl_knows() -> None:
    """A run in a worker of Hydra's joblib launcher finds multiprocessing's start method set to
    joblib's ``loky``, with which TorchRL's collector cannot start its worker processes (an
    ``AttributeError`` on ``env``): such a process gets TorchRL's own default, ``spawn``."""
    if multiprocessing.get_start_method(allow_none=True) not in (None, "fork", "spawn", "forkserver"):
        multiprocessing.set_start_method("spawn", force=True)


@contextlib.contextmanager
def _workers_starting():
    """A worker process that dies while the collector starts (killed, out of memory) is the
    collector lost, exit 3 like any other: TorchRL raises a ``RuntimeError``. A Ctrl-C while they
    start stops at once: the workers started so far are ended (TorchRL only ends them on an
    ``Exception``), the Ctrl-C goes on."""
    started_before = set(multiprocessing.active_children())
    try:
        yield
    except RuntimeError as err:
        raise CollectorFailure(
            f"The collector's worker processes did not start ({first_line(err)}); nothing was trained."
        ) from err
    except KeyboardInterrupt:
        for worker in set(multiprocessing.active_children()) - started_before:
            worker.terminate()
            worker.join(timeout=10)
        raise


def _seeded(collector, seed: int):
    """Seeds the collector's envs, shutting its workers down if that fails."""
    try:
        collector.set_seed(seed)
    except BaseException:
        collector.shutdown()
        raise
    return collector


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
    env = env_maker(cfg)(num_envs=num_envs, seed=env_seed(cfg, "evaluation"), device=module_device(actor))
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


def make_trainer_config(cfg: DictConfig) -> AWRTrainerConfig:
    return AWRTrainerConfig(**settings_of(cfg, "AWRTrainerConfig"))


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


def make_trainer(cfg: DictConfig, run_dir: Path, device: torch.device, **trainer_kwargs) -> AWRTrainer:
    """Every component built from ``cfg`` and handed to an :class:`AWRTrainer` (with
    ``trainer_kwargs``, e.g. ``after_evaluation``): online, with a collector; offline
    (``dataset`` set), with the dataset, loaded and checked first.

    The collector, whose worker processes must be shut down, is built last and shut down if the
    trainer cannot be made.
    """
    with probe_env(cfg) as env:
        dataset = make_dataset(cfg, cfg.dataset, env) if cfg.dataset else None
        actor, critic, normalizer = make_models(cfg, env, device)
        loss = make_loss(cfg, actor, critic, env.action_spec)
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
        video=make_video(cfg, actor, run_dir / "videos", env_seed(cfg, "video")) if cfg.eval.video else None,
        logger=make_logger(cfg, run_dir),
        checkpoint_path=run_dir / CHECKPOINT_NAME,
        save_buffer=cfg.checkpoint.save_buffer and dataset is None,
        device=device,
        progress="auto" if cfg.progress else "lines",  # false: no bar, still a line per evaluation
        **trainer_kwargs,
    )
    if dataset is not None:
        return AWRTrainer(dataset=dataset, **parts)
    collector = make_collector(cfg, actor, device)
    try:
        return AWRTrainer(collector=collector, **parts)
    except BaseException:
        collector.shutdown()
        raise
