"""Policy evaluation (deterministic by default) on a separate, batched environment."""

from __future__ import annotations

import math

import torch
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type


class Evaluator:
    """Runs ``num_episodes`` episodes with the deterministic policy and reports their returns.

    ``exploration_type=ExplorationType.RANDOM`` evaluates the stochastic policy instead (the
    one that collects the training data). ``eval/time_limit_fraction`` is the share of episodes
    that lasted ``max_episode_steps``.

    ``env`` is batched (``env.batch_size == [n_envs]``) and resets its sub-envs on its own
    (TorchRL's ``step_and_maybe_reset``); the first episode of each sub-env is counted, so
    ``ceil(num_episodes / n_envs)`` rounds cover the episodes. Steps taken here are not
    training samples.
    """

    def __init__(
        self,
        env: EnvBase,
        policy: TensorDictModuleBase,
        *,
        num_episodes: int = 32,
        max_episode_steps: int = 1000,
        exploration_type: ExplorationType = ExplorationType.DETERMINISTIC,
    ):
        if num_episodes < 1:
            raise ValueError(f"Evaluator: num_episodes must be >= 1, got {num_episodes}.")
        if len(env.batch_size) != 1:
            raise ValueError(f"Evaluator: expected a batched env with batch_size [n_envs], got {env.batch_size}.")
        self.env = env
        self.policy = policy
        self.num_episodes = num_episodes
        self.max_episode_steps = max_episode_steps
        self.exploration_type = exploration_type

    @torch.no_grad()
    def __call__(self) -> dict[str, float]:
        n_envs = self.env.batch_size[0]
        returns, lengths = [], []
        with set_exploration_type(self.exploration_type):
            for _ in range(math.ceil(self.num_episodes / n_envs)):
                episode_return, episode_length = self._first_episodes()
                returns.append(episode_return)
                lengths.append(episode_length)
        returns = torch.cat(returns)[: self.num_episodes]
        lengths = torch.cat(lengths)[: self.num_episodes]
        return {
            "eval/return_mean": returns.mean().item(),
            "eval/return_std": returns.std(unbiased=False).item(),
            "eval/episode_length_mean": lengths.float().mean().item(),
            "eval/time_limit_fraction": (lengths >= self.max_episode_steps).float().mean().item(),
        }

    def _first_episodes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns and lengths of the first episode of every sub-env, stepping all together."""
        tensordict = self.env.reset()
        n_envs = self.env.batch_size[0]
        device = tensordict.device or "cpu"
        finished = torch.zeros(n_envs, dtype=torch.bool, device=device)
        episode_return = torch.zeros(n_envs, device=device)
        episode_length = torch.zeros(n_envs, dtype=torch.long, device=device)
        for _ in range(self.max_episode_steps):
            tensordict = self.policy(tensordict)
            tensordict, next_root = self.env.step_and_maybe_reset(tensordict)
            running = ~finished
            episode_return += tensordict.get(("next", "reward")).reshape(n_envs) * running
            episode_length += running
            finished |= tensordict.get(("next", "done")).reshape(n_envs)
            if finished.all():
                break
            tensordict = next_root
        return episode_return, episode_length
