"""AWR must clearly learn a small task: a broken loss, sign or target fails this."""

from omegaconf import OmegaConf

from recipe_helpers import read_csv, run_command, run_recipe

# A uniformly random policy scores about 5-10 on InvertedPendulum-v5 (1000 is the maximum).
RANDOM_POLICY_RETURN = 10.0
SEEDS = (0, 1, 2)


def train_inverted_pendulum(run_dir, seed: int) -> tuple[list[float], list[float]]:
    """15 iterations of 1024 samples; returns the evaluation and training returns."""
    run_recipe(
        run_dir,
        "task=inverted_pendulum",
        f"seed={seed}",
        "collector.total_frames=15360",
        "collector.frames_per_batch=1024",
        "env.num_envs=8",
        "buffer.size=50000",
        "train.critic_steps=100",
        "train.actor_steps=500",
        "train.batch_size=256",
        "optim.name=adam",
        "optim.actor_lr=1e-3",
        "optim.critic_lr=1e-3",
        "eval.interval=5",
        "eval.episodes=8",
        "eval.num_envs=8",
        "checkpoint.interval=0",
    )
    evaluations = [value for _, value in read_csv(run_dir, "eval/return_mean")]
    training = [value for _, value in read_csv(run_dir, "train/return_mean")]
    return evaluations, training


def test_inverted_pendulum_learns(tmp_path):
    """Every seed learns; at least one solves the task within 15k samples.

    Three seeds because one short run is chaotic: a rounding-level change of the arithmetic
    can move a seed from solving the task (1000) at 10k samples to still climbing (~100) at 15k.
    """
    finals = []
    for seed in SEEDS:
        evaluations, training = train_inverted_pendulum(tmp_path / f"seed{seed}", seed)
        assert len(training) >= 3 and len(evaluations) == 3
        recent_training = sum(training[-3:]) / 3
        assert recent_training >= 3 * RANDOM_POLICY_RETURN, (seed, training)
        assert recent_training >= 3 * training[0], (seed, training)
        assert evaluations[-1] >= 4 * RANDOM_POLICY_RETURN, (seed, evaluations)
        finals.append(evaluations[-1])
    assert max(finals) >= 500, finals


def test_the_modern_preset_learns_inverted_pendulum(tmp_path):
    """``preset=modern`` as a user runs it, at its own settings but for a short budget: 10
    iterations of 2048 samples."""
    run_dir = tmp_path / "run"
    result = run_command(
        tmp_path,
        "task=inverted_pendulum",
        "preset=modern",
        "seed=0",
        "collector.total_frames=20480",
        "eval.interval=5",
        "eval.episodes=8",
        "eval.num_envs=8",
        "checkpoint.interval=0",
        "progress=false",
        f"output_dir={run_dir}",
        small=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    saved = OmegaConf.load(run_dir / "config.yaml")
    assert (saved.optim.name, saved.loss.beta) == ("adam", 0.4)  # the preset's, not the faithful one's
    assert saved.preset_name == "modern"  # torchrl-awr report keeps its runs apart
    evaluations = [value for _, value in read_csv(run_dir, "eval/return_mean")]
    assert len(evaluations) == 2 and evaluations[-1] >= 500, evaluations
