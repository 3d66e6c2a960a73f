"""Words from ``wrap(vocabulary=...)`` in every report, hostile ones escaped; ``redact`` keeps them out of every artifact.

A user's repository runs through pytest with a vocabulary of unique, hostile token strings (markup, quotes,
terminal escapes, bidi overrides), each carrying the marker ``zq``; the artifacts are then searched for it.
"""

from __future__ import annotations

import html
from pathlib import Path

import pytest

from tests.plugin.conftest import read_json

HOSTILE_TESTS = """
import pytest
import pytest_attnfaith as af
from pytest_attnfaith.zoo import VOCAB, ZooModel, sentiment_task

MARKUP = ["<script>alert('zq{}')</script>", 'zq{}" onmouseover="alert(1)', "zq{}&amp;<b>", "zq{}\\x1b[31mred", "zq{}\\u202egnp"]
WORDS = ["<pad>"] + [MARKUP[i % len(MARKUP)].format(i) for i in range(1, VOCAB)]
INPUTS = sentiment_task(6).inputs()


def wrapped(kind):
    return af.wrap(ZooModel(kind), attention="attn", embeddings="embed", vocabulary=WORDS)


def test_faithful(attnfaith):
    attnfaith.assert_faithful(wrapped("faithful"), INPUTS)


def test_decorative(attnfaith):
    attnfaith.assert_faithful(wrapped("unused"), INPUTS)


def test_audit_only(attnfaith):
    attnfaith.audit(wrapped("misleading"), INPUTS)


@pytest.fixture
def vocabulary_check():
    raise ValueError("unknown token " + WORDS[3])


def test_errors_before_its_audit(attnfaith, vocabulary_check):
    pass
"""

FAST_INI = "[pytest]\nattnfaith_permutations = 10\nattnfaith_checks = gradient loo permutation uniform\n"
MARKER = "zq"


@pytest.fixture
def hostile_repo(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_hostile=HOSTILE_TESTS)
    return pytester


AUDITED = "not errors_before"  # the test that errors shows the user's own exception text in pytest's reports


def run(repo: pytest.Pytester, ini: str, *args: str) -> tuple[str, dict[str, Path]]:
    """Every sink at once: pytest's terminal (``-v -rA``: failures, the attnfaith section, the short summary), the
    attnfaith JSON and HTML, and the JUnit XML."""
    repo.makeini(ini)
    files = {name: repo.path / name for name in ("out.json", "out.html", "junit.xml")}
    result = repo.runpytest(
        "-v", "-rA", "--attnfaith-json", "out.json", "--attnfaith-html", "out.html", "--junitxml", "junit.xml", *args
    )
    return result.stdout.str() + result.stderr.str(), files


def test_redact_leaves_no_token_text_in_json_html_junit_or_terminal(hostile_repo: pytest.Pytester) -> None:
    output, files = run(hostile_repo, FAST_INI + "attnfaith_redact = true\n", "-k", AUDITED)
    assert "2 passed" in output and "1 failed" in output
    assert MARKER not in output
    for path in files.values():
        assert MARKER not in path.read_text(encoding="utf-8"), path.name
    (report,) = read_json(files["out.json"])["tests"]["test_hostile.py::test_decorative"]
    assert report["options"]["redact"] is True
    assert report["instances"]["tokens"][0][:3] == ["#0", "#1", "#2"]
    assert "token         #0" in output and "worst instances" in output  # the tables are still there, by position
    assert 'class="heat"' in files["out.html"].read_text(encoding="utf-8")


def test_redact_keeps_only_the_exception_name_of_a_test_that_failed_before_its_audit(hostile_repo: pytest.Pytester) -> None:
    _, files = run(hostile_repo, FAST_INI + "attnfaith_redact = true\n", "-k", "errors_before")
    document = read_json(files["out.json"])
    assert document["messages"] == {"test_hostile.py::test_errors_before_its_audit": "ValueError (message withheld: redact)"}
    assert MARKER not in files["out.html"].read_text(encoding="utf-8")


def test_without_redact_the_words_appear_and_are_escaped(hostile_repo: pytest.Pytester) -> None:
    output, files = run(hostile_repo, FAST_INI)
    assert "2 passed" in output and "1 failed" in output and "1 error" in output
    document = read_json(files["out.json"])
    (report,) = document["tests"]["test_hostile.py::test_decorative"]
    tokens = {token for row in report["instances"]["tokens"][:3] for token in row}  # the heat-mapped worst instances
    script = next(token for token in tokens if token.startswith("<script>"))
    assert any("\x1b[31m" in token for token in tokens) and any("\u202e" in token for token in tokens)
    page = files["out.html"].read_text(encoding="utf-8")
    assert html.escape(script) in page
    assert "<script" not in page and "&amp;<b>" not in page and '" onmouseover' not in page and "\x1b" not in page
    assert "\\x1b[31mred" in page and "\\u202egnp" in page  # control and bidi characters shown as escapes
    section = output.split("= attnfaith =")[1].split("short test summary")[0]
    assert "\\x1b[31" in section and "\x1b[31mred" not in section
    message = document["messages"]["test_hostile.py::test_errors_before_its_audit"]
    assert message == "ValueError: unknown token zq3\\x1b[31mred"  # one printable line


def test_worst_0_shows_no_instance_anywhere(hostile_repo: pytest.Pytester) -> None:
    output, files = run(hostile_repo, FAST_INI + "attnfaith_worst = 0\n", "-k", AUDITED)
    assert 'class="heat"' not in files["out.html"].read_text(encoding="utf-8")
    assert "worst instances" not in output and "token " not in output and MARKER not in output
