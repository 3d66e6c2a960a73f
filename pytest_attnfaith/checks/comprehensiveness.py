"""``comprehensiveness``: does removing the explanation's top tokens hurt the prediction more than removing random ones?

ERASER (DeYoung et al. 2020): per instance, mean over the bins q of p_ŷ(x) − p_ŷ(x without its top ⌈q·n⌉
tokens) (``per_instance``; higher: the explanation found what the output depends on). The verdict is the
mean gain over random orderings of the same tokens, which must reach ``comprehensiveness_threshold``
(``checks._eraser``).
"""

from __future__ import annotations

from pytest_attnfaith.checks import _eraser
from pytest_attnfaith.checks._common import Context
from pytest_attnfaith.results import CheckResult

MEANING = (
    "removing the tokens the explanation ranks highest lowers the predicted class's probability no more than removing "
    "random tokens: the explanation does not find the tokens the output depends on"
)


def run(context: Context) -> CheckResult:
    return _eraser.run(context, "comprehensiveness", MEANING)
