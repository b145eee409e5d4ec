"""Evaluation videos: headless MP4s of the right size that change no result, and clear errors."""

from __future__ import annotations

import ctypes.util
import gc
import json
import os

import numpy as np
import pytest
import torch
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_awr import make_awr_actor, video
from torchrl_awr.envs import GymnasiumBatchEnv
from torchrl_awr.recipe import training
from torchrl_awr.recipe.factories import make_video
from torchrl_awr.video import EpisodeVideo, RenderError, check_video_packages, use_renderer

from recipe_helpers import compose_config, read_csv, run_command, run_module, run_recipe

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

# Small frames keep the software renderer quick.
VIDEO = ("eval.video=true", "eval.video_size=[64,48]")


def read_mp4(path) -> tuple[dict, np.ndarray]:
    """The video's metadata and its frames, ``[T, H, W, 3]`` uint8."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    return meta, np.stack([np.frombuffer(frame, np.uint8).reshape(height, width, 3) for frame in reader])


def test_videos_hold_frames_of_the_right_size_and_change_no_result(tmp_path):
    recorded = run_recipe(tmp_path / "video", *VIDEO)
    plain = run_recipe(tmp_path / "plain")
    videos = tmp_path / "video" / "videos"
    assert sorted(path.name for path in videos.iterdir()) == ["1024.mp4", "512.mp4"]  # eval.interval=2
    meta, frames = read_mp4(videos / "1024.mp4")
    assert meta["size"] == (64, 48) and frames.shape[1:] == (48, 64, 3)
    assert meta["fps"] == pytest.approx(125 / 4)  # Hopper's 125 steps/s, every 4th step: real time at ~30 fps
    assert len(frames) >= 3 and np.abs(frames[0].astype(int) - frames[-1]).mean() > 1  # the hopper moved
    assert [step for step, _ in read_csv(tmp_path / "video", "time/video")] == [512, 1024]
    # Recording runs on an env of its own: every number of the run is the one without it.
    for a, b in zip(recorded.history, plain.history, strict=True):
        assert {k: v for k, v in a.items() if not k.startswith("time/") and k != "wall_time"} == {
            k: v for k, v in b.items() if not k.startswith("time/") and k != "wall_time"
        }


def test_an_episode_is_recorded_at_every_skipped_step_and_its_ends():
    """A deterministic episode of a random actor: its first state, every ``frame_skip``-th step and
    its last state; the same episode at every recording."""
    use_renderer("egl")
    env = GymnasiumBatchEnv("Hopper-v5", 1, env_kwargs={"render_mode": "rgb_array", "width": 32, "height": 24})
    actor = make_awr_actor(11, env.action_spec_unbatched, hidden_sizes=(8,))
    recorder = EpisodeVideo(env, actor, "unused", fps=25, seed=3)
    assert recorder.frame_skip == 5 and recorder.fps == 25.0  # 125 / 5
    frames = recorder.record()
    env.set_seed(3)
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        length = env.rollout(1000, actor, break_when_any_done=True).shape[-1]
    assert frames.shape == (2 + (length - 1) // 5, 24, 32, 3) and frames.dtype == torch.uint8
    assert torch.equal(recorder.record(), frames)
    recorder.close()


def test_a_closed_recorder_leaves_the_next_ones_frames_alone():
    """Gymnasium's close left a renderer's GPU buffers to the garbage collector, which freed them
    in the next renderer's context: that one's frames froze."""

    def recorder() -> EpisodeVideo:
        made = make_video(compose_config(*VIDEO), None, "unused", 0)
        made.policy = make_awr_actor(11, made.env.action_spec_unbatched, hidden_sizes=(8,))
        return made

    first = recorder()
    first.record()
    first.close()
    second = recorder()
    before = second.record()
    del first
    gc.collect()
    after = second.record()
    second.close()
    assert (before[0] != before[-1]).any() and torch.equal(after, before)


def test_evaluate_records_a_video_of_a_run(tmp_path):
    run_recipe(tmp_path, "collector.total_frames=256", "eval.interval=1", "eval.video_size=[32,24]")
    result = run_module("torchrl_awr", "evaluate", str(tmp_path), "--episodes", "2", "--video", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    path = tmp_path / "videos" / "256_evaluate.mp4"
    assert json.loads(result.stdout)["video"] == str(path)
    assert read_mp4(path)[1].shape[1:] == (24, 32, 3)  # the run's eval.video_size


@pytest.mark.parametrize(
    "renderer",
    [
        "glfw",
        pytest.param(
            "osmesa",
            marks=pytest.mark.skipif(ctypes.util.find_library("OSMesa") is not None, reason="this machine has OSMesa"),
        ),
    ],
)
def test_a_machine_that_cannot_render_fails_at_start_up(tmp_path, renderer):
    """GLFW needs a display, OSMesa its library: without them the command stops before any
    training, in one line (gymnasium's half-made viewer is not left to print its own error)."""
    env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY", "MUJOCO_GL")}
    result = run_command(tmp_path, *VIDEO, f"eval.video_renderer={renderer}", f"output_dir={tmp_path / 'run'}", env=env)
    assert result.returncode == 2, result.stderr[-3000:]
    (error,) = result.stderr.splitlines()
    assert error.startswith(f"error: eval.video: Hopper-v5 cannot be rendered with MUJOCO_GL={renderer} (")
    assert "eval.video_renderer=egl" in error
    assert not (tmp_path / "run").exists()  # nothing left behind, not even a lock file
    assert not (tmp_path / "run" / "checkpoint.pt").exists() and "samples" not in result.stdout


def test_a_render_failure_is_one_render_error(monkeypatch):
    def broken(self):
        raise RuntimeError("no OpenGL")

    monkeypatch.setattr(GymnasiumBatchEnv, "render", broken)
    cfg = compose_config(*VIDEO)
    with pytest.raises(RenderError, match=r"Hopper-v5 cannot be rendered .*RuntimeError: no OpenGL"):
        make_video(cfg, None, "unused", 0)


def test_bad_video_settings_are_named_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "make_trainer", lambda *a: pytest.fail("built a trainer"))
    for overrides, message in (
        (["eval.interval=0"], r"eval.video=true records at each evaluation, and eval.interval=0 runs none"),
        (["eval.video_size=[63,48]"], r"eval.video_size=\[63, 48\] must be \[width, height\], two even numbers"),
        (["eval.video_fps=0"], r"eval.video_fps=0 must be > 0"),
        (["eval.video_renderer=opengl"], r"eval.video_renderer='opengl' is not valid; choose one of: egl, osmesa"),
    ):
        with pytest.raises(ValueError, match=message):
            run_recipe(tmp_path / "run", *VIDEO, *overrides)
    assert not (tmp_path / "run").exists()


def test_the_renderer_is_the_setting_then_mujoco_gl_then_egl(monkeypatch):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    assert use_renderer(None) == "egl" and os.environ["MUJOCO_GL"] == "egl"
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert use_renderer(None) == "osmesa"
    assert use_renderer("egl") == "egl" and os.environ["MUJOCO_GL"] == "egl"


def test_missing_video_packages_are_named(monkeypatch):
    real_find_spec = video.importlib.util.find_spec
    monkeypatch.setattr(
        video.importlib.util, "find_spec", lambda name, *a: None if name == "imageio_ffmpeg" else real_find_spec(name)
    )
    with pytest.raises(ImportError, match=r"Videos need imageio-ffmpeg: pip install -e '.\[video\]'"):
        check_video_packages()
    monkeypatch.setattr(video.importlib.metadata, "version", lambda name: "2.1.2")
    with pytest.raises(ImportError, match=r"imageio-ffmpeg, moviepy<2 \(moviepy 2.1.2 is installed\)"):
        check_video_packages(for_logger=True)
