"""The package's warnings point at the user's line, however many of the package's frames lie between."""

from __future__ import annotations

import warnings

import pytest_attnfaith as af
from pytest_attnfaith.zoo import ZooModel, sentiment_task


def test_an_inconclusive_warning_names_the_callers_file_and_line() -> None:
    model = af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed")
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")
        af.audit(model, sentiment_task(3).inputs(), checks=["uniform"])
    found = [w for w in log if issubclass(w.category, af.InconclusiveWarning)]
    assert found and all(w.filename == __file__ for w in found)
