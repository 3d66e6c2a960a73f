"""A model repository as a user would write it: parametrized zoo cases through the fixture and bare calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

# In-process pytester runs drop the modules they imported; torch cannot be imported twice in a process.
import pytest_attnfaith.assertions  # imports torch and the audit machinery once, here
import pytest_attnfaith.zoo  # noqa: F401

MODEL_TESTS = """
import pytest
import pytest_attnfaith as af
from pytest_attnfaith.zoo import ZooModel, sentiment_task

INPUTS = sentiment_task(8).inputs()


def wrapped(kind):
    return af.wrap(ZooModel(kind), attention="attn", embeddings="embed")


@pytest.mark.parametrize("kind", ["faithful", "unused", "constant_values", "vanishing"])
def test_fixture(attnfaith, kind):
    attnfaith.assert_faithful(wrapped(kind), INPUTS)


@pytest.mark.parametrize("kind", ["faithful", "unused"])
def test_bare(kind):
    af.assert_attention_faithful(wrapped(kind), INPUTS, permutations=20, adversarial_steps=50)
"""

FAST_INI = "[pytest]\nattnfaith_permutations = 20\nattnfaith_adversarial_steps = 50\n"

CASES = {
    "test_models.py::test_fixture[faithful]": "passed",
    "test_models.py::test_fixture[unused]": "failed",
    "test_models.py::test_fixture[constant_values]": "failed",
    "test_models.py::test_fixture[vanishing]": "failed",
    "test_models.py::test_bare[faithful]": "passed",
    "test_models.py::test_bare[unused]": "failed",
}


@pytest.fixture
def model_repo(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_models=MODEL_TESTS)
    pytester.makeini(FAST_INI)
    return pytester


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
