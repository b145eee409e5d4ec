"""One optimizer step on a minibatch given as plain tensors: eager, compiled, or one fused graph.

For the small MLPs of AWR most of an eager step is overhead (TensorDict and module calls,
autograd's engine, the optimizer's Python loop), so compilation is worth the most where it covers
the most. With ``compile`` and a plain ``torch.optim.SGD`` (dampening 0) or ``torch.optim.Adam``
(no AMSGrad, weight decay or maximize), forward, backward (``torch.func.grad`` of a
``functional_call``) and the optimizer's update are traced into one compiled graph that updates
the parameters and the optimizer's state in place, which costs less than a compiled loss
followed by ``backward()`` and ``optimizer.step()`` (docs/performance.md). The optimizer's own
state is used (SGD's momentum buffers, Adam's moments and step counts in ``optimizer.state``;
``lr`` read from its param groups on every step), so checkpoints and LR schedulers see an
ordinary optimizer. A phase's consecutive steps go a few at a time through one graph
(``steps_per_call``), which pays the compiled call's fixed cost once per group. Other optimizers
get the compiled loss with an eager backward and ``optimizer.step()``. Compilation failures fall
back to eager.
"""

from __future__ import annotations

import contextlib
import types
import warnings
from collections.abc import Callable, Iterable, Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torch import nn


def _with_own_code(fn: Callable) -> Callable:
    """``fn`` (a function or bound method) over a fresh copy of its code object.

    Dynamo caches graphs, and counts recompilations against ``recompile_limit`` (8), per code
    object: without a copy, every ``UpdateStep`` of a process (a sweep building many trainers)
    would share one cache, and the ninth model would stop compiling.
    """
    func = getattr(fn, "__func__", fn)
    copy = types.FunctionType(
        func.__code__.replace(), func.__globals__, func.__name__, func.__defaults__, func.__closure__
    )
    owner = getattr(fn, "__self__", None)
    return copy if owner is None else types.MethodType(copy, owner)


def compile_with_fallback(fn: Callable, fallback: Callable) -> Callable:
    """``torch.compile(fn)`` with its own graph cache, replaced by ``fallback`` (with a
    warning) if compilation fails."""
    current = [torch.compile(_with_own_code(fn), dynamic=False)]

    def call(*args):
        try:
            return current[0](*args)
        except (torch._dynamo.exc.TorchDynamoException, torch._inductor.exc.InductorError) as err:
            if current[0] is fallback:
                raise
            warnings.warn(f"torch.compile failed, using eager updates instead: {err}", stacklevel=2)
            current[0] = fallback
            return fallback(*args)

    return call


def fused_rule(optimizer: torch.optim.Optimizer, module: nn.Module) -> _SGDRule | _AdamRule | None:
    """The fused update that reproduces ``optimizer.step()`` for ``module``'s parameters, or
    ``None`` where none does (another optimizer, or settings the fused updates leave out)."""
    owned = {id(p) for p in module.parameters()}
    groups = optimizer.param_groups
    if not all(
        not group.get("differentiable", False) and all(id(p) in owned and p.requires_grad for p in group["params"])
        for group in groups
    ):
        return None
    if type(optimizer) is torch.optim.SGD and all(group["dampening"] == 0 for group in groups):
        return _SGDRule(optimizer)
    if type(optimizer) is torch.optim.Adam and all(
        not (group["amsgrad"] or group["maximize"] or group["capturable"] or group["fused"])
        and not group.get("decoupled_weight_decay", False)
        and group["weight_decay"] == 0
        and not any(torch.is_tensor(value) for value in (group["lr"], *group["betas"]))
        for group in groups
    ):
        return _AdamRule(optimizer)
    return None


