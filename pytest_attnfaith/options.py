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
    "attention_norm",
    "value_zeroing",
    "alti",
    "attention_gradient",
    "attention_flow",
)
ALL_CHECK_NAMES: tuple[str, ...] = (*CHECK_NAMES, *EXPLANATION_CHECK_NAMES)
IG_METHODS: tuple[str, ...] = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")


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


def _or_none(rule: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``rule``, or None (no limit)."""

    def check(value: Any) -> Any:
        return None if value is None else rule(value)

    check.expected = f"{rule.expected} or None"  # type: ignore[attr-defined]
    return check


def _optional_integer(value: Any) -> int | None:
    if value is None:
        return None
    return _integer(0)(value)


def _optional_real(lo: float, hi: float) -> Callable[[Any], float | None]:
    number = _real(lo, hi)

    def check(value: Any) -> float | None:
        return None if value is None else number(value)

    check.expected = f"None or {number.expected}"  # type: ignore[attr-defined]
    return check


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


def _baseline(value: Any) -> str | tuple[float, ...]:
    """``"zero"``, ``"mean"``, or a vector (D,) (a 1-D tensor or a sequence of finite numbers) kept as a tuple."""
    expected = "'zero', 'mean', or a vector of D finite numbers (a 1-D tensor or a list)"
    if isinstance(value, str):
        if value not in ("zero", "mean"):
            raise _bad(value, expected)
        return value
    try:
        vector = [float(v) for v in (value.detach().cpu().reshape(-1).tolist() if hasattr(value, "detach") else value)]
    except (TypeError, ValueError):
        raise _bad(value, expected) from None
    if not vector or not all(math.isfinite(v) for v in vector) or (hasattr(value, "dim") and value.dim() != 1):
        raise _bad(value, expected)
    return tuple(vector)


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


def _target_text(name: str, text: str) -> tuple[Any, ...] | None:
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


def parse_option_text(name: str, text: str) -> Any:
    """Convert an option given as text (ini file, command line) to its Python value (unknown names: the error)."""
    if name not in _RULES:
        return validate_option(name, text)
    return _TEXT[name](name, text)


def _words(name: str, text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.replace(",", " ").split() if part.strip())


def _bins_text(name: str, text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.replace(",", " ").split())
    except ValueError:
        raise AttnFaithError(f"option {name}={text!r} is not valid: expected fractions, e.g. 0.01 0.05 0.1") from None


def _device_text(name: str, text: str) -> str | None:
    return text or None


def _optional_text(name: str, text: str) -> Any:
    """``None`` for an empty value or "none", else a number."""
    return None if text.strip().lower() in ("", "none") else _scalar_text(name, text)


def _flag_text(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise AttnFaithError(f"option {name}={text!r} is not valid: expected true or false")


def _scalar_text(name: str, text: str) -> Any:
    """An integer, else a number, else the text itself."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text.strip()


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


def _tolerance_text(name: str, text: str) -> tuple[float, ...] | None:
    """``0.005 0.02`` (or ``0.005, 0.02``; one number: absolute only); ``none`` or empty: None (fixed steps)."""
    if text.strip().lower() in ("", "none"):
        return None
    try:
        return tuple(float(part) for part in text.replace(",", " ").split())
    except ValueError:
        raise AttnFaithError(f"option {name}={text!r} is not valid: expected two numbers, e.g. 0.005 0.02") from None


def _option(default: Any, rule: Callable[[Any], Any], text: Callable[[str, str], Any] = _scalar_text) -> Any:
    """One row of the options table: the default, the rule that validates a value, how text is read."""
    return dataclasses.field(default=default, metadata={"rule": rule, "text": text})


@dataclass(frozen=True)
class Options:
    """All options of an audit: one row each — its type, its default, the rule that validates a value, and how a
    value given as text (ini file, command line) is read (``_option``). See ``docs/options.md`` for each."""

    checks: tuple[str, ...] = _option(CHECK_NAMES, _names(ALL_CHECK_NAMES, "check", CHECK_NAMES), _words)
    require: tuple[str, ...] = _option(
        ("used", "agrees", "unique"),
        _names(
            QUESTIONS,
            "question",
            hint={q: "explanation audits take explanation_require" for q in EXPLANATION_QUESTIONS if q not in QUESTIONS},
        ),
        _words,
    )
    seed: int = _option(0, _integer(0))
    # the verdict: intervals over instances, and how an inconclusive required question counts
    confidence: float = _option(0.95, _real(0.5, 1.0, hi_open=True))
    inconclusive: str = _option("fail", _choice("fail", "pass"))
    # what an effect is measured on: the logits' decision margin (scale-free) or the output probabilities (0.2)
    scale: str = _option("margin", _choice("margin", "probability"))
    resolution: float | None = _option(None, _optional_real(0.0, 1.0), _optional_text)
    # instance-level bounds
    epsilon: float = _option(0.05, _real(0.0, 1.0, lo_open=True))
    delta: float = _option(0.4, _real(0.0, math.log(2.0), lo_open=True))
    peak: float = _option(0.5, _real(0.0, 1.0))
    erasure_margin: float = _option(0.01, _real(0.0, 1.0))
    # sampling and search budgets
    permutations: int = _option(100, _integer(1))
    adversaries: int = _option(5, _integer(1))
    adversarial_steps: int = _option(500, _integer(1))
    adversarial_lr: float = _option(0.01, _real(0.0, 10.0, lo_open=True))
    adversarial_method: str = _option("auto", _choice("auto", "exact", "search"))
    loo: str = _option("delete", _choice("delete", "mask"))
    mask_token_id: int | None = _option(None, _optional_integer)
    # explanations: ERASER's bins and removal, the random orderings they are judged against, the explainers' budgets
    removal: str = _option("delete", _choice("delete", "mask"))
    # inputs without token ids (images): what replaces a removed position's embedding, where IG starts
    baseline: str | tuple[float, ...] = _option("zero", _baseline)
    aopc_bins: tuple[float, ...] = _option((0.01, 0.05, 0.1, 0.2, 0.5), _bins, _bins_text)
    random_orderings: int = _option(10, _integer(1))
    ig_steps: int = _option(50, _integer(2))
    ig_method: str = _option("gausslegendre", _choice(*IG_METHODS))
    ig_baseline: str = _option("zeros", _choice("zeros", "mask", "mean"))
    ig_tolerance: tuple[float, float] | None = _option((0.005, 0.02), _tolerance, _tolerance_text)
    ig_max_steps: int = _option(2000, _integer(2))
    shapley_samples: int = _option(25, _integer(1))
    explanation_require: tuple[str, ...] = _option(
        ("comprehensive", "sufficient"),
        _names(EXPLANATION_QUESTIONS, "question of an explanation audit", ("comprehensive", "sufficient")),
        _words,
    )
    suggest_explainers: tuple[str, ...] = _option((), _names(EXPLAINER_NAMES, "explainer", ()), _words)
    # check-level thresholds: min mean tau (agreement), max flagged fraction (the others)
    gradient_threshold: float = _option(0.25, _real(-1.0, 1.0))
    loo_threshold: float = _option(0.25, _real(-1.0, 1.0))
    permutation_threshold: float = _option(0.5, _real(0.0, 1.0))
    uniform_threshold: float = _option(0.5, _real(0.0, 1.0))
    erasure_threshold: float = _option(0.5, _real(0.0, 1.0))
    adversarial_threshold: float = _option(0.5, _real(0.0, 1.0))
    comprehensiveness_threshold: float = _option(0.05, _real(-1.0, 1.0))
    sufficiency_threshold: float = _option(0.05, _real(-1.0, 1.0))
    # which attention is read and replaced
    layer: int = _option(-1, _any_integer)
    head: str | int = _option("mean", _choice("mean", integer=True))
    aggregation: str = _option("attention", _choice("attention", "rollout"))
    query: str | int = _option("auto", _choice("auto", "first", "last", "all", integer=True))
    replace: str = _option("head", _choice("head", "layer"))
    sink: str = _option("auto", _choice("auto", "keep", "exclude"))
    per_head: bool = _option(False, _boolean, _flag_text)
    # what the output is: the softmax over these logits (token ids or words of a causal LM, classes of a classifier)
    targets: tuple[int, ...] | tuple[str, ...] | None = _option(None, _targets, _target_text)
    # execution
    batch_size: int = _option(64, _integer(1))
    device: str | None = _option(None, _device, _device_text)
    worst: int = _option(3, _integer(0))
    redact: bool = _option(False, _boolean, _flag_text)
    progress: bool = _option(False, _boolean, _flag_text)
    # sequential audits: draw batch_size instances at a time until every required question is decided
    sequential: bool = _option(False, _boolean, _flag_text)
    max_instances: int | None = _option(None, _or_none(_integer(1)))
    # cost budgets: refuse an audit whose estimate (af.estimate) exceeds them, before any counterfactual runs
    max_passes: int | None = _option(None, _or_none(_integer(1)))
    budget_seconds: float | None = _option(None, _or_none(_real(0.0, math.inf, lo_open=True, hi_open=True)))

    def to_dict(self) -> dict[str, Any]:
        """Every option by name, sequences as lists (JSON)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}


_RULES: dict[str, Callable[[Any], Any]] = {f.name: f.metadata["rule"] for f in dataclasses.fields(Options)}
_TEXT: dict[str, Callable[[str, str], Any]] = {f.name: f.metadata["text"] for f in dataclasses.fields(Options)}
OPTION_NAMES: tuple[str, ...] = tuple(_RULES)


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
    """Validate keyword options and return an ``Options`` with the defaults filled in. A ``require`` (or
    ``explanation_require``) given explicitly must name only questions that a selected check answers."""
    values = {name: validate_option(name, value) for name, value in options.items()}
    resolved = Options(**values)
    for name, questions in (("require", QUESTIONS), ("explanation_require", EXPLANATION_QUESTIONS)):
        if name in values:
            _check_answerable(name, values[name], questions, resolved.checks)
    if resolved.ig_max_steps < resolved.ig_steps:
        raise AttnFaithError(
            f"option ig_max_steps={resolved.ig_max_steps} is below ig_steps={resolved.ig_steps}; expected a cap of at "
            "least the first round's nodes"
        )
    return resolved


def _check_answerable(
    name: str, required: tuple[str, ...], questions: dict[str, tuple[str, ...]], checks: tuple[str, ...]
) -> None:
    """Refuse a required question that none of ``checks`` answers: it could never be answered yes."""
    for question in required:
        answering = questions.get(question, ())
        if not any(check in checks for check in answering):
            raise AttnFaithError(
                f"option {name} names {question!r}, but no selected check answers it (checks={list(checks)}); "
                f"expected checks to include one of {list(answering)}, or {name} without {question!r}"
            )


def questions_for(kind: str) -> dict[str, tuple[str, ...]]:
    """The questions a report of ``kind`` answers: ``"attention"`` (used, agrees, unique) or ``"explanation"``
    (comprehensive, sufficient, agrees)."""
    return EXPLANATION_QUESTIONS if kind == "explanation" else QUESTIONS
