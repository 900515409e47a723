"""Classical samplers against single-thread reference implementations, in one run (the ratios are what to read;
absolute rates on a shared machine are noise):

- 2D phi^4 local Metropolis: lgdiff's checkerboard ``Metropolis`` (vectorised over chains and sites) against a
  numba-compiled site-by-site loop (one chain, typewriter order), L = 16, 32, 64, float64, kappa = 0.21,
  lambda = 0.022, proposal half-width 1.5, one hit: site updates per second;
- 4D SU(3) heatbath: lgdiff's ``Heatbath`` (heatbath sweeps only, ``n_overrelax=0``) against a plain numpy
  checkerboard heatbath (Cabibbo-Marinari over the three SU(2) subgroups, Kennedy-Pendleton, vectorised over the
  links of one direction and parity, ``np.roll`` staples: written the way a seed script would be), L = 4, 6,
  beta = 5.5: link updates per second.

    OMP_NUM_THREADS=1 python benchmarks/bench_classical.py                  # about 20 seconds
    OMP_NUM_THREADS=1 python benchmarks/bench_classical.py --quick          # smoke run (seconds)
    OMP_NUM_THREADS=1 python benchmarks/bench_classical.py --json out.json  # also write the numbers to a file

Both sides run on one thread (``torch.set_num_threads(1)``; the numba loop is serial), timed by process CPU time
(``--clock wall`` for elapsed time), best of repeats after a warm-up, each reference right before its lgdiff rows.

Before any timing each reference is checked to be a correct sampler, and the run stops with a one-line error if it
is not: the numba Metropolis against the exact <phi^2> of the free field (lambda = 0, kappa = 0.2,
``lgdiff._exact.free_field_propagator``) and against lgdiff's Metropolis at the benchmark's couplings (<phi^2> and
the acceptance); the numpy heatbath against lgdiff's heatbath (the plaquette, from the same cold start). Errors are
Gamma-method errors (independent chains as replicas); a difference above 4 combined standard errors fails.

numba is optional (``pip install -e '.[bench]'``): without it the numba rows are skipped with a one-line message
and lgdiff's Metropolis rates are printed alone.
"""

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _phi4 import fmt  # noqa: E402  (also puts the checkout on the path)
from _timing import CLOCKS, best_time  # noqa: E402

from lgdiff import SU, Field, Heatbath, Lattice, LinkField, Metropolis, Phi4Action, WilsonAction  # noqa: E402
from lgdiff import gamma_method, mean_plaquette  # noqa: E402
from lgdiff._exact.scalar import free_field_propagator  # noqa: E402

KAPPA, LAM, STEP = 0.21, 0.022, 1.5  # phi^4 point and Metropolis proposal half-width of the timed rows
BETA = 5.5  # SU(3) Wilson coupling (as bench_hmc.py and bench_su3.py)
N_SIGMA = 4.0  # a reference whose check differs by more than this many combined errors is rejected
FREE_KAPPA = 0.2  # the exact check of the Metropolis reference: lambda = 0, correlation length ~ 1


class ReferenceMismatch(RuntimeError):
    """A reference sampler failed its check: its rate would not be a baseline."""


def check_agreement(what: str, value: float, error: float, expected: float, expected_error: float) -> float:
    """``|value - expected|`` in combined standard errors; raises `ReferenceMismatch` above ``N_SIGMA``."""
    sigma = math.hypot(error, expected_error)
    z = abs(value - expected) / sigma if sigma > 0 else (0.0 if value == expected else math.inf)
    if not z <= N_SIGMA:
        raise ReferenceMismatch(f"{what}: reference {fmt(value, error)} against "
                                f"{fmt(expected, expected_error)}, {z:.1f} combined errors apart (> {N_SIGMA:g})")
    return z


def _gamma(series: np.ndarray) -> tuple[float, float]:
    """Mean and Gamma-method error of ``[n, chains]`` (chains as replicas)."""
    g = gamma_method(series)
    return g.mean, g.error