class _SGDRule:
    """SGD (momentum, Nesterov, weight decay, maximize; dampening 0) as a fused update."""

    def __init__(self, optimizer: torch.optim.SGD):
        self.optimizer = optimizer

    def read(self) -> tuple:
        """Per group: its parameters (detached aliases), momentum buffers, ``lr`` as a tensor,
        and its other settings as constants.

        Buffers start at zero, which with dampening 0 gives SGD's first step (buffer = grad)
        exactly; ``lr`` is a tensor so that a scheduler's changes need no recompilation.
        """
        params, buffers, lrs = [], [], []
        for group in self.optimizer.param_groups:
            params.append([p.detach() for p in group["params"]])
            if group["momentum"] != 0:
                states = [self.optimizer.state[p] for p in group["params"]]
                for state, p in zip(states, group["params"]):
                    if state.get("momentum_buffer") is None:
                        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                buffers.append([state["momentum_buffer"] for state in states])
            else:
                buffers.append([])
            lrs.append(torch.as_tensor(group["lr"], dtype=torch.float32, device=group["params"][0].device))
        settings = tuple(
            (group["momentum"], group["nesterov"], group["weight_decay"], group["maximize"])
            for group in self.optimizer.param_groups
        )
        return params, buffers, lrs, settings

    def coefficients(self, steps: int) -> None:
        """SGD's update has no per-step coefficients."""

    def advance(self, steps: int) -> None:
        """SGD keeps no step count."""

    @staticmethod
    def apply(state: tuple, coefficients, grads: list[torch.Tensor]) -> None:
        grads = iter(grads)
        params, buffers, lrs, settings = state
        for group_params, group_buffers, lr, (momentum, nesterov, weight_decay, maximize) in zip(
            params, buffers, lrs, settings
        ):
            step = [next(grads) for _ in group_params]
            if maximize:
                step = torch._foreach_neg(step)
            if weight_decay != 0:
                step = torch._foreach_add(step, group_params, alpha=weight_decay)
            if momentum != 0:
                torch._foreach_mul_(group_buffers, momentum)
                torch._foreach_add_(group_buffers, step)
                step = torch._foreach_add(step, group_buffers, alpha=momentum) if nesterov else group_buffers
            torch._foreach_add_(group_params, torch._foreach_mul(step, -lr))


class _AdamRule:
    """Adam (no AMSGrad, weight decay or maximize) as a fused update, in the order of
    ``torch.optim.Adam``'s foreach implementation. Its step-dependent scalars (``-lr / (1 -
    beta1^t)`` and ``sqrt(1 - beta2^t)``) are computed here in double precision, as Adam computes
    them, and enter the graph as a tensor, so a new step count or ``lr`` needs no recompilation."""

    def __init__(self, optimizer: torch.optim.Adam):
        self.optimizer = optimizer
        self.counts: list[list[torch.Tensor]] = []
        self.done: list[int] = []

    def read(self) -> tuple:
        """Per group: its parameters (detached aliases), first and second moments, and its
        ``(beta1, beta2, eps)``; the state is created as Adam's first step creates it."""
        params, moments, settings, self.counts, self.done = [], [], [], [], []
        scalar_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        for group in self.optimizer.param_groups:
            states = [self.optimizer.state[p] for p in group["params"]]
            for state, p in zip(states, group["params"]):
                if not state:
                    state["step"] = torch.tensor(0.0, dtype=scalar_dtype)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            counts = [state["step"] for state in states]
            done = {int(count) for count in counts}
            if len(done) != 1:
                raise RuntimeError(f"Adam's parameters of one group were stepped unequally ({sorted(done)} steps).")
            params.append([p.detach() for p in group["params"]])
            moments.append(([state["exp_avg"] for state in states], [state["exp_avg_sq"] for state in states]))
            settings.append((*group["betas"], group["eps"]))
            self.counts.append(counts)
            self.done.append(done.pop())
        return params, moments, tuple(settings)

    def coefficients(self, steps: int) -> torch.Tensor:
        """``[steps, groups, 2]``: each step's ``-lr / (1 - beta1^t)`` and ``sqrt(1 - beta2^t)``."""
        values = [[] for _ in range(steps)]
        for group, done in zip(self.optimizer.param_groups, self.done):
            (beta1, beta2), lr = group["betas"], group["lr"]
            for i in range(steps):
                t = done + i + 1
                values[i].append(((lr / (1 - beta1**t)) * -1, (1 - beta2**t) ** 0.5))
        device = self.optimizer.param_groups[0]["params"][0].device
        return torch.tensor(values, dtype=torch.float32, device=device)

    def advance(self, steps: int) -> None:
        """Adam's step counts after ``steps`` fused steps."""
        for i, counts in enumerate(self.counts):
            torch._foreach_add_(counts, float(steps))
            self.done[i] += steps

    @staticmethod
    def apply(state: tuple, coefficients: torch.Tensor, grads: list[torch.Tensor]) -> None:
        grads = iter(grads)
        params, moments, settings = state
        for group, group_params, (exp_avgs, exp_avg_sqs), (beta1, beta2, eps) in zip(
            coefficients, params, moments, settings
        ):
            step = [next(grads) for _ in group_params]
            torch._foreach_lerp_(exp_avgs, step, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, step, step, 1 - beta2)
            denominators = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denominators, group[1])
            torch._foreach_add_(denominators, eps)
            torch._foreach_add_(group_params, torch._foreach_mul(torch._foreach_div(exp_avgs, denominators), group[0]))


