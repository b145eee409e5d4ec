"""Advantage-Weighted Regression as a TorchRL :class:`~torchrl.objectives.LossModule`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import (
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
    dispatch,
)
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule
from torchrl.objectives.utils import (
    ValueEstimators,
    _coerce_value_type,
    _get_default_device,
    dispatch_value_estimator,
    distance_loss,
)
from torchrl.objectives.value import TD0Estimator, TD1Estimator, ValueEstimatorBase

from torchrl_awr.validation import check_settings

LOSS_CRITIC_TYPES = ("l2", "l1", "smooth_l1")
WEIGHTINGS = ("exp", "binary", "softmax")
REDUCTIONS = ("none", "mean", "sum")


class NonFiniteLossInputError(FloatingPointError):
    """Raised when AWR is about to train on NaN/inf advantages, targets or log-probs."""


def _check_finite(name: str, value: torch.Tensor) -> None:
    if torch.compiler.is_compiling():
        return
    if not torch.isfinite(value).all():
        bad = (~torch.isfinite(value)).sum().item()
        raise NonFiniteLossInputError(
            f"AWRLoss: {bad} non-finite value(s) in {name!r} (of {value.numel()}); refusing to "
            "train on them. Check the rewards, observations and critic for NaN/inf."
        )


def _population_std(x: torch.Tensor) -> torch.Tensor:
    return x.std(unbiased=False)


def _logits_key(actor_network: ProbabilisticTensorDictSequential) -> NestedKey:
    """The key of the raw logits the actor's distribution is built from."""
    for module in reversed(list(actor_network.modules())):
        if isinstance(module, ProbabilisticTensorDictModule):
            keys = dict(zip(module.dist_keys, module.in_keys))
            if "logits" in keys:
                return keys["logits"]
            break
    raise ValueError("AWRLoss: logits_l2_coeff > 0 needs a discrete actor whose distribution takes logits.")


