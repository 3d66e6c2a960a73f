"""Where audit options come from in a pytest run, and how they merge.

Precedence, lowest first: the library defaults < ``[tool.pytest.ini_options]`` keys
``attnfaith_<option>`` < the command line (``--attnfaith-option KEY=VALUE``, then
``--attnfaith-seed``) < ``@pytest.mark.attnfaith(**options)`` markers (module < class <
function < ``pytest.param(marks=...)``; of two markers on one function, the upper one) < the
keyword arguments of the fixture's call.
Every value is validated with ``validate_option`` as soon as it is read. Imports no torch.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.options import OPTION_NAMES, Options, parse_option_text, validate_option

INI_PREFIX = "attnfaith_"
MARKER = "attnfaith"


def add_ini_keys(parser: pytest.Parser) -> None:
    """One ini key ``attnfaith_<option>`` per audit option."""
    defaults = Options().to_dict()
    for name in OPTION_NAMES:
        parser.addini(INI_PREFIX + name, f"attnfaith audit option {name} (default: {defaults[name]!r})", default=None)


def ini_options(config: pytest.Config) -> dict[str, Any]:
    """The ``attnfaith_*`` ini keys that are set, validated."""
    options = {}
    for name in OPTION_NAMES:
        raw = config.getini(INI_PREFIX + name)
        if raw is None or raw == "":
            continue
        where = f"ini key {INI_PREFIX}{name}"
        value = _parsed(name, raw, where) if isinstance(raw, str) else raw
        options[name] = _validated(name, value, where)
    return options


def command_line_options(config: pytest.Config) -> dict[str, Any]:
    """``--attnfaith-option KEY=VALUE`` (repeatable) and ``--attnfaith-seed N``, validated."""
    options = {}
    for text in config.getoption("attnfaith_option") or []:
        name, sep, value = text.partition("=")
        name = name.strip()
        if not sep or not name:
            raise pytest.UsageError(f"--attnfaith-option {text!r}: expected KEY=VALUE, e.g. --attnfaith-option epsilon=0.1")
        options[name] = _validated(name, _parsed(name, value, "--attnfaith-option"), "--attnfaith-option")
    seed = config.getoption("attnfaith_seed")
    if seed is not None:
        options["seed"] = _validated("seed", seed, "--attnfaith-seed")
    return options


def configured_options(config: pytest.Config) -> dict[str, Any]:
    """The session-wide options: ini keys overridden by the command line."""
    return {**ini_options(config), **command_line_options(config)}


def marker_options(item: pytest.Item) -> dict[str, Any]:
    """The options of every ``attnfaith`` marker on ``item``: module < class < function < ``pytest.param`` marks."""
    options: dict[str, Any] = {}
    for node in item.listchain():
        for mark in node.own_markers:
            if mark.name != MARKER:
                continue
            if mark.args:
                raise AttnFaithError(f"@pytest.mark.{MARKER} takes keyword options only (e.g. epsilon=0.1), got {mark.args!r}")
            options.update({name: validate_option(name, value) for name, value in mark.kwargs.items()})
    return options


def _parsed(name: str, text: str, where: str) -> Any:
    try:
        return parse_option_text(name, text)
    except AttnFaithError as err:
        raise pytest.UsageError(f"{where}: {err}") from None


def _validated(name: str, value: Any, where: str) -> Any:
    try:
        return validate_option(name, value)
    except AttnFaithError as err:
        raise pytest.UsageError(f"{where}: {err}") from None
