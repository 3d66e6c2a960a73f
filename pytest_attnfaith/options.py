"""Audit options: defaults, documentation and validation in one table.

Every option is validated here, before any model is run, with errors that name the option,
the value and what was expected (in the style of scikit-learn's parameter validation).
Importing this module imports neither torch nor transformers, so the pytest plugin can
validate markers and ini values at collection time.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pytest_attnfaith.errors import AttnFaithError

CHECK_NAMES: tuple[str, ...] = ("gradient", "loo", "permutation", "adversarial", "uniform", "erasure")
QUESTIONS: dict[str, tuple[str, ...]] = {
    "used": ("permutation", "uniform", "erasure"),
    "agrees": ("gradient", "loo"),
    "unique": ("adversarial",),
}
# Explanation audits (``af.audit_explanation``): the checks that take any explainer's scores, and their questions.
EXPLANATION_CHECK_NAMES: tuple[str, ...] = ("comprehensiveness", "sufficiency")
EXPLANATION_CHECKS: tuple[str, ...] = (*EXPLANATION_CHECK_NAMES, "gradient", "loo")
EXPLANATION_QUESTIONS: dict[str, tuple[str, ...]] = {
    "comprehensive": ("comprehensiveness",),
    "sufficient": ("sufficiency",),
    "agrees": ("gradient", "loo"),
}
EXPLAINER_NAMES: tuple[str, ...] = (
    "attention",
    "rollout",
    "gradient_x_input",
    "integrated_gradients",
    "leave_one_out",
    "shapley",
)
ALL_CHECK_NAMES: tuple[str, ...] = (*CHECK_NAMES, *EXPLANATION_CHECK_NAMES)
IG_METHODS: tuple[str, ...] = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")


@dataclass(frozen=True)
class Options:
    """All options of an audit, with their defaults. See ``docs/`` for each check's options."""

    checks: tuple[str, ...] = CHECK_NAMES
    require: tuple[str, ...] = ("used", "agrees", "unique")
    seed: int = 0
    # the verdict: intervals over instances, and how an inconclusive required question counts
    confidence: float = 0.95
    inconclusive: str = "fail"
    # instance-level bounds
    epsilon: float = 0.05
    delta: float = 0.4
    peak: float = 0.5
    erasure_margin: float = 0.01
    # sampling and search budgets
    permutations: int = 100
    adversaries: int = 5
    adversarial_steps: int = 500
    adversarial_lr: float = 0.01
    adversarial_method: str = "auto"
    loo: str = "delete"
    mask_token_id: int | None = None
    # explanations: ERASER's bins and removal, the random orderings they are judged against, the explainers' budgets
    removal: str = "delete"
    aopc_bins: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.5)
    random_orderings: int = 10
    ig_steps: int = 50
    ig_method: str = "gausslegendre"
    ig_baseline: str = "zeros"
    ig_tolerance: tuple[float, float] | None = (0.005, 0.02)
    ig_max_steps: int = 2000
    shapley_samples: int = 25
    explanation_require: tuple[str, ...] = ("comprehensive", "sufficient")
    suggest_explainers: tuple[str, ...] = ()
    # check-level thresholds: min mean tau (agreement), max flagged fraction (the others)
    gradient_threshold: float = 0.25
    loo_threshold: float = 0.25
    permutation_threshold: float = 0.5
    uniform_threshold: float = 0.5
    erasure_threshold: float = 0.5
    adversarial_threshold: float = 0.5
    comprehensiveness_threshold: float = 0.05
    sufficiency_threshold: float = 0.05
    # which attention is read and replaced
    layer: int = -1
    head: str | int = "mean"
    aggregation: str = "attention"
    query: str | int = "auto"
    replace: str = "head"
    sink: str = "auto"
    per_head: bool = False
    # what the output is: the softmax over these logits (token ids or words of a causal LM, classes of a classifier)
    targets: tuple[int, ...] | tuple[str, ...] | None = None
    # execution
    batch_size: int = 64
    device: str | None = None
    worst: int = 3
    redact: bool = False
    progress: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in ("checks", "require", "aopc_bins", "explanation_require", "suggest_explainers"):
            out[name] = list(out[name])
        out["targets"] = list(self.targets) if self.targets is not None else None
        out["ig_tolerance"] = list(self.ig_tolerance) if self.ig_tolerance is not None else None
        return out