class _LossCall(nn.Module):
    """Calls ``loss_fn`` with ``loss_module`` registered as a child, so that
    ``torch.func.functional_call`` can substitute its parameters by name."""

    def __init__(self, loss_module: nn.Module, loss_fn: Callable[[TensorDictBase], TensorDictBase]):
        super().__init__()
        self.loss_module = loss_module
        self._loss_fn = loss_fn

    def forward(self, batch: TensorDictBase) -> TensorDictBase:
        return self._loss_fn(batch)


def _total_and_diagnostics(losses: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
    """The sum of the ``loss_*`` entries, and every entry stacked (detached) in key order."""
    total = sum(value for key, value in losses.items() if key.startswith("loss_"))
    return total, torch.stack([value.detach() for value in losses.values()])


class UpdateStep:
    """``step(*tensors)``: one optimizer step on the minibatch ``dict(zip(keys, tensors))``.

    Returns the loss function's outputs (losses and diagnostics, detached) as one flat tensor in
    the order of :attr:`names`, so that a phase of many steps is reduced with one ``stack``.

    Args:
        loss_module: the module owning every parameter the optimizer updates.
        loss_fn: maps a TensorDict minibatch to a TensorDict of scalar ``loss_*`` entries and
            diagnostics (e.g. ``AWRLoss.actor_loss``).
        optimizer: updates the parameters from the summed ``loss_*`` entries.
        keys: the minibatch's keys, in the order the tensors are passed.
        compile: compile the step.
        fuse: when compiling, fuse the update into the graph if the optimizer allows it (a plain
            SGD or Adam, :func:`fused_rule`); otherwise the compiled loss is followed by
            ``backward()`` and ``optimizer.step()``.
        steps_per_call: fused only: :meth:`run` traces this many consecutive steps into one
            graph (the same updates, in order, as one step at a time).
    """

    def __init__(
        self,
        loss_module: nn.Module,
        loss_fn: Callable[[TensorDictBase], TensorDictBase],
        optimizer: torch.optim.Optimizer,
        keys: Sequence[NestedKey],
        *,
        compile: bool = False,
        fuse: bool = True,
        steps_per_call: int = 4,
    ):
        if steps_per_call < 1:
            raise ValueError(f"UpdateStep: steps_per_call must be >= 1, got {steps_per_call}.")
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.keys = list(keys)
        self.names: list[str] | None = None
        self.compiled = compile
        self._rule = fused_rule(optimizer, loss_module) if compile and fuse else None
        self.fused = self._rule is not None
        self.steps_per_call = steps_per_call if self.fused else 1
        self._loss = self._total_loss
        if self.fused:
            self._call = _LossCall(loss_module, loss_fn)
            names = {id(p): name for name, p in self._call.named_parameters()}
            self._param_names = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
            # Uncompiled, the same update runs eagerly (so the optimizer's state advances once).
            self._fused_step = compile_with_fallback(self._fused_update, self._fused_update)
        elif compile:
            self._loss = compile_with_fallback(self._total_loss, self._total_loss)

    def _batch(self, tensors: Sequence[torch.Tensor]) -> TensorDict:
        return TensorDict(dict(zip(self.keys, tensors)), batch_size=tensors[0].shape[:1])

    def _total_loss(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _total_and_diagnostics(self.loss_fn(self._batch(tensors)))

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        """One step on one minibatch; returns its outputs, ``[len(names)]``."""
        return self.run([tuple(t.unsqueeze(0) for t in tensors)])[0]

    def run(self, minibatches: Iterable[Sequence[torch.Tensor]]) -> torch.Tensor:
        """Steps through ``minibatches`` in order; returns every step's outputs, ``[steps, len(names)]``.

        ``minibatches`` yields tuples of tensors with a leading step dimension, ``[steps, batch, ...]``
        (one tensor per key), so that groups of ``steps_per_call`` are views, not copies. The first
        call of each group size checks dynamo's guards (and recompiles if anything changed); the
        others, which see the same shapes, dtypes, devices, modules and optimizer settings, skip
        guard evaluation (a fixed cost per call) and reuse the optimizer state read once for the run.
        Nothing else may change the modules or the optimizer meanwhile.
        """
        values, checked, state = [], set(), None
        for tensors in minibatches:
            if self.names is None:
                with torch.no_grad():
                    self.names = list(self.loss_fn(self._batch([t[0] for t in tensors])).keys())
            if self.fused and state is None:
                state = self._rule.read()
            for start in range(0, tensors[0].shape[0], self.steps_per_call):
                group = [t[start : start + self.steps_per_call] for t in tensors]
                size = group[0].shape[0]
                with self.trusted_guards() if size in checked else contextlib.nullcontext():
                    if self.fused:
                        values.append(self._fused_step(state, self._rule.coefficients(size), *group))
                        self._rule.advance(size)
                    else:
                        values.append(self._backward_steps(*group))
                checked.add(size)
        return torch.cat(values)

    def trusted_guards(self) -> contextlib.AbstractContextManager:
        """Skips dynamo's guard evaluation (compiled steps only): see :meth:`run`."""
        if not self.compiled:
            return contextlib.nullcontext()
        return torch.compiler.set_stance(skip_guard_eval_unsafe=True)

    def _backward_steps(self, *tensors: torch.Tensor) -> torch.Tensor:
        """One loss, ``backward()`` and ``optimizer.step()`` per minibatch of the group."""
        outputs = []
        for minibatch in zip(*(t.unbind(0) for t in tensors)):
            self.optimizer.zero_grad(set_to_none=True)
            total, diagnostics = self._loss(*minibatch)
            total.backward()
            self.optimizer.step()
            outputs.append(diagnostics)
        return torch.stack(outputs)

    # ------------------------------------------------------------------ fused updates
    def _fused_update(self, state, coefficients, *tensors: torch.Tensor) -> torch.Tensor:
        """The group's steps, one after the other, traced into one graph (the loop unrolls)."""
        return torch.stack(
            [
                self._fused_step_of(state, None if coefficients is None else coefficients[i], [t[i] for t in tensors])
                for i in range(tensors[0].shape[0])
            ]
        )

    def _fused_step_of(self, state, coefficients, tensors: list[torch.Tensor]) -> torch.Tensor:
        flat = [p for group in state[0] for p in group]

        def total_of(values):
            substitutes = dict(zip(self._param_names, values))
            return _total_and_diagnostics(torch.func.functional_call(self._call, substitutes, (self._batch(tensors),)))

        grads, diagnostics = torch.func.grad(total_of, has_aux=True)(flat)
        with torch.no_grad():
            self._rule.apply(state, coefficients, list(grads))
        return diagnostics
