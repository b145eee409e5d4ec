"""The AWR iteration: take data in, buffer-wide targets, critic phase, targets, actor phase.

:class:`AWRTrainer` takes its components as objects (any TorchRL collector yielding
``[n_envs, T]`` batches, or a fixed dataset for offline AWR; a ``TensorDictReplayBuffer`` over a
``TensorStorage``, an :class:`~torchrl_awr.AWRLoss`, two optimizers), so each can be swapped
without touching the algorithm. Every key comes from the loss (``loss_module.tensor_keys``) and its networks'
``in_keys``; the discount and lambda from the loss's value estimator. Numbers default to the
original implementation's.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tensordict import TensorDictBase
from torchrl.collectors import BaseCollector
from torchrl.data import ReplayBuffer
from torchrl.record.loggers import Logger

from torchrl_awr.checkpoint import (
    fitting,
    load_buffer_dump,
    load_checkpoint,
    new_pair_id,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from torchrl_awr.evaluation import Evaluator
from torchrl_awr.exploration import ActionStdSchedule
from torchrl_awr.loss import AWRLoss
from torchrl_awr.messages import first_line
from torchrl_awr.models import ObservationNormalizer
from torchrl_awr.progress import ProgressDisplay
from torchrl_awr.store import TrajectoryStore, batches_continue
from torchrl_awr.updates import UpdateStep
from torchrl_awr.validation import check_settings
from torchrl_awr.video import EpisodeVideo
from torchrl_awr.watchdog import CollectorStalled, CollectorWatchdog

LOST_COLLECTOR_SHUTDOWN_S = 3.0  # a failed collector's workers get this long to close before they are ended


@dataclass
class AWRTrainerConfig:
    """The iteration's numbers; defaults are the original AWR's.

    ``batch_size`` defaults to the replay buffer's. ``total_iterations`` is an offline run's
    length (online, ``total_frames``); offline, every iteration runs ``critic_steps`` and
    ``actor_steps`` updates, while online they are scaled by the samples each batch brings
    (per ``reference_frames_per_iteration``). ``compile`` runs each update step through
    ``torch.compile`` (for plain SGD and Adam optimizers, loss, gradient and update as one graph:
    :class:`~torchrl_awr.updates.UpdateStep`). Dynamo's guards are then checked on the first
    step of each phase only, so a loss subclass must not change Python state that its graph
    depends on (attributes, flags) in the middle of a phase. ``collector_timeout`` bounds every
    wait on the collector (:class:`~torchrl_awr.watchdog.CollectorWatchdog`: the longer of it and
    10x the slowest batch so far; None waits forever).
    """

    total_frames: int = 1_000_000
    total_iterations: int | None = None
    reference_frames_per_iteration: int = 2048
    critic_steps: int = 200
    actor_steps: int = 1000
    batch_size: int | None = None
    eval_interval: int = 50
    checkpoint_interval: int = 50
    log_interval: int = 1
    compile: bool = False
    collector_timeout: float | None = 300.0

    RULES = {  # a class constant, not a field
        "total_frames": "> 0",
        "total_iterations": "> 0",
        "reference_frames_per_iteration": "> 0",
        "critic_steps": ">= 0",
        "actor_steps": ">= 0",
        "batch_size": "> 0",
        "eval_interval": ">= 0",
        "checkpoint_interval": ">= 0",
        "log_interval": "> 0",
        "collector_timeout": "> 0",
    }

    def validate(self, names: dict[str, str] | None = None) -> None:
        """Raises one ``ValueError`` naming every bad setting (as ``names`` calls it, if given)."""
        check_settings(
            asdict(self),
            self.RULES,
            "trainer settings",
            names,
            optional=("batch_size", "total_iterations", "collector_timeout"),
        )


class PhaseTimer:
    """Wall time per named phase of one iteration, summed over its calls, as ``time/<phase>``.

    Each phase ends by reading a result on the host (a loss mean, a target statistic, a
    count), so on CUDA a phase's time includes the device work it queued."""

    def __init__(self):
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        tic = time.perf_counter()
        try:
            yield
        finally:
            key = f"time/{phase}"
            self.times[key] = self.times.get(key, 0.0) + time.perf_counter() - tic


