"""The AWR iteration: collect, buffer-wide targets, critic phase, advantages, actor phase.

:class:`AWRTrainer` takes its components as objects (any TorchRL collector yielding
``[n_envs, T]`` batches, a ``TensorDictReplayBuffer`` over a ``ndim=2`` TensorStorage, an
:class:`~torchrl_awr.AWRLoss`, two optimizers), so each can be swapped without touching the
algorithm. Numbers default to the original implementation's.
"""
from __future__ import annotations

import math
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tensordict import TensorDictBase
from torchrl.collectors import BaseCollector, MultiAsyncCollector
from torchrl.data import ReplayBuffer
from torchrl.record.loggers import Logger
from tqdm.auto import tqdm

from torchrl_awr.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from torchrl_awr.evaluation import Evaluator
from torchrl_awr.exploration import ActionStdSchedule
from torchrl_awr.loss import AWRLoss
from torchrl_awr.models import ObservationNormalizer
from torchrl_awr.targets import (
    TargetKeys,
    compute_buffer_targets,
    end_trajectories,
    filled_storage,
    storage_of,
)
from torchrl_awr.updates import UpdateStep


@dataclass
class AWRTrainerConfig:
    """The iteration's numbers; defaults are the original AWR's.

    ``compile`` runs each update step through ``torch.compile`` (for SGD optimizers, loss,
    gradient and update as one graph: :class:`~torchrl_awr.updates.UpdateStep`). Dynamo's guards are then checked on
    the first step of each phase only, so a loss subclass must not change Python state that its
    graph depends on (attributes, flags) in the middle of a phase.
    """

    total_frames: int = 1_000_000
    reference_frames_per_iteration: int = 2048
    critic_steps: int = 200
    actor_steps: int = 1000
    batch_size: int = 256
    gamma: float = 0.99
    lmbda: float = 0.95
    eval_interval: int = 50
    checkpoint_interval: int = 50
    log_interval: int = 1
    compile: bool = False

    def validate(self) -> None:
        checks = {
            "total_frames": self.total_frames > 0,
            "reference_frames_per_iteration": self.reference_frames_per_iteration > 0,
            "critic_steps": self.critic_steps >= 0,
            "actor_steps": self.actor_steps >= 0,
            "batch_size": self.batch_size > 0,
            "gamma": 0 <= self.gamma <= 1,
            "lmbda": 0 <= self.lmbda <= 1,
            "eval_interval": self.eval_interval >= 0,
            "checkpoint_interval": self.checkpoint_interval >= 0,
            "log_interval": self.log_interval > 0,
        }
        bad = [f"{name}={getattr(self, name)!r}" for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                "Invalid trainer settings: " + ", ".join(bad) + " (frames and batch size must be "
                "> 0, step counts and intervals >= 0, gamma and lmbda in [0, 1])."
            )


MINIBATCH_CHUNK = 16  # update steps gathered at a time


def epoch_indices(
    num_items: int, num_batches: int, batch_size: int, generator: torch.Generator, device
) -> torch.Tensor:
    """``[num_batches, batch_size]`` indices walking through shuffled passes over the items.

    As the original: shuffle, slice consecutively, reshuffle when a pass is used up.
    """
    needed = num_batches * batch_size
    passes = math.ceil(needed / num_items)
    order = torch.cat([torch.randperm(num_items, generator=generator) for _ in range(passes)])
    return order[:needed].view(num_batches, batch_size).to(device)


