"""The marker and the fixture take a source: a sequential audit from marker options, recorded like any other."""

from __future__ import annotations

import pytest

import pytest_attnfaith.assertions  # noqa: F401  (torch imported once, outside pytester's runs)


def test_the_marker_makes_the_fixture_audit_a_source_sequentially(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_sequential="""
        import pytest
        from hypothesis import strategies as st
        import pytest_attnfaith as af
        from pytest_attnfaith.zoo import ZooModel, sentiment_task

        def wrapped(kind):
            return af.wrap(ZooModel(kind), attention="attn", embeddings="embed")

        @pytest.mark.attnfaith(sequential=True, max_instances=160, batch_size=16, permutations=20, adversarial_steps=50)
        def test_mapping(attnfaith):
            report = attnfaith.assert_faithful(wrapped("faithful"), sentiment_task(400, seed=1).inputs())
            assert report.options["sequential"] and report.instances_used < 160

        @pytest.mark.attnfaith(sequential=True, max_instances=48, batch_size=16, checks=["uniform"], require=["used"])
        def test_strategy(attnfaith):
            source = st.integers(0, 999).map(lambda seed: sentiment_task(16, seed=seed).inputs())
            report = attnfaith.audit(wrapped("unused"), source)
            assert report.verdicts["used"] == "no" and report.instances_used <= 48
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
