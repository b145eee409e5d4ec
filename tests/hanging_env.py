"""The MuJoCo recipe with one more gymnasium task, as a user with their own environment runs it:
``HangingPendulum-v0``, InvertedPendulum that never returns from its ``HANG_AT_STEP``-th step
(counted in each process; 0: never hangs), that dies as a worker process makes it
(``DIE_IN_WORKER=1``), or that a worker process takes two minutes to make, once it has added a
file named by its pid to the folder ``SLOW_IN_WORKER`` names, for the watchdog's and Ctrl-C's tests.

    python tests/hanging_env.py env.name=HangingPendulum-v0 [recipe overrides...]

The task is registered when this file is imported, so the collector's worker processes (which
import the main script again) know it too.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import gymnasium as gym
from gymnasium.envs.mujoco.inverted_pendulum_v5 import InvertedPendulumEnv

HANG_AT_STEP = int(os.environ.get("HANG_AT_STEP", "0"))
DIE_IN_WORKER = os.environ.get("DIE_IN_WORKER") == "1"
SLOW_IN_WORKER = os.environ.get("SLOW_IN_WORKER")


class HangingPendulum(InvertedPendulumEnv):
    steps = 0

    def __init__(self, **kwargs):
        in_worker = multiprocessing.parent_process() is not None
        if DIE_IN_WORKER and in_worker:
            os._exit(1)
        if SLOW_IN_WORKER and in_worker:
            (Path(SLOW_IN_WORKER) / str(os.getpid())).touch()
            time.sleep(120)
        super().__init__(**kwargs)

    def step(self, action):
        HangingPendulum.steps += 1
        if HangingPendulum.steps == HANG_AT_STEP:
            while True:
                time.sleep(3600)
        return super().step(action)


gym.register("HangingPendulum-v0", entry_point=HangingPendulum, max_episode_steps=1000)

if __name__ == "__main__":
    from torchrl_awr.commands.train import entry, hydra_main

    hydra_main("config", entry)()
