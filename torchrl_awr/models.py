"""The original AWR networks as TorchRL modules: actor, critic and observation normaliser.

The actor and critic are separate ReLU MLPs (128-64 by default) with Glorot-uniform weights
and zero biases; the actor's output layer is drawn from U(-0.01, 0.01) so the initial policy
is centred in the action box. Both read observations through one shared, freezable
:class:`ObservationNormalizer`, so the stored replay data stays raw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.nn import NormalParamExtractor, TensorDictModule, TensorDictModuleBase
from torch import nn
from torch.distributions import Categorical
from torchrl.data import Categorical as CategoricalSpec
from torchrl.data import OneHot, TensorSpec
from torchrl.envs.utils import ExplorationType, exploration_type
from torchrl.modules import (
    IndependentNormal,
    OneHotCategorical,
    ProbabilisticActor,
    TanhNormal,
    ValueOperator,
)

ACTOR_DISTRIBUTIONS = ("normal", "tanh_normal", "categorical")


class ObservationNormalizer(nn.Module):
    """Running mean/std of the first ``max_samples`` observations, then frozen.

    As in the original AWR: plain (unclipped) standardisation, std floored at ``min_std``.
    Statistics are accumulated in float64 with Chan's parallel update; ``loc``/``scale``
    are cached so the forward pass is one subtract and one divide.
    """

    def __init__(self, obs_dim: int, max_samples: int = 300_000, min_std: float = 0.01):
        super().__init__()
        if max_samples < 0:
            raise ValueError(f"ObservationNormalizer: max_samples must be >= 0, got {max_samples}.")
        self.max_samples = int(max_samples)
        self.min_std = float(min_std)
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(obs_dim, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(obs_dim, dtype=torch.float64))
        self.register_buffer("loc", torch.zeros(obs_dim))
        self.register_buffer("scale", torch.ones(obs_dim))

    @property
    def frozen(self) -> bool:
        return self.count.item() >= self.max_samples

    @torch.no_grad()
    def update(self, observations: torch.Tensor) -> None:
        """Adds observations (any leading shape) until ``max_samples`` have been seen."""
        remaining = self.max_samples - int(self.count.item())
        if remaining > 0:
            self._accumulate(observations.reshape(-1, observations.shape[-1])[:remaining])

    @torch.no_grad()
    def fit(self, observations: torch.Tensor) -> None:
        """Statistics of exactly these observations (all of them, whatever ``max_samples``): a
        fixed dataset's. A later :meth:`update` adds to them while fewer than ``max_samples``
        have been seen."""
        for statistic in (self.count, self.mean, self.m2):
            statistic.zero_()
        self._accumulate(observations.reshape(-1, observations.shape[-1]))

    def _accumulate(self, batch: torch.Tensor) -> None:
        """Chan's parallel update with ``[n, obs_dim]`` observations."""
        batch = batch.to(self.mean.device, torch.float64)
        if not torch.isfinite(batch).all():
            raise FloatingPointError(
                "ObservationNormalizer: non-finite observations collected; the environment returned NaN/inf."
            )
        n = batch.shape[0]
        if n == 0:
            return
        batch_mean = batch.mean(0)
        batch_m2 = (batch - batch_mean).pow(2).sum(0)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta.pow(2) * self.count * n / total
        self.count.copy_(total)
        std = (self.m2 / self.count).sqrt().clamp_min(self.min_std)
        self.loc.copy_(self.mean)
        self.scale.copy_(std)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return (observation - self.loc) / self.scale


def check_network_shape(
    hidden_sizes: Sequence[int], layer_norm: bool, residual_blocks: int, *, names: dict[str, str] | None = None
) -> None:
    """One ``ValueError`` for a network :func:`make_mlp` cannot build (its arguments as ``names``
    calls them, if given): residual blocks keep one width and bring their own LayerNorms."""
    names = {"hidden_sizes": "hidden_sizes", "layer_norm": "layer_norm", "residual_blocks": "residual_blocks"} | (
        names or {}
    )
    if residual_blocks < 0:
        raise ValueError(f"{names['residual_blocks']}={residual_blocks} must be >= 0.")
    if residual_blocks and len(hidden_sizes) != 1:
        raise ValueError(
            f"{names['residual_blocks']}={residual_blocks} needs one width, the blocks' "
            f"({names['hidden_sizes']}=[256]); got {names['hidden_sizes']}={list(hidden_sizes)}."
        )
    if residual_blocks and layer_norm:
        raise ValueError(
            f"{names['layer_norm']}=true normalises the plain MLP's layers; residual blocks "
            f"({names['residual_blocks']}={residual_blocks}) have their own LayerNorms: set {names['layer_norm']}=false."
        )


