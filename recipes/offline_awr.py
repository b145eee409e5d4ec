"""Offline AWR: learn from a fixed dataset, evaluate on the task's environment, then go online.

    torchrl-awr dataset make --from policy outputs/hopper/<run> --stochastic --out data/hopper-medium
    python recipes/offline_awr.py task=hopper dataset=data/hopper-medium          # or a Minari dataset id
    python recipes/mujoco_awr.py task=hopper init_from=outputs/hopper-offline/<run> init_dataset=true

The same command as ``torchrl-awr train-offline``: the MuJoCo recipe (:mod:`torchrl_awr.recipe.training`:
the same factories, trainer, checkpoints, resume and exit codes) with ``config/offline.yaml``: a
dataset instead of a collector, and ``offline.iterations`` iterations of ``train.critic_steps``
critic and ``train.actor_steps`` actor updates, each after recomputing the targets over the whole
dataset. A new run without ``dataset=`` is refused.
"""

from torchrl_awr.commands.train import hydra_main, offline_entry

if __name__ == "__main__":
    hydra_main("offline", offline_entry("recipes/offline_awr.py"))()
