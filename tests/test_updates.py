"""UpdateStep: the eager, compiled and fused (SGD, Adam) steps compute torch.optim's update."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from torchrl_awr import updates
from torchrl_awr.updates import UpdateStep, fused_rule

from conftest import DEVICES


class Regression(nn.Module):
    """Two layers, so that two param groups can be given different settings."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(3, 4)
        self.head = nn.Linear(4, 1)

    def loss(self, batch: TensorDict) -> TensorDict:
        prediction = self.head(torch.relu(self.body(batch["x"])))
        error = prediction - batch["y"]
        return TensorDict(
            {
                "loss_mse": error.pow(2).mean(),
                "loss_l2": 0.01 * self.head.weight.pow(2).sum(),
                "error_max": error.abs().max(),
            }
        )


def sgd(module: Regression, **group_settings) -> torch.optim.SGD:
    return torch.optim.SGD(
        [
            {"params": module.body.parameters(), "lr": 0.05, **group_settings},
            {"params": module.head.parameters(), "lr": 0.02},
        ],
        momentum=0.9,
    )


def adam(module: Regression, **group_settings) -> torch.optim.Adam:
    return torch.optim.Adam(
        [
            {"params": module.body.parameters(), "lr": 0.05, **group_settings},
            {"params": module.head.parameters(), "lr": 0.02, "betas": (0.8, 0.99)},
        ],
        foreach=True,
    )


def batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 3, generator=generator), torch.randn(8, 1, generator=generator)) for _ in range(n)]


def reference_training(
    settings: dict, data, device: str = "cpu", make_optimizer=sgd
) -> tuple[Regression, torch.optim.Optimizer, list[torch.Tensor]]:
    """Plain PyTorch: loss, backward, optimizer.step()."""
    module = Regression().to(device)
    optimizer = make_optimizer(module, **settings)
    diagnostics = []
    for x, y in data:
        optimizer.zero_grad()
        losses = module.loss(TensorDict({"x": x, "y": y}, batch_size=[8]))
        (losses["loss_mse"] + losses["loss_l2"]).backward()
        optimizer.step()
        diagnostics.append(torch.stack([v.detach() for v in losses.values()]))
    return module, optimizer, diagnostics


@pytest.mark.parametrize(
    "settings,compile_step",
    [
        ({}, False),
        ({"nesterov": True, "weight_decay": 0.1}, True),
        ({"momentum": 0.0, "maximize": True}, True),
    ],
)
@pytest.mark.parametrize("device", DEVICES)
def test_step_matches_torch_sgd(settings, compile_step, device):
    data = [(x.to(device), y.to(device)) for x, y in batches(5)]
    want_module, want_optimizer, want_diagnostics = reference_training(settings, data, device)
    module = Regression().to(device)
    optimizer = sgd(module, **settings)
    step = UpdateStep(module, module.loss, optimizer, ["x", "y"], compile=compile_step)
    assert step.fused == compile_step
    diagnostics = [step(x, y) for x, y in data]

    assert step.names == ["loss_mse", "loss_l2", "error_max"]
    for got, want in zip(diagnostics, want_diagnostics):
        torch.testing.assert_close(got, want)
    for got, want in zip(module.parameters(), want_module.parameters()):
        torch.testing.assert_close(got, want)
    # The momentum buffers live in the optimizer, as torch.optim.SGD keeps them.
    for got, want in zip(module.parameters(), want_module.parameters()):
        got_buffer = optimizer.state[got].get("momentum_buffer")
        want_buffer = want_optimizer.state[want].get("momentum_buffer")
        if want_buffer is None:
            assert got_buffer is None or settings.get("momentum") == 0.0
        else:
            torch.testing.assert_close(got_buffer, want_buffer)


