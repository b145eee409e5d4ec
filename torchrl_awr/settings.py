"""One check for the numeric settings of every component, so a recipe validating its config and
the component validating its arguments say the same thing, naming the setting as the caller
calls it."""

from __future__ import annotations

import math
from collections.abc import Mapping

RULES = {
    "> 0": lambda v: v > 0,
    ">= 0": lambda v: v >= 0,
    ">= 1": lambda v: v >= 1,
    "in [0, 1]": lambda v: 0 <= v <= 1,
}


def check_settings(
    settings: Mapping[str, object],
    rules: Mapping[str, str],
    what: str,
    names: Mapping[str, str] | None = None,
    optional: tuple[str, ...] = (),
) -> None:
    """Raises one ``ValueError`` naming every setting that is not a finite number obeying its rule.

    ``rules`` maps a setting to one of :data:`RULES`; ``names`` renames settings in the message
    (e.g. ``total_frames`` -> ``collector.total_frames``); settings in ``optional`` may be None.
    """
    names = names or {}
    bad = []
    for name, rule in rules.items():
        value = settings[name]
        if value is None and name in optional:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not (number and RULES[rule](value)):
            bad.append(f"{names.get(name, name)}={value!r} (must be {'a number ' if not number else ''}{rule})")
    if bad:
        raise ValueError(f"Invalid {what}: {', '.join(bad)}.")