# ---- phi^4: the numba reference ---------------------------------------------------------------------------

def numba_metropolis() -> tuple[Callable[..., int], Callable[[int], None]] | None:
    """``(sweeps, seed)`` compiled by numba, or None without numba.

    ``sweeps(phi, kappa, lam, step, n)`` runs ``n`` Metropolis sweeps over the 2D periodic float64 field ``phi``
    (in place, sites in typewriter order, one hit each) for ``S = sum_x [-2 kappa sum_mu phi(x) phi(x+mu) +
    (1 - 2 lambda) phi(x)^2 + lambda phi(x)^4]`` with the proposal ``phi(x) + step u``, ``u ~ U(-1, 1)``, and
    returns the number of accepted proposals; ``seed(s)`` seeds numba's generator."""
    try:
        from numba import njit
    except ImportError:
        return None

    @njit(cache=False)
    def sweeps(phi: np.ndarray, kappa: float, lam: float, step: float, n: int) -> int:
        L0, L1 = phi.shape
        c2 = 1.0 - 2.0 * lam
        accepted = 0
        for _ in range(n):
            for i in range(L0):
                ip = i + 1 if i + 1 < L0 else 0
                im = i - 1 if i > 0 else L0 - 1
                for j in range(L1):
                    jp = j + 1 if j + 1 < L1 else 0
                    jm = j - 1 if j > 0 else L1 - 1
                    nb = phi[ip, j] + phi[im, j] + phi[i, jp] + phi[i, jm]
                    x = phi[i, j]
                    y = x + step * (2.0 * np.random.random() - 1.0)
                    x2, y2 = x * x, y * y
                    ds = -2.0 * kappa * (y - x) * nb + c2 * (y2 - x2) + lam * (y2 * y2 - x2 * x2)
                    if ds <= 0.0 or np.random.random() < math.exp(-ds):
                        phi[i, j] = y
                        accepted += 1
        return accepted

    @njit(cache=False)
    def seed(s: int) -> None:
        np.random.seed(s)

    return sweeps, seed


def numba_chains(sweeps: Callable[..., int], seed: Callable[[int], None], L: int, kappa: float, lam: float, *,
                 chains: int, therm: int, n: int, seed_value: int) -> tuple[np.ndarray, np.ndarray]:
    """``(phi^2 per sweep [n, chains], acceptance per sweep [n, chains])`` of independent reference chains."""
    seed(seed_value)
    rng = np.random.default_rng(seed_value)
    phi2, acc = np.empty((n, chains)), np.empty((n, chains))
    for c in range(chains):
        phi = rng.standard_normal((L, L))
        sweeps(phi, kappa, lam, STEP, therm)
        for t in range(n):
            acc[t, c] = sweeps(phi, kappa, lam, STEP, 1) / phi.size
            phi2[t, c] = np.mean(phi * phi)
    return phi2, acc


def lgdiff_chains(L: int, kappa: float, lam: float, *, chains: int, therm: int, n: int,
                  seed_value: int) -> tuple[np.ndarray, np.ndarray]:
    """As `numba_chains`, for lgdiff's Metropolis (the chains as one batch)."""
    g = torch.Generator().manual_seed(seed_value)
    kernel = Metropolis(action=Phi4Action(kappa=kappa, lam=lam), step_size=STEP)
    phi = Field.randn(Lattice(shape=(L, L)), batch=chains, generator=g, dtype=torch.float64)
    for _ in range(therm):
        phi, _ = kernel.step(phi, generator=g)
    phi2, acc = np.empty((n, chains)), np.empty((n, chains))
    for t in range(n):
        phi, a = kernel.step(phi, generator=g)
        acc[t] = a.numpy()
        phi2[t] = (phi.data * phi.data).mean(dim=(1, 2)).numpy()
    return phi2, acc


