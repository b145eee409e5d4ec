"""Trainer throughput against this machine's floor, measured in one run.

    python benchmarks/throughput.py --task hopper --iterations 30
    python benchmarks/throughput.py --task hopper --collectors multi_sync ray   # both, one process
    python benchmarks/throughput.py --smoke            # tiny, for CI: checks that it works
    python benchmarks/throughput.py --task humanoid --device cuda --override collector.num_workers=14

The trainer runs ``--iterations`` AWR iterations with the recipe's default config (plus any
Hydra-style ``--override key=value``), measured after a warm-up (``--warmup``; by default until
every env has ended its first episode, which recompiles the update steps once). The floor, measured in the same process, is what no
implementation of this config can beat on this machine (measured for the first of ``--collectors``): raw gymnasium stepping of the task with
the same policy MLP in a tight loop; two no-grad critic passes per iteration (in cache-sized chunks) over a buffer of the
trainer's size (the value passes TD(lambda) targets and advantages need); and the same number
of critic and actor SGD steps on pre-made tensors in the fastest plain-PyTorch loop: eager,
compiled loss and backward, or forward, backward and SGD update fused into one compiled graph.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
from pathlib import Path

import gymnasium as gym
import torch

from torchrl_awr.envs import max_episode_steps
from torchrl_awr.models import make_mlp
from torchrl_awr.recipe.compose import compose_config, env_kwargs, envs_per_batch, resolve_device
from torchrl_awr.recipe.factories import env_maker, make_trainer
from torchrl_awr.recipe.rundir import CHECKPOINT_NAME
from torchrl_awr.targets import VALUE_CHUNK_ROWS

ROOT = Path(__file__).resolve().parents[1]

PHASES = ("collect", "buffer", "targets", "critic", "actor", "eval", "checkpoint")


def load_config(task: str, overrides: list[str]):
    return compose_config(f"task={task}", "progress=false", "logger.backend=none", *overrides)


def default_warmup(cfg) -> int:
    """Iterations until every env has ended its first episode (at the latest, its time limit).

    The first episode end makes tensordict memoise one more type, which recompiles the
    update steps once (a few seconds, once per run); measuring after it gives the steady state.
    """
    steps_per_env = cfg.collector.frames_per_batch // envs_per_batch(cfg)
    return max(2, math.ceil(max_episode_steps(cfg.env.name) / steps_per_env) + 1)


def measure_trainer(cfg, iterations: int, run_dir: Path, warmup: int) -> dict:
    """Runs the real trainer; returns wall time per phase and per iteration, after a warm-up."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    trainer = make_trainer(cfg, run_dir, resolve_device(cfg.device))
    trainer.config.total_frames = (iterations + warmup) * cfg.collector.frames_per_batch
    trainer.config.eval_interval = 0
    trainer.config.checkpoint_interval = 0
    collector, evaluator = trainer.collector, trainer.evaluator
    full_history = trainer.train()
    history = full_history[warmup:]
    tic = time.perf_counter()
    trainer.save(run_dir / CHECKPOINT_NAME)
    checkpoint_time = time.perf_counter() - tic
    eval_time = 0.0
    if evaluator is not None:
        tic = time.perf_counter()
        evaluator()
        eval_time = time.perf_counter() - tic
    collector.shutdown()
    frames = cfg.collector.frames_per_batch * len(history)
    phases = {phase: sum(h.get(f"time/{phase}", 0.0) for h in history) for phase in PHASES}
    train_seconds = full_history[-1]["wall_time"] - full_history[warmup - 1]["wall_time"]
    phases["other"] = train_seconds - sum(phases.values())
    iterations_per_million = 1e6 / cfg.collector.frames_per_batch
    per_million = {
        "eval": eval_time * (iterations_per_million / cfg.eval.interval if cfg.eval.interval else 0),
        "checkpoint": checkpoint_time
        * (iterations_per_million / cfg.checkpoint.interval if cfg.checkpoint.interval else 0),
    }
    return {
        "frames": frames,
        "train_seconds": train_seconds,
        "critic_steps": sum(h["critic_steps"] for h in history),
        "actor_steps": sum(h["actor_steps"] for h in history),
        "buffer_sizes": [h["buffer_size"] for h in history],
        "phase_seconds": phases,
        "eval_seconds_each": eval_time,
        "extra_seconds_per_million": per_million,
    }


def collector_summary(cfg, measured: dict) -> dict:
    """Time per iteration and collection rates of one collector type's measured run."""
    iterations = measured["frames"] / cfg.collector.frames_per_batch
    collect = measured["phase_seconds"]["collect"]
    workers = cfg.collector.num_workers if cfg.collector.type != "single" else 1
    return {
        "num_workers": workers,
        "num_envs_per_worker": cfg.env.num_envs,
        "seconds_per_iteration": measured["train_seconds"] / iterations,
        "collect_seconds_per_iteration": collect / iterations,
        "learn_seconds_per_iteration": (measured["train_seconds"] - collect) / iterations,
        "samples_per_second": measured["frames"] / measured["train_seconds"],
        "collect_samples_per_second_per_worker": measured["frames"] / collect / workers,
        "minutes_per_million_without_eval": measured["train_seconds"] * 1e6 / measured["frames"] / 60,
        "phase_share": {k: v / measured["train_seconds"] for k, v in measured["phase_seconds"].items()},
    }


