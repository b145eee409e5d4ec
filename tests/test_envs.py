"""make_env / GymnasiumBatchEnv: batched gymnasium tasks, their gym.make kwargs, and the presets."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import check_env_specs

from torchrl_awr.envs import GymnasiumBatchEnv, make_env
from torchrl_awr.recipe.factories import env_maker

from recipe_helpers import compose_config


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
    shown = compose_config(f"task={task}", "env.kwargs.include_cfrc_ext_in_observation=true")
    assert observation_size(env_maker(shown)()) > size


@pytest.mark.parametrize("task", ["hopper", "halfcheetah", "walker2d", "lunarlander"])
def test_other_presets_use_the_default_env(task):
    assert compose_config(f"task={task}").env.kwargs == {}


@pytest.mark.parametrize("keep_info", [False, True])
def test_time_limit_keeps_the_true_final_observation(keep_info):
    """("next", "observation") at a truncation is s_T, not the reset state."""
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


def _reference_envs(env_name: str, seed: int, count: int, **kwargs) -> list[gym.Env]:
    """Plain gymnasium copies seeded as ``set_seed(seed)`` seeds the batch: copy i with seed + i."""
    envs = [gym.make(env_name, **kwargs) for _ in range(count)]
    for i, env in enumerate(envs):
        env.reset(seed=seed + i)
    return envs


def _step_both(env, td, reference, actions):
    """Steps the batch and the reference copies with ``actions``; checks they agree."""
    td["action"] = actions
    out = env.step(td)["next"]
    for i, ref in enumerate(reference):
        obs, reward, terminated, truncated, info = ref.step(actions[i].numpy())
        torch.testing.assert_close(out["observation"][i], torch.as_tensor(obs, dtype=torch.float32))
        assert out["reward"][i].item() == pytest.approx(reward)
        assert out["terminated"][i].item() == terminated and out["truncated"][i].item() == truncated
        assert out["x_velocity"][i].item() == pytest.approx(info["x_velocity"])
    return out


def test_batch_env_steps_and_resets_as_plain_gymnasium():
    """Each copy is a gymnasium env: same observations, rewards, ends and info; only the copies
    TorchRL marks in ``"_reset"`` are reset."""
    env = GymnasiumBatchEnv("Hopper-v5", 2, env_kwargs={"max_episode_steps": 3}, keep_info=True)
    check_env_specs(env, seed=7)
    env.set_seed(7)
    reference = _reference_envs("Hopper-v5", 7, 2, max_episode_steps=3)
    td = env.reset()
    expected = np.stack([ref.reset()[0] for ref in reference])
    torch.testing.assert_close(td["observation"], torch.as_tensor(expected, dtype=torch.float32))
    assert td["x_velocity"].eq(0).all()  # reported by steps only: zeros at a reset
    actions = torch.tensor([[0.5, -0.2, 0.1], [-1.0, 1.0, 0.3]])
    for _ in range(2):
        td = _step_both(env, td, reference, actions)
    # Reset copy 0 only: it starts a new episode, copy 1 goes on to its time limit.
    reset = env.reset(TensorDict({"_reset": torch.tensor([[True], [False]])}, batch_size=[2]))
    start = torch.as_tensor(reference[0].reset()[0], dtype=torch.float32)
    torch.testing.assert_close(reset["observation"][0], start)
    assert not reset["done"].any()
    out = _step_both(env, reset, reference, actions)
    assert out["truncated"].squeeze(-1).tolist() == [False, True]
    env.close()


def test_batch_env_discrete_actions_are_one_hot():
    env = GymnasiumBatchEnv("LunarLander-v3", 2)
    assert env.action_spec.shape == (2, 4) and env.action_spec.dtype == torch.int64
    check_env_specs(env, seed=0)
    env.set_seed(3)
    reference = _reference_envs("LunarLander-v3", 3, 2)
    td = env.reset()
    for ref in reference:
        ref.reset()
    td["action"] = torch.nn.functional.one_hot(torch.tensor([2, 1]), 4)
    out = env.step(td)["next"]
    for i, (ref, action) in enumerate(zip(reference, (2, 1))):
        obs, reward, *_ = ref.step(action)
        torch.testing.assert_close(out["observation"][i], torch.as_tensor(obs, dtype=torch.float32))
        assert out["reward"][i].item() == pytest.approx(reward)
    env.close()


def test_batch_env_rejects_what_it_cannot_batch():
    with pytest.raises(ValueError, match="num_envs must be >= 1"):
        GymnasiumBatchEnv("Hopper-v5", 0)
    with pytest.raises(ValueError, match=r"Unknown gymnasium environment 'Hoper-v5'. Did you mean: Hopper-v5"):
        GymnasiumBatchEnv("Hoper-v5", 1)
    with pytest.raises(ValueError, match=r"Blackjack-v1: only Box observations are supported"):
        GymnasiumBatchEnv("Blackjack-v1", 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batch_env_on_cuda():
    env = make_env("Hopper-v5", num_envs=2, seed=0, device="cuda")
    rollout = env.rollout(5, break_when_any_done=False)
    env.close()
    assert rollout["next", "observation"].device.type == "cuda"
    assert rollout["next", "reward"].device.type == "cuda"


def test_known_warnings_about_gymnasiums_models_are_not_printed(capfd):
    from torchrl_awr.envs import _mujoco_warning

    make_env("HalfCheetah-v5", num_envs=2).close()  # its model sets the deprecated settotalmass
    _mujoco_warning("another warning")
    err = capfd.readouterr().err
    assert "settotalmass" not in err and "WARNING: another warning" in err