class ResidualBlock(nn.Module):
    """SimBa's block, ``x + W2 relu(W1 LayerNorm(x))`` with ``W1`` four times as wide: the skip
    keeps a short path through any number of blocks, the LayerNorm keeps each block's input on
    one scale."""

    def __init__(self, width: int, expansion: int = 4):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.inner = nn.Linear(width, expansion * width)
        self.outer = nn.Linear(expansion * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.outer(torch.relu(self.inner(self.norm(x))))


def make_mlp(
    in_features: int,
    hidden_sizes: Sequence[int],
    out_features: int,
    *,
    layer_norm: bool = False,
    residual_blocks: int = 0,
) -> nn.Sequential:
    """ReLU MLP with Glorot-uniform weights and zero biases; its last module is the output layer.

    With ``layer_norm``, each hidden layer is normalised before its ReLU (as in BRO), which keeps
    the activations' scale steady under Adam and wider layers. With ``residual_blocks`` = N, the
    network is SimBa's instead: a linear embedding to the one width of ``hidden_sizes``, N
    :class:`ResidualBlock`, a LayerNorm, then the output layer.
    """
    check_network_shape(hidden_sizes, layer_norm, residual_blocks)
    layers: list[nn.Module] = []
    sizes = [in_features, *hidden_sizes]
    if residual_blocks:
        width = sizes[-1]
        layers += [nn.Linear(in_features, width), *(ResidualBlock(width) for _ in range(residual_blocks))]
        layers.append(nn.LayerNorm(width))
    else:
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out), *([nn.LayerNorm(fan_out)] if layer_norm else []), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], out_features))
    mlp = nn.Sequential(*layers)
    for module in mlp.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return mlp