def _real(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Callable[[Any], float]:
    left, right = ("(" if lo_open else "["), (")" if hi_open else "]")
    expected = f"a number in {left}{lo:g}, {hi:g}{right}"

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise _bad(value, expected)
        if value < lo or value > hi or (lo_open and value == lo) or (hi_open and value == hi):
            raise _bad(value, expected)
        return float(value)

    check.expected = expected  # type: ignore[attr-defined]
    return check


def _integer(lo: int) -> Callable[[Any], int]:
    expected = f"an integer >= {lo}"

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise _bad(value, expected)
        return int(value)

    check.expected = expected  # type: ignore[attr-defined]
    return check


def _any_integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(value, "an integer (negative counts from the last layer)")
    return int(value)


def _optional_integer(value: Any) -> int | None:
    if value is None:
        return None
    return _integer(0)(value)


def _choice(*choices: str, integer: bool = False) -> Callable[[Any], Any]:
    expected = " or ".join(repr(c) for c in choices) + (" or an integer index" if integer else "")

    def check(value: Any) -> Any:
        if integer and isinstance(value, int) and not isinstance(value, bool):
            return value
        if value not in choices:
            raise _bad(value, expected)
        return value

    check.expected = expected  # type: ignore[attr-defined]
    return check


def _tolerance(value: Any) -> tuple[float, float] | None:
    """``ig_tolerance``: (absolute, relative) ≥ 0, not both 0; a single number is (it, 0); None: fixed steps."""
    expected = "(absolute, relative): two numbers >= 0, not both 0 (or one number, or None for fixed steps)"
    if value is None:
        return None
    pair = (value, 0.0) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    try:
        absolute, relative = (_real(0.0, math.inf)(part) for part in pair)
    except (TypeError, ValueError, AttnFaithError):
        raise _bad(value, expected) from None
    if absolute == relative == 0.0:
        raise _bad(value, expected)
    return absolute, relative


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _bad(value, "True or False")
    return value


def _names(
    allowed: Iterable[str], what: str, default: tuple[str, ...] | None = None, hint: dict[str, str] | None = None
) -> Callable[[Any], tuple[str, ...]]:
    """A tuple of distinct names from ``allowed`` (None: ``default``, else all); ``hint`` says where a known
    name of another table belongs."""
    allowed = tuple(allowed)

    def check(value: Any) -> tuple[str, ...]:
        if value is None:
            return default if default is not None else allowed
        if not isinstance(value, (str, Iterable)):
            raise AttnFaithError(f"{value!r} is not valid: expected a {what} name or a sequence of them, some of {allowed}")
        names = (value,) if isinstance(value, str) else tuple(value)
        for name in names:
            if name not in allowed:
                where = (hint or {}).get(name, "")
                raise AttnFaithError(
                    f"unknown {what} {name!r}{_suggest(name, allowed)}; expected some of {allowed}{'; ' + where if where else ''}"
                )
        if not names and what == "check":
            raise AttnFaithError(f"checks=() selects no check; expected at least one of {allowed} or None")
        return tuple(dict.fromkeys(names))

    return check


def _bins(value: Any) -> tuple[float, ...]:
    """ERASER's bins: fractions in (0, 1], at least one, sorted and distinct."""
    expected = "a non-empty sequence of fractions in (0, 1], e.g. (0.01, 0.05, 0.1, 0.2, 0.5)"
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise _bad(value, expected)
    bins = tuple(value)
    if not bins or any(isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 < q <= 1.0 for q in bins):
        raise _bad(value, expected)
    return tuple(sorted({float(q) for q in bins}))


def _targets(value: Any) -> tuple[int, ...] | tuple[str, ...] | None:
    """At least two distinct token ids (integers >= 0) or two distinct words (strings), not mixed."""
    if value is None:
        return None
    expected = "a sequence of at least two distinct token ids (integers >= 0) or words (strings), e.g. [' positive', ' negative']"
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise _bad(value, expected)
    items = tuple(operator.index(v) if _is_integer(v) else v for v in value)
    integers = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in items)
    words = all(isinstance(v, str) and v != "" for v in items)
    if not (integers or words):
        raise _bad(value, expected)
    if len(set(items)) < 2 or len(set(items)) != len(items):
        raise _bad(value, expected + f"; got {len(items)} targets, {len(set(items))} distinct")
    return items  # type: ignore[return-value]


def _is_integer(value: Any) -> bool:
    """An int, a numpy integer or a 0-d integer tensor (anything with ``__index__``), not a bool."""
    return not isinstance(value, bool) and hasattr(value, "__index__")


