"""The learner on every available device, the collection always on the CPU. The CUDA cases run
where a GPU is (``benchmarks/gpu_check.sh``) and skip cleanly elsewhere."""

from __future__ import annotations

import pytest
import torch

from torchrl_awr.recipe.factories import module_device

from conftest import CUDA, DEVICES
from recipe_helpers import read_csv, run_recipe

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

# Two worker processes, so the weights travel from the learner to the workers' CPU copies.
WORKERS = ("collector.type=multi_sync", "collector.num_workers=2", "env.num_envs=2", "collector.total_frames=768")


@pytest.mark.parametrize("device", DEVICES)
def test_the_recipe_learns_on_the_device_and_collects_on_the_cpu(tmp_path, probed, device):
    # Compiled where it is the point (CUDA); the CPU's compiled path has the trainer's tests.
    trainer = run_recipe(tmp_path, f"device={device}", *WORKERS, "eval.interval=3", f"train.compile={device == 'cuda'}")
    assert {p.device.type for p in trainer.loss_module.parameters()} == {device}
    assert trainer.store.chronological()["observation"].device.type == device
    assert list(trainer.collector.policy_device) == [torch.device("cpu")] * 2  # workers hold CPU copies
    # Every batch came from the learner's weights of its iteration (copied to the workers' CPU actor).
    assert len(probed.gaps) == 3 and max(probed.gaps) < 1e-5, probed.gaps
    assert min(probed.stale_gaps[1:]) > 1e-3, probed.stale_gaps
    assert [step for step, _ in read_csv(tmp_path, "eval/return_mean")] == [768]


@CUDA
def test_cpu_and_cuda_agree_on_the_first_iterations(tmp_path):
    """The same seed: the same first batch, then updates equal up to float rounding."""
    runs = {
        device: run_recipe(tmp_path / device, f"device={device}", "collector.total_frames=512", "eval.interval=0")
        for device in ("cpu", "cuda")
    }
    for cpu, cuda in zip(runs["cpu"].history, runs["cuda"].history, strict=True):
        for key in ("loss_critic", "loss_actor", "weight_mean", "explained_variance"):
            assert cuda[key] == pytest.approx(cpu[key], rel=1e-3, abs=1e-4), key
    for (name, cpu), cuda in zip(
        runs["cpu"].loss_module.state_dict().items(), runs["cuda"].loss_module.state_dict().values()
    ):
        torch.testing.assert_close(cuda.cpu(), cpu, rtol=1e-3, atol=1e-4, msg=name)


def test_module_device_is_where_the_parameters_are():
    assert module_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert module_device(None) == torch.device("cpu")
    assert module_device(torch.nn.ReLU()) == torch.device("cpu")