class AWRTrainer:
    """Runs AWR iterations until ``config.total_frames`` samples have been collected.

    Args:
        collector: yields batches of ``[n_envs, T]`` (a ``[T]`` batch is taken as one env).
            It must not stop before ``total_frames`` (create it with ``total_frames=-1``).
        replay_buffer: a ``TensorDictReplayBuffer`` whose storage has ``ndim=2`` (or 1 for a
            single env); trajectories are kept in time order per env.
        loss_module: the :class:`AWRLoss`; its ``actor_network``/``critic_network`` are trained.
        actor_optimizer, critic_optimizer: optimizers over the two networks' parameters.
        normalizer: the observation normaliser fed with every collected batch until frozen.
        std_schedule: anneals the actor's fixed std with the samples collected; set before each
            weight sync, so every batch is collected with the std of its iteration's start.
        evaluator: runs the deterministic evaluation every ``config.eval_interval`` iterations.
        logger: a TorchRL logger (CSV, TensorBoard, W&B, ...).
        checkpoint_path: where checkpoints go; ``save_buffer`` also dumps the replay buffer
            next to it so a resume continues with the same data.
        device: where targets and updates run. Defaults to the critic's device.
        seed: seeds the minibatch generator.
        contiguous_batches: whether each batch continues the previous one env by env (true for
            single-process and synchronous collectors). If false (default for
            ``MultiAsyncCollector``, whose consecutive batches come from different workers), the
            last step of every batch is marked done, so TD(lambda) bootstraps V(s') there
            instead of running into another worker's trajectory.
    """

    def __init__(
        self,
        *,
        collector: BaseCollector,
        replay_buffer: ReplayBuffer,
        loss_module: AWRLoss,
        actor_optimizer: torch.optim.Optimizer,
        critic_optimizer: torch.optim.Optimizer,
        config: AWRTrainerConfig | None = None,
        normalizer: ObservationNormalizer | None = None,
        std_schedule: ActionStdSchedule | None = None,
        evaluator: Evaluator | None = None,
        logger: Logger | None = None,
        checkpoint_path: str | Path | None = None,
        save_buffer: bool = False,
        device: torch.device | str | None = None,
        seed: int = 0,
        progress: bool = True,
        target_keys: TargetKeys = TargetKeys(),
        contiguous_batches: bool | None = None,
    ):
        self.config = config or AWRTrainerConfig()
        self.config.validate()
        storage = storage_of(replay_buffer)
        self._storage_ndim = storage.ndim
        if self.config.batch_size > storage.max_size:
            raise ValueError(
                f"batch_size ({self.config.batch_size}) is larger than the replay buffer "
                f"({storage.max_size} transitions)."
            )
        self.collector = collector
        self.replay_buffer = replay_buffer
        self.loss_module = loss_module
        self.actor_optimizer = actor_optimizer
        self.critic_optimizer = critic_optimizer
        self.normalizer = normalizer
        self.std_schedule = std_schedule
        self.evaluator = evaluator
        self.logger = logger
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
        self.save_buffer = save_buffer
        self.device = torch.device(device) if device is not None else next(
            loss_module.critic_network.parameters()
        ).device
        self.progress = progress
        self.keys = target_keys
        if contiguous_batches is None:
            contiguous_batches = not isinstance(collector, MultiAsyncCollector)
        self.contiguous_batches = contiguous_batches
        self.generator = torch.Generator().manual_seed(seed)
        self.frames = 0
        self.iteration = 0
        self.wall_time = 0.0
        self.last_eval: dict[str, float] = {}
        self.history: list[dict[str, float]] = []
        critic_keys = [self.keys.observation, self.keys.value_target]
        actor_keys = [*loss_module.actor_network.in_keys, loss_module.tensor_keys.action, self.keys.advantage]
        self._critic_step = UpdateStep(
            loss_module, loss_module.critic_loss, critic_optimizer, critic_keys, compile=self.config.compile
        )
        self._actor_step = UpdateStep(
            loss_module, loss_module.actor_loss, actor_optimizer, actor_keys, compile=self.config.compile
        )

    # ------------------------------------------------------------------ updates
    def _minibatches(self, keys: list, num_steps: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """``num_steps`` shuffled minibatches of the filled buffer: per chunk of up to
        ``MINIBATCH_CHUNK`` steps, one ``[steps, batch_size, ...]`` tensor per key.

        The chunks are gathered into the same buffers (fresh allocations of this size cost page
        faults: ~0.3 ms a step on Humanoid's 270-dim observations), so each chunk is overwritten by
        the next: consume it before asking for the next, as :meth:`UpdateStep.run` does.
        """
        data = filled_storage(self.replay_buffer).select(*keys).reshape(-1)
        sources = [data.get(key) for key in keys]
        batch_size = self.config.batch_size
        indices = epoch_indices(data.shape[0], num_steps, batch_size, self.generator, data.device)
        rows = min(num_steps, MINIBATCH_CHUNK) * batch_size
        buffers = [source.new_empty((rows, *source.shape[1:])) for source in sources]
        for start in range(0, num_steps, MINIBATCH_CHUNK):
            chunk = indices[start : start + MINIBATCH_CHUNK]
            flat = chunk.reshape(-1)
            yield tuple(
                torch.index_select(source, 0, flat, out=buffer[: flat.numel()])
                .view(*chunk.shape, *source.shape[1:])
                .to(self.device, non_blocking=True)
                for source, buffer in zip(sources, buffers)
            )

    def _run_phase(self, step: UpdateStep, num_steps: int) -> dict[str, float]:
        """``num_steps`` optimizer steps on shuffled minibatches of the filled buffer."""
        if num_steps == 0:
            return {}
        values = step.run(self._minibatches(step.keys, num_steps))
        means = dict(zip(step.names, values.mean(0).tolist()))
        bad = [key for key, value in means.items() if key.startswith("loss_") and not math.isfinite(value)]
        if bad:
            raise FloatingPointError(
                f"AWR: non-finite {', '.join(bad)} at iteration {self.iteration}; stopping before "
                "the diverged networks reach a checkpoint."
            )
        return means

    def _targets(self) -> dict[str, float]:
        stats = compute_buffer_targets(
            self.replay_buffer,
            self.loss_module.critic_network,
            gamma=self.config.gamma,
            lmbda=self.config.lmbda,
            standardize=True,
            keys=self.keys,
            device=self.device,
        )
        return {key: value.item() for key, value in stats.items()}

    # ------------------------------------------------------------------ iteration
    def _prepare_batch(self, batch: TensorDictBase) -> TensorDictBase:
        """The batch as ``[n_envs, T]``, with zero placeholders for the targets."""
        if batch.ndim == 1:
            batch = batch.unsqueeze(0)
        elif batch.ndim > 2:  # e.g. [workers, n_envs, T] stacked by a multi-process collector
            batch = batch.reshape(-1, batch.shape[-1])
        if self._storage_ndim == 1 and batch.shape[0] != 1:
            raise ValueError(
                f"The collector yields {batch.shape[0]} environments per batch but the replay "
                "storage has ndim=1; create it with ndim=2 to keep each env's time order."
            )
        if self.keys.observation not in batch.keys(True):
            raise KeyError(
                f"The collected batch has no {self.keys.observation!r}; keys: "
                f"{sorted(str(k) for k in batch.keys(True, True))}."
            )
        zeros = torch.zeros(*batch.shape, 1, device=batch.device)
        batch.set(self.keys.value_target, zeros)
        batch.set(self.keys.advantage, zeros.clone())
        return batch

    def _iterate(self, batch: TensorDictBase) -> dict[str, float]:
        timings: dict[str, float] = {}
        tic = time.perf_counter()
        metrics = self._train_returns(batch)
        batch = self._prepare_batch(batch)
        new_frames = batch.numel()
        if self.normalizer is not None and not self.normalizer.frozen:
            self.normalizer.update(batch.get(self.keys.observation).to(self.normalizer.loc.device))
        self.replay_buffer.extend(batch if self._storage_ndim == 2 else batch.squeeze(0))
        if not self.contiguous_batches:
            end_trajectories(self.replay_buffer, self.keys)
        self.frames += new_frames
        self.iteration += 1
        scale = new_frames / self.config.reference_frames_per_iteration
        critic_steps = math.ceil(self.config.critic_steps * scale)
        actor_steps = math.ceil(self.config.actor_steps * scale)
        timings["time/buffer"] = time.perf_counter() - tic

        tic = time.perf_counter()
        self._targets()
        timings["time/targets"] = time.perf_counter() - tic
        tic = time.perf_counter()
        metrics.update(self._run_phase(self._critic_step, critic_steps))
        timings["time/critic"] = time.perf_counter() - tic
        tic = time.perf_counter()
        metrics.update(self._targets())
        timings["time/targets"] += time.perf_counter() - tic
        tic = time.perf_counter()
        metrics.update(self._run_phase(self._actor_step, actor_steps))
        timings["time/actor"] = time.perf_counter() - tic
        if self.std_schedule is not None:
            metrics["action_std"] = self.std_schedule.step(self.frames)
        self.collector.update_policy_weights_()

        metrics.update(
            {
                "frames": self.frames,
                "iteration": self.iteration,
                "critic_steps": critic_steps,
                "actor_steps": actor_steps,
                "buffer_size": len(self.replay_buffer),
            }
        )
        if self.normalizer is not None:
            metrics["normalizer_samples"] = self.normalizer.count.item()
        return {**metrics, **timings}

    def _train_returns(self, batch: TensorDictBase) -> dict[str, float]:
        done = batch.get(self.keys.done)
        episode_reward = batch.get(("next", "episode_reward"), None)
        if episode_reward is None or not done.any():
            return {}
        finished = episode_reward[done]
        return {"train/return_mean": finished.mean().item(), "train/episodes": float(finished.numel())}

    # ------------------------------------------------------------------ loop
    def train(self) -> list[dict[str, float]]:
        """Runs to ``total_frames``; Ctrl-C (or SIGTERM) saves a checkpoint and returns."""
        config = self.config
        bar = tqdm(
            total=config.total_frames,
            initial=min(self.frames, config.total_frames),
            unit="samples",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        if self.std_schedule is not None:
            self.std_schedule.step(self.frames)
            self.collector.update_policy_weights_()
        previous_handler = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        collector_iter = iter(self.collector)
        tick = time.perf_counter()
        try:
            while self.frames < config.total_frames:
                tic = time.perf_counter()
                batch = next(collector_iter)
                collect_time = time.perf_counter() - tic
                frames_before = self.frames
                metrics = self._iterate(batch)
                metrics["time/collect"] = collect_time
                last = self.frames >= config.total_frames
                if self._due(config.eval_interval, last) and self.evaluator is not None:
                    tic = time.perf_counter()
                    self.last_eval = self.evaluator()
                    metrics.update(self.last_eval)
                    metrics["time/eval"] = time.perf_counter() - tic
                # Wall time is closed before saving, so the checkpoint and the log agree; the
                # save itself is counted in the next iteration's wall time.
                now = time.perf_counter()
                self.wall_time += now - tick
                tick = now
                metrics["wall_time"] = self.wall_time
                if self._due(config.checkpoint_interval, last) and self.checkpoint_path is not None:
                    self.save(self.checkpoint_path)
                    metrics["time/checkpoint"] = time.perf_counter() - now
                self._log(metrics)
                bar.update(self.frames - frames_before)
                bar.set_postfix(
                    iter=self.iteration,
                    eval=f"{self.last_eval['eval/return_mean']:.1f}" if self.last_eval else "-",
                    train=f"{metrics.get('train/return_mean', float('nan')):.1f}",
                )
        except KeyboardInterrupt:
            if self.checkpoint_path is not None:
                self.save(self.checkpoint_path)
                bar.write(f"Interrupted: checkpoint saved to {self.checkpoint_path}")
        finally:
            signal.signal(signal.SIGTERM, previous_handler)
            bar.close()
        return self.history

    def _due(self, interval: int, last: bool) -> bool:
        """Whether a periodic task (every ``interval`` iterations, and at the end) runs now."""
        return bool(interval) and (self.iteration % interval == 0 or last)

    def _log(self, metrics: dict[str, float]) -> None:
        self.history.append(metrics)
        if self.logger is None:
            return
        if self.iteration % self.config.log_interval and "eval/return_mean" not in metrics:
            return
        for key, value in metrics.items():
            self.logger.log_scalar(key, value, step=self.frames)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "loss_module": self.loss_module.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "counters": {
                "frames": self.frames,
                "iteration": self.iteration,
                "wall_time": self.wall_time,
                "last_eval": self.last_eval,
            },
            "generator": self.generator.get_state(),
            "rng": rng_state(),
            "config": asdict(self.config),
        }

    def load_state_dict(self, state: dict) -> None:
        self.loss_module.load_state_dict(state["loss_module"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        counters = state["counters"]
        self.frames = counters["frames"]
        self.iteration = counters["iteration"]
        self.wall_time = counters["wall_time"]
        self.last_eval = counters["last_eval"]
        self.generator.set_state(state["generator"])
        set_rng_state(state["rng"])
        self.collector.update_policy_weights_()

    def save(self, path: str | Path) -> None:
        """Writes a checkpoint atomically (and the replay buffer beside it if ``save_buffer``)."""
        save_checkpoint(
            self.state_dict(), path, replay_buffer=self.replay_buffer if self.save_buffer else None
        )

    def load(self, path: str | Path, *, load_buffer: bool = False) -> None:
        """Restores a checkpoint written by :meth:`save` (and its buffer if ``load_buffer``)."""
        state = load_checkpoint(path, replay_buffer=self.replay_buffer if load_buffer else None)
        if load_buffer:
            # The environments restart: new data does not continue the restored trajectories.
            end_trajectories(self.replay_buffer, self.keys)
        self.load_state_dict(state)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt
