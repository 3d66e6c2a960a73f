"""Hypothesis settings profiles for tests whose examples each run a model.

Importing this module imports neither torch nor transformers (the pytest plugin may register the
profiles at start-up). Select one in a test module or ``conftest.py``::

    from hypothesis import settings
    settings.load_profile("attnfaith")
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, Phase, settings

PROFILE = "attnfaith"
PROFILE_NO_SHRINK = "attnfaith-noshrink"
MAX_EXAMPLES = 10


def in_ci() -> bool:
    """True when the environment variable ``CI`` is set to something other than false/0/empty."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


def register_profiles(max_examples: int = MAX_EXAMPLES) -> tuple[str, str]:
    """Register ``attnfaith`` and ``attnfaith-noshrink`` and return their names.

    Both: no deadline (a model call is slow and its time varies), ``max_examples`` examples, the
    ``too_slow`` health check suppressed, and under CI (``CI=true``) derandomized, without the
    example database, printing the reproduction blob. ``attnfaith-noshrink`` also skips the shrink
    phase: report the first failure found, for a quick signal on an expensive model.
    """
    ci = in_ci()
    common: dict[str, Any] = {
        "deadline": None,
        "max_examples": max_examples,
        "suppress_health_check": [HealthCheck.too_slow],
        "derandomize": ci,
        "print_blob": ci,
    }
    if ci:
        common["database"] = None
    settings.register_profile(PROFILE, **common)
    settings.register_profile(PROFILE_NO_SHRINK, phases=[phase for phase in Phase if phase != Phase.shrink], **common)
    return PROFILE, PROFILE_NO_SHRINK
