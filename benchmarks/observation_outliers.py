"""Standardised-observation outliers of a run: the diagnosis behind hiding Ant's contact forces.

    python benchmarks/observation_outliers.py --task ant --checkpoint runs/ant_debug/cfrc/checkpoint.pt \\
        --iterations 6 --override env.kwargs.include_cfrc_ext_in_observation=true

Loads the checkpoint (with its replay buffer, so it needs ``checkpoint.save_buffer=true``),
reports how many observation dimensions sit on the normaliser's std floor and the largest
|z| in the buffer, then trains ``--iterations`` more iterations and reports, for each new batch,
its largest |z| and the dimensions beyond ``--threshold`` before training on it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from torchrl_awr.recipe.compose import compose_config
from torchrl_awr.recipe.factories import make_trainer
from torchrl_awr.trainer import PhaseTimer


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=20.0)
    parser.add_argument("--override", action="append", default=[], help="Hydra override, repeatable")
    args = parser.parse_args(argv)
    cfg = compose_config(
        f"task={args.task}",
        "progress=false",
        "logger.backend=none",
        "train.compile=false",
        "eval.interval=0",
        "checkpoint.interval=0",
        *args.override,
    )
    trainer = make_trainer(cfg, args.checkpoint.parent, torch.device("cpu"))
    trainer.load(args.checkpoint, load_buffer=True)
    normalizer = trainer.normalizer
    key = trainer.loss_module.critic_network.in_keys[0]

    def z_scores(observation: torch.Tensor) -> torch.Tensor:
        return ((observation - normalizer.loc) / normalizer.scale).abs().reshape(-1, observation.shape[-1])

    floored = (normalizer.scale <= normalizer.min_std * 1.0001).sum().item()
    stored = z_scores(trainer.store.chronological().get(key))
    print(
        f"iteration {trainer.iteration}: {floored} of {normalizer.scale.numel()} dims on the std floor; "
        f"buffer max |z| {stored.max():.1f}"
    )
    try:
        for _, batch in zip(range(args.iterations), trainer.collector):
            z = z_scores(batch.get(key))
            beyond = (z > args.threshold).any(0).nonzero().flatten().tolist()
            print(
                f"iteration {trainer.iteration + 1}: batch max |z| {z.max():.1f}, rows beyond "
                f"{args.threshold:g}: {(z > args.threshold).any(-1).sum().item()}, dims: {beyond}"
            )
            try:
                trainer._iterate(batch, PhaseTimer())
            except FloatingPointError as err:
                print(f"  diverged: {err}")
                break
    finally:
        trainer.collector.shutdown()


if __name__ == "__main__":
    main()