@pytest.mark.parametrize("settings", [{}, {"eps": 1e-3, "betas": (0.5, 0.9)}])
@pytest.mark.parametrize("device", DEVICES)
def test_fused_adam_matches_torch_adam(settings, device):
    """Two groups with their own lr and betas, six steps through groups of 4 and 2: the
    parameters, the moments and the step counts are torch.optim.Adam's."""
    data = [(x.to(device), y.to(device)) for x, y in batches(6)]
    want_module, want_optimizer, want_diagnostics = reference_training(settings, data, device, adam)
    module = Regression().to(device)
    optimizer = adam(module, **settings)
    step = UpdateStep(module, module.loss, optimizer, ["x", "y"], compile=True)
    assert step.fused and step.steps_per_call == 4
    diagnostics = step.run([tuple(torch.stack(column) for column in zip(*data))])
    torch.testing.assert_close(diagnostics, torch.stack(want_diagnostics))
    for got, want in zip(module.parameters(), want_module.parameters()):
        torch.testing.assert_close(got, want)
        got_state, want_state = optimizer.state[got], want_optimizer.state[want]
        assert got_state.keys() == want_state.keys() == {"step", "exp_avg", "exp_avg_sq"}
        assert got_state["step"].dtype == want_state["step"].dtype and got_state["step"].device.type == "cpu"
        assert got_state["step"].item() == want_state["step"].item() == 6
        torch.testing.assert_close(got_state["exp_avg"], want_state["exp_avg"])
        torch.testing.assert_close(got_state["exp_avg_sq"], want_state["exp_avg_sq"])