def check_numba_metropolis(sweeps: Callable[..., int], seed: Callable[[int], None], *, L: int, therm: int,
                           n: int) -> dict:
    """The checks of the numba reference (module docstring): ``{check: {value, error, expected, ..., z}}``."""
    out = {}
    exact = float(free_field_propagator((L, L), FREE_KAPPA).mean())  # <phi(x)^2> = (1/V) sum_k G(k)
    phi2, _ = numba_chains(sweeps, seed, L, FREE_KAPPA, 0.0, chains=8, therm=therm, n=n, seed_value=1)
    v, dv = _gamma(phi2)
    out["free_phi2"] = {"L": L, "kappa": FREE_KAPPA, "lam": 0.0, "value": v, "error": dv, "expected": exact,
                        "expected_error": 0.0,
                        "z": check_agreement(f"numba Metropolis <phi^2> of the free field (L = {L}, kappa = "
                                             f"{FREE_KAPPA}) against the exact value", v, dv, exact, 0.0)}
    phi2, acc = numba_chains(sweeps, seed, L, KAPPA, LAM, chains=8, therm=therm, n=n, seed_value=2)
    phi2_lg, acc_lg = lgdiff_chains(L, KAPPA, LAM, chains=8, therm=therm, n=n, seed_value=3)
    for key, ref, lg in (("phi2", phi2, phi2_lg), ("acceptance", acc, acc_lg)):
        (v, dv), (e, de) = _gamma(ref), _gamma(lg)
        out[key] = {"L": L, "kappa": KAPPA, "lam": LAM, "value": v, "error": dv, "expected": e, "expected_error": de,
                    "z": check_agreement(f"numba Metropolis {key} (L = {L}, kappa = {KAPPA}, lambda = {LAM}) against "
                                         f"lgdiff's Metropolis", v, dv, e, de)}
    return out


# ---- SU(3): the numpy reference ---------------------------------------------------------------------------

def _dag(m: np.ndarray) -> np.ndarray:
    return np.conj(np.swapaxes(m, -1, -2))


def numpy_staples(U: np.ndarray, mu: int) -> np.ndarray:
    """Staple sum ``A_mu(x)`` of links ``U [D, *L, N, N]``: ``U_mu(x) A_mu(x)`` are the plaquettes through the link,
    ``A = sum_nu U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag + U_nu(x+mu-nu)^dag U_mu(x-nu)^dag U_nu(x-nu)``."""
    A = np.zeros_like(U[mu])
    for nu in range(U.shape[0]):
        if nu == mu:
            continue
        unu_xmu = np.roll(U[nu], -1, axis=mu)
        A += unu_xmu @ _dag(np.roll(U[mu], -1, axis=nu)) @ _dag(U[nu])
        A += np.roll(_dag(unu_xmu) @ _dag(U[mu]) @ U[nu], 1, axis=nu)
    return A


