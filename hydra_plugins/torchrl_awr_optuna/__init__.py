"""torchrl-awr's Optuna sweeper for Hydra (``hydra/sweeper=awr_optuna``; the ``tune`` extra)."""
