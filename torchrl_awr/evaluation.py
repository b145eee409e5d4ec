"""Policy evaluation (deterministic by default) on a separate, batched environment."""

from __future__ import annotations

import math

import torch
from tensordict import TensorDict
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

    ``sum_keys`` are per-step entries of the env's output (e.g. the reward terms a
    ``keep_info`` env writes) summed over each episode like the reward: each one's mean over
    the episodes is reported as ``eval/<key>_mean``. :meth:`episodes` gives the per-episode
    values, with each of ``final_keys`` as the episode's last step left it (e.g. the state a
    terminated episode ended in).
    """

    def __init__(
        self,
        env: EnvBase,
        policy: TensorDictModuleBase,
        *,
        num_episodes: int = 32,
        max_episode_steps: int = 1000,
        exploration_type: ExplorationType = ExplorationType.DETERMINISTIC,
        sum_keys: tuple[str, ...] = (),
        final_keys: tuple[str, ...] = (),
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
        self.sum_keys = tuple(sum_keys)
        self.final_keys = tuple(final_keys)

    def __call__(self) -> dict[str, float]:
        episodes = self.episodes()
        returns, lengths = episodes["return"], episodes["length"]
        return {
            "eval/return_mean": returns.mean().item(),
            "eval/return_std": returns.std(unbiased=False).item(),
            "eval/episode_length_mean": lengths.float().mean().item(),
            "eval/time_limit_fraction": (lengths >= self.max_episode_steps).float().mean().item(),
            **{f"eval/{key}_mean": episodes[key].mean().item() for key in self.sum_keys},
        }

    @torch.no_grad()
    def episodes(self) -> TensorDict:
        """``num_episodes`` episodes: per episode its ``"return"``, ``"length"``, the sum of
        each of ``sum_keys`` and the last value of each of ``final_keys``."""
        n_envs = self.env.batch_size[0]
        with set_exploration_type(self.exploration_type):
            rounds = [self._first_episodes() for _ in range(math.ceil(self.num_episodes / n_envs))]
        return torch.cat(rounds)[: self.num_episodes]

    def _first_episodes(self) -> TensorDict:
        """The first episode of every sub-env (as :meth:`episodes`), stepping all together."""
        tensordict = self.env.reset()
        n_envs = self.env.batch_size[0]
        device = tensordict.device or "cpu"
        finished = torch.zeros(n_envs, dtype=torch.bool, device=device)
        sums = {key: torch.zeros(n_envs, device=device) for key in ("reward", *self.sum_keys)}
        episode_length = torch.zeros(n_envs, dtype=torch.long, device=device)
        finals = {key: torch.zeros_like(tensordict.get(key)) for key in self.final_keys}
        for _ in range(self.max_episode_steps):
            tensordict = self.policy(tensordict)
            tensordict, next_root = self.env.step_and_maybe_reset(tensordict)
            running = ~finished
            step = tensordict.get("next")
            for key, total in sums.items():
                total += step.get(key).reshape(n_envs) * running
            episode_length += running
            for key, value in finals.items():
                reached = step.get(key)
                finals[key] = torch.where(running.reshape(n_envs, *[1] * (reached.dim() - 1)), reached, value)
            finished |= step.get("done").reshape(n_envs)
            if finished.all():
                break
            tensordict = next_root
        return TensorDict(
            {
                "return": sums.pop("reward"),
                "length": episode_length,
                **sums,
                **finals,
            },
            batch_size=[n_envs],
        )
