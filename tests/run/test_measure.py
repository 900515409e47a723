"""`measure` says how each error was estimated: the Gamma method, or a jackknife over chain means where the Gamma
method finds no window (frozen chains), and warns when the run is too short for its tau_int."""

import json
import math
import re

import numpy as np
import torch
from click.testing import CliRunner

from cli.main import cli
from lgdiff._io.ensemble import Ensemble
from lgdiff._run.measure import FLOW_EPS, MIN_N_OVER_TAU, measure, topological_charge_observable

from .synthetic import constant_phi4, rough_links


def ar1(rng, n, chains, phi):
    """AR(1) chains with unit stationary variance: tau_int = (1 + phi) / (2 (1 - phi))."""
    x = np.empty((n, chains))
    x[0] = rng.normal(size=chains)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + math.sqrt(1 - phi * phi) * rng.normal(size=chains)
    return x


def frozen(rng, n=40, chains=6):
    """Each chain stuck near its own magnetisation (+-0.5): a constant offset per chain, tiny noise."""
    sectors = np.where(np.arange(chains) % 2 == 0, 0.5, -0.5) + 0.1 * np.arange(chains)
    return sectors[None, :] + 1e-3 * rng.normal(size=(n, chains))


def test_frozen_chains_fall_back_to_a_jackknife_over_chain_means_and_say_so(tmp_path):
    m = frozen(np.random.default_rng(0))
    results = measure(Ensemble.load(constant_phi4(tmp_path / "f.safetensors", m)))
    mag = results["mag"]
    assert mag["method"] == "jackknife" and math.isnan(mag["tau_int"])
    assert "jackknife over the 6 chain means" in mag["warning"] and "no window" in mag["warning"]
    # the jackknife over chain means of a linear observable is the standard error of the chain means
    means = m.mean(0)
    assert math.isclose(mag["error"], means.std(ddof=1) / math.sqrt(6), rel_tol=1e-9)


def test_a_single_chain_without_a_gamma_estimate_has_no_error_and_says_so(tmp_path):
    # a chain that flips sign at every record: Gamma(1) = -Gamma(0), C_F < 0, the Gamma method gives up
    m = ((-1.0) ** np.arange(40) + 1e-3 * np.random.default_rng(3).normal(size=40))[:, None]
    mag = measure(Ensemble.load(constant_phi4(tmp_path / "one.safetensors", m)))["mag"]
    assert mag["method"] == "none" and math.isnan(mag["error"]) and math.isnan(mag["tau_int"])
    assert "one chain" in mag["warning"] and "not positive" in mag["warning"]


def test_short_run_for_its_tau_int_is_flagged(tmp_path):
    rng = np.random.default_rng(1)
    m = ar1(rng, 100, 4, 0.9)  # tau_int ~ 9.5: N = 400 < 50 tau_int
    mag = measure(Ensemble.load(constant_phi4(tmp_path / "short.safetensors", m)))["mag"]
    assert mag["method"] == "gamma" and mag["tau_int"] * MIN_N_OVER_TAU > 400
    assert mag["warning"].startswith("N = 400 measurements < 50 tau_int")


def test_long_uncorrelated_run_has_no_warning(tmp_path):
    m = np.random.default_rng(2).normal(size=(200, 4))  # tau_int ~ 0.5, N = 800 >> 25
    results = measure(Ensemble.load(constant_phi4(tmp_path / "long.safetensors", m)))
    assert results["mag"]["method"] == "gamma" and "warning" not in results["mag"]
    assert results["acceptance"]["method"] == "gamma" and "warning" not in results["acceptance"]  # constant 1


def test_cli_reports_the_method_in_the_table_and_the_json(tmp_path):
    path = constant_phi4(tmp_path / "f.safetensors", frozen(np.random.default_rng(0)))
    result = CliRunner().invoke(cli, ["measure", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["mag"]["method"] == "jackknife" and "jackknife" in report["mag"]["warning"]
    assert report["mag"]["tau_int"] is None  # NaN becomes null
    table = CliRunner().invoke(cli, ["measure", str(path)])
    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if line.strip().startswith("mag:"))
    assert "[jackknife over chain means: no Gamma window, tau_int unknown]" in row
    assert re.search(r"warning: (\w+, )*mag(, \w+)*: error from a jackknife over the 6 chain means", table.stderr)


def test_4d_charge_is_flowed_in_bounded_chunks_each_configuration_on_its_own(tmp_path, monkeypatch):
    # lgdiff measure flows a few MB of configurations at a time (not a whole read of records x chains at once),
    # reports the progress, and the charges are those of each configuration flowed alone
    import lgdiff._observables.flow as flow
    import lgdiff._run.measure as measure_module
    from lgdiff import SU, topological_charge_clover, wilson_flow
    from lgdiff._run.measure import flowed_configurations

    ens = Ensemble.load(rough_links(tmp_path / "su3.safetensors", SU(3), records=3, chains=4, shape=(3, 3, 3, 3)))
    assert flowed_configurations(ens) == 12
    per_config = 4 * 81 * 9 * 8  # the flow runs in complex64 (FLOW_PRECISION): 8 bytes per element
    monkeypatch.setattr(flow, "FLOW_CHUNK_BYTES", 5 * per_config)
    step, batches = flow._rk3_step, []
    monkeypatch.setattr(flow, "_rk3_step", lambda action, W, eps: batches.append(W.batch) or step(action, W, eps))
    clover, measured = measure_module.topological_charge_clover, []  # the clover needs ~6x the links: per chunk too
    monkeypatch.setattr(measure_module, "topological_charge_clover", lambda V: measured.append(V.batch) or clover(V))
    done = []
    results = measure(ens, flow_time=0.2, progress=done.append)
    assert set(batches) == {5, 2} and done == [5, 5, 2], (batches, done)  # 12 configurations in chunks of 5
    assert measured == [5, 5, 2], measured
    monkeypatch.undo()
    U = ens.configs()
    U = U.with_data(U.data.to(torch.complex64))
    alone = torch.cat([topological_charge_clover(wilson_flow(U.with_data(U.data[b:b + 1]), t=0.2, eps=FLOW_EPS))
                       for b in range(U.batch)]).reshape(3, 4).double()
    gaps = (alone.reshape(-1, 1) - alone.reshape(1, -1)).abs() + torch.eye(12)
    assert gaps.min() > 1e-6, alone  # twelve distinct charges, far apart on the scale of the check: mixing shows
    q = ens.series(topological_charge_observable(ens, flow_time=0.2))
    torch.testing.assert_close(q, alone, atol=1e-8, rtol=0)  # single-precision rounding, far below the gaps
    W = ens.configs()  # complex128: the double-precision flow gives the same charges to single precision
    assert W.data.dtype == torch.complex128
    double = topological_charge_clover(wilson_flow(W, t=0.2, eps=FLOW_EPS)).reshape(3, 4)
    torch.testing.assert_close(q, double, atol=1e-5, rtol=0)
    assert math.isclose(results["topo_charge"]["mean"], float(alone.mean()), abs_tol=1e-8)
