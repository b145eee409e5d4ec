"""AWR must clearly learn a small task: a broken loss, sign or target fails this."""
from recipe_helpers import read_csv, run_recipe

# A uniformly random policy scores about 5-10 on InvertedPendulum-v5 (1000 is the maximum).
RANDOM_POLICY_RETURN = 10.0


def test_inverted_pendulum_learns(tmp_path):
    run_recipe(
        tmp_path,
        "task=inverted_pendulum",
        "seed=0",
        "collector.total_frames=15360",
        "collector.frames_per_batch=1024",
        "env.num_envs=8",
        "buffer.size=50000",
        "train.critic_steps=100",
        "train.actor_steps=500",
        "train.batch_size=256",
        "train.compile=false",
        "optim.name=adam",
        "optim.actor_lr=1e-3",
        "optim.critic_lr=1e-3",
        "eval.interval=5",
        "eval.episodes=8",
        "eval.num_envs=8",
        "checkpoint.interval=0",
    )
    returns = [value for _, value in read_csv(tmp_path, "eval/return_mean")]
    assert returns[-1] >= 500, returns
    assert returns[-1] > 20 * RANDOM_POLICY_RETURN
