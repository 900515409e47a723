"""Every stage of every examples/ script runs end to end with ``--smoke`` and produces what it must.

Each script runs in a subprocess (``sys.executable examples/X.py ... --smoke``, cwd a temporary directory,
OMP_NUM_THREADS=1), as a user would run it. The checks are on what the stage must produce: the files it writes
(with the sizes the smoke recipe asks for), the lines it prints (finite numbers; exact values where the script
prints them, checked against an independent quadrature or closed form) and that nothing was written into the
repository (``git status`` of lgdiff/models and examples/, and the shipped model files, unchanged).
"""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import special

from lgdiff._io.checkpoint import load_checkpoint
from lgdiff._io.ensemble import Ensemble

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
SHIPPED = REPO / "lgdiff" / "models"
NUMBER = r"[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf)"


def _repository_state() -> tuple[str, list[tuple[str, int, int]]]:
    """``git status`` of lgdiff/models and examples/ (empty when git or the checkout is missing), and the sizes and
    times of the shipped model files."""
    try:
        status = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=all", "--",
                                 "lgdiff/models", "examples"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        status = ""
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in SHIPPED.iterdir())
    return status, files


@pytest.fixture(autouse=True)
def _repository_untouched():
    """No smoke run may write into the repository (its shipped models, or next to the scripts)."""
    before = _repository_state()
    yield
    assert _repository_state() == before, "a smoke run wrote into lgdiff/models or examples/"