def _device(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    return value


class _BadValueError(AttnFaithError):
    pass


def _bad(value: Any, expected: str) -> _BadValueError:
    return _BadValueError(f"{value!r} is not valid: expected {expected}")


_RULES: dict[str, Callable[[Any], Any]] = {
    "checks": _names(ALL_CHECK_NAMES, "check", CHECK_NAMES),
    "require": _names(
        QUESTIONS,
        "question",
        hint={q: "explanation audits take explanation_require" for q in EXPLANATION_QUESTIONS if q not in QUESTIONS},
    ),
    "seed": _integer(0),
    "confidence": _real(0.5, 1.0, hi_open=True),
    "inconclusive": _choice("fail", "pass"),
    "epsilon": _real(0.0, 1.0, lo_open=True),
    "delta": _real(0.0, math.log(2.0), lo_open=True),
    "peak": _real(0.0, 1.0),
    "erasure_margin": _real(0.0, 1.0),
    "permutations": _integer(1),
    "adversaries": _integer(1),
    "adversarial_steps": _integer(1),
    "adversarial_lr": _real(0.0, 10.0, lo_open=True),
    "adversarial_method": _choice("auto", "exact", "search"),
    "loo": _choice("delete", "mask"),
    "mask_token_id": _optional_integer,
    "removal": _choice("delete", "mask"),
    "aopc_bins": _bins,
    "random_orderings": _integer(1),
    "ig_steps": _integer(2),
    "ig_method": _choice(*IG_METHODS),
    "ig_baseline": _choice("zeros", "mask", "mean"),
    "ig_tolerance": _tolerance,
    "ig_max_steps": _integer(2),
    "shapley_samples": _integer(1),
    "explanation_require": _names(EXPLANATION_QUESTIONS, "question of an explanation audit", ("comprehensive", "sufficient")),
    "suggest_explainers": _names(EXPLAINER_NAMES, "explainer", ()),
    "gradient_threshold": _real(-1.0, 1.0),
    "loo_threshold": _real(-1.0, 1.0),
    "permutation_threshold": _real(0.0, 1.0),
    "uniform_threshold": _real(0.0, 1.0),
    "erasure_threshold": _real(0.0, 1.0),
    "adversarial_threshold": _real(0.0, 1.0),
    "comprehensiveness_threshold": _real(-1.0, 1.0),
    "sufficiency_threshold": _real(-1.0, 1.0),
    "layer": _any_integer,
    "head": _choice("mean", integer=True),
    "aggregation": _choice("attention", "rollout"),
    "query": _choice("auto", "first", "last", "all", integer=True),
    "replace": _choice("head", "layer"),
    "sink": _choice("auto", "keep", "exclude"),
    "per_head": _boolean,
    "targets": _targets,
    "batch_size": _integer(1),
    "device": _device,
    "worst": _integer(0),
    "redact": _boolean,
    "progress": _boolean,
}

OPTION_NAMES: tuple[str, ...] = tuple(_RULES)


def _target_text(text: str) -> tuple[Any, ...] | None:
    """``2731, 3524`` or ``" positive", " negative"`` (quotes keep a word's spaces); empty: None."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        return None
    values: list[Any] = []
    for part in parts:
        if len(part) >= 2 and part[0] == part[-1] and part[0] in "'\"":
            values.append(part[1:-1])
        else:
            values.append(int(part) if part.isdigit() else part)
    return tuple(values)


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate_option(name: str, value: Any) -> Any:
    """Return the validated value of one option, or raise ``AttnFaithError`` naming it."""
    if name not in _RULES:
        raise AttnFaithError(f"unknown option {name!r}{_suggest(name, _RULES)}; known options: {', '.join(_RULES)}")
    try:
        return _RULES[name](value)
    except _BadValueError as err:
        raise AttnFaithError(f"option {name}={err}") from None


def resolve_options(**options: Any) -> Options:
    """Validate keyword options and return an ``Options`` with the defaults filled in."""
    values = {name: validate_option(name, value) for name, value in options.items()}
    resolved = Options(**values)
    if resolved.ig_max_steps < resolved.ig_steps:
        raise AttnFaithError(
            f"option ig_max_steps={resolved.ig_max_steps} is below ig_steps={resolved.ig_steps}; expected a cap of at "
            "least the first round's nodes"
        )
    return resolved


def parse_option_text(name: str, text: str) -> Any:
    """Convert an option given as text (ini file, command line) to its Python value."""
    default = getattr(Options(), name, None) if name in _RULES else None
    if name not in _RULES:
        return validate_option(name, text)
    if name in ("checks", "require", "explanation_require", "suggest_explainers"):
        return tuple(part.strip() for part in text.replace(",", " ").split() if part.strip())
    if name == "ig_tolerance":
        parts = text.replace(",", " ").split()
        try:
            return None if text.strip().lower() in ("", "none") else tuple(float(part) for part in parts)
        except ValueError:
            raise AttnFaithError(f"option ig_tolerance={text!r} is not valid: expected two numbers, e.g. 0.005 0.02") from None
    if name == "aopc_bins":
        try:
            return tuple(float(part) for part in text.replace(",", " ").split())
        except ValueError:
            raise AttnFaithError(f"option aopc_bins={text!r} is not valid: expected fractions, e.g. 0.01 0.05 0.1") from None
    if name == "device":
        return text or None
    if name == "targets":
        return _target_text(text)
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise AttnFaithError(f"option {name}={text!r} is not valid: expected true or false")
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text.strip()


def questions_for(kind: str) -> dict[str, tuple[str, ...]]:
    """The questions a report of ``kind`` answers: ``"attention"`` (used, agrees, unique) or ``"explanation"``
    (comprehensive, sufficient, agrees)."""
    return EXPLANATION_QUESTIONS if kind == "explanation" else QUESTIONS