class GaussianHead(nn.Module):
    """Maps a mean in normalised action units to (loc, scale) in env units.

    The std is given in normalised units (the original's 0.4) and is a fixed buffer unless
    ``learn_std``; unbounded action dimensions (infinite bounds, or the dtype's extreme
    values that torchrl's ``Unbounded`` spec reports) use centre 0 and half-range 1.
    """

    def __init__(self, low: torch.Tensor, high: torch.Tensor, std: float, learn_std: bool):
        super().__init__()
        if not std > 0:
            raise ValueError(f"GaussianHead: action std must be > 0, got {std}.")
        limit = torch.finfo(low.dtype).max
        bounded = (low.abs() < limit) & (high.abs() < limit)
        center = torch.where(bounded, (high + low) / 2, torch.zeros_like(low))
        half_range = torch.where(bounded, (high - low) / 2, torch.ones_like(low))
        self.register_buffer("center", center.float())
        self.register_buffer("half_range", half_range.float())
        log_std = torch.full_like(self.center, math.log(std))
        if learn_std:
            self.log_std = nn.Parameter(log_std)
        else:
            self.register_buffer("log_std", log_std)

    @property
    def learns_std(self) -> bool:
        return isinstance(self.log_std, nn.Parameter)

    @torch.no_grad()
    def set_std(self, std: float) -> None:
        """Sets the fixed std (normalised units) in place, so collectors syncing the actor's
        buffers and compiled losses reading it see the new value."""
        if self.learns_std:
            raise ValueError("GaussianHead: the std is learned (learn_std=True); it cannot be set.")
        if not std > 0:
            raise ValueError(f"GaussianHead: action std must be > 0, got {std}.")
        self.log_std.fill_(math.log(std))

    def forward(self, normalized_mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc = self.center + self.half_range * normalized_mean
        scale = (self.half_range * self.log_std.exp()).expand_as(loc)
        return loc, scale


def action_bounds(action_spec: TensorSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)`` of one action, for a spec that may carry env batch dimensions."""
    low, high = action_spec.space.low, action_spec.space.high
    low, high = low.reshape(-1, low.shape[-1]), high.reshape(-1, high.shape[-1])
    if not ((low == low[0]).all() and (high == high[0]).all()):
        raise ValueError("The action bounds differ between the batched environments.")
    return low[0], high[0]


def _action_dim(action_spec: TensorSpec) -> int:
    if isinstance(action_spec, OneHot):
        return action_spec.space.n
    if isinstance(action_spec, CategoricalSpec):
        return action_spec.space.n
    return action_spec.shape[-1]


def make_awr_actor(
    obs_dim: int,
    action_spec: TensorSpec,
    *,
    normalizer: ObservationNormalizer | None = None,
    hidden_sizes: Sequence[int] = (128, 64),
    layer_norm: bool = False,
    residual_blocks: int = 0,
    distribution: str = "normal",
    action_std: float = 0.4,
    learn_std: bool = False,
    init_output_scale: float = 0.01,
    obs_key: str = "observation",
    device: torch.device | str | None = None,
) -> ProbabilisticActor:
    """The original AWR policy as a :class:`~torchrl.modules.ProbabilisticActor`.

    ``distribution`` is ``"normal"`` (the original: Gaussian in normalised action space with a
    fixed std, or a learned state-independent one with ``learn_std``), ``"tanh_normal"``
    (state-dependent std, squashed into the bounds) or ``"categorical"`` (discrete specs).
    ``hidden_sizes``, ``layer_norm`` and ``residual_blocks`` shape the network as in
    :func:`make_mlp` (``residual_blocks=1, hidden_sizes=(128,)``: SimBa's network).
    """
    if distribution not in ACTOR_DISTRIBUTIONS:
        raise ValueError(
            f"make_awr_actor: unknown distribution {distribution!r}; allowed: {', '.join(ACTOR_DISTRIBUTIONS)}."
        )
    discrete = isinstance(action_spec, (OneHot, CategoricalSpec))
    if discrete != (distribution == "categorical"):
        raise ValueError(
            f"make_awr_actor: distribution {distribution!r} does not fit the action spec "
            f"{type(action_spec).__name__}; use 'categorical' for discrete actions and "
            "'normal'/'tanh_normal' for continuous ones."
        )
    action_dim = _action_dim(action_spec)
    out_features = 2 * action_dim if distribution == "tanh_normal" else action_dim
    mlp = make_mlp(obs_dim, hidden_sizes, out_features, layer_norm=layer_norm, residual_blocks=residual_blocks)
    nn.init.uniform_(mlp[-1].weight, -init_output_scale, init_output_scale)
    body = nn.Sequential(normalizer or nn.Identity(), mlp)

    if distribution == "categorical":
        module = TensorDictModule(body, in_keys=[obs_key], out_keys=["logits"])
        dist_class = OneHotCategorical if isinstance(action_spec, OneHot) else Categorical
        dist_kwargs = {}
        dist_keys = ["logits"]
    elif distribution == "normal":
        head = GaussianHead(*action_bounds(action_spec), action_std, learn_std)
        module = TensorDictModule(nn.Sequential(body, head), in_keys=[obs_key], out_keys=["loc", "scale"])
        dist_class = IndependentNormal
        dist_kwargs = {"tanh_loc": False}
        dist_keys = ["loc", "scale"]
    else:
        module = TensorDictModule(
            nn.Sequential(body, NormalParamExtractor()), in_keys=[obs_key], out_keys=["loc", "scale"]
        )
        dist_class = TanhNormal
        low, high = action_bounds(action_spec)
        dist_kwargs = {"low": low, "high": high}
        dist_keys = ["loc", "scale"]
    actor = ProbabilisticActor(
        module,
        in_keys=dist_keys,
        spec=action_spec,
        distribution_class=dist_class,
        distribution_kwargs=dist_kwargs,
        return_log_prob=False,
    )
    return actor.to(device) if device is not None else actor


class GaussianSampler(TensorDictModuleBase):
    """The ``normal`` actor of :func:`make_awr_actor` as a collection policy: the same network
    (the same parameters) and the same Gaussian, sampled as ``loc + scale * N(0, 1)`` under
    ``ExplorationType.RANDOM`` and its mean otherwise, without building a distribution object
    on every call (a measurable share of a batched env step: docs/performance.md).
    """

    def __init__(self, actor: ProbabilisticActor):
        super().__init__()
        if gaussian_head(actor) is None:
            raise TypeError("GaussianSampler needs the 'normal' actor of make_awr_actor.")
        network = actor.module[0]
        self.network = network.module
        self.in_keys = list(network.in_keys)
        self.out_keys = [*network.out_keys, *actor.out_keys[-1:]]  # loc, scale, action: as the actor

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        loc, scale = self.network(tensordict.get(self.in_keys[0]))
        action = loc + scale * torch.randn_like(loc) if exploration_type() == ExplorationType.RANDOM else loc
        for key, value in zip(self.out_keys, (loc, scale, action)):
            tensordict.set(key, value)
        return tensordict


def gaussian_head(actor: ProbabilisticActor) -> GaussianHead | None:
    """The :class:`GaussianHead` of the ``normal`` actor of :func:`make_awr_actor` (its network's
    last module); ``None`` for any other actor."""
    network = getattr(actor.module[0], "module", None)
    if isinstance(network, nn.Sequential) and isinstance(network[-1], GaussianHead):
        return network[-1]
    return None


def make_collection_policy(actor: ProbabilisticActor) -> TensorDictModuleBase:
    """The policy to hand a collector: a :class:`GaussianSampler` over the fixed-std Gaussian
    actor of :func:`make_awr_actor`, any other actor as it is."""
    return actor if gaussian_head(actor) is None else GaussianSampler(actor)


class ValueScale(nn.Module):
    """Multiplies the critic's output, so the network predicts V / scale (the original: 100)."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def make_awr_critic(
    obs_dim: int,
    *,
    normalizer: ObservationNormalizer | None = None,
    hidden_sizes: Sequence[int] = (128, 64),
    layer_norm: bool = False,
    residual_blocks: int = 0,
    value_scale: float = 100.0,
    obs_key: str = "observation",
    device: torch.device | str | None = None,
) -> ValueOperator:
    """The original AWR critic: an MLP predicting V/value_scale, read out as V; its network is
    shaped as the actor's (:func:`make_mlp`)."""
    mlp = make_mlp(obs_dim, hidden_sizes, 1, layer_norm=layer_norm, residual_blocks=residual_blocks)
    net = nn.Sequential(normalizer or nn.Identity(), mlp, ValueScale(value_scale))
    critic = ValueOperator(net, in_keys=[obs_key])
    return critic.to(device) if device is not None else critic