def torch_step(module: Regression, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    optimizer.zero_grad()
    losses = module.loss(TensorDict({"x": x, "y": y}, batch_size=[8]))
    (losses["loss_mse"] + losses["loss_l2"]).backward()
    optimizer.step()


def round_trip_halve_lr_and_continue(step, module, optimizer, want_module, want_optimizer, data) -> None:
    """A checkpoint round trip of ``optimizer`` through a fresh one made as it was, an lr change
    in both optimizers (as a scheduler would make), then ``data``'s steps by ``step`` and by
    torch: the same parameters."""
    restored = (adam if isinstance(optimizer, torch.optim.Adam) else sgd)(Regression())
    restored.load_state_dict(optimizer.state_dict())
    optimizer.load_state_dict(restored.state_dict())
    for optim in (optimizer, want_optimizer):
        for group in optim.param_groups:
            group["lr"] *= 0.5
    for x, y in data:
        step(x, y)
        torch_step(want_module, want_optimizer, x, y)
    for got, want in zip(module.parameters(), want_module.parameters()):
        torch.testing.assert_close(got, want)


def test_fused_adam_continues_torch_adams_state_and_follows_lr_changes():
    """Two torch steps, then fused ones, a checkpoint round trip and an lr change: the same
    parameters as torch's own Adam all along, without recompiling for the new lr or step count."""
    from torch._dynamo.utils import counters

    data = batches(6)
    want_module, module = Regression(), Regression()
    want_optimizer, optimizer = adam(want_module), adam(module)
    for x, y in data[:2]:
        torch_step(want_module, want_optimizer, x, y)
        torch_step(module, optimizer, x, y)
    step = UpdateStep(module, module.loss, optimizer, ["x", "y"], compile=True, steps_per_call=1)
    step(*data[2])
    torch_step(want_module, want_optimizer, *data[2])
    graphs = counters["stats"]["unique_graphs"]
    round_trip_halve_lr_and_continue(step, module, optimizer, want_module, want_optimizer, data[3:])
    for got, want in zip(module.parameters(), want_module.parameters()):
        assert optimizer.state[got]["step"].item() == want_optimizer.state[want]["step"].item() == 6
    assert counters["stats"]["unique_graphs"] == graphs


def test_fused_step_follows_lr_changes_and_checkpoints_without_recompiling():
    from torch._dynamo.utils import counters

    data = batches(6)
    want_module, want_optimizer, _ = reference_training({}, data[:3])
    module = Regression()
    optimizer = sgd(module)
    step = UpdateStep(module, module.loss, optimizer, ["x", "y"], compile=True)
    for x, y in data[:3]:
        step(x, y)
    graphs = counters["stats"]["unique_graphs"]
    # torch's own step continues from the fused one's state.
    round_trip_halve_lr_and_continue(step, module, optimizer, want_module, want_optimizer, data[3:])
    assert counters["stats"]["unique_graphs"] == graphs


def test_only_plain_sgd_and_adam_over_the_module_are_fused():
    module = Regression()
    params = list(module.parameters())
    assert type(fused_rule(torch.optim.SGD(params, lr=0.1, momentum=0.9), module)).__name__ == "_SGDRule"
    assert type(fused_rule(torch.optim.Adam(params), module)).__name__ == "_AdamRule"
    assert fused_rule(torch.optim.SGD(params, lr=0.1, momentum=0.9, dampening=0.5), module) is None
    for settings in ({"amsgrad": True}, {"weight_decay": 0.1}, {"maximize": True}, {"lr": torch.tensor(0.1)}):
        assert fused_rule(torch.optim.Adam(params, **settings), module) is None, settings
    assert fused_rule(torch.optim.AdamW(params), module) is None
    assert fused_rule(torch.optim.RMSprop(params), module) is None
    stranger = nn.Parameter(torch.zeros(2))
    assert fused_rule(torch.optim.SGD([*params, stranger], lr=0.1), module) is None
    assert fused_rule(torch.optim.Adam([*params, stranger]), module) is None
    plain_sgd = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    assert not UpdateStep(module, module.loss, plain_sgd, ["x", "y"], compile=True, fuse=False).fused


def test_other_optimizers_get_the_compiled_loss_and_their_own_step():
    data = batches(3)
    trained = []
    for compile_step in (False, True):
        module = Regression()
        step = UpdateStep(
            module, module.loss, torch.optim.RMSprop(module.parameters(), lr=0.01), ["x", "y"], compile=compile_step
        )
        assert not step.fused
        diagnostics = [step(x, y) for x, y in data]
        trained.append((list(module.parameters()), diagnostics))
    (eager_params, eager_diagnostics), (compiled_params, compiled_diagnostics) = trained
    for got, want in zip(compiled_params + compiled_diagnostics, eager_params + eager_diagnostics):
        torch.testing.assert_close(got, want)


def test_compile_failure_falls_back_to_eager_with_a_warning(monkeypatch):
    def failing_compile(fn, **kwargs):
        def call(*args):
            raise torch._dynamo.exc.TorchDynamoException("cannot compile this")

        return call

    monkeypatch.setattr(updates.torch, "compile", failing_compile)
    data = batches(2)
    want_module, _, _ = reference_training({}, data)
    module = Regression()
    step = UpdateStep(module, module.loss, sgd(module), ["x", "y"], compile=True)
    with pytest.warns(UserWarning, match="cannot compile this"):
        step(*data[0])
    step(*data[1])
    for got, want in zip(module.parameters(), want_module.parameters()):
        torch.testing.assert_close(got, want)


def test_run_steps_through_minibatches_as_single_steps_do():
    data = batches(5)
    want_module, want_optimizer, want_diagnostics = reference_training({}, data)
    module = Regression()
    optimizer = sgd(module)
    step = UpdateStep(module, module.loss, optimizer, ["x", "y"], compile=True, steps_per_call=2)
    # Chunks of 3 and 2 steps: groups of 2, 1 and 2 steps through two graphs.
    chunks = [tuple(torch.stack(column) for column in zip(*part)) for part in (data[:3], data[3:])]
    stacked = step.run(chunks)
    assert stacked.shape == (5, 3)
    torch.testing.assert_close(stacked, torch.stack(want_diagnostics))
    for got, want in zip(module.parameters(), want_module.parameters()):
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(
            optimizer.state[got]["momentum_buffer"], want_optimizer.state[want]["momentum_buffer"]
        )


def test_each_step_has_its_own_graph_cache():
    """Many update steps in one process (a sweep) must not share dynamo's recompile limit:
    with one shared cache, the steps past the limit would stop compiling and ``run`` (which
    skips guards) would fail."""
    with torch._dynamo.config.patch(recompile_limit=2):
        for size in range(4, 8):  # another minibatch shape each: one graph per step
            data = [(torch.randn(size, 3), torch.randn(size, 1)) for _ in range(3)]
            module = Regression()
            step = UpdateStep(module, module.loss, sgd(module), ["x", "y"], compile=True)
            assert torch.isfinite(step.run([tuple(torch.stack(column) for column in zip(*data))])).all()


def test_steps_per_call_must_be_positive():
    module = Regression()
    with pytest.raises(ValueError, match="steps_per_call must be >= 1, got 0"):
        UpdateStep(module, module.loss, sgd(module), ["x", "y"], compile=True, steps_per_call=0)
