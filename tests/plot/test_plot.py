"""Plots: the figures carry labels, titles and the exact values where lgdiff knows them; PNGs are valid."""

import math
import sys

import numpy as np
import pytest
from scipy.special import iv

from lgdiff import Lattice
from lgdiff._exact import u1_2d_plaquette, u1_2d_wilson_loop
from lgdiff._io.ensemble import Ensemble
from lgdiff._plot import (
    MissingPlotDependency,
    autocorrelation_figure,
    ensemble_figures,
    plot_ensemble,
    require_plotting,
)
from lgdiff._plot.figures import integer_bin_edges
from lgdiff._run.generate import GenerateConfig
from lgdiff._run.theory import Theory
from lgdiff._stats import autocorrelation, format_mean_error

from ..run.synthetic import constant_phi4, uniform_flux_u1
from ..stats.helpers import ar1, numpy_rng

matplotlib = pytest.importorskip("matplotlib")  # in the test extra; importorskip reports a visible skip


def line_labelled(ax, start: str):
    lines = [line for line in ax.get_lines() if line.get_label().startswith(start)]
    assert len(lines) == 1, [line.get_label() for line in ax.get_lines()]
    return lines[0]


def test_integer_bins_have_one_bin_per_charge():
    np.testing.assert_array_equal(integer_bin_edges(np.array([-2.0, 0.0, 3.0])), np.arange(-2.5, 4.0))


def test_autocorrelation_figure_marks_the_window_and_tau_int(generator):
    acf = autocorrelation(ar1(0.8, 2000, 4, numpy_rng(generator)))
    ax = autocorrelation_figure(acf, quantity="x", time_unit="records", title="AR(1)").axes[0]
    window = line_labelled(ax, "Gamma-method window")
    assert list(window.get_xdata()) == [acf.window, acf.window]
    rho = line_labelled(ax, r"$\rho(t)$")
    assert rho.get_label().endswith(f"= {format_mean_error(acf.tau_int, acf.tau_int_error)}")
    assert abs(acf.tau_int - 4.5) < 4 * acf.tau_int_error  # AR(1): tau_int = (1 + a) / (2 (1 - a)) = 4.5
    np.testing.assert_array_equal(rho.get_ydata(), acf.rho[: len(rho.get_ydata())])
    assert ax.get_xlabel() == "Monte Carlo time t [records]"
    assert ax.get_ylabel().startswith("normalised autocorrelation")


def test_u1_figures_show_the_exact_values(tmp_path):
    # uniform flux: every plaquette angle is f = 2 pi Q / L^2, so P = cos f and the charge is Q
    L, beta, charges = 4, 1.0, [1, 1, 2, 1]
    ens = Ensemble.load(uniform_flux_u1(tmp_path / "u1.safetensors", charges, L=L, beta=beta))
    figs = ensemble_figures(ens)
    assert set(figs) == {"hist_plaquette", "hist_topo", "autocorr", "wilson", "snapshot"}
    for name, fig in figs.items():
        ax = fig.axes[0]
        assert ax.get_xlabel() and ax.get_ylabel(), name
        assert ax.get_title().startswith("U(1) gauge theory, β = 1, L = 4×4"), name

    ax = figs["hist_plaquette"].axes[0]
    assert "plaquette" in ax.get_xlabel() and ax.get_ylabel() == "number of configurations"
    exact = line_labelled(ax, "exact (finite volume)")
    assert exact.get_xdata()[0] == pytest.approx(u1_2d_plaquette(beta, (L, L)), rel=1e-12)
    f = 2 * math.pi / L**2
    mean = line_labelled(ax, "mean")
    assert mean.get_xdata()[0] == pytest.approx((3 * math.cos(f) + math.cos(2 * f)) / 4, rel=1e-12)

    ax = figs["wilson"].axes[0]
    exact = line_labelled(ax, "exact (finite volume)")
    loops = [(1, 1), (1, 2), (2, 2)]  # R <= T <= L/2; areas 1, 2, 4
    np.testing.assert_allclose(exact.get_ydata(), [u1_2d_wilson_loop(beta, (L, L), r, t) for r, t in loops],
                               rtol=1e-12)
    # and the finite-volume formula tends to (I_1/I_0)^A: the line is the physics, not a copy of the data
    assert exact.get_ydata()[0] == pytest.approx(iv(1, beta) / iv(0, beta), rel=0.05)
    assert ax.get_yscale() == "log" and "area" in ax.get_xlabel()

    ax = figs["hist_topo"].axes[0]
    heights = [bar.get_height() for bar in ax.containers[0]]  # the histogram's bars
    assert heights == [3 * 2, 1 * 2]  # bins at Q = 1 and Q = 2, two chains each
    assert line_labelled(ax, "exact").get_xdata()[0] == 0.0

    ax = figs["snapshot"].axes[0]
    np.testing.assert_allclose(ax.get_images()[0].get_array(), np.full((L, L), f), rtol=1e-12)  # last record, Q = 1
    assert "plaquette angle" in figs["snapshot"].axes[1].get_ylabel()  # the colour bar


