import math

import numpy as np
import pytest

from lgdiff._stats import Estimate, GammaEstimate, format_value_error


@pytest.mark.parametrize(
    ("value", "error", "text"),
    [
        (0.00171, 0.00149, "0.0017(15)"),
        (2.4213, 0.1011, "2.42(10)"),
        (1.2341, 0.0052, "1.234(5)"),
        (2.45, 0.11, "2.45(11)"),
        (0.05, 0.10, "0.05(10)"),
        (1.2341, 0.0097, "1.234(10)"),  # 970 rounds up to 1000: two digits
        (1.2341, 0.00354, "1.2341(35)"),  # 354: two digits
        (1.2341, 0.00355, "1.234(4)"),  # 355: one digit
        (-0.4987, 0.123, "-0.50(12)"),
        (-0.00004, 0.0012, "0.0000(12)"),
        (2.43, 1.5, "2.4(15)"),
        (123.4, 15.0, "123(15)"),
        (1234.5, 350.0, "1230(350)"),
        (123456.0, 15000.0, "123000(15000)"),
        (6.02e23, 4.1e21, "6.02(4)e23"),
        (1.2341e-9, 5.2e-12, "1.234(5)e-9"),
        (3e-12, 1.1e-9, "0.0(11)e-9"),
    ],
)
def test_format_value_error(value, error, text):
    assert format_value_error(value, error) == text


def test_format_degenerate_errors():
    assert format_value_error(1.5, 0.0) == "1.5(0)"
    assert format_value_error(1.5, math.nan) == "1.5(nan)"


def test_format_tiny_error_on_order_one_value():
    # once recursed forever (a 2-record ensemble with a near-constant observable hit it)
    assert format_value_error(5.0, 1e-12) == "5(1e-12)"
    assert format_value_error(0.5, 1e-300) == "0.5(1e-300)"
    assert format_value_error(-2.25, 3e-9) == "-2.25(3e-09)"
    for error in (6e-9, 9e-10, 1e-10):
        assert format_value_error(5.0, error) == f"5({error:.2g})"


def test_estimate_str_and_dict():
    est = Estimate(mean=np.float64(2.4213), error=0.1011)
    assert str(est) == "2.42(10)"
    d = est.to_dict()
    assert d == {"mean": 2.4213, "error": 0.1011} and all(type(v) is float for v in d.values())
    arr = Estimate(mean=np.array([0.00171, 1.2341]), error=np.array([0.00149, 0.0052]))
    assert str(arr) == "[0.0017(15), 1.234(5)]"
    assert arr.to_dict() == {"mean": [0.00171, 1.2341], "error": [0.00149, 0.0052]}
    with pytest.raises(ValueError, match="read-only"):
        arr.mean[0] = 1.0


def test_gamma_estimate_str_summary_dict():
    est = GammaEstimate(mean=2.4213, error=0.1011, tau_int=3.14, tau_int_error=0.41, window=12, n_eff=np.float64(810.3))
    assert str(est) == "2.42(10)"
    assert est.summary() == "2.42(10)  tau_int = 3.1(4)  W = 12  N_eff = 810"
    d = est.to_dict()
    assert d == {"mean": 2.4213, "error": 0.1011, "tau_int": 3.14, "tau_int_error": 0.41, "window": 12, "n_eff": 810.3}
    assert type(d["n_eff"]) is float and type(d["window"]) is int


def test_estimate_shape_mismatch():
    with pytest.raises(ValueError, match="mean and error of the same shape"):
        Estimate(mean=np.zeros(3), error=np.zeros(2))