class AWRLoss(LossModule):
    r"""Advantage-Weighted Regression loss (Peng et al., 2019).

    The actor maximises :math:`w \log \pi(a|s)` with the constant weights
    :math:`w = \min(\exp(A/\beta), w_{max})` (or another ``weighting``); the critic regresses :math:`V(s)` on the value
    target. Both losses are returned, with detached diagnostics, by :meth:`forward`; a trainer
    that alternates critic and actor phases (as the original does) calls :meth:`critic_loss`
    and :meth:`actor_loss` separately so each phase only runs its own network.

    If the input already carries ``advantage`` and ``value_target`` (for instance computed over a
    whole replay buffer), they are used as they are. Otherwise the loss's value estimator
    (TD(:math:`\lambda`) with :math:`\gamma=0.99, \lambda=0.95` unless changed with
    :meth:`make_value_estimator`) computes them from ``("next", reward/done/terminated)`` and the
    critic; a truncation (``done`` but not ``terminated``) bootstraps :math:`V(s')`.

    Args:
        actor_network (ProbabilisticTensorDictSequential): the policy; must expose ``get_dist``.
        critic_network (TensorDictModule): the state-value network writing ``state_value``.

    Keyword Args:
        beta (float): temperature of the exponentiated advantage. Must be > 0. Defaults to 1.0.
        max_weight (float): upper clip of the ``"exp"`` weights. Must be > 0. Defaults to 20.0.
        weighting (str): how advantages become weights. ``"exp"`` (default, AWR's):
            :math:`\min(\exp(A/\beta), w_{max})`; ``"binary"`` (CRR's): :math:`1[A > 0]`;
            ``"softmax"`` (AWAC's reference code): :math:`N \operatorname{softmax}(A/\beta)` over
            the batch's :math:`N` samples, weights that average 1 within each batch.
        critic_coeff (float): multiplier of the critic regression loss. Defaults to 1.0.
        loss_critic_type (str): ``"l2"`` (default), ``"l1"`` or ``"smooth_l1"``.
        standardize_advantage (bool): standardize the advantage within each batch before
            weighting (for drop-in use where no buffer-wide standardization happens).
        action_bound_coeff (float): coefficient of the penalty on the Gaussian mean leaving
            ``[action_low, action_high]``, measured in normalised action units
            (``0.5 * mean(sum(min(u+1, 0)^2 + max(u-1, 0)^2))`` with ``u`` the mean mapped to
            ``[-1, 1]``). Defaults to 0 (off); the original uses 10.
        action_low, action_high (Tensor or float): the action bounds, required when
            ``action_bound_coeff > 0``.
        logits_l2_coeff (float): coefficient of ``0.5 * mean(sum(logits^2))`` on the raw
            (unnormalised) logits of discrete actors. Defaults to 0 (off); the original uses
            0.001 on LunarLander.
        check_finite (bool): raise :class:`NonFiniteLossInputError` when the advantage, value
            target or log-prob holds NaN/inf. Defaults to ``True``. Skipped under ``torch.compile``.
        reduction (str): ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Examples:
        >>> loss = AWRLoss(actor, critic, beta=1.0)
        >>> out = loss(batch)  # batch: TensorDict with observation, action, next/...
        >>> (out["loss_actor"] + out["loss_critic"]).backward()
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable input keys, set with :meth:`~torchrl.objectives.LossModule.set_keys`.

        Attributes:
            advantage: where the advantage is read (or written by the value estimator).
            value_target: where the critic's regression target is read (or written).
            value: the key the critic writes its state value to.
            action: the action taken.
            reward, done, terminated: read under ``"next"`` by the value estimator.
        """

        advantage: NestedKey = "advantage"
        value_target: NestedKey = "value_target"
        value: NestedKey = "state_value"
        action: NestedKey = "action"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    default_value_estimator = ValueEstimators.TDLambda
    SUPPORTED_VALUE_ESTIMATORS = (
        ValueEstimators.TD0,
        ValueEstimators.TD1,
        ValueEstimators.TDLambda,
        ValueEstimators.GAE,
    )

    actor_network: ProbabilisticTensorDictSequential
    critic_network: TensorDictModule

    def __init__(
        self,
        actor_network: ProbabilisticTensorDictSequential,
        critic_network: TensorDictModule,
        *,
        beta: float = 1.0,
        max_weight: float = 20.0,
        weighting: str = "exp",
        critic_coeff: float = 1.0,
        loss_critic_type: str = "l2",
        standardize_advantage: bool = False,
        action_bound_coeff: float = 0.0,
        action_low: torch.Tensor | float | None = None,
        action_high: torch.Tensor | float | None = None,
        logits_l2_coeff: float = 0.0,
        check_finite: bool = True,
        reduction: str = "mean",
    ):
        self.validate_settings(
            beta=beta,
            max_weight=max_weight,
            critic_coeff=critic_coeff,
            action_bound_coeff=action_bound_coeff,
            logits_l2_coeff=logits_l2_coeff,
        )
        if loss_critic_type not in LOSS_CRITIC_TYPES:
            raise ValueError(
                f"AWRLoss: unknown loss_critic_type {loss_critic_type!r}; allowed: {', '.join(LOSS_CRITIC_TYPES)}."
            )
        if weighting not in WEIGHTINGS:
            raise ValueError(f"AWRLoss: unknown weighting {weighting!r}; allowed: {', '.join(WEIGHTINGS)}.")
        if reduction not in REDUCTIONS:
            raise ValueError(f"AWRLoss: unknown reduction {reduction!r}; allowed: {', '.join(REDUCTIONS)}.")
        if action_bound_coeff > 0 and (action_low is None or action_high is None):
            raise ValueError(
                "AWRLoss: action_bound_coeff > 0 needs action_low and action_high "
                "(e.g. from the env's action_spec.space.low/high)."
            )
        if not hasattr(actor_network, "get_dist"):
            raise TypeError(
                "AWRLoss: actor_network must be a probabilistic module with get_dist(), e.g. "
                f"torchrl.modules.ProbabilisticActor; got {type(actor_network).__name__}."
            )
        super().__init__()
        self.actor_network = actor_network
        self.critic_network = critic_network
        self.loss_critic_type = loss_critic_type
        self.weighting = weighting
        self.standardize_advantage = standardize_advantage
        self.check_finite = check_finite
        self.reduction = reduction
        self._td_lambda: tuple[float, float] | None = None  # as given to make_value_estimator
        device = _get_default_device(self)
        self.register_coeff_buffer("beta", float(beta), device=device)
        self.register_coeff_buffer("max_weight", float(max_weight), device=device)
        self.register_coeff_buffer("critic_coeff", float(critic_coeff), device=device)
        self.register_coeff_buffer("action_bound_coeff", float(action_bound_coeff), device=device)
        self.register_coeff_buffer("logits_l2_coeff", float(logits_l2_coeff), device=device)
        # Python flags, so that the branches below do not read tensors (no graph breaks).
        self._use_action_bound = action_bound_coeff > 0
        self._use_logits_l2 = logits_l2_coeff > 0
        if action_bound_coeff > 0:
            low = torch.as_tensor(action_low, dtype=torch.float32, device=device)
            high = torch.as_tensor(action_high, dtype=torch.float32, device=device)
            if not (high > low).all():
                raise ValueError("AWRLoss: action_high must be > action_low in every dimension.")
            self.register_buffer("action_center", (high + low) / 2)
            self.register_buffer("action_half_range", (high - low) / 2)
        # dist.logits are log-softmax normalised; the penalty is on the network's raw logits.
        self._logits_key = _logits_key(actor_network) if logits_l2_coeff > 0 else None

    SETTING_RULES = {  # a class constant
        "beta": "> 0",
        "max_weight": "> 0",
        "critic_coeff": ">= 0",
        "action_bound_coeff": ">= 0",
        "logits_l2_coeff": ">= 0",
        "gamma": "in [0, 1]",
        "lmbda": "in [0, 1]",
    }

    @classmethod
    def validate_settings(cls, *, names: dict[str, str] | None = None, **settings: float) -> None:
        """Raises one ``ValueError`` naming every bad number among ``settings`` (any of
        :attr:`SETTING_RULES`; as ``names`` calls them, if given)."""
        check_settings(settings, {k: cls.SETTING_RULES[k] for k in settings}, "AWRLoss settings", names)

    @property
    def in_keys(self):
        keys = {
            self.tensor_keys.action,
            ("next", self.tensor_keys.reward),
            ("next", self.tensor_keys.done),
            ("next", self.tensor_keys.terminated),
            *self.actor_network.in_keys,
            *self.critic_network.in_keys,
            *[("next", key) for key in self.critic_network.in_keys],
        }
        return list(keys)

    @property
    def out_keys(self):
        keys = ["loss_actor", "loss_critic"]
        if self._use_action_bound:
            keys.append("loss_action_bound")
        if self._use_logits_l2:
            keys.append("loss_logits_l2")
        return keys + [
            "weight_mean",
            "weight_max",
            "weight_clip_fraction",
            "weight_ess",
            "advantage_mean",
            "advantage_std",
            "log_prob_mean",
            "entropy",
            "explained_variance",
        ]

    def _estimator_keys(self) -> dict[str, NestedKey]:
        keys = self.tensor_keys
        return {
            "advantage": keys.advantage,
            "value_target": keys.value_target,
            "value": keys.value,
            "reward": keys.reward,
            "done": keys.done,
            "terminated": keys.terminated,
        }

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        if self._value_estimator is not None:
            self._value_estimator.set_keys(**self._estimator_keys())

    def make_value_estimator(self, value_type: ValueEstimators = None, **hyperparams):
        """Builds the estimator used when the input lacks advantage/value_target.

        ``value_type`` is one of ``ValueEstimators.TD0``, ``TD1``, ``TDLambda`` (default) and
        ``GAE``, or their names as strings (``"td0"``, ``"td_lambda"``, ``"gae"``, ...);
        ``hyperparams`` (``gamma``, ``lmbda``, ...) go to its constructor. A ready-made TorchRL
        ``ValueEstimatorBase`` instance or subclass is used as TorchRL losses use it.
        """
        if isinstance(value_type, str):
            value_type = value_type.replace("_", "")
        custom = isinstance(value_type, ValueEstimatorBase) or (
            isinstance(value_type, type) and issubclass(value_type, ValueEstimatorBase)
        )
        if value_type is not None and not custom:
            allowed = ", ".join(v.name for v in self.SUPPORTED_VALUE_ESTIMATORS)
            try:
                value_type = _coerce_value_type(value_type)
            except (KeyError, TypeError):
                raise ValueError(f"AWRLoss: unknown value estimator {value_type!r}; allowed: {allowed}.") from None
            if value_type not in self.SUPPORTED_VALUE_ESTIMATORS:
                raise ValueError(f"AWRLoss: unsupported value estimator {value_type!r}; allowed: {allowed}.")
        value_type, hp = self._prepare_value_estimator_kwargs(value_type, **hyperparams)
        if value_type is None:
            self._td_lambda = None
            return self
        lmbda = {ValueEstimators.TD0: 0.0, ValueEstimators.TD1: 1.0}.get(value_type, hp.get("lmbda"))
        self.validate_settings(gamma=hp["gamma"], lmbda=lmbda)
        self._td_lambda = (float(hp["gamma"]), float(lmbda))
        hp.setdefault("device", _get_default_device(self))
        hp["differentiable"] = False
        dispatch_value_estimator(
            self,
            value_type,
            supported=self.SUPPORTED_VALUE_ESTIMATORS,
            tensor_keys=self._estimator_keys(),
            value_network=self.critic_network,
            **hp,
        )
        return self

    def td_lambda_parameters(self) -> tuple[float, float]:
        """The discount and lambda of the value estimator, as TD(lambda) reads them.

        The one place that sets them: a trainer computing targets over its whole buffer reads
        them here. TD(0) is lambda 0, TD(1) lambda 1, and GAE's advantage plus V(s) is the
        TD(lambda) return.
        """
        estimator = self.value_estimator  # builds the default estimator on first use
        if self._td_lambda is not None:  # the exact numbers given, not their float32 copies
            return self._td_lambda
        gamma = getattr(estimator, "gamma", None)
        if isinstance(estimator, TD0Estimator):
            lmbda = 0.0
        elif isinstance(estimator, TD1Estimator):
            lmbda = 1.0
        else:
            lmbda = getattr(estimator, "lmbda", None)
        if gamma is None or lmbda is None:
            raise TypeError(
                f"AWRLoss: the value estimator {type(estimator).__name__} has no gamma/lmbda; "
                "buffer-wide targets need TD(0), TD(1), TD(lambda) or GAE."
            )
        return float(gamma), float(lmbda)

    def _require(self, tensordict: TensorDictBase, key: NestedKey, produced_by: str):
        value = tensordict.get(key, None)
        if value is None:
            raise KeyError(
                f"AWRLoss: the input has no {key!r} entry; it is {produced_by}. Keys present: "
                f"{sorted(str(k) for k in tensordict.keys(True, True))}. Rename with "
                "loss.set_keys(...) if your data uses another key."
            )
        return value

    def _with_targets(self, tensordict: TensorDictBase, *needed: NestedKey) -> TensorDictBase:
        """A shallow copy of the input holding ``needed``, run through the value estimator if absent."""
        tensordict = tensordict.copy()
        present = tensordict.keys(True)
        if all(key in present for key in needed):
            return tensordict
        keys = self.tensor_keys
        for key in (keys.reward, keys.done, keys.terminated):
            self._require(
                tensordict,
                ("next", key),
                "written by the environment on step(); it is needed to estimate "
                f"{needed}, which the input does not carry",
            )
        with torch.no_grad():
            self.value_estimator(tensordict)
        return tensordict

    def actor_loss(self, tensordict: TensorDictBase) -> TensorDictBase:
        """The weighted log-likelihood loss, its regularizers and the weight diagnostics."""
        keys = self.tensor_keys
        tensordict = self._with_targets(tensordict, keys.advantage)
        advantage = tensordict.get(keys.advantage).detach()
        if advantage.ndim == tensordict.ndim + 1 and advantage.shape[-1] == 1:
            advantage = advantage.squeeze(-1)
        if self.check_finite:
            _check_finite(keys.advantage, advantage)
        if self.standardize_advantage:
            advantage = (advantage - advantage.mean()) / (_population_std(advantage) + 1e-5)
        weight, clipped = self._weights(advantage)

        action = self._require(tensordict, keys.action, "the action taken, written by the policy")
        actor_input = tensordict.select(*self.actor_network.in_keys, strict=False)
        dist = self.actor_network.get_dist(actor_input)
        event_shape = tuple(dist.event_shape)
        if event_shape and tuple(action.shape[-len(event_shape) :]) != event_shape:
            raise ValueError(
                f"AWRLoss: the {keys.action!r} entry has shape {tuple(action.shape)}, but the actor's distribution "
                f"is over actions of shape {event_shape}; a wrong action would broadcast silently."
            )
        log_prob = dist.log_prob(action)
        if self.check_finite:
            _check_finite("log_prob", log_prob)
        out = {"loss_actor": self._reduce_loss(-(weight * log_prob), tensordict)}
        if self._use_action_bound:
            out["loss_action_bound"] = self.action_bound_coeff * self._reduce_loss(
                self._action_bound_penalty(dist), tensordict
            )
        if self._use_logits_l2:
            out["loss_logits_l2"] = self.logits_l2_coeff * self._reduce_loss(
                0.5 * actor_input.get(self._logits_key).pow(2).sum(-1), tensordict
            )
        with torch.no_grad():
            out.update(
                weight_mean=weight.mean(),
                weight_max=weight.max(),
                weight_clip_fraction=clipped.float().mean(),
                weight_ess=weight.sum().pow(2) / (weight.pow(2).sum() * weight.numel()),
                advantage_mean=advantage.mean(),
                advantage_std=_population_std(advantage),
                log_prob_mean=log_prob.mean(),
                entropy=self._entropy(dist).mean(),
            )
        return TensorDict(out)

    def _weights(self, advantage: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``weighting``'s weights of ``advantage``, and which of them were clipped."""
        if self.weighting == "binary":
            return (advantage > 0).to(advantage.dtype), torch.zeros_like(advantage, dtype=torch.bool)
        if self.weighting == "softmax":
            weight = torch.softmax((advantage / self.beta).reshape(-1), 0).reshape(advantage.shape) * advantage.numel()
            return weight, torch.zeros_like(advantage, dtype=torch.bool)
        raw_weight = torch.exp(advantage / self.beta)
        return raw_weight.clamp(max=self.max_weight), raw_weight > self.max_weight

    def critic_loss(self, tensordict: TensorDictBase) -> TensorDictBase:
        """The critic's regression loss on the value target and its explained variance."""
        keys = self.tensor_keys
        tensordict = self._with_targets(tensordict, keys.value_target)
        target = tensordict.get(keys.value_target).detach()
        if self.check_finite:
            _check_finite(keys.value_target, target)
        value = self.critic_network(tensordict.select(*self.critic_network.in_keys, strict=False)).get(keys.value)
        target = target.reshape(value.shape)
        loss = self.critic_coeff * distance_loss(value, target, self.loss_critic_type)
        if loss.ndim > tensordict.ndim:
            loss = loss.squeeze(-1)
        with torch.no_grad():
            residual_var = (target - value).var(unbiased=False)
            explained_variance = 1 - residual_var / target.var(unbiased=False).clamp_min(1e-8)
        return TensorDict(
            {
                "loss_critic": self._reduce_loss(loss, tensordict),
                "explained_variance": explained_variance,
            }
        )

    @dispatch()
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Computes the actor and critic losses and their diagnostics. Never mutates the input."""
        keys = self.tensor_keys
        tensordict = self._with_targets(tensordict, keys.advantage, keys.value_target)
        out = self.actor_loss(tensordict)
        out.update(self.critic_loss(tensordict))
        return out

    def _action_bound_penalty(self, dist) -> torch.Tensor:
        mean = getattr(dist, "loc", None)
        if mean is None:
            mean = dist.mean
        normalized = (mean - self.action_center) / self.action_half_range
        violation = (normalized + 1).clamp(max=0).pow(2) + (normalized - 1).clamp(min=0).pow(2)
        return 0.5 * violation.sum(-1)

    @staticmethod
    def _entropy(dist) -> torch.Tensor:
        """Analytic entropy where the distribution has one, else a one-sample estimate."""
        try:
            return dist.entropy()
        except NotImplementedError:
            return -dist.log_prob(dist.sample())
