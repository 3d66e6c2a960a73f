"""``sufficiency``: do the explanation's top tokens alone keep the prediction better than random ones?

ERASER (DeYoung et al. 2020): per instance, mean over the bins q of p_ŷ(x) − p_ŷ(only the top ⌈q·n⌉ tokens
kept; special tokens always kept) (``per_instance``; lower: the top tokens suffice). The verdict is the mean
gain over random orderings of the same tokens (random − explanation), which must reach
``sufficiency_threshold`` (``checks._eraser``).
"""

from __future__ import annotations

from pytest_attnfaith.checks import _eraser
from pytest_attnfaith.checks._common import Context
from pytest_attnfaith.results import CheckResult

MEANING = (
    "keeping only the tokens the explanation ranks highest preserves the predicted class's probability no better than "
    "keeping random tokens: the explanation does not find the tokens that suffice for the output"
)


def run(context: Context) -> CheckResult:
    return _eraser.run(context, "sufficiency", MEANING)
