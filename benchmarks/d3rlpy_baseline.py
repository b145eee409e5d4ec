"""An established offline library on our datasets: d3rlpy's IQL, CRR or AWAC, with the settings of
d3rlpy's own reproduction scripts, on a dataset exported by ``benchmarks/offline.py`` as .npz.

Runs in a virtualenv of its own (d3rlpy pins gymnasium 1.0.0)::

    python3 -m venv ../d3rlpy-venv && ../d3rlpy-venv/bin/pip install torch==2.13.0 d3rlpy "gymnasium[mujoco]==1.0.0"
    ../d3rlpy-venv/bin/python benchmarks/d3rlpy_baseline.py --data runs/offline/hopper-medium.npz \\
        --env Hopper-v5 --algo iql --steps 30000 --seed 0 --out runs/offline/hopper-medium/iql/seed0.json

Writes ``{"steps": [...], "returns": [...]}``: the deterministic evaluation return (10 episodes)
after every ``--eval-every`` gradient steps. Only numpy, gymnasium and d3rlpy are imported.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import d3rlpy
import gymnasium as gym
import numpy as np


def make_algo(name: str, steps: int):
    """IQL as d3rlpy's reproduction (cosine-annealed actor lr, return-based reward scale), CRR as
    its reproduction (binary filter 1[A > 0], mean advantage, soft target updates) and AWAC as its
    reproduction (4 x 256 encoders, batch 1024, weight decay)."""
    if name == "iql":
        return d3rlpy.algos.IQLConfig(
            actor_learning_rate=3e-4,
            critic_learning_rate=3e-4,
            actor_optim_factory=d3rlpy.optimizers.AdamFactory(
                lr_scheduler_factory=d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=steps)
            ),
            batch_size=256,
            weight_temp=3.0,
            max_weight=100.0,
            expectile=0.7,
            reward_scaler=d3rlpy.preprocessing.ReturnBasedRewardScaler(multiplier=1000.0),
        ).create(device="cpu:0")
    if name == "crr":
        return d3rlpy.algos.CRRConfig(
            actor_learning_rate=3e-4,
            critic_learning_rate=3e-4,
            batch_size=256,
            weight_type="binary",
            advantage_type="mean",
            target_update_type="soft",
        ).create(device="cpu:0")
    encoder = d3rlpy.models.encoders.VectorEncoderFactory([256, 256, 256, 256])
    return d3rlpy.algos.AWACConfig(
        actor_learning_rate=3e-4,
        actor_encoder_factory=encoder,
        actor_optim_factory=d3rlpy.optimizers.AdamFactory(weight_decay=1e-4),
        critic_learning_rate=3e-4,
        critic_encoder_factory=encoder,
        batch_size=1024,
        lam=1.0,
    ).create(device="cpu:0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--env", required=True)
    parser.add_argument("--algo", choices=("iql", "crr", "awac"), required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--eval-every", type=int, default=5000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    data = np.load(args.data)
    dataset = d3rlpy.dataset.MDPDataset(
        observations=data["observations"],
        actions=data["actions"],
        rewards=data["rewards"],
        terminals=data["terminals"],
        timeouts=data["timeouts"],
    )
    env = gym.make(args.env)
    d3rlpy.seed(args.seed)
    d3rlpy.envs.seed_env(env, args.seed)
    algo = make_algo(args.algo, args.steps)
    steps, returns = [], []
    for epoch, _ in algo.fitter(
        dataset,
        n_steps=args.steps,
        n_steps_per_epoch=args.eval_every,
        save_interval=10**9,
        experiment_name=f"{args.algo}_{args.data.stem}_{args.seed}",
        with_timestamp=False,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
        show_progress=False,
    ):
        steps.append(epoch * args.eval_every)
        returns.append(float(d3rlpy.metrics.evaluate_qlearning_with_environment(algo, env, n_trials=args.episodes)))
        print(f"{steps[-1]} steps: {returns[-1]:.1f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"steps": steps, "returns": returns, "algo": args.algo, "seed": args.seed}))


if __name__ == "__main__":
    main()
