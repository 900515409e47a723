"""lgdiff compare, lgdiff plot and --plot DIR through the command line."""

import json
import math
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import cli

from ..run.synthetic import constant_phi4, uniform_flux_u1


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_help():
    for cmd in ("compare", "plot"):
        result = run(cmd, "--help")
        assert result.exit_code == 0 and "Usage" in result.output


@pytest.fixture
def shifted_pair(tmp_path):
    m = 1.0 + 0.1 * np.random.default_rng(5).standard_normal((100, 2))
    return constant_phi4(tmp_path / "a.safetensors", m), constant_phi4(tmp_path / "b.safetensors", m + 0.1)


def test_compare_table_marks_the_shift(shifted_pair):
    a, b = shifted_pair
    result = run("compare", a, b)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"A: {a}  phi4")
    mag = next(line for line in lines if line.split()[0] == "mag")
    assert mag.endswith("**")  # a shift of 0.1 against errors ~ 0.007: far beyond 4 sigma
    assert "-0.100" in mag  # A - B
    assert lines[-1].startswith("sigma = (A - B) / sqrt(err_A^2 + err_B^2)")


def test_compare_json(shifted_pair):
    a, b = shifted_pair
    result = run("compare", a, b, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["a_file"] == str(a) and report["b_file"] == str(b) and report["warnings"] == []
    mag = report["mag"]
    assert set(mag) >= {"a", "b", "diff", "sigma"}
    assert mag["diff"] == pytest.approx(-0.1, rel=1e-9)
    by_hand = mag["diff"] / math.hypot(mag["a"]["error"], mag["b"]["error"])
    assert mag["sigma"] == pytest.approx(by_hand, rel=1e-12) and mag["flag"] == "**"


def test_compare_flags_other_couplings(tmp_path):
    a = constant_phi4(tmp_path / "a.safetensors", np.full((5, 2), 0.5))
    b = constant_phi4(tmp_path / "b.safetensors", np.full((5, 2), 0.5), kappa=0.3)
    result = run("compare", a, b)
    assert result.exit_code == 0, result.output
    assert "warning: couplings differ (kappa = 0.2 vs 0.3)" in result.output


def test_compare_different_theories_is_a_one_line_error(tmp_path):
    a = constant_phi4(tmp_path / "a.safetensors", np.full((5, 2), 0.5))
    b = uniform_flux_u1(tmp_path / "u1.safetensors", [0, 1])
    result = run("compare", a, b)
    assert result.exit_code == 1
    assert "ensembles of different theories" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_plot_without_input_file(tmp_path):
    missing = tmp_path / "missing.safetensors"
    result = run("plot", missing, "--out", tmp_path / "plots")
    assert result.exit_code == 1
    assert str(missing) in result.output and "Traceback" not in result.output
    assert not (tmp_path / "plots").exists()
    assert run("plot").exit_code == 2  # no FILE: click's usage error


def test_plot_prints_the_written_files(tmp_path):
    file = uniform_flux_u1(tmp_path / "u1.safetensors", [0, 1, 2])
    result = run("plot", file)  # default: <stem>-plots next to the file
    assert result.exit_code == 0, result.output
    written = result.output.split()
    assert written == [str(tmp_path / "u1-plots" / f"u1-{k}.png")
                       for k in ("hist_plaquette", "hist_topo", "autocorr", "wilson", "snapshot")]
    assert all((tmp_path / "u1-plots" / p).exists() for p in written)


def test_plot_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    file = uniform_flux_u1(tmp_path / "u1.safetensors", [0, 1])
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = run("plot", file, "--no-exact")
    assert result.exit_code == 1
    assert "pip install 'lgdiff[plot]'" in result.output and "Traceback" not in result.output


def test_generate_with_plot(tmp_path):
    out, plots = tmp_path / "phi4.safetensors", tmp_path / "plots"
    result = run("generate", "--theory", "phi4", "--L", 4, "--kappa", 0.2, "--lam", 0.02, "--n", 20, "--chains", 2,
                 "--therm", 5, "--out", out, "--plot", plots, "--json")
    assert result.exit_code == 0, result.output
    assert "mag" in json.loads(result.stdout)  # the file names go to stderr: stdout stays one JSON object
    assert sorted(p.name for p in plots.iterdir()) == ["phi4-autocorr.png", "phi4-hist_mag.png", "phi4-snapshot.png"]
    assert str(plots / "phi4-hist_mag.png") in result.stderr


def test_generate_with_plot_fails_before_the_run_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "phi4.safetensors"
    result = run("generate", "--theory", "phi4", "--L", 4, "--kappa", 0.2, "--lam", 0.02, "--n", 2, "--out", out,
                 "--plot", tmp_path / "plots")
    assert result.exit_code == 1 and "pip install 'lgdiff[plot]'" in result.output
    assert not out.exists()