def kennedy_pendleton(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``a0`` with density ``sqrt(1 - a0^2) exp(alpha a0)`` on [-1, 1] for every ``alpha > 0`` (Kennedy and
    Pendleton, Phys. Lett. B 156 (1985) 393), by rejection, redrawing the rejected ones."""
    a0 = np.empty_like(alpha)
    todo = np.arange(alpha.size)
    while todo.size:
        r = 1.0 - rng.random((4, todo.size))  # (0, 1]
        lam2 = -(np.log(r[0]) + np.cos(2 * np.pi * r[1]) ** 2 * np.log(r[2])) / (2 * alpha[todo])
        ok = r[3] ** 2 <= 1 - lam2
        a0[todo[ok]] = 1 - 2 * lam2[ok]
        todo = todo[~ok]
    return a0


def su2_heatbath_block(w: np.ndarray, beta: float, rng: np.random.Generator) -> np.ndarray:
    """For 2x2 blocks ``w [M, 2, 2]`` of ``W = U A`` (SU(3)), the SU(2) matrices ``r [M, 2, 2]`` with weight
    ``exp((beta / 3) Re tr(r w))``: with ``w``'s quaternion part ``k V``, ``X = r V`` has ``X_0 = a0`` drawn at
    ``alpha = 2 beta k / 3`` and an isotropic rest; ``r = X V^dag``."""
    p = (w[:, 0, 0] + np.conj(w[:, 1, 1])) / 2
    q = (w[:, 0, 1] - np.conj(w[:, 1, 0])) / 2
    k = np.sqrt(np.abs(p) ** 2 + np.abs(q) ** 2)
    p, q = p / k, q / k
    V = np.stack([np.stack([p, q], -1), np.stack([-np.conj(q), np.conj(p)], -1)], -2)
    x0 = kennedy_pendleton(2 * beta * k / 3, rng)
    cos_t = 2 * rng.random(x0.size) - 1
    phi = 2 * np.pi * rng.random(x0.size)
    rho = np.sqrt(np.maximum(1 - x0 * x0, 0.0))
    sin_t = np.sqrt(1 - cos_t * cos_t)
    x1, x2, x3 = rho * sin_t * np.cos(phi), rho * sin_t * np.sin(phi), rho * cos_t
    X = np.stack([np.stack([x0 + 1j * x3, x2 + 1j * x1], -1), np.stack([-x2 + 1j * x1, x0 - 1j * x3], -1)], -2)
    return X @ _dag(V)


def reunitarize(u: np.ndarray) -> np.ndarray:
    """Gram-Schmidt on the rows of ``u [..., 3, 3]``, third row ``conj(row0 x row1)``: back onto SU(3)."""
    r0 = u[..., 0, :] / np.linalg.norm(u[..., 0, :], axis=-1, keepdims=True)
    r1 = u[..., 1, :] - np.sum(np.conj(r0) * u[..., 1, :], axis=-1, keepdims=True) * r0
    r1 = r1 / np.linalg.norm(r1, axis=-1, keepdims=True)
    return np.stack([r0, r1, np.conj(np.cross(r0, r1))], axis=-2)


def numpy_heatbath_sweep(U: np.ndarray, beta: float, rng: np.random.Generator) -> np.ndarray:
    """One checkerboard SU(3) heatbath sweep of ``U [D, *L, 3, 3]``: per direction, the even then the odd links,
    each through the three SU(2) subgroups (Cabibbo-Marinari), updated from the left ``U -> R U``."""
    shape = U.shape[1:-2]
    parity = np.indices(shape).sum(0) % 2
    U = U.copy()
    for mu in range(U.shape[0]):
        for par in (0, 1):
            mask = parity == par
            a = numpy_staples(U, mu)[mask]
            u = U[mu][mask]
            w = u @ a
            for i, j in ((0, 1), (0, 2), (1, 2)):
                rows = [i, j]
                r = su2_heatbath_block(w[:, rows][:, :, rows], beta, rng)
                u[:, rows] = r @ u[:, rows]
                w[:, rows] = r @ w[:, rows]
            U[mu][mask] = reunitarize(u)
    return U


Sweep = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def check_numpy_heatbath(*, L: int, therm: int, n: int, chains: int, sweep: Sweep = numpy_heatbath_sweep) -> dict:
    """The check of the numpy reference: its <P> against lgdiff's heatbath, ``chains`` chains of each from the cold
    start, ``therm`` sweeps dropped and ``n`` measured; ``sweep`` is the reference's."""
    lattice = Lattice(shape=(L,) * 4)
    rng = np.random.default_rng(4)
    ref = np.empty((n, chains))
    for c in range(chains):
        U = np.broadcast_to(np.eye(3, dtype=np.complex128), (4, *lattice.shape, 3, 3)).copy()
        for t in range(therm + n):
            U = sweep(U, BETA, rng)
            if t >= therm:
                ref[t - therm, c] = float(mean_plaquette(LinkField(torch.from_numpy(U[None]), SU(3), lattice))[0])
    hb = Heatbath(WilsonAction(beta=BETA, group=SU(3)), n_overrelax=0)
    g = torch.Generator().manual_seed(5)
    V = LinkField.identity(SU(3), lattice, batch=chains)
    lg = np.empty((n, chains))
    for t in range(therm + n):
        V, _ = hb.step(V, generator=g)
        if t >= therm:
            lg[t - therm] = mean_plaquette(V).numpy()
    (v, dv), (e, de) = _gamma(ref), _gamma(lg)
    return {"L": L, "beta": BETA, "chains": chains, "therm": therm, "n": n, "value": v, "error": dv, "expected": e,
            "expected_error": de,
            "z": check_agreement(f"numpy SU(3) heatbath plaquette ({L}^4, beta = {BETA}) against lgdiff's heatbath",
                                 v, dv, e, de)}


# ---- the run ----------------------------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "cpu"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: L = 8 (phi^4) and 4 (SU(3)), short checks")
    ap.add_argument("--clock", default="cpu", choices=sorted(CLOCKS),
                    help="cpu: process CPU time (default; one thread, so one core's time); wall: elapsed time")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    args = ap.parse_args()
    if args.json is not None and not args.json.parent.is_dir():
        ap.error(f"--json {args.json}: the directory {args.json.parent} does not exist")
    clock = CLOCKS[args.clock]
    torch.set_num_threads(1)
    reps = 2 if args.quick else 5
    out: dict = {"threads": torch.get_num_threads(), "clock": args.clock, "cpu": _cpu_model(),
                 "torch": torch.__version__, "numpy": np.__version__, "quick": args.quick,
                 "loadavg_start": list(os.getloadavg())}
    print(f"# lgdiff classical samplers against single-thread references: {out['threads']} thread, {args.clock} clock, "
          f"{out['cpu']}, torch {torch.__version__}, numpy {np.__version__}, load average {out['loadavg_start']}")

    # ---- phi^4 Metropolis
    compiled = numba_metropolis()
    out["metropolis"] = {"kappa": KAPPA, "lam": LAM, "step_size": STEP, "rows": []}
    if compiled is None:
        print("phi^4 Metropolis: numba is not installed (pip install -e '.[bench]'): the numba reference rows are "
              "skipped")
        out["metropolis"]["numba"] = None
    else:
        import numba

        out["metropolis"]["numba"] = numba.__version__
        sweeps, seed = compiled
        L_check = 8 if args.quick else 16
        try:
            checks = check_numba_metropolis(sweeps, seed, L=L_check, therm=50 if args.quick else 200,
                                            n=300 if args.quick else 2000)
        except ReferenceMismatch as e:
            sys.exit(f"bench_classical.py: {e}")
        out["metropolis"]["checks"] = checks
        c = checks["free_phi2"]
        print(f"check: numba Metropolis, free field L = {L_check}, kappa = {FREE_KAPPA}: <phi^2> "
              f"{fmt(c['value'], c['error'])}, exact {c['expected']:.5f} ({c['z']:.1f} sigma)")
        for key in ("phi2", "acceptance"):
            c = checks[key]
            print(f"check: kappa = {KAPPA}, lambda = {LAM}, L = {L_check}: {key} numba {fmt(c['value'], c['error'])}, "
                  f"lgdiff {fmt(c['expected'], c['expected_error'])} ({c['z']:.1f} sigma)")
    print(f"{'phi^4 Metropolis':18s}{'L':>4}{'numba 1 chain':>15}{'lgdiff 1 chain':>16}{'ratio':>7}"
          f"{'lgdiff 64 chains':>18}{'ratio':>7}   (site updates per {args.clock} second, float64)")
    kernel = Metropolis(action=Phi4Action(kappa=KAPPA, lam=LAM), step_size=STEP)
    for L in (8,) if args.quick else (16, 32, 64):
        V = L * L
        row: dict = {"L": L}
        if compiled is not None:
            phi_np = np.random.default_rng(0).standard_normal((L, L))
            k = max(1, 2**20 // V)
            t = best_time(lambda: sweeps(phi_np, KAPPA, LAM, STEP, k), reps, clock=clock)
            row["numba_site_updates_per_s"] = k * V / t
        g = torch.Generator().manual_seed(0)
        for chains in (1, 64):
            phi = Field.randn(Lattice(shape=(L, L)), batch=chains, generator=g, dtype=torch.float64)
            k = max(1, 2**18 // (chains * V))

            def run() -> None:
                x = phi
                for _ in range(k):
                    x, _ = kernel.step(x, generator=g)

            t = best_time(run, reps, clock=clock)
            row[f"lgdiff_{chains}_site_updates_per_s"] = k * chains * V / t
            if compiled is not None:
                row[f"ratio_{chains}"] = row[f"lgdiff_{chains}_site_updates_per_s"] / row["numba_site_updates_per_s"]
        out["metropolis"]["rows"].append(row)
        ref = f"{row['numba_site_updates_per_s']:15.3g}" if compiled is not None else f"{'skipped':>15}"

        def ratio(chains: int) -> str:
            return f"{row[f'ratio_{chains}']:6.2f}x" if compiled is not None else f"{'-':>7}"

        print(f"{'':18s}{L:4d}{ref}{row['lgdiff_1_site_updates_per_s']:16.3g}{ratio(1)}"
              f"{row['lgdiff_64_site_updates_per_s']:18.3g}{ratio(64)}", flush=True)

    # ---- SU(3) heatbath
    L_check = 4
    try:
        check = check_numpy_heatbath(L=L_check, therm=10 if args.quick else 20, n=20 if args.quick else 300,
                                     chains=2 if args.quick else 4)
    except ReferenceMismatch as e:
        sys.exit(f"bench_classical.py: {e}")
    print(f"check: numpy SU(3) heatbath, {L_check}^4, beta = {BETA}, {check['chains']} chains from the cold start, "
          f"{check['therm']} + {check['n']} sweeps: <P> numpy {fmt(check['value'], check['error'])}, lgdiff "
          f"{fmt(check['expected'], check['expected_error'])} ({check['z']:.1f} sigma)")
    out["heatbath"] = {"beta": BETA, "check": check, "rows": []}
    print(f"{'SU(3) heatbath':18s}{'L':>4}{'numpy 1 config':>15}{'lgdiff 1 config':>16}{'ratio':>7}"
          f"{'lgdiff 8 configs':>18}{'ratio':>7}   (link updates per {args.clock} second, complex128)")
    action = WilsonAction(beta=BETA, group=SU(3))
    hb = Heatbath(action, n_overrelax=0)
    for L in (4,) if args.quick else (4, 6):
        lattice = Lattice(shape=(L,) * 4)
        links = 4 * lattice.volume
        g = torch.Generator().manual_seed(0)
        U0 = LinkField.random(SU(3), lattice, batch=1, generator=g)
        for _ in range(5):  # near equilibrium: the rejection rounds depend on the staples
            U0, _ = hb.step(U0, generator=g)
        u_np = U0.data[0].numpy().copy()
        rng = np.random.default_rng(0)
        t_np = best_time(lambda: numpy_heatbath_sweep(u_np, BETA, rng), reps, clock=clock)
        row = {"L": L, "numpy_link_updates_per_s": links / t_np}
        for batch in (1, 8):
            U = U0.with_data(U0.data.expand(batch, *U0.data.shape[1:]).clone())
            t = best_time(lambda: hb.step(U, generator=g), reps, clock=clock)
            row[f"lgdiff_{batch}_link_updates_per_s"] = batch * links / t
            row[f"ratio_{batch}"] = row[f"lgdiff_{batch}_link_updates_per_s"] / row["numpy_link_updates_per_s"]
        out["heatbath"]["rows"].append(row)
        print(f"{'':18s}{L:4d}{row['numpy_link_updates_per_s']:15.3g}{row['lgdiff_1_link_updates_per_s']:16.3g}"
              f"{row['ratio_1']:6.2f}x{row['lgdiff_8_link_updates_per_s']:18.3g}{row['ratio_8']:6.2f}x", flush=True)
    out["loadavg_end"] = list(os.getloadavg())
    print(f"# load average at the end {out['loadavg_end']}")
    if args.json:
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(out, indent=1))
        tmp.replace(args.json)


if __name__ == "__main__":
    main()
