"""One check for the settings of every component, so a recipe validating its config and the
component validating its arguments say the same thing, naming the setting as the caller calls it.

A rule is a type, a range or both (``"int >= 1"``), and may end in ``"or null"``; a rule without
a type (``"> 0"``) is for a finite number. A value of the wrong type is refused whatever its
truth: Hydra hands ``train.compile=maybe`` over as the string ``'maybe'`` (true in an ``if``)
and ``buffer.size=4096.5`` as a float.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

RANGES = {
    "> 0": lambda v: v > 0,
    ">= 0": lambda v: v >= 0,
    ">= 1": lambda v: v >= 1,
    "in [0, 1]": lambda v: 0 <= v <= 1,
}
# The networks' hidden layers may hold this many weights at most (counted between consecutive
# layers, plus one input and one output weight per unit): 10^8 float32 weights are 400 MB per
# network before its gradients and optimizer state, far beyond these tasks' MLPs (128 x 64).
MAX_HIDDEN_WEIGHTS = 100_000_000


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_list(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def hidden_weights(widths: Sequence[int]) -> int:
    """The weights of hidden layers of ``widths``: between consecutive layers, plus one input and
    one output weight per unit (the task's dimensions, unknown before its environment exists)."""
    return sum(a * b for a, b in zip(widths, widths[1:])) + 2 * sum(widths)


def _is_widths(value: object) -> bool:
    return (
        _is_list(value)
        and len(value) > 0
        and all(_is_int(width) and width > 0 for width in value)
        and hidden_weights(value) <= MAX_HIDDEN_WEIGHTS
    )


# Each type: what the message says a value must be, and the test of a value.
TYPES = {
    "number": ("a number", _is_number),
    "int": ("an integer", _is_int),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "path": ("a non-empty string (a path)", lambda v: isinstance(v, str) and bool(v.strip())),
    "list": ("a list", _is_list),
    "dict": ("a mapping", lambda v: isinstance(v, Mapping)),
    "widths": (
        f"a non-empty list of positive integers whose layers hold at most {MAX_HIDDEN_WEIGHTS:,} weights",
        _is_widths,
    ),
}


@functools.cache
def parse_rule(rule: str) -> tuple[str, str | None, bool]:
    """``(type, range or None, whether null is allowed)`` of a rule."""
    nullable = rule.endswith(" or null")
    rule = rule.removesuffix(" or null")
    kind, _, bound = rule.partition(" ")
    if kind not in TYPES:
        kind, bound = "number", rule
    if bound and bound not in RANGES:
        raise KeyError(f"Unknown settings rule {rule!r}; ranges: {', '.join(RANGES)}; types: {', '.join(TYPES)}.")
    return kind, bound or None, nullable


def check_settings(
    settings: Mapping[str, object],
    rules: Mapping[str, str],
    what: str,
    names: Mapping[str, str] | None = None,
    optional: tuple[str, ...] = (),
) -> None:
    """Raises one ``ValueError`` naming every setting that breaks its rule.

    ``rules`` maps a setting to its rule (see the module's docstring); ``names`` renames settings
    in the message (e.g. ``total_frames`` -> ``collector.total_frames``); settings in
    ``optional`` may be None whatever their rule says.
    """
    names = names or {}
    bad = []
    for name, rule in rules.items():
        kind, bound, nullable = parse_rule(rule)
        value = settings[name]
        if value is None and (nullable or name in optional):
            continue
        description, is_kind = TYPES[kind]
        if not is_kind(value):
            needed = " ".join(filter(None, (description, bound))) + (" or null" if nullable else "")
            if kind == "int" and isinstance(value, float) and value.is_integer():
                needed += f"; write {int(value)}"  # 1e6 is a float to Hydra
        elif bound and not RANGES[bound](value):
            needed = bound
        else:
            continue
        bad.append(f"{names.get(name, name)}={value!r} (must be {needed})")
    if bad:
        raise ValueError(f"Invalid {what}: {', '.join(bad)}.")
