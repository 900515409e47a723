"""lgdiff compare: the difference in sigma by hand, on synthetic ensembles with known observables, and on
two Markov chains of one theory with different seeds."""

import math

import numpy as np
import pytest

from lgdiff import Lattice
from lgdiff._io.ensemble import Ensemble
from lgdiff._run.compare import ObservableComparison, check_comparable, compare
from lgdiff._run.generate import GenerateConfig
from lgdiff._run.theory import Theory

from .synthetic import constant_phi4, uniform_flux_u1


def test_sigma_and_flags_by_hand():
    c = ObservableComparison.of({"mean": 1.30, "error": 0.10}, {"mean": 1.00, "error": 0.05})
    assert c.diff == pytest.approx(0.30, abs=1e-15)
    assert c.sigma == pytest.approx(0.30 / math.sqrt(0.01 + 0.0025), rel=1e-12)  # 2.683: above 2 sigma
    assert c.flag == "*"
    far = ObservableComparison.of({"mean": 0.0, "error": 0.3}, {"mean": 2.0, "error": 0.4})
    assert far.sigma == pytest.approx(-4.0, rel=1e-12) and far.flag == "*"  # 4 is > 2 but not > 4
    assert ObservableComparison.of({"mean": 0.0, "error": 0.3}, {"mean": 2.1, "error": 0.4}).flag == "**"
    assert ObservableComparison.of({"mean": 0.5, "error": 0.1}, {"mean": 0.4, "error": 0.1}).flag == ""


def test_unknown_and_zero_errors():
    unknown = ObservableComparison.of({"mean": 1.0, "error": math.nan}, {"mean": 0.0, "error": 0.1})
    assert math.isnan(unknown.sigma) and unknown.flag == ""
    exact = ObservableComparison.of({"mean": 0.5, "error": 0.0}, {"mean": 0.75, "error": 0.0})
    assert exact.sigma == -math.inf and exact.flag == "**"
    assert ObservableComparison.of({"mean": 0.5, "error": 0.0}, {"mean": 0.5, "error": 0.0}).sigma == 0.0
    with pytest.raises(ValueError, match="needs results with 'mean' and 'error'"):
        ObservableComparison.of({"mean": 1.0}, {"mean": 0.0, "error": 0.1})


def test_shifted_ensemble_disagrees_by_the_sigma_computed_by_hand(tmp_path):
    rng = np.random.default_rng(7)
    T, C, spread, shift = 200, 4, 0.1, 0.05
    m = 1.0 + spread * rng.standard_normal((T, C))  # i.i.d.: the error of the mean is spread / sqrt(N)
    a = Ensemble.load(constant_phi4(tmp_path / "a.safetensors", m))
    b = Ensemble.load(constant_phi4(tmp_path / "b.safetensors", m + shift))
    result = compare(a, b)
    mag = result.observables["mag"]
    assert mag.a["mean"] == pytest.approx(m.mean(), rel=1e-12)
    assert mag.diff == pytest.approx(-shift, rel=1e-9)
    # the Gamma-method error of i.i.d. data: spread / sqrt(N), up to its own relative error sqrt((W + 1/2) / N)
    N = T * C
    assert abs(mag.a["error"] - spread / math.sqrt(N)) < 4 * spread / math.sqrt(N) * math.sqrt(5.5 / N)
    assert mag.b["error"] == pytest.approx(mag.a["error"], rel=1e-9)  # a shift does not change fluctuations
    by_hand = -shift / math.sqrt(2 * mag.a["error"] ** 2)  # about -10
    assert mag.sigma == pytest.approx(by_hand, rel=1e-9)
    assert mag.flag == "**"
    assert result.warnings == ()
    assert "acceptance" not in result.observables
    assert {"mag", "abs_mag", "chi2", "binder"} <= set(result.observables)


def test_constant_fields_have_exact_observables(tmp_path):
    # phi(x) = 0.5 everywhere in every configuration: M = 0.5, chi2 = V (<M^2> - <M>^2) = 0, binder = 2/3
    a = Ensemble.load(constant_phi4(tmp_path / "a.safetensors", np.full((10, 2), 0.5)))
    b = Ensemble.load(constant_phi4(tmp_path / "b.safetensors", np.full((10, 2), 0.75)))
    result = compare(a, b)
    assert result.observables["binder"].a["mean"] == pytest.approx(2 / 3, rel=1e-12)
    assert result.observables["chi2"].a["mean"] == pytest.approx(0.0, abs=1e-12)
    assert result.observables["mag"].diff == pytest.approx(-0.25, rel=1e-12)
    assert result.observables["mag"].sigma == -math.inf  # two exact, different numbers


def test_different_theories_are_refused(tmp_path):
    phi4 = Ensemble.load(constant_phi4(tmp_path / "a.safetensors", np.full((4, 2), 0.5)))
    u1 = Ensemble.load(uniform_flux_u1(tmp_path / "u1.safetensors", [0, 1, 2]))
    with pytest.raises(ValueError, match=r"ensembles of different theories: phi4 in D = 2 vs u1 \(U\(1\)\) in D = 2"):
        compare(phi4, u1)


def test_other_lattice_and_couplings_are_flagged(tmp_path):
    meta_a = Ensemble.load(constant_phi4(tmp_path / "a.safetensors", np.full((4, 2), 0.5))).metadata
    meta_b = Ensemble.load(constant_phi4(tmp_path / "b.safetensors", np.full((4, 2), 0.5), L=6, kappa=0.25)).metadata
    warnings = check_comparable(meta_a, meta_b)
    assert warnings[0] == ("note: lattice sizes differ, A L = [4, 4], B L = [6, 6]: finite-volume effects enter "
                           "the differences")
    assert warnings[1].startswith("warning: couplings differ (kappa = 0.2 vs 0.25)")
    assert check_comparable(meta_a, meta_a) == []


def test_two_seeds_of_one_theory_agree(tmp_path):
    theory = Theory(name="phi4", lattice=Lattice(shape=(4, 4)), params={"kappa": 0.2, "lam": 0.02})
    files = []
    for seed in (1, 2):
        config = GenerateConfig(theory=theory, algorithm="hmc", n=60, chains=4, therm=20, seed=seed)
        files.append(config.run(tmp_path / f"seed{seed}.safetensors", device="cpu"))
    result = compare(*files)
    sigmas = {k: c.sigma for k, c in result.observables.items()}
    assert all(math.isfinite(s) for s in sigmas.values()), sigmas
    assert max(abs(s) for s in sigmas.values()) < 4, sigmas  # same theory: no 4-sigma difference
