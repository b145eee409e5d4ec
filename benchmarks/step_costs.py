"""Micro-costs behind docs/performance.md's "what the last round bought" (Hopper-v5, 1 thread).

    python benchmarks/step_costs.py [--repeats 5] [--calls 500] [--override optim.name=adam ...]

Measures, each as a median over ``--repeats`` timings: one batched step of 16 envs through our
``GymnasiumBatchEnv`` with and without the tasks' per-step info, through TorchRL's stock path
(``GymWrapper`` over a gymnasium ``SyncVectorEnv``), and the 16 gymnasium steps alone; one actor
update as a compiled loss followed by eager backward and the optimizer's step, and fused into one
compiled graph (the default), each with dynamo's guards checked and skipped; and the fused step as
a phase runs it, several steps per graph call. The updates are the Hopper preset's (SGD) unless
``--override`` changes them (e.g. ``optim.name=adam``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import gymnasium as gym
import torch
from torchrl.envs import Compose, DoubleToFloat, GymWrapper, RewardSum, TransformedEnv

from torchrl_awr.envs import make_env
from torchrl_awr.recipe.compose import compose_config
from torchrl_awr.recipe.factories import make_trainer
from torchrl_awr.trainer import PhaseTimer
from torchrl_awr.updates import UpdateStep


def per_call_ms(fn, calls: int, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - tic) / calls * 1e3)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timings per measure (their median is shown)")
    parser.add_argument("--calls", type=int, default=500, help="actor steps per timing of one update")
    parser.add_argument("--override", action="append", default=[], help="Hydra override of the recipe, repeatable")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    repeats = args.repeats

    def batched_step_ms(env) -> float:
        env.set_seed(0)
        ms = per_call_ms(lambda: env.rollout(64, break_when_any_done=False), 1, repeats) / 64
        env.close()
        return ms

    for keep_info in (True, False):
        ms = batched_step_ms(make_env("Hopper-v5", num_envs=16, keep_info=keep_info))
        print(f"GymnasiumBatchEnv step, 16 envs, keep_info={keep_info}: {ms:.2f} ms")
    vector = gym.vector.SyncVectorEnv(
        [lambda: gym.make("Hopper-v5")] * 16, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )
    stock = TransformedEnv(GymWrapper(vector), Compose(DoubleToFloat(), RewardSum()), auto_unwrap=False)
    print(f"TorchRL GymWrapper over SyncVectorEnv step, 16 envs: {batched_step_ms(stock):.2f} ms")
    raw = [gym.make("Hopper-v5") for _ in range(16)]
    for i, env in enumerate(raw):
        env.reset(seed=i)

    def raw_steps():
        for env in raw:
            if any(env.step(env.action_space.sample())[2:4]):
                env.reset()

    print(f"16 gymnasium steps, no TorchRL: {per_call_ms(raw_steps, 64, repeats):.2f} ms")

    cfg = compose_config(
        "task=hopper",
        "progress=false",
        "logger.backend=none",
        "eval.interval=0",
        "checkpoint.interval=0",
        "collector.type=single",
        "collector.frames_per_batch=4096",
        *args.override,
    )
    trainer = make_trainer(cfg, Path("/tmp/awr_step_costs"), torch.device("cpu"))
    trainer._iterate(next(iter(trainer.collector)), PhaseTimer())
    trainer.collector.shutdown()
    fused = trainer._actor_step
    unfused = UpdateStep(
        trainer.loss_module,
        trainer.loss_module.actor_loss,
        trainer.actor_optimizer,
        fused.keys,
        compile=True,
        fuse=False,
    )
    (chunk,) = trainer.store.minibatches(fused.keys, 16)  # [16, 256, ...] per key
    index = iter(range(10**9))
    optimizer = type(trainer.actor_optimizer).__name__
    for name, step in (
        (f"compiled loss + eager backward/{optimizer}", unfused),
        (f"fused forward/backward/{optimizer}", fused),
    ):

        def actor_step(step=step):
            i = next(index) % 16
            step(*(tensor[i] for tensor in chunk))

        checked = per_call_ms(actor_step, args.calls, repeats)
        with step.trusted_guards():
            skipped = per_call_ms(actor_step, args.calls, repeats)
        print(f"actor step, {name}: guards checked {checked:.3f} ms, skipped {skipped:.3f} ms")
    per_step = per_call_ms(lambda: fused.run([chunk]), max(1, args.calls // 16), repeats) / 16
    print(f"actor step, fused, {fused.steps_per_call} steps per graph call (a phase's run): {per_step:.3f} ms")


if __name__ == "__main__":
    main()
