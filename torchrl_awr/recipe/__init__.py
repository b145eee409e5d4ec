"""The application: everything that starts from a recipe config or a run directory.

The configs (``config/``, package data), their composition and validation against one table of
keys (:mod:`~torchrl_awr.recipe.compose`), the ``make_*`` factories
(:mod:`~torchrl_awr.recipe.factories`), the run directory (:mod:`~torchrl_awr.recipe.rundir`),
training from a config (:mod:`~torchrl_awr.recipe.training`), and what the commands do with a trained
run (:mod:`~torchrl_awr.recipe.trained`, ``reevaluate``, ``export``, ``dataset_makers``). The
library below it (:mod:`torchrl_awr`) takes objects and knows nothing of Hydra; the commands above
it (:mod:`torchrl_awr.commands`) add the command lines and the exit codes.

    from torchrl_awr.recipe import compose_config, make_trainer
    cfg = compose_config("task=hopper", "seed=3")
    trainer = make_trainer(cfg, run_dir, torch.device("cpu"))
"""

from torchrl_awr.recipe.compose import compose_config, validate_config
from torchrl_awr.recipe.factories import make_trainer
from torchrl_awr.recipe.rundir import RunDir
from torchrl_awr.recipe.trained import TrainedRun, load_run
from torchrl_awr.recipe.training import train

__all__ = ["RunDir", "TrainedRun", "compose_config", "load_run", "make_trainer", "train", "validate_config"]
