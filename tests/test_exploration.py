"""ActionStdSchedule: the annealed std of the fixed-std Gaussian actor, alone and in training."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import OneHot

from torchrl_awr import ActionStdSchedule, make_awr_actor
from torchrl_awr.models import GaussianHead, gaussian_head
from torchrl_awr.recipe import compose

from conftest import OBS_DIM, box_spec
from recipe_helpers import compose_config, read_csv, run_recipe
from test_trainer import build

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


def actor(**kwargs):
    # Half-ranges (1, 2): the scale is (std, 2 * std).
    return make_awr_actor(OBS_DIM, box_spec(low=(-1.0, 0.0), high=(1.0, 4.0)), hidden_sizes=(8,), **kwargs)


def test_std_moves_linearly_then_holds():
    schedule = ActionStdSchedule(actor(action_std=0.6), std_init=0.6, std_end=0.2, annealing_frames=1000)
    expected = {0: 0.6, 250: 0.5, 500: 0.4, 1000: 0.2, 5000: 0.2}
    assert {frames: schedule.std_at(frames) for frames in expected} == pytest.approx(expected)
    rising = ActionStdSchedule(actor(), std_init=0.2, std_end=0.4, annealing_frames=100)
    assert rising.std_at(50) == pytest.approx(0.3)


def test_a_late_start_holds_the_initial_std_first():
    schedule = ActionStdSchedule(actor(), std_init=0.4, std_end=0.2, annealing_frames=500, start_frames=500)
    expected = {0: 0.4, 500: 0.4, 750: 0.3, 1000: 0.2, 5000: 0.2}
    assert {frames: schedule.std_at(frames) for frames in expected} == pytest.approx(expected)


def test_step_sets_the_actors_scale():
    policy = actor(action_std=0.6)
    schedule = ActionStdSchedule(policy, std_init=0.6, std_end=0.2, annealing_frames=1000)
    assert schedule.step(500) == pytest.approx(0.4)
    out = policy(TensorDict({"observation": torch.randn(5, OBS_DIM)}, [5]))
    torch.testing.assert_close(out["scale"], torch.tensor([0.4, 0.8]).expand(5, 2))
    # The std lives in the head's buffer, so a checkpoint of the actor carries it.
    torch.testing.assert_close(policy.state_dict()["module.0.module.1.log_std"].exp(), torch.full((2,), 0.4))


def test_bad_actors_and_numbers_are_named():
    with pytest.raises(TypeError, match="fixed-std 'normal' actor"):
        ActionStdSchedule(
            make_awr_actor(OBS_DIM, OneHot(3), distribution="categorical"),
            std_init=0.6,
            std_end=0.2,
            annealing_frames=10,
        )
    with pytest.raises(ValueError, match="learn_std=True"):
        ActionStdSchedule(actor(learn_std=True), std_init=0.6, std_end=0.2, annealing_frames=10)
    with pytest.raises(ValueError, match=r"std_end=0.0 \(must be > 0\), annealing_frames=0 \(must be > 0\)"):
        ActionStdSchedule(actor(), std_init=0.6, std_end=0.0, annealing_frames=0)
    with pytest.raises(ValueError, match=r"start_frames=-1 \(must be >= 0\)"):
        ActionStdSchedule(actor(), std_init=0.6, std_end=0.2, annealing_frames=10, start_frames=-1)
    head = gaussian_head(actor(learn_std=True))
    with pytest.raises(ValueError, match="learned"):
        head.set_std(0.3)
    with pytest.raises(ValueError, match="must be > 0"):
        GaussianHead(torch.zeros(1), torch.ones(1), 0.4, False).set_std(-1.0)


@pytest.mark.parametrize("compile_updates", [False, True])
def test_trainer_collects_each_batch_with_its_iterations_std(compile_updates):
    """Iteration k's batch is collected with the std after k-1 batches; the log has the next one."""
    trainer = build(total_frames=256, compile=compile_updates)  # 4 batches of 64
    actor_network = trainer.loss_module.actor_network
    gaussian_head(actor_network).set_std(1.0)  # the schedule sets its start itself
    trainer.std_schedule = ActionStdSchedule(actor_network, std_init=0.6, std_end=0.2, annealing_frames=256)
    try:
        history = trainer.train()
    finally:
        trainer.collector.shutdown()
    assert [m["action_std"] for m in history] == pytest.approx([0.5, 0.4, 0.3, 0.2])
    # InvertedPendulum's actions lie in [-3, 3]: scale = 3 * std. The buffer is [time, 2 envs].
    per_batch = trainer.replay_buffer.storage._storage["scale"][..., 0].view(4, 32, 2)
    for got, std in zip(per_batch, (0.6, 0.5, 0.4, 0.3)):
        torch.testing.assert_close(got, torch.full_like(got, 3 * std))
    assert all(torch.isfinite(torch.tensor(m["loss_actor"])) for m in history)


def test_recipe_anneals_the_std_in_worker_processes(tmp_path):
    """Two synchronous collector processes sample with the trainer's current std."""
    trainer = run_recipe(
        tmp_path / "run",
        "collector.type=multi_sync",
        "collector.num_workers=2",
        "env.num_envs=2",
        "model.action_std=0.6",
        "model.action_std_end=0.2",
        "model.action_std_anneal_frames=768",
        "model.action_std_anneal_start=256",
    )
    # Hopper's actions lie in [-1, 1]: scale = std. Four batches of 256, [time, 4 envs] each;
    # the std holds 0.6 for the first 256 samples, then falls by 0.4 / 3 per batch.
    scale = trainer.replay_buffer.storage._storage["scale"][..., 0]
    for batch, std in enumerate((0.6, 0.6, 0.6 - 0.4 / 3, 0.6 - 0.8 / 3)):
        torch.testing.assert_close(scale[64 * batch : 64 * (batch + 1)], torch.full((64, 4), std))
    logged = [value for _, value in read_csv(tmp_path / "run", "action_std")]
    assert logged == pytest.approx([0.6, 0.6 - 0.4 / 3, 0.6 - 0.8 / 3, 0.2])


def test_recipe_rejects_a_schedule_it_cannot_apply():
    for overrides, message in (
        (["model.action_std_end=0.2", "model.learn_std=true"], "learn_std=True"),
        (["task=halfcheetah", "model.learn_std=true"], r"Add model.action_std_end=null"),
        (["task=lunarlander", "model.action_std_end=0.2"], "distribution=categorical"),
        (["model.action_std_end=0.0"], r"model.action_std_end=0.0"),
        (["model.action_std_end=0.2", "model.action_std_anneal_frames=0"], "action_std_anneal_frames=0"),
        (
            ["model.action_std_end=0.2", "model.action_std_anneal_start=-5"],
            r"model.action_std_anneal_start=-5 \(must be >= 0\)",
        ),
    ):
        with pytest.raises(ValueError, match=message):
            compose.validate_config(compose_config(*overrides))
