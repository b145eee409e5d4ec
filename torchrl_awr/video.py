"""Evaluation videos: one deterministic episode rendered off-screen, written as an MP4 and sent to
the TensorBoard or W&B logger.

MuJoCo renders through OpenGL. Without a display, EGL (a GPU's, or Mesa's software one on the
CPU) or OSMesa does it; :func:`use_renderer` sets MuJoCo's ``MUJOCO_GL`` for this process. The
MP4 is encoded by the ffmpeg that ``imageio-ffmpeg`` bundles; TensorBoard (as a GIF) and W&B
(as an MP4) encode their copies through moviepy 1.x. All of them are the ``video`` extra.
"""

from __future__ import annotations

import gc
import importlib.metadata
import importlib.util
import os
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
from tensordict.nn import TensorDictModuleBase
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.record.loggers import Logger

from torchrl_awr.envs import GymnasiumBatchEnv

RENDERERS = ("egl", "osmesa", "glfw")
VIDEO_EXTRA = "pip install -e '.[video]'"
VIDEO_KEY = "eval/video"
# The TorchRL loggers that take videos, by class name (importing them would import their packages).
VIDEO_LOGGERS = ("TensorboardLogger", "WandbLogger")
PARTIAL_VIDEO_NAME = "recording.mp4.tmp"  # the video being written, renamed to <samples>.mp4 when whole


class RenderError(RuntimeError):
    """The task cannot be rendered on this machine with the chosen renderer."""


def _collect_failed_viewer(err: BaseException) -> None:
    """gymnasium's ``OffScreenViewer`` whose GL context failed to start is left half made, and
    its ``__del__`` fails again when it is collected (Python prints that as "Exception ignored
    in ..."): the failed render's frames, which hold it, are cleared and it is collected here,
    that second failure dropped."""
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        traceback.clear_frames(err.__traceback__)
        gc.collect()
    finally:
        sys.unraisablehook = previous


def use_renderer(name: str | None) -> str:
    """Sets MuJoCo's renderer for this process (before its first frame): ``name``, else
    ``$MUJOCO_GL``, else EGL, which works headless. Returns the one chosen."""
    chosen = name or os.environ.get("MUJOCO_GL") or "egl"
    if chosen not in RENDERERS:
        raise ValueError(f"eval.video_renderer={chosen!r} is not valid; choose one of: {', '.join(RENDERERS)}.")
    os.environ["MUJOCO_GL"] = chosen
    return chosen


def check_video_packages(for_logger: bool = False) -> None:
    """The MP4 needs imageio-ffmpeg; a TensorBoard or W&B copy (``for_logger``) needs moviepy 1.x
    too (TensorBoard reads ``moviepy.editor``, which moviepy 2 removed)."""
    missing = [] if importlib.util.find_spec("imageio_ffmpeg") else ["imageio-ffmpeg"]
    if for_logger:
        if importlib.util.find_spec("moviepy") is None:
            missing.append("moviepy<2")
        elif int(importlib.metadata.version("moviepy").split(".")[0]) >= 2:
            missing.append(f"moviepy<2 (moviepy {importlib.metadata.version('moviepy')} is installed)")
    if missing:
        raise ImportError(f"Videos need {', '.join(missing)}: {VIDEO_EXTRA}")


def write_mp4(frames: torch.Tensor, path: Path, fps: float) -> Path:
    """``frames`` (``[T, H, W, 3]`` uint8, even ``H`` and ``W``) as an H.264 MP4 at ``path``,
    written beside it first (under one name, so a run can remove what a killed one left) and
    then renamed, so a killed run leaves no half video."""
    import imageio_ffmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(PARTIAL_VIDEO_NAME)
    height, width = frames.shape[1:3]
    writer = imageio_ffmpeg.write_frames(
        str(partial),
        (width, height),
        fps=fps,
        codec="libx264",
        macro_block_size=2,
        ffmpeg_log_level="error",
        output_params=["-f", "mp4"],
    )
    writer.send(None)
    for frame in frames.numpy():
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    os.replace(partial, path)
    return path


