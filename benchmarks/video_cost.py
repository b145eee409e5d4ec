"""What an evaluation video costs (``eval.video=true``): time per rendered frame, and per video
of a whole episode.

    python benchmarks/video_cost.py                                  # Hopper and HalfCheetah, 320x240, EGL
    python benchmarks/video_cost.py --tasks ant --size 640 480 --renderer osmesa --frames 50

For each task preset: the median time of one ``render()`` of the recorder's environment (after a
random step each, so every frame is new), the frames a video of a full episode holds at
``eval.video_fps`` (the first state, every ``frame_skip``-th step, the last state) and so the
rendering time that video adds to each evaluation (stepping the episode comes on top).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from torchrl_awr.envs import max_episode_steps
from torchrl_awr.recipe.compose import compose_config
from torchrl_awr.recipe.factories import make_video


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["hopper", "halfcheetah"])
    parser.add_argument("--size", nargs=2, type=int, default=[320, 240], metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--renderer", default="egl", help="eval.video_renderer: egl | osmesa | glfw")
    parser.add_argument("--frames", type=int, default=100, help="renders timed per task")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{args.size[0]}x{args.size[1]} frames, MUJOCO_GL={args.renderer}")
    print("| task | ms per frame | frame_skip | frames per full episode | s per video |")
    print("|---|---|---|---|---|")
    for task in args.tasks:
        cfg = compose_config(
            f"task={task}", f"eval.video_size=[{args.size[0]},{args.size[1]}]", f"eval.video_renderer={args.renderer}"
        )
        recorder = make_video(cfg, None, "unused", 0)
        env = recorder.env
        env.reset()
        times = []
        for _ in range(args.frames):
            env.rand_step()
            tic = time.perf_counter()
            env.render()
            times.append(time.perf_counter() - tic)
        recorder.close()
        ms = statistics.median(times) * 1e3
        frames = 2 + (max_episode_steps(cfg.env.name) - 1) // recorder.frame_skip
        print(f"| {task} | {ms:.1f} | {recorder.frame_skip} | {frames} | {frames * ms / 1e3:.1f} |")


if __name__ == "__main__":
    main()
