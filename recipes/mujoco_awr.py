"""Advantage-Weighted Regression on MuJoCo, as a TorchRL-style script for a source checkout.

    python recipes/mujoco_awr.py                                  # HalfCheetah-v5, 1M samples
    python recipes/mujoco_awr.py task=hopper seed=3 collector.total_frames=2_000_000
    python recipes/mujoco_awr.py resume=outputs/hopper/<run> collector.total_frames=2_000_000

The same command as ``torchrl-awr train`` (installed with the package): the run, its Hydra
configs (``torchrl_awr/recipe/config``), overrides, ``-m`` multirun, ``--help`` and exit codes are
:mod:`torchrl_awr.commands.train`'s.
"""

from torchrl_awr.commands.train import main

if __name__ == "__main__":
    main()