def run_example(script: str, *args: str, cwd: Path, expect: int = 0,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python examples/<script> <args> --smoke`` in ``cwd`` with one thread; asserts the exit code."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(cwd), **(env or {})}
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args, "--smoke"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == expect, (f"{script} {' '.join(args)} --smoke exited {proc.returncode}, expected {expect}"
                                       f"\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


def numbers(pattern: str, text: str) -> list[tuple[float, ...]]:
    """Every match of ``pattern`` (its groups are numbers) in ``text``, as floats."""
    return [tuple(float(g) for g in m.groups()) for m in re.finditer(pattern, text)]


def finite_line(pattern: str, text: str) -> tuple[float, ...]:
    """The numbers of the one line matching ``pattern``: all must be finite."""
    found = numbers(pattern, text)
    assert len(found) == 1, f"expected one line matching {pattern!r}, found {len(found)} in\n{text}"
    assert all(math.isfinite(v) for v in found[0]), f"non-finite number in {found[0]} ({pattern!r})"
    return found[0]


# ------------------------------------------------------------------------------------------- train_phi4_models.py


def test_phi4_data_writes_every_smoke_ensemble(tmp_path):
    out = run_example("train_phi4_models.py", "data", "--work", str(tmp_path), cwd=tmp_path).stdout
    # name -> (L, chains, records): the smoke recipe
    want = {"k0.21_L32_train": (8, 4, 4), "k0.21_L32_test": (8, 4, 4), "k0.21_L8_train": (4, 4, 4),
            "k0.27_L16_train": (8, 4, 4), "k0.27_L32_train": (8, 4, 4)}
    for name, (L, chains, records) in want.items():
        ens = Ensemble.load(tmp_path / f"{name}.safetensors")
        assert (ens.metadata.lattice, ens.chains, ens.n_records) == ((L, L), chains, records), name
        assert f"{name}: {records} x {chains} configurations" in out
        assert torch.isfinite(ens.configs().data).all()


def test_phi4_train_writes_a_checkpoint_and_a_finite_loss(tmp_path):
    out = run_example("train_phi4_models.py", "train", "--model", "k0.21_L8", "--work", str(tmp_path),
                      cwd=tmp_path).stdout
    (loss,) = finite_line(rf"k0\.21_L8: 4 steps in {NUMBER} s this run; mean loss of last 4 steps ({NUMBER})", out)
    assert loss > 0
    _, meta = load_checkpoint(tmp_path / "k0.21_L8.ckpt.safetensors")
    assert meta["step"] == 4 and "--smoke" in meta["command"]


def test_phi4_ship_without_work_uses_a_fresh_temporary_directory(tmp_path):
    out = run_example("train_phi4_models.py", "ship", cwd=tmp_path).stdout
    (work,) = re.findall(r"smoke run in (\S+)", out)
    work = Path(work)
    assert work.parent == tmp_path  # tempfile.mkdtemp under TMPDIR, not the repository
    for model in ("k0.21_L32", "k0.27_L16", "k0.27_L32"):  # ship trains what it ships in a smoke run
        tensors, meta = load_checkpoint(work / "models" / f"phi4_{model}.safetensors")
        assert tensors and all(k.startswith("ema.") for k in tensors)
        assert meta["step"] == 4 and meta["train_seconds_wall"] >= 0 and meta["train_seconds_cpu"] >= 0
        # the near-critical models are parametrised around the force, with the Hartree mass of their lattice
        assert (meta["config"]["force_kappa"] > 0) == (model != "k0.21_L32"), model
    only = run_example("train_phi4_models.py", "ship", "--model", "k0.27_L32_force", "--work", str(work),
                       cwd=tmp_path).stdout
    assert "phi4_k0.27_L32.safetensors" in only and "phi4_k0.21_L32" not in only


@pytest.mark.parametrize(("args", "message"), [
    (("--dest", str(SHIPPED)), "error: --smoke ships models only under its work directory"),
    (("--work", str(REPO / "examples")), "error: --smoke never writes into the repository"),
], ids=["dest", "work"])
def test_smoke_refuses_to_write_into_the_repository(tmp_path, args, message):
    proc = run_example("train_gauge_models.py", "ship", *args, cwd=tmp_path, expect=2)
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())  # refused before a work directory was made


# ------------------------------------------------------------------------------------------------ phi4_table1.py


def test_phi4_table1_runs_every_route_on_a_generated_test_set(tmp_path):
    out = run_example("phi4_table1.py", "--json", "table.json", cwd=tmp_path).stdout
    report = json.loads((tmp_path / "table.json").read_text())
    # n per row from the smoke sizes: 4 x 4 test configurations, 8 raw samples, 2 x 2 path, 2 x 4 MAALA
    want = {"HMC test set": 16, "DM raw (reverse SDE, 4 steps)": 8, "DM path IMH (4 steps)": 4,
            "DM MAALA (t = 0.02, e = 0.1)": 8}
    assert {name: row["n"] for name, row in report["rows"].items()} == want
    for name, row in report["rows"].items():
        assert all(math.isfinite(v) for key in ("<M>", "chi_2", "U_L") for v in row[key]), name
        assert 0 <= row.get("acceptance", 1.0) <= 1
        assert re.search(rf"^{re.escape(name)}\s+{want[name]}\s", out, re.MULTILINE), name
    r2, _ = finite_line(rf"R\^2\(S_eff vs S\) = ({NUMBER}) \(slope ({NUMBER})\) on 8 generated samples", out)
    assert r2 <= 1 and report["R2"]["n"] == 8
    assert not list(tmp_path.glob("lgdiff-smoke-*"))  # the generated test set was cleaned up


# -------------------------------------------------------------------------------------------------- toy_model.py


def _exact_toy_moments(m2: float, g: float = 0.4) -> tuple[float, float]:
    """<phi^2>, <phi^4> of exp(-m2 phi^2 / 2 - g phi^4 / 24) by quadrature (independent of lgdiff._exact)."""
    phi = np.linspace(-15, 15, 300_001)
    w = np.exp(-(m2 * phi**2 / 2 + g * phi**4 / 24))
    return float((phi**2 * w).sum() / w.sum()), float((phi**4 * w).sum() / w.sum())


def test_toy_model_prints_its_table_and_the_exact_moments(tmp_path):
    proc = run_example("toy_model.py", "--out", "fig.png", cwd=tmp_path)
    out = proc.stdout
    rows = numbers(rf"(?m)^\s*({NUMBER})\s+({NUMBER})\s+({NUMBER})\s+({NUMBER})$", out)
    assert len(rows) == 10  # 5 times x 2 wells
    assert all(math.isfinite(v) for row in rows for v in row)
    assert [row[0] for row in rows] == [0.05, 0.2, 0.4, 0.6, 1.0] * 2
    moments = numbers(rf"<phi\^(\d)> = ({NUMBER}) \+- ({NUMBER})\s+exact ({NUMBER})", out)
    assert [int(k) for k, *_ in moments] == [2, 4, 2, 4]
    exact = [*_exact_toy_moments(1.0), *_exact_toy_moments(-1.0)]  # single well, then double well
    for (_, mean, err, printed), want in zip(moments, exact):
        assert math.isfinite(mean) and err > 0
        assert printed == pytest.approx(want, abs=1e-4)
    assert "reverse SDE (20 steps, 200 samples)" in out
    has_matplotlib = subprocess.run([sys.executable, "-c", "import matplotlib"], capture_output=True).returncode == 0
    if has_matplotlib:
        assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "wrote fig.png" in out
    else:
        assert "matplotlib is not installed: numbers only" in out
        assert not (tmp_path / "fig.png").exists()


# ---------------------------------------------------------------------------------------------------- osq_toy.py


def _one_site_quadrature(action, f) -> float:
    """``<f(phi)>`` of ``exp(-S(phi))`` on one site (trapezoid on a fine grid; independent of the example's own)."""
    phi = np.linspace(-8, 8, 400_001)
    s = action(phi)
    w = np.exp(-(s - s.min()))
    return float(np.trapezoid(f(phi) * w, phi) / np.trapezoid(w, phi))


def test_osq_toy_exact_variant_matches_quadrature_and_reports_the_kl(tmp_path):
    out = run_example("osq_toy.py", "--out", "fig.png", cwd=tmp_path).stdout
    potentials = {"double well": lambda x: x**4 - 2 * x**2, "cosine": lambda x: x**2 / 2 - np.cos(5 * x)}
    observables = {"phi^2": lambda x: x**2, "phi^4": lambda x: x**4, "P(phi>0)": lambda x: (x > 0) * 1.0}
    sections = re.split(r"^=== ", out, flags=re.MULTILINE)[1:]
    assert [s.split(":")[0] for s in sections] == list(potentials)
    for section, action in zip(sections, potentials.values()):
        # the exact sampler with a drift trained 5 steps: IMH chains and importance sampling within 4 sigma of an
        # independent quadrature (and the example's own printed quadrature agrees with it)
        for method in ("OSQPathIMH, under-trained drift", "SNIS, under-trained drift"):
            block = section[section.index(method):].split("\n")[1:4]
            for line, (name, f) in zip(block, observables.items()):
                mean, err, printed = finite_line(rf"<{re.escape(name)}> = ({NUMBER}) \+- ({NUMBER})\s+exact ({NUMBER})",
                                                 line)
                want = _one_site_quadrature(action, f)
                assert printed == pytest.approx(want, abs=1e-3), (method, name)
                assert err > 0 and abs(mean - want) < 4 * err, (method, name, mean, err, want)
        acc = finite_line(rf"under-trained drift \(5 steps\), 200 chains x 20 records \(therm 5\): acceptance "
                          rf"({NUMBER})", section)[0]
        assert 0.05 < acc < 0.95  # the chains move and reject: the check has power
        # the grid quadrature of the discrete process: the untrained (v = 0) KL to exp(-S) is positive and finite,
        # and the raw samples' histogram agrees with the quadrature's terminal marginal
        kl_zero = finite_line(rf"KL\(q_N \|\| exp\(-S\)/Z\) by quadrature: v = 0 ({NUMBER})", section)[0]
        assert 0 < kl_zero < 1
        # KL of the whole path against Gamma bounds that of its terminal marginal (data processing inequality)
        path_zero = finite_line(rf"KL\(Q \|\| Gamma\) of the path .* by quadrature: v = 0 ({NUMBER})", section)[0]
        assert path_zero > kl_zero
        for name in ("exact", "plain"):
            chi2, dof = finite_line(rf"raw {name}-trained sampler, 20000 samples: histogram vs quadrature q_N: "
                                    rf"chi\^2/dof = ({NUMBER})/({NUMBER})", section)
            assert dof > 20 and chi2 < dof + 5 * math.sqrt(2 * dof), (name, chi2, dof)
        # the plain objective's optimum p_ref,N exp(-S) is not exp(-S)
        bias = finite_line(rf"KL\(p_ref,N exp\(-S\)/Z' \|\| exp\(-S\)/Z\) = ({NUMBER})", section)[0]
        assert bias > 0.01
        for gradient in ("path", "log-variance"):
            finite_line(rf"gradient {gradient}\s*: .*KL\(q_N \|\| exp\(-S\)\) = ({NUMBER})", section)
    has_matplotlib = subprocess.run([sys.executable, "-c", "import matplotlib"], capture_output=True).returncode == 0
    if has_matplotlib:
        assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "matplotlib is not installed: numbers only" in out


# ------------------------------------------------------------------------------------------ train_gauge_models.py


def test_gauge_data_writes_every_smoke_ensemble(tmp_path):
    out = run_example("train_gauge_models.py", "data", "--work", str(tmp_path), cwd=tmp_path).stdout
    want = {"su3_b5.0_L4_train": ((2,) * 4, "SU(3)"), "u1_b1.0_L16_train": ((4, 4), "U(1)"),
            "su3_b5.5_L6_ref": ((4,) * 4, "SU(3)"), "u1_b7.0_L16_train": ((4, 4), "U(1)")}
    for name, (lattice, group) in want.items():
        ens = Ensemble.load(tmp_path / f"{name}.safetensors")
        assert (ens.metadata.lattice, ens.metadata.group, ens.chains, ens.n_records) == (lattice, group, 2, 2)
        assert f"{name}: 2 x 2 configurations" in out
        assert ens.metadata.algorithm == ("direct" if name == "u1_b7.0_L16_train" else "heatbath")
        U = ens.configs().data
        eye = torch.eye(U.shape[-1], dtype=U.dtype)
        torch.testing.assert_close(U @ U.mH, eye.expand_as(U), atol=1e-5, rtol=0)  # unitary links


def test_gauge_train_writes_a_checkpoint_and_a_finite_loss(tmp_path):
    out = run_example("train_gauge_models.py", "train", "--model", "u1_b1.0_L16", "--work", str(tmp_path),
                      cwd=tmp_path).stdout
    finite_line(rf"u1_b1\.0_L16: 3 steps, {NUMBER} s this run; mean loss of the last 3 steps ({NUMBER})", out)
    _, meta = load_checkpoint(tmp_path / "u1_b1.0_L16.ckpt.safetensors")
    assert meta["step"] == 3 and meta["kind"] == "lcnn" and "--smoke" in meta["command"]


def test_gauge_ship_writes_ema_weights_under_work(tmp_path):
    out = run_example("train_gauge_models.py", "ship", "--work", str(tmp_path), cwd=tmp_path).stdout
    for model in ("su3_b5.0_L4", "u1_b1.0_L16", "u1_b7.0_L16"):
        path = tmp_path / "models" / f"{model}.safetensors"
        tensors, meta = load_checkpoint(path)
        assert tensors and all(k.startswith("ema.") for k in tensors) and meta["step"] == 3
        assert f"{path}: " in out


def test_gauge_validate_su3_compares_every_observable(tmp_path):
    out = run_example("train_gauge_models.py", "validate", "--check", "su3", "--work", str(tmp_path),
                      cwd=tmp_path).stdout
    lines = {m.group(1): float(m.group(2)) for m in
             re.finditer(rf"^  (\S+(?: P)?)\s+maala ({NUMBER})\(.*heatbath ({NUMBER})\(.*z = ({NUMBER})$", out,
                         re.MULTILINE)}
    assert list(lines) == ["plaquette", "W(1,1)", "W(1,2)", "W(2,2)", "Re P", "|P|"]
    assert lines["plaquette"] == lines["W(1,1)"]  # the same observable, two ways
    assert all(math.isfinite(v) for v in lines.values())
    assert Ensemble.load(tmp_path / "su3_L4_b5.5_maala_force.safetensors").metadata.settings["model"] == str(
        tmp_path / "models" / "su3_b5.0_L4.safetensors")  # the smoke model, not the shipped one


def test_gauge_validate_u1_prints_the_exact_wilson_loop(tmp_path):
    out = run_example("train_gauge_models.py", "validate", "--check", "u1", "--work", str(tmp_path),
                      cwd=tmp_path).stdout
    mean, _, exact = finite_line(rf"W\(1,1\) ({NUMBER})\(({NUMBER})\) exact ({NUMBER}) z = ", out)
    # 2D U(1) Wilson action: <W(1,1)> = I1(beta) / I0(beta) (+ finite-volume terms ~ (I1/I0)^V, 1e-6 at V = 16)
    assert exact == pytest.approx(special.i1(1.0) / special.i0(1.0), abs=1e-5)
    assert -1 <= mean <= 1
    assert re.search(rf"chi_t ({NUMBER})\(({NUMBER})\) exact ({NUMBER})", out)


# ----------------------------------------------------------------------------------------------- cumulants_ve_vp.py


def _free_chi_2(process: str, t: float, kappa: float = 0.21) -> float:
    """``a(t)^2 G(0) + s(t)^2`` of the 2D free field, G(0) = 1 / (2 - 8 kappa), from the closed forms of VE
    (sigma = 25) and VP (beta 0.1..20) (independent of lgdiff)."""
    if process == "VE":
        a2, s2 = 1.0, (25.0 ** (2 * t) - 1) / (2 * math.log(25.0))
    else:
        big_b = 0.1 * t + (20.0 - 0.1) * t * t / 2
        a2, s2 = math.exp(-big_b), -math.expm1(-big_b)
    return a2 / (2 - 8 * kappa) + s2


def test_cumulants_ve_vp_recovers_the_free_field_and_prints_every_table(tmp_path):
    out = run_example("cumulants_ve_vp.py", "--out", "fig.png", cwd=tmp_path).stdout
    # the free field with the exact score: at t_min the reverse SDE's chi_2 is the exact one within 4 sigma and
    # chi_4 is 0 within 4 sigma
    free = numbers(rf"free field (?:VE|VP): at t = ({NUMBER}) chi_2 = ({NUMBER}) \+- ({NUMBER}) \(exact ({NUMBER})\), "
                   rf"chi_4 = ({NUMBER}) \+- ({NUMBER}) \(exact 0\)", out)
    assert len(free) == 2
    for process, (t, chi2, err2, exact, chi4, err4) in zip(("VE", "VP"), free):
        assert t == pytest.approx(1e-3)
        assert exact == pytest.approx(_free_chi_2(process, t), rel=1e-4)
        assert err2 > 0 and abs(chi2 - exact) < 4 * err2, (process, chi2, err2, exact)
        assert err4 > 0 and abs(chi4) < 4 * err4, (process, chi4, err4)
    # every table: T and the 5 smoke records down to t_min, all finite
    times = [float(t) for t in re.findall(r"(?m)^ *(\d\.\d{4}) ", out)]
    assert times == [1.0, 0.8002, 0.6004, 0.4006, 0.2008, 0.001] * 4
    tables = re.findall(r"(?m)^phi\^4 (VE|VP), trained NCSN\+\+.*\n.*\n((?:.*\n){6})", out)
    assert [name for name, _ in tables] == ["VE", "VP"]
    (ref_chi4,) = finite_line(rf"reference chi_2 = {NUMBER} \+- {NUMBER}, chi_4 = ({NUMBER}) \+- ", out)
    for name, body in tables:
        values = [[float(v) for v in re.findall(NUMBER, line)] for line in body.splitlines()]
        assert all(math.isfinite(v) for row in values for v in row)
        chi4_exact = [row[7] for row in values]  # t, chi_2 rev +- err, exact +- err, chi_4 rev +- err, exact
        if name == "VE":  # no drift: the exact chi_4 is conserved, the data's at every t
            assert chi4_exact == pytest.approx([ref_chi4] * 6, rel=1e-4)
        else:  # VP: a(t)^4 chi_4, a(1)^4 = e^{-20.1}
            assert abs(chi4_exact[0]) < 1e-6 * abs(ref_chi4) and chi4_exact[-1] == pytest.approx(ref_chi4, rel=1e-2)
    for name in ("VE", "VP"):
        for obs in ("chi_2", "chi_4", "U"):
            finite_line(rf"phi\^4 {name}: at t = 0\.0010 {obs} = ({NUMBER}) \+- ({NUMBER}), exact ({NUMBER}) \+- "
                        rf"({NUMBER}) \(({NUMBER}) sigma\)", out)
    has_matplotlib = subprocess.run([sys.executable, "-c", "import matplotlib"], capture_output=True).returncode == 0
    if has_matplotlib:
        assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "wrote fig.png" in out
    else:
        assert "matplotlib is not installed: numbers only" in out


# --------------------------------------------------------------------------------------------------- osq_phi4.py


def test_osq_phi4_trains_samples_and_draws_the_snapshot_sequence(tmp_path):
    work = tmp_path / "work"
    proc = run_example("osq_phi4.py", "--work", str(work), "--json", "osq.json", "--out", "fig.png", cwd=tmp_path)
    out = proc.stdout
    model = work / "osq_phi4_k0.21_L4.safetensors"
    meta = load_checkpoint(model)[1]
    assert meta["kind"] == "osq" and meta["step"] == 3 and "--smoke" in meta["command"]
    assert meta["action"] == {"class": "Phi4Action", "kappa": 0.21, "lam": 0.022} and meta["lattice"] == [4, 4]
    report = json.loads((tmp_path / "osq.json").read_text())
    rows = report["rows"]
    assert list(rows) == ["OSQ raw", "OSQ exact (path IMH)", "OSQ exact, v = 0", "HMC + Wolff"]
    assert [rows[k]["n"] for k in rows] == [16, 2 * 8, 2 * 8, 2 * 20]  # the smoke sizes
    assert "prior_kinetic" in meta["osq"]  # the default prior: the Hartree free field
    assert 0.0 <= rows["OSQ exact (path IMH)"]["acceptance"] <= 1.0
    assert 0.0 < rows["OSQ raw"]["ess_fraction"] <= 1.0
    for name, row in rows.items():
        absm, chi, binder = row["<|M|>"], row["chi_2'"], row["U_L"]
        assert 0.0 < absm[0] and absm[1] > 0 and chi[0] > 0 and binder[0] < 2 / 3 + 1e-9, (name, row)
        assert name in out
    for name in ("OSQ raw", "OSQ exact (path IMH)", "OSQ exact, v = 0"):
        assert set(rows[name]["sigma_vs_hmc"]) == {"<|M|>", "chi_2'", "U_L"}
        finite_line(rf"{re.escape(name)} - HMC \+ Wolff in sigma: <\|M\|> ({NUMBER}), chi_2' ({NUMBER}), "
                    rf"U_L ({NUMBER})", out)
    for name in ("OSQ exact (path IMH)", "OSQ exact, v = 0", "HMC + Wolff"):  # Gamma-method errors of the Markov chains
        assert set(rows[name]["gamma"]) == {"<|M|>", "chi_2'", "U_L"} and f"{name}, Gamma-method errors" in out
    snap = report["snapshots"]
    assert snap["t"] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])  # T = 0.5, 5 path steps: every one of them
    fields = np.asarray(snap["fields"])
    assert fields.shape == (6, 4, 4) and np.isfinite(fields).all() and math.isfinite(snap["log_w"])
    assert not np.array_equal(fields[0], fields[-1])
    has_matplotlib = subprocess.run([sys.executable, "-c", "import matplotlib"], capture_output=True).returncode == 0
    if has_matplotlib:
        assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the model file loads for another run; a model of other couplings, or none, is a one-line usage error
    proc = run_example("osq_phi4.py", "--model", str(model), "--kappa", "0.5", "--train-steps", "0", cwd=tmp_path,
                       expect=2)
    assert "was trained for" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_example("osq_phi4.py", "--model", str(tmp_path / "none.safetensors"), "--train-steps", "0",
                       cwd=tmp_path, expect=2)
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr
