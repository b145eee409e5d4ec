"""The original AWR's published returns (Peng et al. 2019; ``../shared/awr_reference.md``), on
gym v2: what ``torchrl-awr report`` and the benchmarks set our runs beside."""

from __future__ import annotations

import statistics

# The original AWR's test returns (mean, sd over its published runs), from ../shared/awr_reference.md.
ORIGINAL = {
    "halfcheetah": {250_000: (1275, 544), 500_000: (2698, 403), 1_000_000: (3955, 349), 2_000_000: (5388, 378)},
    "hopper": {250_000: (492, 139), 500_000: (1120, 904), 1_000_000: (3326, 64), 2_000_000: (3440, 117)},
    "walker2d": {250_000: (273, 16), 500_000: (390, 55), 1_000_000: (1777, 927), 2_000_000: (4161, 364)},
    "ant": {250_000: (1260, 104), 500_000: (1388, 73), 1_000_000: (1238, 138), 2_000_000: (1275, 168)},
    "humanoid": {250_000: (532, 45), 500_000: (590, 32), 1_000_000: (668, 43), 2_000_000: (1545, 1446)},
    "lunarlander": {250_000: (-28, 62), 500_000: (140, 50), 1_000_000: (226, 6), 2_000_000: (224, 4)},
}
ORIGINAL_HOURS_PER_MILLION = {
    "halfcheetah": 0.76,
    "hopper": 0.86,
    "walker2d": 0.81,
    "ant": 1.00,
    "humanoid": 0.92,
    "lunarlander": 1.09,
}
# The original's test return of each of its runs at 1M / 2M / 5M samples (../shared/awr_reference.md).
ORIGINAL_RUNS = {
    "halfcheetah": {
        1_000_000: (3997, 3357, 4027, 4244, 4150),
        2_000_000: (5178, 4850, 5501, 5815, 5597),
        5_000_000: (7574, 7877, 7562, 7966, 7547),
    },
    "hopper": {
        1_000_000: (3263, 3407, 3343, 3290),
        2_000_000: (3310, 3372, 3535, 3543),
        5_000_000: (3519, 3500, 2399, 3654),
    },
    "walker2d": {
        1_000_000: (2643, 831, 1157, 1362, 2890),
        2_000_000: (4435, 3910, 3653, 4494, 4314),
        5_000_000: (5294, 4880, 4763, 5350, 4817),
    },
    "ant": {
        1_000_000: (1158, 1471, 1121, 1195, 1248),
        2_000_000: (1484, 1407, 1131, 1099, 1255),
        5_000_000: (2727, 2711, 2344, 2001, 2164),
    },
    "humanoid": {
        1_000_000: (732, 694, 630, 636, 649),
        2_000_000: (947, 4130, 872, 963, 813),
        5_000_000: (2917, 5543, 5299, 3403, 5341),
    },
    "lunarlander": {
        1_000_000: (228, 220, 224, 236, 224),
        2_000_000: (227, 227, 219, 225, 221),
        5_000_000: (239, 243, 234, 237, 235),
    },
}


def original_points(task: str) -> dict[int, tuple[float, float]]:
    """The original's mean ± sd at each budget it published: 250k-2M from ORIGINAL, 5M from its runs."""
    points = dict(ORIGINAL.get(task, {}))
    runs = ORIGINAL_RUNS.get(task, {}).get(5_000_000)
    if runs:
        points[5_000_000] = (statistics.mean(runs), statistics.stdev(runs))
    return points
