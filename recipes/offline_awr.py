"""Offline AWR: learn from a fixed dataset, evaluate on the task's environment, then go online.

    python -m torchrl_awr.datasets make --from policy outputs/hopper/<run> --stochastic --out data/hopper-medium
    python recipes/offline_awr.py task=hopper dataset=data/hopper-medium          # or a Minari dataset id
    python recipes/mujoco_awr.py task=hopper init_from=outputs/hopper-offline/<run> init_dataset=true

This is the MuJoCo recipe (``recipes/mujoco_awr.py``: the same factories, trainer, checkpoints,
resume and exit codes) with ``config/offline.yaml``: a dataset instead of a collector, and
``offline.iterations`` iterations of ``train.critic_steps`` critic and ``train.actor_steps``
actor updates, each after recomputing the targets over the whole dataset.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from torchrl_awr.cli_errors import config_errors_exit_2
from torchrl_awr.runs import exit_bad_input

from mujoco_awr import entry


@config_errors_exit_2
@hydra.main(config_path="config", config_name="offline", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if not cfg.dataset and not cfg.resume:
        exit_bad_input("recipes/offline_awr.py learns from a dataset: set dataset=<directory or Minari id>.")
    entry(cfg)


if __name__ == "__main__":
    main()