def measure_env_floor(env: gym.Env, frames: int, obs_dim: int, act_dim: int, hidden) -> float:
    """Seconds for ``frames`` raw gymnasium steps of ``env``, the policy MLP choosing every action."""
    policy = make_mlp(obs_dim, hidden, act_dim)
    obs, _ = env.reset(seed=0)
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    tic = time.perf_counter()
    with torch.no_grad():
        for _ in range(frames):
            out = policy(torch.as_tensor(obs, dtype=torch.float32))
            action = int(out.argmax()) if discrete else (out + 0.4 * torch.randn_like(out)).numpy()
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                obs, _ = env.reset()
    return time.perf_counter() - tic


UPDATE_FLOOR_KINDS = ("eager", "compiled", "fused", "fused_x4")
GROUP = {"fused_x4": 4}  # steps per compiled call


def synchronize(device: torch.device) -> None:
    """Waits for the device's queued work, so that a timer reads the work done (CUDA is asynchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _update_floor(
    steps: int, obs_dim: int, out_dim: int, hidden, lr: float, kind: str, mode: str, device: torch.device
) -> float:
    """Seconds for ``steps`` SGD (momentum 0.9) steps of a plain-PyTorch loss on pre-made minibatches.

    ``mode``: ``eager``; ``compiled`` (loss and backward compiled, ``optimizer.step()`` eager);
    ``fused`` (forward, ``torch.func.grad`` and the SGD update in one compiled graph);
    ``fused_x4`` (four such steps, one after the other, in one compiled graph).
    """
    net = make_mlp(obs_dim, hidden, out_dim).to(device)
    batches = 64
    obs = torch.randn(batches, 256, obs_dim, device=device)
    target = torch.randn(batches, 256, out_dim, device=device)
    weight = torch.rand(batches, 256, device=device)

    def loss_of(out, t, w):
        if kind == "critic":
            return 0.5 * (out - t).pow(2).mean()
        log_prob = -0.5 * ((t - out) / 0.4).pow(2).sum(-1)
        return -(w * log_prob).mean() + 5.0 * (out.abs() - 1).clamp(min=0).pow(2).sum(-1).mean()

    group = GROUP.get(mode, 1)
    if mode.startswith("fused"):
        params = {name: p.detach() for name, p in net.named_parameters()}
        momentum = [torch.zeros_like(p) for p in params.values()]

        def fused_step(o, t, w):
            grads = torch.func.grad(lambda p: loss_of(torch.func.functional_call(net, p, (o,)), t, w))(params)
            torch._foreach_mul_(momentum, 0.9)
            torch._foreach_add_(momentum, list(grads.values()))
            torch._foreach_add_(list(params.values()), momentum, alpha=-lr)

        def fused_steps(o, t, w):
            for k in range(o.shape[0]):
                fused_step(o[k], t[k], w[k])

        update = torch.compile(fused_steps, dynamic=False)
    else:
        optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, foreach=True)

        def loss_and_backward(o, t, w):
            loss_of(net(o), t, w).backward()

        backward = torch.compile(loss_and_backward, dynamic=False) if mode == "compiled" else loss_and_backward

        def update(o, t, w):
            optimizer.zero_grad(set_to_none=True)
            backward(o[0], t[0], w[0])
            optimizer.step()

    def steps_at(i: int) -> tuple[torch.Tensor, ...]:
        start = (i * group) % batches
        return obs[start : start + group], target[start : start + group], weight[start : start + group]

    for i in range(3):
        update(*steps_at(i))
    synchronize(device)
    tic = time.perf_counter()
    for i in range(math.ceil(steps / group)):
        update(*steps_at(i))
    synchronize(device)
    return time.perf_counter() - tic


def measure_value_floor(buffer_sizes: list[int], obs_dim: int, hidden, device: torch.device) -> float:
    """Seconds for the critic passes over the buffer no AWR iteration can skip: two per iteration
    (targets before the critic phase, advantages after it), at each iteration's buffer size,
    each pass in chunks of ``VALUE_CHUNK_ROWS`` rows (twice as fast as one call on CPU)."""
    net = make_mlp(obs_dim, hidden, 1).to(device)
    obs = torch.randn(max(buffer_sizes), obs_dim, device=device)
    with torch.no_grad():
        net(obs[:256])
        synchronize(device)
        tic = time.perf_counter()
        for size in buffer_sizes:
            for _ in range(2):
                torch.cat([net(rows) for rows in obs[:size].split(VALUE_CHUNK_ROWS)])
        synchronize(device)
    return time.perf_counter() - tic


def measure_update_floor(
    critic_steps, actor_steps, obs_dim, act_dim, hidden, device: torch.device, modes=UPDATE_FLOOR_KINDS
) -> dict:
    """Per network, on ``device``: seconds of the fastest mode, and every mode's seconds."""
    best, all_modes = {}, {}
    for kind, steps, out_dim in (("critic", critic_steps, 1), ("actor", actor_steps, act_dim)):
        all_modes[kind] = {
            mode: _update_floor(steps, obs_dim, out_dim, hidden, 1e-4, kind, mode, device) for mode in modes
        }
        best[kind] = min(all_modes[kind].values())
    return best, all_modes


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="hopper", help="a recipe task preset (default: hopper)")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--override", action="append", default=[], help="Hydra override, repeatable")
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="iterations before measuring (default: until every env ended an episode)",
    )
    parser.add_argument(
        "--collectors",
        nargs="+",
        default=None,
        help="collector types to measure one after the other with the same settings (e.g. multi_sync ray)",
    )
    parser.add_argument("--device", default=None, help="the learner's device (the recipe's device=); floors too")
    parser.add_argument(
        "--floor-modes",
        nargs="+",
        default=list(UPDATE_FLOOR_KINDS),
        choices=UPDATE_FLOOR_KINDS,
        help="update-floor modes to time (each compiled one compiles twice); the floor is the fastest",
    )
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only checks the harness")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    parser.add_argument("--run-dir", default="/tmp/awr_throughput")
    args = parser.parse_args(argv)
    overrides = list(args.override) + ([f"device={args.device}"] if args.device else [])
    if args.smoke:
        args.iterations = 1
        overrides += [
            "collector.frames_per_batch=256",
            "collector.type=single",
            "env.num_envs=4",
            "train.critic_steps=20",
            "train.actor_steps=40",
            "eval.episodes=2",
            "eval.num_envs=2",
            "train.compile=false",
        ]
    kinds = args.collectors or [None]
    by_collector = {}
    for kind in kinds:
        kind_cfg = load_config(args.task, overrides + ([f"collector.type={kind}"] if kind else []))
        run_dir = Path(args.run_dir) / (kind or "run")
        run_dir.mkdir(parents=True, exist_ok=True)
        warmup = args.warmup if args.warmup is not None else (2 if args.smoke else default_warmup(kind_cfg))
        measured = measure_trainer(kind_cfg, args.iterations, run_dir, warmup)
        by_collector[kind_cfg.collector.type] = (kind_cfg, measured, warmup)
    cfg, trainer, warmup = next(iter(by_collector.values()))
    spec_env = env_maker(cfg)()
    obs_dim = spec_env.observation_spec["observation"].shape[-1]
    act_dim = spec_env.action_spec.shape[-1]
    spec_env.close()
    hidden = list(cfg.model.hidden_sizes)
    device = resolve_device(cfg.device)
    raw_env = gym.make(cfg.env.name, **env_kwargs(cfg))
    env_floor = measure_env_floor(raw_env, trainer["frames"], obs_dim, act_dim, hidden)
    update_floor, update_floor_modes = measure_update_floor(
        trainer["critic_steps"],
        trainer["actor_steps"],
        obs_dim,
        act_dim,
        hidden,
        device,
        modes=("eager",) if args.smoke else args.floor_modes,
    )
    value_floor = measure_value_floor(trainer["buffer_sizes"], obs_dim, hidden, device)
    floor = env_floor + value_floor + sum(update_floor.values())
    scale = 1e6 / trainer["frames"]
    extra = sum(trainer["extra_seconds_per_million"].values())
    result = {
        "task": cfg.env.name,
        "device": str(device),
        "threads": cfg.threads,
        "iterations": args.iterations,
        "warmup_iterations": warmup,
        "frames": trainer["frames"],
        "samples_per_second": trainer["frames"] / trainer["train_seconds"],
        "minutes_per_million_without_eval": trainer["train_seconds"] * scale / 60,
        "minutes_per_million_with_eval": (trainer["train_seconds"] * scale + extra) / 60,
        "critic_steps_per_second": trainer["critic_steps"] / max(trainer["phase_seconds"]["critic"], 1e-9),
        "actor_steps_per_second": trainer["actor_steps"] / max(trainer["phase_seconds"]["actor"], 1e-9),
        "phase_share": {k: v / trainer["train_seconds"] for k, v in trainer["phase_seconds"].items()},
        "eval_seconds_each": trainer["eval_seconds_each"],
        "floor_seconds": {"env": env_floor, "values": value_floor, **update_floor},
        "floor_update_seconds_by_mode": update_floor_modes,
        "floor_minutes_per_million": floor * scale / 60,
        "ratio_trainer_to_floor": trainer["train_seconds"] / floor,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "overrides": overrides,
    }
    if args.collectors:
        summaries = {kind: collector_summary(c, m) for kind, (c, m, _) in by_collector.items()}
        result["by_collector"] = summaries
        if {"ray", "multi_sync"} <= summaries.keys():
            ray, multi = summaries["ray"], summaries["multi_sync"]
            result["ray_overhead_per_iteration"] = ray["seconds_per_iteration"] / multi["seconds_per_iteration"] - 1
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
