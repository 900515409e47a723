"""Cross-check against pyerrors (an independent implementation of Wolff's method), if installed."""

import numpy as np
import pytest

from lgdiff._stats import gamma_method, gamma_method_derived

from .helpers import ar1, numpy_rng

pe = pytest.importorskip("pyerrors")


def pyerrors_obs(x):
    return pe.Obs([x[:, r] for r in range(x.shape[1])], [f"ens|r{r}" for r in range(x.shape[1])])


def test_single_replica_agrees_with_pyerrors(generator):
    # One replica: both subtract the same mean, so Gamma(t), the window and the bias-corrected error
    # agree exactly; tau_int differs only at O(tau/N) (pyerrors corrects it multiplicatively).
    rng = numpy_rng(generator)
    x = ar1(0.8, 5000, 1, rng) + 1.0
    y = ar1(0.9, 5000, 1, rng) * 0.3 + 2.0 + 0.1 * x
    ours = gamma_method(x)
    theirs = pyerrors_obs(x)
    theirs.gamma_method(S=1.5)
    assert ours.window == theirs.e_windowsize["ens"]
    assert ours.mean == pytest.approx(theirs.value, rel=1e-13)
    assert ours.error == pytest.approx(theirs.dvalue, rel=1e-10)
    assert ours.tau_int == pytest.approx(theirs.e_tauint["ens"], rel=10 * ours.tau_int / x.size)
    assert ours.tau_int_error == pytest.approx(theirs.e_dtauint["ens"], rel=1e-2)

    ratio = pe.derived_observable(lambda v, **kwargs: v[0] / v[1], [pyerrors_obs(x), pyerrors_obs(y)])
    ratio.gamma_method(S=1.5)
    derived = gamma_method_derived(lambda a, b: a / b, x, y)
    assert derived.mean == pytest.approx(ratio.value, rel=1e-13)
    assert derived.window == ratio.e_windowsize["ens"]
    assert derived.error == pytest.approx(ratio.dvalue, rel=1e-6)  # numerical vs automatic derivatives


def test_replicas_agree_with_pyerrors_within_errors(generator):
    # Several replicas: Wolff subtracts the global mean, pyerrors each replica's own mean; the
    # results must agree within the quoted uncertainties.
    x = ar1(0.9, 3000, 8, numpy_rng(generator))
    ours = gamma_method(x)
    theirs = pyerrors_obs(x)
    theirs.gamma_method(S=1.5)
    assert abs(ours.tau_int - theirs.e_tauint["ens"]) < ours.tau_int_error
    assert abs(ours.error - theirs.dvalue) < ours.error * np.sqrt((ours.window + 0.5) / x.size)
