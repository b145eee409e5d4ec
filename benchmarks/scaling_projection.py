"""Time per 1M samples against the number of Ray workers, projected from one measured run.

    python benchmarks/throughput.py --task hopper --collectors multi_sync ray --out results/perf/hopper_ray_vs_multi_sync.json
    python benchmarks/scaling_projection.py results/perf/hopper_ray_vs_multi_sync.json --gpu-learner-minutes 0.5

The model, from the ``ray`` entry of the throughput JSON:
- collection: each worker adds ``collect_samples_per_second_per_worker`` (measured with a core
  of its own), plus Ray's per-batch cost (the ``ray`` collect time per iteration above
  ``multi_sync``'s), paid once per iteration whatever the number of workers;
- learning: the learner's seconds per iteration (targets, critic and actor phases), which do not
  depend on the workers, since the trainer takes the same gradient steps per sample; either as
  measured (CPU) or ``--gpu-learner-minutes`` per 1M samples (an assumption for a GPU learner
  until one is measured);
- ``sync=true`` adds the two (the learner waits for collection, collection for the learner);
  ``sync=false`` overlaps them, so the slower one sets the pace.
Collection stops being the bottleneck at the worker count where it takes the learner's time.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

WORKERS = (1, 2, 4, 8, 16, 32, 64)


def project(measured: dict, learner_seconds_per_million: float, workers: int) -> dict[str, float]:
    """Seconds per 1M samples with ``workers`` remote collectors, synchronous and overlapped."""
    ray, multi = measured["by_collector"]["ray"], measured["by_collector"]["multi_sync"]
    frames_per_iteration = measured["frames"] / measured["iterations"]
    iterations = 1e6 / frames_per_iteration
    ray_cost = max(ray["collect_seconds_per_iteration"] - multi["collect_seconds_per_iteration"], 0.0)
    collect = 1e6 / (workers * ray["collect_samples_per_second_per_worker"]) + iterations * ray_cost
    return {"sync": collect + learner_seconds_per_million, "async": max(collect, learner_seconds_per_million)}


def crossover(measured: dict, learner_seconds_per_million: float) -> float:
    """Workers at which collection takes as long as learning (beyond it, learning is the bottleneck)."""
    rate = measured["by_collector"]["ray"]["collect_samples_per_second_per_worker"]
    return 1e6 / (rate * learner_seconds_per_million)


def table(measured: dict, gpu_learner_minutes: float) -> str:
    ray = measured["by_collector"]["ray"]
    frames_per_iteration = measured["frames"] / measured["iterations"]
    cpu_learner = ray["learn_seconds_per_iteration"] * 1e6 / frames_per_iteration
    learners = {"CPU learner (measured)": cpu_learner, "GPU learner (assumed)": gpu_learner_minutes * 60}
    lines = [
        "| workers | " + " | ".join(f"{name}, sync | {name}, async" for name in learners) + " |",
        "|---|" + "---|" * (2 * len(learners)),
    ]
    for workers in WORKERS:
        cells = []
        for learner in learners.values():
            times = project(measured, learner, workers)
            cells += [f"{times['sync'] / 60:.1f}", f"{times['async'] / 60:.1f}"]
        lines.append(f"| {workers} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Minutes per 1M samples. Collection stops being the bottleneck at about:")
    for name, learner in learners.items():
        lines.append(
            f"- {name}, {learner / 60:.1f} min per 1M of learning: {math.ceil(crossover(measured, learner))} workers"
        )
    return "\n".join(lines)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("measured", type=Path, help="a throughput.py JSON with --collectors multi_sync ray")
    parser.add_argument("--gpu-learner-minutes", type=float, default=0.5, help="assumed GPU learner min per 1M")
    args = parser.parse_args(argv)
    measured = json.loads(args.measured.read_text())
    if not {"ray", "multi_sync"} <= measured.get("by_collector", {}).keys():
        parser.error(f"{args.measured} has no ray and multi_sync measurements (--collectors multi_sync ray)")
    text = table(measured, args.gpu_learner_minutes)
    print(text)
    return text


if __name__ == "__main__":
    main()