def test_no_exact_draws_no_exact_line(tmp_path):
    ens = Ensemble.load(uniform_flux_u1(tmp_path / "u1.safetensors", [0, 1], L=4))
    ax = ensemble_figures(ens, exact=False)["wilson"].axes[0]
    assert not [line for line in ax.get_lines() if "exact" in line.get_label()]


def test_su2_wilson_loops_follow_the_area_law_of_the_plaquette(tmp_path):
    beta = 2.0
    theory = Theory(name="su2", lattice=Lattice(shape=(4, 4)), params={"beta": beta})
    ens = GenerateConfig(theory=theory, algorithm="heatbath", n=4, chains=2, therm=2).run(
        tmp_path / "su2.safetensors", device="cpu")
    ax = ensemble_figures(ens)["wilson"].axes[0]
    exact = line_labelled(ax, "exact, infinite volume")
    w = iv(2, beta) / iv(1, beta)  # 2D SU(2): <Re tr U_P / 2> = I_2(beta) / I_1(beta)
    np.testing.assert_allclose(exact.get_ydata(), [w, w**2, w**4], rtol=1e-10)


def test_phi4_figures(tmp_path):
    m = 0.3 + 0.1 * np.random.default_rng(3).standard_normal((40, 2))
    figs = ensemble_figures(Ensemble.load(constant_phi4(tmp_path / "phi4.safetensors", m)))
    assert set(figs) == {"hist_mag", "autocorr", "snapshot"}
    hist = figs["hist_mag"].axes[0]
    assert hist.get_xlabel().startswith("magnetisation") and hist.get_title().startswith("φ⁴ theory, κ = 0.2, λ = 0.02")
    assert sum(bar.get_height() for bar in hist.containers[0]) == m.size
    snapshot = figs["snapshot"].axes[0]
    np.testing.assert_allclose(snapshot.get_images()[0].get_array(), np.full((4, 4), m[-1, 0]), rtol=1e-12)
    assert snapshot.get_xlabel() == "$x_0$ [lattice units a]"
    assert "|M|" in line_labelled(figs["autocorr"].axes[0], r"$\rho(t)$").get_label()


def test_pngs_are_written_and_readable(tmp_path):
    ens = Ensemble.load(uniform_flux_u1(tmp_path / "u1.safetensors", [0, 1, 2], L=4))
    paths = plot_ensemble(ens, tmp_path / "plots")
    assert [p.name for p in paths] == [f"u1-{k}.png" for k in
                                       ("hist_plaquette", "hist_topo", "autocorr", "wilson", "snapshot")]
    for path in paths:
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(p.name for p in paths)  # no temporaries


def test_missing_matplotlib_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(MissingPlotDependency, match=r"pip install 'lgdiff\[plot\]'"):
        require_plotting()
    ens = Ensemble.load(constant_phi4(tmp_path / "phi4.safetensors", np.full((3, 1), 0.5)))
    with pytest.raises(MissingPlotDependency, match="plotting needs matplotlib"):
        plot_ensemble(ens, tmp_path / "plots")
    assert not (tmp_path / "plots").exists()


def test_a_file_as_plot_directory_is_refused(tmp_path):
    ens = Ensemble.load(constant_phi4(tmp_path / "phi4.safetensors", np.full((3, 1), 0.5)))
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        plot_ensemble(ens, tmp_path / "file")
    assert (tmp_path / "file").read_text() == ""
