"""One module per check; each exposes ``run(context) -> CheckResult``."""

from __future__ import annotations

from collections.abc import Callable

from pytest_attnfaith.checks import adversarial, comprehensiveness, erasure, gradient, loo, permutation, sufficiency, uniform
from pytest_attnfaith.checks._common import Context
from pytest_attnfaith.results import CheckResult

CHECKS: dict[str, Callable[[Context], CheckResult]] = {
    "gradient": gradient.run,
    "loo": loo.run,
    "permutation": permutation.run,
    "adversarial": adversarial.run,
    "uniform": uniform.run,
    "erasure": erasure.run,
    "comprehensiveness": comprehensiveness.run,
    "sufficiency": sufficiency.run,
}

__all__ = ["CHECKS", "Context"]
