"""make_env: batched gymnasium tasks, their gym.make kwargs, and the presets that set them."""
from __future__ import annotations

import sys

import pytest
import torch
from recipe_helpers import RECIPE, compose_config

from torchrl_awr.envs import make_env

sys.path.insert(0, str(RECIPE.parent))
from awr_utils import env_maker  # noqa: E402


def observation_size(env) -> int:
    size = env.observation_spec["observation"].shape[-1]
    env.close()
    return size


def test_env_kwargs_reach_gym_make():
    assert observation_size(make_env("Hopper-v5", num_envs=2)) == 11
    with_x = make_env("Hopper-v5", num_envs=2, env_kwargs={"exclude_current_positions_from_observation": False})
    rollout = with_x.rollout(3)
    assert rollout["observation"].shape == (2, 3, 12)
    with_x.close()


def test_unknown_env_kwarg_is_named():
    with pytest.raises(ValueError, match=r"Hopper-v5 does not accept the env kwargs \{'jump_height': 2\}"):
        make_env("Hopper-v5", env_kwargs={"jump_height": 2})


@pytest.mark.parametrize("task,size", [("ant", 27), ("humanoid", 270)])
def test_ant_and_humanoid_presets_hide_contact_forces(task, size):
    """The original's mujoco-py >= 2.0 reported zero contact forces, so its policies never saw them."""
    cfg = compose_config(f"task={task}")
    assert cfg.env.kwargs == {"include_cfrc_ext_in_observation": False}
    assert observation_size(env_maker(cfg)()) == size
    shown = compose_config(f"task={task}", "task.env_kwargs.include_cfrc_ext_in_observation=true")
    assert observation_size(env_maker(shown)()) > size


@pytest.mark.parametrize("task", ["hopper", "halfcheetah", "walker2d", "lunarlander"])
def test_other_presets_use_the_default_env(task):
    assert compose_config(f"task={task}").env.kwargs == {}


@pytest.mark.parametrize("keep_info", [False, True])
def test_time_limit_keeps_the_true_final_observation(keep_info):
    """Same-step autoreset: ("next", "observation") at a truncation is s_T, not the reset state."""
    env = make_env("Hopper-v5", num_envs=2, seed=0, keep_info=keep_info, env_kwargs={"max_episode_steps": 5})
    rollout = env.rollout(12, break_when_any_done=False)
    env.close()
    assert ("x_velocity" in rollout["next"].keys()) == keep_info
    truncated = rollout["next", "truncated"].squeeze(-1)
    assert truncated[:, 4].all() and truncated[:, 9].all() and truncated.sum() == 4
    observation, next_observation = rollout["observation"], rollout["next", "observation"]
    # Within an episode the next observation is the following step's observation...
    torch.testing.assert_close(next_observation[:, :4], observation[:, 1:5])
    # ...at the time limit it is the state reached, and the following step starts from a reset.
    assert (next_observation[:, 4] - observation[:, 5]).abs().amax(-1).gt(1e-3).all()
    start = observation[:, 0]
    assert (observation[:, 5] - start).abs().amax() < 0.05  # both near Hopper's initial pose
