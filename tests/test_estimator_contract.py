"""The contract every registered estimator must meet, parametrised over the whole registry with the
library's own ``estimators.checks.parametrize_with_checks`` (an installed plugin is tested for free),
and proof that the checks catch what they are meant to catch."""
from __future__ import annotations

import numpy as np
import pytest

from estimators import ESTIMATORS, Estimator, register_estimator
from estimators.checks import check_estimator, checks_for, parametrize_with_checks


@parametrize_with_checks()
def test_estimator_contract(name, check):
    check(name)


class _Broken(Estimator):
    """A deliberately broken estimator: the mean of the first feature (test double for the checks,
    not a transferability measure; it exists so the contract can be seen to fail)."""
    higher_is_better = True
    version, description, citation = "1", "broken on purpose", "none"

    def compute(self, emb):
        return float(np.mean(emb.image[:, 0]))


@pytest.mark.parametrize("flaw, message", [
    ("nondeterministic", "with the same random_state"),
    ("order", "after shuffling the samples"),
    ("nan", "check_finite_and_deterministic: broken_nan raised InvalidInput: .* non-finite score"),
    ("undocumented", "docstring must give the formula"),
])
def test_check_estimator_names_the_broken_rule(flaw, message):
    calls = []

    def compute(self, emb):
        calls.append(1)
        if flaw == "nondeterministic":
            return float(len(calls))
        if flaw == "order":
            return float(emb.image[0, 0])
        if flaw == "nan":
            return float("nan")
        return float(np.mean(emb.image))

    attrs = {"compute": compute, "__doc__": "short" if flaw == "undocumented" else _Broken.__doc__}
    with ESTIMATORS.scoped():
        register_estimator(f"broken_{flaw}")(type(f"Broken{flaw}", (_Broken,), attrs))
        with pytest.raises(AssertionError, match=message):
            check_estimator(f"broken_{flaw}")


def test_checks_follow_what_an_estimator_declares():
    with ESTIMATORS.scoped():
        cls = register_estimator("broken_needs")(type("BrokenNeeds", (_Broken,), {"needs": ("text",),
                                                                                 "min_per_class": 2,
                                                                                 "measures_separability": False,
                                                                                 "__doc__": _Broken.__doc__}))
        names = [c.__name__ for c in checks_for("broken_needs")]
        assert "check_missing_needs" in names and "check_too_few_samples_per_class" in names
        assert "check_separable_classes_beat_noise" not in names  # it does not claim to measure separability
        check_estimator(cls)  # a class is checked under its registered name; the base class enforces needs
