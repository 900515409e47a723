"""Classical samplers: phi^4 HMC throughput against a single-chain numpy reference, and SU(3) HMC and
heatbath sweeps per second, measured in one run (ratios are meaningful; absolute times are noise on a
shared machine).

    python benchmarks/bench_hmc.py [--quick] [--clock cpu|wall] [--json out.json]

Times are the best of repeats by the process CPU-time clock (default; ``--clock wall`` for elapsed time), the
phi^4 rows with one thread on both sides.

The numpy reference is written the way the seed's reference code is: one chain, ``np.roll`` for the
neighbours, leapfrog, the same trajectory (10 steps of 0.1) as lgdiff's run.
"""

import argparse
import json

import numpy as np
import torch

from lgdiff import HMC, LEAPFROG, SU, GaugeHMC, Heatbath, Lattice, LinkField, Phi4Action, WilsonAction, Field
from _timing import CLOCKS, best_time  # noqa: E402  (benchmarks/, on the path when run as a script)


def numpy_hmc_trajectory(phi, kappa, lam, eps, n_steps, rng):
    """Single-chain phi^4 HMC, seed style: np.roll neighbours, leapfrog, Metropolis."""
    def action(x):
        hop = sum(x * np.roll(x, -1, axis=mu) for mu in range(x.ndim))
        return np.sum(-2 * kappa * hop + (1 - 2 * lam) * x**2 + lam * x**4)

    def force(x):
        nb = sum(np.roll(x, -1, axis=mu) + np.roll(x, 1, axis=mu) for mu in range(x.ndim))
        return -2 * kappa * nb + 2 * (1 - 2 * lam) * x + 4 * lam * x**3

    p = rng.standard_normal(phi.shape)
    h0 = 0.5 * np.sum(p * p) + action(phi)
    x = phi.copy()
    p = p - 0.5 * eps * force(x)
    for i in range(n_steps):
        x = x + eps * p
        if i < n_steps - 1:
            p = p - eps * force(x)
    p = p - 0.5 * eps * force(x)
    h1 = 0.5 * np.sum(p * p) + action(x)
    return x if rng.random() < np.exp(h0 - h1) else phi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=str, default=None)
    ap.add_argument("--clock", default="cpu", choices=sorted(CLOCKS),
                    help="cpu: process CPU time (default; time-sharing does not inflate it); wall: elapsed time")
    args = ap.parse_args()
    clock = CLOCKS[args.clock]
    reps = 2 if args.quick else 5
    out: dict = {"threads": torch.get_num_threads(), "clock": args.clock}

    # ---- phi^4, L = 32, trajectory 10 x 0.1, leapfrog; one thread on both sides (numpy is single-threaded)
    torch.set_num_threads(1)
    L, kappa, lam = 32, 0.21, 0.022
    rng = np.random.default_rng(0)
    phi_np = rng.standard_normal((L, L))
    hmc = HMC(action=Phi4Action(kappa=kappa, lam=lam), step_size=0.1, n_steps=10, scheme=LEAPFROG)
    out["phi4_hmc"] = []
    for chains, dtype in ((64, torch.float64), (256, torch.float64), (64, torch.float32)):
        # interleave the reference with each lgdiff measurement: the ratio of one moment's timings
        t_np = best_time(lambda: numpy_hmc_trajectory(phi_np, kappa, lam, 0.1, 10, rng), reps * 4, clock=clock)
        g = torch.Generator().manual_seed(0)
        phi = Field.randn(Lattice(shape=(L, L)), batch=chains, generator=g, dtype=dtype)
        t_lg = best_time(lambda: hmc.step(phi, generator=g), reps, clock=clock)
        np_rate, lg_rate = L * L / t_np, chains * L * L / t_lg
        out["phi4_hmc"].append({"L": L, "chains": chains, "dtype": str(dtype), "numpy_site_updates_per_s": np_rate,
                                "lgdiff_site_updates_per_s": lg_rate, "ratio": lg_rate / np_rate})
        print(f"phi4 HMC L={L}: numpy single chain (float64) {np_rate:.3g} site-updates/s, lgdiff {chains} chains "
              f"({str(dtype)[6:]}) {lg_rate:.3g} site-updates/s, ratio {lg_rate / np_rate:.1f}x (target >= {20 if dtype == torch.float64 else 30}x)")
    torch.set_num_threads(out["threads"])

    # ---- SU(3), 4D: HMC trajectories and heatbath sweeps per second
    out["su3"] = []
    for L in (4, 6) if args.quick else (4, 6, 8):
        lat = Lattice(shape=(L,) * 4)
        U = LinkField.random(SU(3), lat, batch=2, generator=g)
        action = WilsonAction(beta=5.5, group=SU(3))
        ghmc = GaugeHMC(action=action, step_size=0.1, n_steps=10)
        hb = Heatbath(action=action, n_overrelax=1)
        t_h = best_time(lambda: ghmc.step(U, generator=g), 1 if L == 8 else reps, clock=clock)
        t_b = best_time(lambda: hb.step(U, generator=g), 1 if L == 8 else reps, clock=clock)
        row = {"L": L, "batch": 2, "hmc_trajectories_per_s": 2 / t_h, "heatbath_sweeps_per_s": 2 / t_b}
        out["su3"].append(row)
        print(f"SU(3) {L}^4 x 2 configs: HMC (10 leapfrog steps) {2 / t_h:.3g} traj/s, "
              f"heatbath+overrelax {2 / t_b:.3g} sweeps/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
