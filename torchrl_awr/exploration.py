"""An annealed action std for the fixed-std Gaussian actor: wide exploration early, a sharper
policy later.

The original fixes the std per task. A schedule is the usual way to explore widely while the
policy is poor and to sample close to its mean once it is good; the Hopper and HalfCheetah
presets narrow their std this way (a named departure, see docs/results.md).
"""

from __future__ import annotations

from torchrl.modules import ProbabilisticActor

from torchrl_awr.models import gaussian_head
from torchrl_awr.validation import check_settings


class ActionStdSchedule:
    """Holds the fixed std of a :func:`~torchrl_awr.make_awr_actor` ``normal`` actor at
    ``std_init`` for the first ``start_frames`` collected samples, moves it linearly to
    ``std_end`` over the next ``annealing_frames``, then holds ``std_end``.

    A late start keeps the wide exploration that finds a gait and narrows it only to refine one.

    ``step(frames)`` sets the std for the samples collected after ``frames`` (as TorchRL's
    annealed exploration modules do, but from the absolute sample count, so a resumed run lands
    on the same std). The std is the actor head's ``log_std`` buffer: collectors that sync the
    actor's weights sample with it after their next weight update, and checkpoints keep it.
    Stds are in normalised action units (a fraction of the half-range, as ``action_std``).
    """

    def __init__(
        self,
        actor: ProbabilisticActor,
        *,
        std_init: float,
        std_end: float,
        annealing_frames: int,
        start_frames: int = 0,
    ):
        head = gaussian_head(actor)
        if head is None:
            raise TypeError(
                "ActionStdSchedule needs the fixed-std 'normal' actor of make_awr_actor "
                f"(got {type(actor).__name__} without a GaussianHead)."
            )
        if head.learns_std:
            raise ValueError("ActionStdSchedule: the actor learns its std (learn_std=True); nothing to anneal.")
        self.validate_settings(
            std_init=std_init, std_end=std_end, annealing_frames=annealing_frames, start_frames=start_frames
        )
        self.head = head
        self.std_init = float(std_init)
        self.std_end = float(std_end)
        self.annealing_frames = int(annealing_frames)
        self.start_frames = int(start_frames)

    @staticmethod
    def validate_settings(*, names: dict[str, str] | None = None, **settings: float) -> None:
        """Raises one ``ValueError`` naming every bad number (as ``names`` calls it, if given):
        ``std_init``, ``std_end`` and ``annealing_frames`` must be > 0, ``start_frames`` >= 0."""
        rules = {"std_init": "> 0", "std_end": "> 0", "annealing_frames": "> 0", "start_frames": ">= 0"}
        check_settings(settings, rules, "action std schedule", names)

    def std_at(self, frames: int) -> float:
        """The std after ``frames`` collected samples."""
        progress = min(max(frames - self.start_frames, 0) / self.annealing_frames, 1.0)
        return self.std_init + (self.std_end - self.std_init) * progress

    def step(self, frames: int) -> float:
        """Sets the actor's std to :meth:`std_at` ``(frames)`` and returns it."""
        std = self.std_at(frames)
        self.head.set_std(std)
        return std
