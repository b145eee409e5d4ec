"""Batched gymnasium environments for AWR, with input checks that fail early and clearly."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, OneHot, Unbounded
from torchrl.envs import EnvBase, RewardSum, TransformedEnv

from torchrl_awr.validation import check_settings

# gym.make kwargs whose bad values a MuJoCo task takes without a word and fails on later, or never:
# frame_skip=0 divides by zero, a negative one never steps the simulation, a fractional one fails
# at the first step; a NaN or negative reset_noise_scale fails at the first reset.
ENV_KWARG_RULES = {"frame_skip": "int >= 1", "reset_noise_scale": ">= 0"}


def check_env_name(env_name: str) -> gym.envs.registration.EnvSpec:
    """The gymnasium spec of ``env_name``, or a ValueError naming close, valid ids.

    A user's own task is named as gymnasium names it, ``module:EnvId-v0``: the module, imported
    here and by ``gym.make`` in every worker process, registers it."""
    module, _, env_id = env_name.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ValueError(
                f"{env_name!r}: the module {module!r}, which should register {env_id}, cannot be imported ({err})."
            ) from None
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown gymnasium environment {env_name!r}.{hint}")
    spec = gym.spec(env_id)
    entry = str(spec.entry_point)
    if "mujoco" in entry and importlib.util.find_spec("mujoco") is None:
        raise ImportError(f"{env_name} needs MuJoCo, which is not installed: pip install 'gymnasium[mujoco]'.")
    if "box2d" in entry and importlib.util.find_spec("Box2D") is None:
        raise ImportError(f"{env_name} needs Box2D, which is not installed: pip install 'gymnasium[box2d]'.")
    return spec


def check_env_kwargs(env_kwargs: dict) -> None:
    """The kwargs of :data:`ENV_KWARG_RULES` obey their rules (named ``env.kwargs.<key>``)."""
    rules = {key: rule for key, rule in ENV_KWARG_RULES.items() if key in env_kwargs}
    check_settings(env_kwargs, rules, "env kwargs", names={key: f"env.kwargs.{key}" for key in rules})


def probe_env_kwargs(env_name: str, env_kwargs: dict) -> None:
    """Makes and resets one copy of the task with ``env_kwargs`` in this process, so that what
    ``gym.make`` or the task refuse is one ``ValueError`` here rather than an error in each
    collector worker."""
    check_env_name(env_name)
    check_env_kwargs(env_kwargs)
    quiet_known_model_warnings()
    try:
        env = gym.make(env_name, **env_kwargs)
        try:
            env.reset(seed=0)
        finally:
            env.close()
    except (TypeError, ValueError, AssertionError, ArithmeticError) as err:
        raise ValueError(f"{env_name} does not accept the env kwargs {env_kwargs}: {err}") from err


def is_mujoco(env_name: str) -> bool:
    """Whether the task runs on MuJoCo (and renders through OpenGL, at a size of our choice)."""
    return "mujoco" in str(check_env_name(env_name).entry_point)


def _box_spec(space: gym.spaces.Box, num_envs: int, device) -> Bounded | Unbounded:
    """A float32 spec for ``num_envs`` stacked copies of ``space``, bounded where it is."""
    shape = (num_envs, *space.shape)
    if np.isfinite(space.low).all() and np.isfinite(space.high).all():
        low = torch.as_tensor(space.low, dtype=torch.float32).expand(shape)
        high = torch.as_tensor(space.high, dtype=torch.float32).expand(shape)
        return Bounded(low, high, shape, dtype=torch.float32, device=device)
    return Unbounded(shape, dtype=torch.float32, device=device)


def _numeric_entries(info: dict) -> dict[str, tuple[int, ...]]:
    """The shapes of the numeric entries of a gymnasium ``info`` dict."""
    shapes = {}
    for key, value in info.items():
        array = np.asarray(value)
        if array.dtype.kind in "biuf":
            shapes[key] = array.shape
    return shapes


class GymnasiumBatchEnv(EnvBase):
    """``num_envs`` copies of a gymnasium task as one TorchRL env of batch size ``[num_envs]``.

    The copies are stepped in turn and each is reset only when TorchRL asks for it (its entry
    of the ``"_reset"`` mask), so ``("next", "observation")`` is always the state the step
    reached: the true s_T at a time limit, which truncations bootstrap from. ``GymWrapper``
    over a gymnasium vector env gets the same data by reading the autoreset's final
    observations back out of ``info`` and swapping them in on every step, which cost a quarter
    of the collection time on Hopper. Observations and rewards are float32; discrete actions
    are one-hot, as ``GymEnv``'s. The tasks' numeric ``info`` entries (``x_velocity``, reward
    terms, ...) are written beside the observation when ``keep_info`` (zeros where a reset or
    step does not report one). ``set_seed(s)`` resets copy ``i`` with seed ``s + i``. MuJoCo's
    warnings about gymnasium's own model files are not printed (:data:`KNOWN_MODEL_WARNINGS`).
    """

    def __init__(
        self,
        env_name: str,
        num_envs: int = 1,
        *,
        env_kwargs: dict | None = None,
        keep_info: bool = False,
        device: torch.device | str = "cpu",
    ):
        if num_envs < 1:
            raise ValueError(f"GymnasiumBatchEnv: num_envs must be >= 1, got {num_envs}.")
        check_env_name(env_name)
        quiet_known_model_warnings()
        super().__init__(device=device, batch_size=torch.Size([num_envs]))
        env_kwargs = dict(env_kwargs or {})
        check_env_kwargs(env_kwargs)
        try:
            self._envs = [gym.make(env_name, **env_kwargs) for _ in range(num_envs)]
        except TypeError as err:
            raise ValueError(f"{env_name} does not accept the env kwargs {env_kwargs}: {err}") from err
        self.env_name = env_name
        self._make_specs(self._envs[0], keep_info)
        self._observations = np.zeros(self.observation_spec["observation"].shape, np.float32)
        self._seeds: list[int | None] = [None] * num_envs

    def _make_specs(self, env: gym.Env, keep_info: bool) -> None:
        num_envs, device = self.batch_size[0], self.device
        if not isinstance(env.observation_space, gym.spaces.Box):
            raise ValueError(f"{self.env_name}: only Box observations are supported, got {env.observation_space}.")
        self._info_shapes: dict[str, tuple[int, ...]] = {}
        if keep_info:
            probe = gym.make(env.spec)
            _, reset_info = probe.reset(seed=0)
            step_info = probe.step(probe.action_space.sample())[-1]
            probe.close()
            self._info_shapes = {**_numeric_entries(reset_info), **_numeric_entries(step_info)}
        self.observation_spec = Composite(
            observation=_box_spec(env.observation_space, num_envs, device),
            **{
                key: Unbounded((num_envs, *shape), dtype=torch.float32, device=device)
                for key, shape in self._info_shapes.items()
            },
            shape=(num_envs,),
            device=device,
        )
        action_space = env.action_space
        if isinstance(action_space, gym.spaces.Box):
            self.action_spec = _box_spec(action_space, num_envs, device)
        elif isinstance(action_space, gym.spaces.Discrete):
            self.action_spec = OneHot(
                int(action_space.n), (num_envs, int(action_space.n)), device=device, dtype=torch.int64
            )
        else:
            raise ValueError(f"{self.env_name}: only Box and Discrete actions are supported, got {action_space}.")
        self.reward_spec = Unbounded((num_envs, 1), dtype=torch.float32, device=device)
        flag = Categorical(2, (num_envs, 1), dtype=torch.bool, device=device)
        self.done_spec = Composite(
            done=flag, terminated=flag.clone(), truncated=flag.clone(), shape=(num_envs,), device=device
        )

    def _set_seed(self, seed: int | None) -> None:
        if seed is not None:
            self._seeds = [seed + i for i in range(self.batch_size[0])]
            self._reset(None)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        mask = None if tensordict is None else tensordict.get("_reset", None)
        which = range(len(self._envs)) if mask is None else mask.reshape(-1).nonzero().reshape(-1).tolist()
        # A copy: the previous step's output shares the current array.
        observations = self._observations.copy()
        infos = self._new_info_arrays()
        for i in which:
            observations[i], info = self._envs[i].reset(seed=self._seeds[i])
            self._seeds[i] = None
            self._write_info(infos, info, i)
        self._observations = observations
        flags = {key: torch.zeros(self.done_spec[key].shape, dtype=torch.bool) for key in self.done_keys}
        return self._output(observations, infos, **flags)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get(self.action_key)
        if isinstance(self.action_spec, OneHot):
            action = action.argmax(-1)
        actions = action.cpu().numpy()
        num_envs = len(self._envs)
        observations = np.empty_like(self._observations)
        rewards = np.empty(num_envs, np.float32)
        terminated = np.empty(num_envs, bool)
        truncated = np.empty(num_envs, bool)
        infos = self._new_info_arrays()
        for i, env in enumerate(self._envs):
            observations[i], rewards[i], terminated[i], truncated[i], info = env.step(actions[i])
            self._write_info(infos, info, i)
        self._observations = observations
        terminated = torch.from_numpy(terminated).unsqueeze(-1)
        truncated = torch.from_numpy(truncated).unsqueeze(-1)
        return self._output(
            observations,
            infos,
            reward=torch.from_numpy(rewards).unsqueeze(-1),
            done=terminated | truncated,
            terminated=terminated,
            truncated=truncated,
        )

    def _new_info_arrays(self) -> dict[str, np.ndarray]:
        num_envs = len(self._envs)
        return {key: np.zeros((num_envs, *shape), np.float32) for key, shape in self._info_shapes.items()}

    @staticmethod
    def _write_info(arrays: dict[str, np.ndarray], info: dict, index: int) -> None:
        for key, array in arrays.items():
            if key in info:
                array[index] = info[key]

    def _output(self, observations: np.ndarray, infos: dict[str, np.ndarray], **entries) -> TensorDictBase:
        arrays = {"observation": observations, **infos}
        tensors = {key: torch.from_numpy(value) for key, value in arrays.items()}
        return TensorDict({**tensors, **entries}, batch_size=self.batch_size, device=self.device)

    @property
    def render_fps(self) -> float | None:
        """Simulated steps per second of the task (gymnasium's ``render_fps``), if it says."""
        return self._envs[0].metadata.get("render_fps")

    def render(self) -> torch.Tensor:
        """Each copy's current frame, ``[num_envs, height, width, 3]`` uint8; the copies must be
        made with ``env_kwargs={"render_mode": "rgb_array", ...}``."""
        return torch.from_numpy(np.stack([env.render() for env in self._envs]))

    def close(self, *, raise_if_closed: bool = True) -> None:
        for env in self._envs:
            _free_mujoco_render_context(env)
            env.close()
        super().close(raise_if_closed=raise_if_closed)


def _free_mujoco_render_context(env: gym.Env) -> None:
    """Frees a MuJoCo renderer's GPU buffers while its own OpenGL context is current. Gymnasium's
    ``close`` frees only the context; the buffers were freed later by the garbage collector, in
    whatever context was current then, which deleted another renderer's buffers (its frames froze)."""
    viewer = getattr(getattr(env.unwrapped, "mujoco_renderer", None), "viewer", None)
    if viewer is not None and hasattr(viewer, "make_context_current"):
        viewer.make_context_current()
        viewer.con.free()


# MuJoCo warnings about gymnasium's own model files, which only gymnasium can fix.
KNOWN_MODEL_WARNINGS = ("compiler attribute 'settotalmass' is deprecated",)


def _mujoco_warning(message: str) -> None:
    """MuJoCo's warnings as MuJoCo prints them, but for the known ones about gymnasium's models
    (HalfCheetah's ``settotalmass``), printed once per env copy otherwise."""
    if not message.startswith(KNOWN_MODEL_WARNINGS):
        sys.stderr.write(f"WARNING: {message}\n")


def quiet_known_model_warnings() -> None:
    """Routes MuJoCo's warnings through :func:`_mujoco_warning` in this process."""
    if importlib.util.find_spec("mujoco") is not None:
        import mujoco

        mujoco.set_mju_user_warning(_mujoco_warning)


def make_env(
    env_name: str,
    *,
    num_envs: int = 1,
    seed: int | None = None,
    device: torch.device | str = "cpu",
    env_kwargs: dict | None = None,
    keep_info: bool = False,
) -> TransformedEnv:
    """``num_envs`` copies of a gymnasium task stepped together (:class:`GymnasiumBatchEnv`),
    with ``episode_reward`` tracking each copy's running return.

    ``env_kwargs`` go to ``gym.make`` (e.g. ``{"include_cfrc_ext_in_observation": False}`` for
    Ant-v5). The tasks' per-step ``info`` entries are dropped unless ``keep_info``.
    """
    env = TransformedEnv(
        GymnasiumBatchEnv(env_name, num_envs, env_kwargs=env_kwargs, keep_info=keep_info, device=device),
        RewardSum(),
        auto_unwrap=False,
    )
    if seed is not None:
        env.set_seed(seed)
    return env


def max_episode_steps(env_name: str, default: int = 1000) -> int:
    """The task's time limit from its gymnasium spec."""
    return check_env_name(env_name).max_episode_steps or default