class EpisodeVideo:
    """Records one episode of ``policy`` (deterministic) on ``env``, a one-copy
    :class:`~torchrl_awr.envs.GymnasiumBatchEnv` made with ``render_mode="rgb_array"``, into
    ``directory/<samples>.mp4`` and, given a logger that takes videos (TensorBoard, W&B), as
    ``eval/video``.

    A frame is rendered every ``frame_skip = round(render_fps / fps)`` steps, so the video plays
    in real time at about ``fps`` frames per second. The episode runs on its own environment,
    seeded with ``seed`` at every recording, so recording changes neither the evaluations nor
    the training. A first frame is rendered here, so a machine that cannot render fails before
    any training (:class:`RenderError`).
    """

    def __init__(
        self,
        env: GymnasiumBatchEnv,
        policy: TensorDictModuleBase,
        directory: str | Path,
        *,
        fps: float = 30.0,
        max_episode_steps: int = 1000,
        seed: int = 0,
    ):
        if env.batch_size != torch.Size([1]):
            raise ValueError(f"EpisodeVideo: expected a one-copy env (batch_size [1]), got {env.batch_size}.")
        if fps <= 0 or max_episode_steps < 1:
            raise ValueError(
                f"EpisodeVideo: fps must be > 0 and max_episode_steps >= 1, got {fps} and {max_episode_steps}."
            )
        self.env = env
        self.policy = policy
        self.directory = Path(directory)
        self.max_episode_steps = max_episode_steps
        self.seed = seed
        simulated_fps = env.render_fps or fps
        self.frame_skip = max(1, round(simulated_fps / fps))
        self.fps = simulated_fps / self.frame_skip
        self.env.set_seed(seed)
        try:
            with warnings.catch_warnings():  # a renderer that fails warns first (GLFW); the error below says it
                warnings.simplefilter("ignore")
                self.frame_shape = tuple(self.env.render().shape[1:])
        except Exception as err:  # OpenGL's failures come as many types; each means "cannot render here"
            cause = f"{type(err).__name__}: {err}"
            _collect_failed_viewer(err)
            raise RenderError(
                f"eval.video: {env.env_name} cannot be rendered with MUJOCO_GL={os.environ.get('MUJOCO_GL')} "
                f"({cause}). Without a display use eval.video_renderer=egl (libEGL, e.g. "
                "Debian's libegl1) or osmesa (libOSMesa); glfw needs a display."
            ) from None

    @torch.no_grad()
    def record(self) -> torch.Tensor:
        """The episode's frames, ``[T, H, W, 3]`` uint8: its first state, every
        ``frame_skip``-th step and its last state."""
        self.env.set_seed(self.seed)
        tensordict = self.env.reset()
        frames = [self.env.render()[0]]
        steps = 0

        def keep_frame(env, _):
            nonlocal steps
            steps += 1
            if steps % self.frame_skip == 0:
                frames.append(env.render()[0])

        with set_exploration_type(ExplorationType.DETERMINISTIC):
            self.env.rollout(
                self.max_episode_steps,
                self.policy,
                auto_reset=False,
                tensordict=tensordict,
                break_when_any_done=True,
                callback=keep_frame,
            )
        frames.append(self.env.render()[0])
        return torch.stack(frames)

    def __call__(self, samples: int, logger: Logger | None = None) -> Path:
        """Records the episode as ``<samples>.mp4``, and in ``logger`` at step ``samples``."""
        frames = self.record()
        path = self.save(frames, str(samples))
        if type(logger).__name__ in VIDEO_LOGGERS:
            # moviepy 1.x starts pygame's display and audio when TensorBoard or W&B imports it.
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
            os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
            video = frames.permute(0, 3, 1, 2).unsqueeze(0)  # [1, T, C, H, W], as the loggers take it
            logger.log_video(VIDEO_KEY, video, step=samples, fps=self.fps)
        return path

    def save(self, frames: torch.Tensor, name: str) -> Path:
        """``frames`` as ``<directory>/<name>.mp4``, at this recorder's frame rate."""
        return write_mp4(frames, self.directory / f"{name}.mp4", self.fps)

    def close(self) -> None:
        self.env.close()