class AWRTrainer:
    """Runs AWR iterations until ``config.total_frames`` samples have been collected (online),
    or for ``config.total_iterations`` iterations on a fixed ``dataset`` (offline).

    Args:
        collector: yields batches of ``[n_envs, T]`` (a ``[T]`` batch is taken as one env;
            ``[workers, n_envs, T]`` as ``workers * n_envs`` envs). It must not stop before
            ``total_frames`` (create it with ``total_frames=-1``; a ``RayCollector``, which has
            no endless mode, with at least the trainer's ``total_frames``). None for offline.
        dataset: offline AWR's data instead of a collector: ``[N]`` transitions stored episode
            after episode (``("next", done)`` ends each; ``terminated`` among them are
            failures), with the loss's keys (:mod:`torchrl_awr.offline_data` loads them).
            It fills the replay buffer, which must hold it, when training starts (and again
            after a resume, so no buffer needs saving), and the normaliser is fitted on its
            observations at the run's start.
        replay_buffer: a ``TensorDictReplayBuffer`` over a ``TensorStorage`` (``ndim`` 1 or 2),
            held by a :class:`~torchrl_awr.store.TrajectoryStore` that keeps each env's
            trajectory in time order; its sampler draws the minibatches
            (:class:`~torchrl_awr.store.ShuffledPassSampler` for the original's draws).
        loss_module: the :class:`AWRLoss`; its ``actor_network``/``critic_network`` are trained,
            its ``tensor_keys`` name the data's entries and its value estimator gives the
            discount and lambda of the buffer-wide TD(lambda) targets.
        actor_optimizer: the optimizer of the actor's parameters.
        critic_optimizer: the optimizer of the critic's parameters.
        normalizer: the observation normaliser fed with every collected batch until frozen.
        std_schedule: anneals the actor's fixed std with the samples collected; set before each
            weight sync, so every batch is collected with the std of its iteration's start.
        evaluator: runs the deterministic evaluation every ``config.eval_interval`` iterations.
        video: records an episode after each evaluation (an
            :class:`~torchrl_awr.video.EpisodeVideo`, which also sends it to ``logger``).
        logger: a TorchRL logger (CSV, TensorBoard, W&B, ...).
        checkpoint_path: where checkpoints go; ``save_buffer`` also dumps the replay buffer
            next to it so a resume continues with the same data.
        device: where targets and updates run. Defaults to the critic's device.
        progress: ``True`` or ``"auto"``: a progress bar on a terminal, one line per evaluation
            otherwise (a log file); ``"bar"``, ``"lines"``, or ``False``/``"none"`` for nothing.
        contiguous_batches: whether each batch continues the previous one env by env; by
            default :func:`~torchrl_awr.store.batches_continue` of the collector. If false, the
            last step of every batch is cut, so TD(lambda) bootstraps V(s') there instead of
            running into another worker's trajectory.
        after_evaluation: called after each evaluation with the progress (samples; iterations
            offline) and its metrics; when it returns True, training ends there (a checkpoint
            is saved, :attr:`stopped_early` is set), as a hyperparameter search's pruner asks.
    """

    def __init__(
        self,
        *,
        collector: BaseCollector | None = None,
        replay_buffer: ReplayBuffer,
        loss_module: AWRLoss,
        actor_optimizer: torch.optim.Optimizer,
        critic_optimizer: torch.optim.Optimizer,
        config: AWRTrainerConfig | None = None,
        normalizer: ObservationNormalizer | None = None,
        std_schedule: ActionStdSchedule | None = None,
        evaluator: Evaluator | None = None,
        video: EpisodeVideo | None = None,
        logger: Logger | None = None,
        checkpoint_path: str | Path | None = None,
        save_buffer: bool = False,
        device: torch.device | str | None = None,
        progress: bool | str = True,
        contiguous_batches: bool | None = None,
        dataset: TensorDictBase | None = None,
        after_evaluation: Callable[[int, dict[str, float]], bool] | None = None,
    ):
        self.config = config or AWRTrainerConfig()
        self.config.validate()
        if (collector is None) == (dataset is None):
            raise ValueError("AWRTrainer learns from a collector (online) or a dataset (offline): give exactly one.")
        if dataset is not None and self.config.total_iterations is None:
            raise ValueError("An offline AWRTrainer (dataset=...) runs config.total_iterations iterations; set it.")
        self.store = TrajectoryStore(replay_buffer, loss_module, batch_size=self.config.batch_size)
        loss_module.td_lambda_parameters()  # builds the default estimator now, so checkpoints agree
        critic_keys = loss_module.critic_network.in_keys
        if normalizer is not None and len(critic_keys) != 1:
            raise ValueError(f"The observation normaliser needs a critic with one input key; it has {critic_keys}.")
        self.collector = collector
        self._watchdog = CollectorWatchdog(collector, self.config.collector_timeout) if collector is not None else None
        self.dataset = dataset
        self._dataset_fingerprint = None if dataset is None else _fingerprint(dataset, self.store.keys.reward)
        self.replay_buffer = replay_buffer
        self.loss_module = loss_module
        self.actor_optimizer = actor_optimizer
        self.critic_optimizer = critic_optimizer
        self.normalizer = normalizer
        self.std_schedule = std_schedule
        self.evaluator = evaluator
        self.video = video
        self.logger = logger
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
        self.save_buffer = save_buffer
        self.device = (
            torch.device(device) if device is not None else next(loss_module.critic_network.parameters()).device
        )
        self.show_progress = progress
        if contiguous_batches is None:
            contiguous_batches = collector is None or batches_continue(collector)
        self.contiguous_batches = contiguous_batches
        self.after_evaluation = after_evaluation
        self.frames = 0
        self.iteration = 0
        self.interrupted = False
        self.stopped_early = False
        self.wall_time = 0.0
        self.last_eval: dict[str, float] = {}
        self.last_eval_at: int | None = None  # the progress (samples; iterations offline) it was measured at
        self.history: list[dict[str, float]] = []
        self._saved_frames: int | None = None  # the sample count of the last checkpoint written or loaded
        self._collector_lost = False  # a worker died or hung: its shutdown is not waited for long
        keys = loss_module.tensor_keys
        self._critic_step = UpdateStep(
            loss_module,
            loss_module.critic_loss,
            critic_optimizer,
            [*critic_keys, keys.value_target],
            compile=self.config.compile,
        )
        self._actor_step = UpdateStep(
            loss_module,
            loss_module.actor_loss,
            actor_optimizer,
            [*loss_module.actor_network.in_keys, keys.action, keys.advantage],
            compile=self.config.compile,
        )

    # ------------------------------------------------------------------ iteration
    @property
    def offline(self) -> bool:
        """Whether the run learns from a fixed dataset rather than a collector."""
        return self.collector is None

    def progress(self) -> int:
        """How far the run is, in its length's unit: samples collected (online) or iterations
        done (offline). The logger's step."""
        return self.iteration if self.offline else self.frames

    def _iterate(self, batch: TensorDictBase | None, timer: PhaseTimer) -> dict[str, float]:
        """One AWR iteration on a collected batch (None offline); returns its metrics."""
        with timer("buffer"):
            metrics = self._take_in(batch) if batch is not None else self._count_iteration(1.0)
        with timer("targets"):
            self._compute_targets()
        with timer("critic"):
            metrics.update(self._run_phase(self._critic_step, metrics["critic_steps"]))
        with timer("targets"):
            metrics.update(self._compute_targets())
        with timer("actor"):
            metrics.update(self._run_phase(self._actor_step, metrics["actor_steps"]))
        if not self.offline:
            metrics.update(self._sync_policy())
        return metrics

    def _take_in(self, batch: TensorDictBase) -> dict[str, float]:
        """Adds the batch to the store (which checks its keys), counts its returns and feeds the
        normaliser."""
        batch = self._to_device(batch)
        new_frames = self.store.extend(batch)
        metrics = self._train_returns(batch)
        if self.normalizer is not None and not self.normalizer.frozen:
            observation = batch.get(self.loss_module.critic_network.in_keys[0])
            self.normalizer.update(observation.to(self.normalizer.loc.device))
        if not self.contiguous_batches:
            self.store.cut()
        self.frames += new_frames
        metrics["frames"] = self.frames
        metrics.update(self._count_iteration(new_frames / self.config.reference_frames_per_iteration))
        if self.normalizer is not None:
            metrics["normalizer_samples"] = self.normalizer.count.item()
        return metrics

    def _count_iteration(self, scale: float) -> dict[str, float]:
        """Starts the next iteration: its number and its update steps (the configured ones
        times ``scale``)."""
        self.iteration += 1
        return {
            "iteration": self.iteration,
            "critic_steps": math.ceil(self.config.critic_steps * scale),
            "actor_steps": math.ceil(self.config.actor_steps * scale),
            "buffer_size": len(self.store),
        }

    def fill_from_dataset(self, data: TensorDictBase, num_envs: int = 1) -> int:
        """Puts a dataset's transitions (``[N]``, episode after episode) in the replay buffer
        as ``num_envs`` trajectories (see
        :meth:`~torchrl_awr.store.TrajectoryStore.extend_episodes`); returns how many. Offline
        training does this itself; before online training, pass the collector's environments
        per batch so that its batches continue the layout (offline-to-online)."""
        return self.store.extend_episodes(self._to_device(data), num_envs)

    def _prepare_dataset(self) -> None:
        """Offline: the dataset fills the empty store; at the run's start it also fits the
        normaliser (a resumed run has the checkpoint's)."""
        if len(self.store) == 0:
            self.fill_from_dataset(self.dataset)
        if self.iteration == 0 and self.normalizer is not None:
            self.normalizer.fit(self.dataset.get(self.loss_module.critic_network.in_keys[0]))

    def _to_device(self, batch: TensorDictBase) -> TensorDictBase:
        """A batch collected elsewhere (the CPU, for a CUDA learner) on the learner's device,
        copied from pinned memory without waiting for the copy."""
        if batch.device == self.device:
            return batch
        if self.device.type == "cuda":
            batch = batch.pin_memory()
        return batch.to(self.device, non_blocking=True)

    def _compute_targets(self) -> dict[str, float]:
        gamma, lmbda = self.loss_module.td_lambda_parameters()
        stats = self.store.compute_targets(
            self.loss_module.critic_network, gamma=gamma, lmbda=lmbda, device=self.device
        )
        return {key: value.item() for key, value in stats.items()}

    def _run_phase(self, step: UpdateStep, num_steps: int) -> dict[str, float]:
        """``num_steps`` optimizer steps on minibatches drawn from the store."""
        if num_steps == 0:
            return {}
        values = step.run(self.store.minibatches(step.keys, num_steps, self.device))
        means = dict(zip(step.names, values.mean(0).tolist()))
        bad = [key for key, value in means.items() if key.startswith("loss_") and not math.isfinite(value)]
        if bad:
            raise FloatingPointError(
                f"AWR: non-finite {', '.join(bad)} at iteration {self.iteration}; stopping before "
                "the diverged networks reach a checkpoint."
            )
        return means

    def _sync_policy(self) -> dict[str, float]:
        """Sets the next batch's action std and sends the new weights to the collector."""
        metrics = {}
        if self.std_schedule is not None:
            metrics["action_std"] = self.std_schedule.step(self.frames)
        self._send_weights()
        return metrics

    def _send_weights(self) -> None:
        """The learner's weights to the collector's policy, within the watchdog's bound."""
        with self._collector_failures(), self._watchdog.waiting("the weight sync"):
            self.collector.update_policy_weights_()

    @contextlib.contextmanager
    def _collector_failures(self) -> Iterator[None]:
        """Turns an error of the collector (a worker process or Ray actor that died, an env
        that raised in it) into a :class:`CollectorFailure` that says where the run can go on."""
        try:
            yield
        except (Exception, CollectorStalled) as err:
            cause = first_line(err)
            if self._watchdog.reason is not None:  # the watchdog ended the wait, whatever it raised
                cause = self._watchdog.reason
            elif not isinstance(err, CollectorStalled):
                cause = f"{type(err).__name__}: {cause}"
            if self._saved_frames is None:
                where = "no checkpoint was saved yet"
            else:
                where = (
                    f"the checkpoint of {self._saved_frames} samples at {self.checkpoint_path} is intact: "
                    "load it to continue"
                )
            self._collector_lost = True
            raise CollectorFailure(f"The collector failed after {self.frames} samples ({cause}); {where}.") from err

    def _train_returns(self, batch: TensorDictBase) -> dict[str, float]:
        done = batch.get(self.store.keys.done)
        episode_reward = batch.get(("next", "episode_reward"), None)
        if episode_reward is None or not done.any():
            return {}
        finished = episode_reward[done]
        return {"train/return_mean": finished.mean().item(), "train/episodes": float(finished.numel())}

    # ------------------------------------------------------------------ loop
    def train(self) -> list[dict[str, float]]:
        """Runs to ``total_frames``.

        Ctrl-C or SIGTERM asks the run to stop: the iteration under way finishes and is logged
        (a wait for the collector's next batch ends at once), a checkpoint is saved,
        :attr:`interrupted` is set and ``train`` returns. A second signal stops at once, without
        saving (the last checkpoint stays whole), raising ``KeyboardInterrupt``.
        """
        config = self.config
        total = config.total_iterations if self.offline else config.total_frames
        display = ProgressDisplay(self.show_progress, total=total, initial=self.progress(), offline=self.offline)
        if self.config.compile and self._critic_step.names is None:  # no step taken yet: none compiled
            display.note("compiling the update steps (torch.compile): the first iteration takes longer")
        collector_iter = None
        if self.offline:
            self._prepare_dataset()
        else:
            if self.std_schedule is not None:
                self.std_schedule.step(self.frames)
            self._send_weights()  # the first batch comes from these weights
            collector_iter = iter(self.collector)
        self.interrupted = self.stopped_early = False
        last_train = None
        tick = time.perf_counter()
        with _StopRequest() as stop:
            try:
                while self.progress() < total and not stop.requested:
                    timer = PhaseTimer()
                    batch = None
                    if collector_iter is not None:
                        with (
                            timer("collect"),
                            self._collector_failures(),
                            self._watchdog.waiting("a batch", batch=True),
                        ):
                            with stop.interruptible():
                                batch = next(collector_iter, None)
                        if stop.requested:
                            break  # the signal ended the wait: this iteration has not begun
                        if batch is None:
                            raise RuntimeError(
                                f"The collector stopped after {self.frames} samples, before total_frames="
                                f"{config.total_frames}; create it with total_frames=-1 (a RayCollector: "
                                "total_frames >= the trainer's)."
                            )
                    progress_before = self.progress()
                    metrics = self._iterate(batch, timer)
                    last = self.progress() >= total
                    evaluated = self._due(config.eval_interval, last) and self.evaluator is not None
                    if evaluated:
                        with timer("eval"):
                            self.last_eval = self.evaluator()
                        self.last_eval_at = self.progress()
                        metrics.update(self.last_eval)
                        if self.video is not None:
                            with timer("video"):
                                self.video(self.frames, self.logger)
                        if self.after_evaluation is not None and self.after_evaluation(self.progress(), self.last_eval):
                            self.stopped_early = last = True
                    # Wall time is closed before saving, so the checkpoint and the log agree; the
                    # save itself is counted in the next iteration's wall time.
                    now = time.perf_counter()
                    self.wall_time += now - tick
                    tick = now
                    metrics["wall_time"] = self.wall_time
                    if self._due(config.checkpoint_interval, last) and self.checkpoint_path is not None:
                        with timer("checkpoint"):
                            self.save(self.checkpoint_path)
                    metrics.update(timer.times)
                    self._log(metrics)
                    # the newest finished episodes' return (none finish in most batches of a
                    # task with 1000-step episodes)
                    last_train = metrics.get("train/return_mean", last_train)
                    display.update(
                        self.progress() - progress_before,
                        self.progress(),
                        iteration=self.iteration,
                        evaluation=self.last_eval if evaluated else {},
                        train_return=last_train,
                        minutes=self.wall_time / 60,
                    )
                    if self.stopped_early:
                        break
                if stop.requested:
                    self.interrupted = True
                    if self.checkpoint_path is not None:
                        self.save(self.checkpoint_path)
                        display.note(f"Interrupted: checkpoint saved to {self.checkpoint_path}")
            finally:
                display.close()
        return self.history

    def shutdown(self) -> None:
        """Stops the collector's workers, closes the video's environment and finishes the
        logger's run (a W&B run is marked finished, a TensorBoard file flushed)."""
        if self.collector is not None:
            self.collector.shutdown(timeout=LOST_COLLECTOR_SHUTDOWN_S if self._collector_lost else None)
        if self.video is not None:
            self.video.close()
        if self.logger is not None:
            self.logger.close()

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
            self.logger.log_scalar(key, value, step=self.progress())

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
                "last_eval_at": self.last_eval_at,
            },
            "store": self.store.state_dict(),
            "dataset": self._dataset_fingerprint,
            "rng": rng_state(),
            "config": asdict(self.config),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restores a :meth:`state_dict`. The optimizers take their state (momenta, moments)
        from it and keep their own settings (learning rate, momentum), so a resume trains with
        the settings its optimizers were built with."""
        self.loss_module.load_state_dict(state["loss_module"])
        _load_optimizer_state(self.actor_optimizer, state["actor_optimizer"], "actor")
        _load_optimizer_state(self.critic_optimizer, state["critic_optimizer"], "critic")
        counters = state["counters"]
        self.frames = counters["frames"]
        self.iteration = counters["iteration"]
        self.wall_time = counters["wall_time"]
        self.last_eval = counters["last_eval"]
        self.last_eval_at = counters.get("last_eval_at")  # None in checkpoints written before it was kept
        if state.get("dataset") != self._dataset_fingerprint:
            raise ValueError(
                f"the checkpoint was trained on {_describe_data(state.get('dataset'))}; this trainer has "
                f"{_describe_data(self._dataset_fingerprint)}."
            )
        self.store.load_state_dict(state["store"])
        set_rng_state(state["rng"])
        if self.collector is not None:
            self._send_weights()

    def save(self, path: str | Path) -> None:
        """Writes a checkpoint atomically (and the replay buffer beside it if ``save_buffer``, the
        free space checked first counting its bytes). The pair gets an id of its own, so that a
        buffer dump from another save is refused on load."""
        save_checkpoint(
            self.state_dict(),
            path,
            replay_buffer=self.replay_buffer if self.save_buffer else None,
            buffer_bytes=self.store.nbytes(),
            pair_id=new_pair_id(f"iteration {self.iteration}"),
        )
        self._saved_frames = self.frames

    def load(self, path: str | Path, *, load_buffer: bool = False, state: dict | None = None) -> None:
        """Restores a checkpoint written by :meth:`save` (and its buffer if ``load_buffer``);
        ``state``: the checkpoint as :func:`~torchrl_awr.checkpoint.load_checkpoint` read it
        already, so that a caller that checked it first does not read it again.

        A checkpoint whose networks or optimizers do not fit this trainer's raises one
        :class:`~torchrl_awr.checkpoint.CheckpointError` naming the first mismatch.
        """
        if state is None:
            state = load_checkpoint(path)
        if load_buffer:
            load_buffer_dump(path, state.get("pair_id"), self.replay_buffer)
        with fitting(path):
            self.load_state_dict(state)
        if load_buffer:
            # The environments restart: new data does not continue the restored trajectories.
            self.store.cut()
        self._saved_frames = self.frames

    def load_networks(self, path: str | Path, *, state: dict | None = None) -> None:
        """Starts from another run's networks: the actor, the critic and the observation
        normaliser of its checkpoint (its loss module; ``state``: that checkpoint, read already),
        while the optimizers, the counters, the std schedule and the data stay this trainer's
        (offline-to-online)."""
        if state is None:
            state = load_checkpoint(path)
        with fitting(path):
            self.loss_module.load_state_dict(state["loss_module"])
        if self.collector is not None:
            self.collector.update_policy_weights_()


def _load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict, which: str) -> None:
    """``state`` into ``optimizer``, whose settings stay as built. Another kind of optimizer
    (settings that neither include nor are included in this one's, as SGD's momentum and Adam's
    betas) is a ``ValueError``; a setting added by a newer torch is not."""
    settings = [{key: value for key, value in group.items() if key != "params"} for group in optimizer.param_groups]
    for own, group in zip(settings, state["param_groups"]):
        saved = set(group) - {"params"}
        if not (saved <= set(own) or set(own) <= saved):
            raise ValueError(
                f"the checkpoint's {which} optimizer is not a {type(optimizer).__name__} (its settings "
                f"{', '.join(sorted(saved - set(own)))} are not one's); resume with the optimizer its run used"
            )
    optimizer.load_state_dict(state)
    for group, own in zip(optimizer.param_groups, settings):
        group.update(own)


def _fingerprint(dataset: TensorDictBase, reward_key) -> dict:
    """An offline run's dataset, as its checkpoint records it: the transitions and the sum of
    their rewards, so that a resume on other data is refused."""
    reward = dataset.get(reward_key)
    return {"transitions": dataset.shape[0], "reward_sum": round(reward.double().sum().item(), 6)}


def _describe_data(fingerprint: dict | None) -> str:
    if fingerprint is None:
        return "collected data (online)"
    return f"a dataset of {fingerprint['transitions']} transitions (reward sum {fingerprint['reward_sum']})"


class CollectorFailure(RuntimeError):
    """The collector raised (a worker died, an environment failed in it); the message names the
    cause and the last checkpoint, which the failure leaves intact."""


class _StopWaiting(KeyboardInterrupt):
    """Ends a wait on the collector when a stop is asked for (a ``KeyboardInterrupt`` if it ever
    escapes the wait)."""


class _StopRequest:
    """While active (in the main thread), SIGINT and SIGTERM ask the loop to stop at the end of
    the iteration, or at once while it waits on the collector (a wait that may never end: an
    environment that hangs); a second signal raises ``KeyboardInterrupt`` at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._previous = {}
        self._interruptible = False

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        # Said at once (a compiling first iteration can take a minute); os.write is safe in a handler.
        os.write(2, b"\nStopping: the checkpoint is saved after this iteration (again: stop at once, unsaved).\n")
        if self._interruptible:
            raise _StopWaiting

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A block that a stop request ends at once."""
        self._interruptible = True
        try:
            yield
        except _StopWaiting:
            pass
        finally:
            self._interruptible = False

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
