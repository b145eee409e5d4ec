"""Stable-Baselines3's PPO or SAC with the RL Zoo's MuJoCo settings, trained for a budget of
wall-clock seconds and evaluated against them (``benchmarks/wallclock.py`` runs it beside ours).

    python benchmarks/sb3_baseline.py --env Hopper-v5 --algo sac --seconds 1800 --seed 0 \\
        --out runs/wallclock/hopper/sac/seed0.json

The clock counts training only: it stops while the deterministic evaluation (``--episodes``
episodes, every ``--eval-every`` seconds of training and once at the start) runs. Writes
``{"seconds": [...], "steps": [...], "returns": [...]}``. Needs the ``baselines`` extra.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize, sync_envs_normalization
from torch import nn

_PPO_NETWORKS = dict(
    log_std_init=-2, ortho_init=False, activation_fn=nn.ReLU, net_arch=dict(pi=[256, 256], vf=[256, 256])
)
# rl-baselines3-zoo's hyperparams/{ppo,sac}.yml for the -v4 tasks (the zoo has no -v5 entries).
ZOO = {
    ("ppo", "Hopper"): dict(
        normalize=True,
        batch_size=32,
        n_steps=512,
        gamma=0.999,
        learning_rate=9.80828e-05,
        ent_coef=0.00229519,
        clip_range=0.2,
        n_epochs=5,
        gae_lambda=0.99,
        max_grad_norm=0.7,
        vf_coef=0.835671,
        policy_kwargs=_PPO_NETWORKS,
    ),
    ("ppo", "HalfCheetah"): dict(
        normalize=True,
        batch_size=64,
        n_steps=512,
        gamma=0.98,
        learning_rate=2.0633e-05,
        ent_coef=0.000401762,
        clip_range=0.1,
        n_epochs=20,
        gae_lambda=0.92,
        max_grad_norm=0.8,
        vf_coef=0.58096,
        policy_kwargs=_PPO_NETWORKS,
    ),
    ("sac", "Hopper"): dict(normalize=False, learning_starts=10_000),
    ("sac", "HalfCheetah"): dict(normalize=False, learning_starts=10_000),
}


class WallClockEvaluation(BaseCallback):
    """Evaluates every ``eval_every`` seconds of training and stops training after ``seconds``;
    the time spent evaluating is not counted."""

    def __init__(self, seconds: float, eval_every: float, eval_env, episodes: int):
        super().__init__()
        self.seconds, self.eval_every, self.eval_env, self.episodes = seconds, eval_every, eval_env, episodes
        self.history = {"seconds": [], "steps": [], "returns": []}
        self.paused = 0.0

    def training_seconds(self) -> float:
        return time.perf_counter() - self.start - self.paused

    def _evaluate(self, seconds: float) -> None:
        tic = time.perf_counter()
        if isinstance(self.training_env, VecNormalize):
            sync_envs_normalization(self.training_env, self.eval_env)
        mean, _ = evaluate_policy(self.model, self.eval_env, n_eval_episodes=self.episodes, deterministic=True)
        for key, value in (("seconds", seconds), ("steps", self.num_timesteps), ("returns", float(mean))):
            self.history[key].append(value)
        print(f"{seconds:.0f} s, {self.num_timesteps} steps: {mean:.1f}", flush=True)
        self.paused += time.perf_counter() - tic

    def _on_training_start(self) -> None:
        self.start = time.perf_counter()
        self._evaluate(0.0)

    def _on_step(self) -> bool:
        seconds = self.training_seconds()
        if seconds >= self.seconds or seconds >= self.eval_every * len(self.history["seconds"]):
            self._evaluate(min(seconds, self.seconds))
        return seconds < self.seconds


def make_model(algo: str, env_id: str, seed: int):
    """The zoo's model for ``env_id`` (its settings for the task's -v4 version) and its env."""
    settings = dict(ZOO[(algo, env_id.split("-")[0])])
    normalize = settings.pop("normalize")
    env = make_vec_env(env_id, n_envs=1, seed=seed)
    if normalize:
        env = VecNormalize(env)
    model = (PPO if algo == "ppo" else SAC)("MlpPolicy", env, seed=seed, verbose=0, **settings)
    return model, normalize


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", required=True, choices=("Hopper-v5", "HalfCheetah-v5"))
    parser.add_argument("--algo", required=True, choices=("ppo", "sac"))
    parser.add_argument("--seconds", type=float, required=True, help="training wall-clock budget")
    parser.add_argument("--eval-every", type=float, default=60.0, help="seconds of training between evaluations")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    model, normalize = make_model(args.algo, args.env, args.seed)
    eval_env = make_vec_env(args.env, n_envs=1, seed=args.seed + 10_000)
    if normalize:
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
    gym.logger.min_level = gym.logger.ERROR
    clock = WallClockEvaluation(args.seconds, args.eval_every, eval_env, args.episodes)
    model.learn(total_timesteps=10**9, callback=clock)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**clock.history, "algo": args.algo, "env": args.env, "seed": args.seed}))


if __name__ == "__main__":
    main()
