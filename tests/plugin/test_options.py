"""Options merge as documented (defaults < ini < command line < marker < call); bad ones fail early and clearly."""

from __future__ import annotations

import pytest

PRECEDENCE_TESTS = """
import pytest
import pytest_attnfaith as af
from pytest_attnfaith.zoo import ZooModel, sentiment_task

pytestmark = pytest.mark.attnfaith(epsilon=0.2, delta=0.2)


class TestLevels:
    pytestmark = pytest.mark.attnfaith(delta=0.25, peak=0.25)

    @pytest.mark.attnfaith(peak=0.3, erasure_margin=0.3)
    @pytest.mark.parametrize("case", [pytest.param(1, marks=pytest.mark.attnfaith(erasure_margin=0.4, worst=4))])
    def test_merge(self, attnfaith, case):
        model = af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed")
        report = attnfaith.audit(model, sentiment_task(4).inputs(), checks=["uniform"], worst=5)
        used = {name: report.options[name] for name in EXPECTED}
        assert used == EXPECTED


EXPECTED = {
    "permutations": 11,    # ini only
    "adversaries": 3,      # ini 2 < command line 3
    "seed": 5,             # --attnfaith-option seed=4 < --attnfaith-seed 5
    "epsilon": 0.2,        # command line 0.15 < module marker 0.2
    "delta": 0.25,         # module marker 0.2 < class marker 0.25
    "peak": 0.3,           # class marker 0.25 < function marker 0.3
    "erasure_margin": 0.4, # function marker 0.3 < pytest.param marker 0.4
    "worst": 5,            # pytest.param marker 4 < call 5
    "batch_size": 64,      # default
}
"""

PRECEDENCE_INI = "[pytest]\nattnfaith_permutations = 11\nattnfaith_adversaries = 2\nattnfaith_epsilon = 0.1\n"


def test_options_merge_defaults_ini_command_line_markers_then_call(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_precedence=PRECEDENCE_TESTS)
    pytester.makeini(PRECEDENCE_INI)
    args = ["--attnfaith-option", "adversaries=3", "--attnfaith-option", "epsilon=0.15", "--attnfaith-option", "seed=4"]
    result = pytester.runpytest(*args, "--attnfaith-seed", "5")
    result.assert_outcomes(passed=1)


def test_pyproject_ini_options_are_read(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nattnfaith_permutations = 7\nattnfaith_checks = "gradient loo"\n')
    pytester.makepyfile(
        test_ini="""
        def test_options(attnfaith):
            assert attnfaith.options == {"permutations": 7, "checks": ("gradient", "loo")}
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_unknown_marker_key_is_a_collection_error_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_typo="""
        import pytest

        @pytest.mark.attnfaith(epsilonn=0.1)
        def test_model(attnfaith):
            pass

        def test_other():
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting test_typo.py*",
            "*test_typo.py::test_model: @pytest.mark.attnfaith: unknown option 'epsilonn' (did you mean 'epsilon'?)*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_bad_marker_value_is_a_collection_error_with_the_expectation(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.parametrize("n", [pytest.param(0, marks=pytest.mark.attnfaith(permutations=0))])
        def test_model(attnfaith, n):
            pass
        """
    )
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(
        ["*test_model[[]0[]]: @pytest.mark.attnfaith: option permutations=0 is not valid: expected an integer >= 1*"]
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED


@pytest.mark.parametrize(
    ("ini", "args", "message"),
    [
        (
            "[pytest]\nattnfaith_epsilon = 2\n",
            [],
            "ini key attnfaith_epsilon: option epsilon=2 is not valid: expected a number in (0, 1]",
        ),
        ("[pytest]\n", ["--attnfaith-option", "epsilon"], "--attnfaith-option 'epsilon': expected KEY=VALUE*"),
        (
            "[pytest]\n",
            ["--attnfaith-option", "epsilom=0.1"],
            "--attnfaith-option: unknown option 'epsilom' (did you mean 'epsilon'?)*",
        ),
        ("[pytest]\n", ["--attnfaith-baseline", "missing.json"], "--attnfaith-baseline: cannot read baseline missing.json*"),
    ],
)
def test_bad_session_options_are_usage_errors(pytester: pytest.Pytester, ini: str, args: list[str], message: str) -> None:
    pytester.makeini(ini)
    pytester.makepyfile(test_empty="def test_nothing():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
