"""What the prior of an OSQ path is worth: the spread of the exact path weights of the untrained sampler (``v = 0``,
finite-time Langevin) from the white prior N(0, 1) against the Hartree free field (`OSQProcess.hartree`, the best
Gaussian approximation of the action), for 2D phi^4 (lambda = 0.022) at several kappa, horizons T and path steps N
(docs/osq.md, "The prior").

For each setting: var(log w) over ``--n`` fresh paths (all from seed ``--seed``) and the Kish effective sample size
per path, ``ESS / n``; an independence Metropolis chain over such paths accepts roughly like ``exp(-var / 4)``
when log w is near Gaussian. No network, no training: the numbers measure the prior and the path alone.

    OMP_NUM_THREADS=1 python benchmarks/bench_osq_prior.py --L 16 --json /tmp/osq_prior.json

About 10 CPU s at L = 16 with the defaults. ``--quick``: L = 4, 32 paths, one setting per kappa (seconds).
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _phi4 import LAM, CpuTimer  # noqa: E402

from lgdiff._actions.phi4 import Phi4Action  # noqa: E402
from lgdiff._samplers.osq import OSQProcess, osq_path, zero_drift  # noqa: E402
from lgdiff._stats import effective_sample_size  # noqa: E402

SETTINGS = ((1.0, 20), (0.5, 20), (0.5, 40), (1.0, 50))
PRIORS = ("white", "hartree")


def measure(kappa: float, L: int, T: float, steps: int, prior: str, n: int, seed: int) -> dict:
    action = Phi4Action(kappa=kappa, lam=LAM)
    process = (OSQProcess.hartree(action, (L, L), T=T, steps=steps) if prior == "hartree"
               else OSQProcess(T=T, steps=steps))
    g = torch.Generator().manual_seed(seed)
    with CpuTimer() as tm, torch.no_grad():
        x0 = process.prior((n, L, L), dtype=torch.float64, device="cpu", generator=g)
        log_w = osq_path(zero_drift, action, process, x0, generator=g).log_w
    return {"var_log_w": float(log_w.var()), "ess_fraction": effective_sample_size(log_w) / n, "cpu_s": tm.cpu,
            "process": process.settings()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--L", type=int, default=16, help="lattice size L x L")
    p.add_argument("--kappa", type=float, nargs="+", default=[0.21, 0.25, 0.27], help="hopping parameters")
    p.add_argument("--n", type=int, default=512, help="paths per setting")
    p.add_argument("--seed", type=int, default=3, help="seed of every setting's generator")
    p.add_argument("--quick", action="store_true", help="L = 4, 32 paths, T = 0.5 and N = 20 only")
    p.add_argument("--json", type=Path, help="write the numbers to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(1)
    L, n, settings = (4, 32, SETTINGS[1:2]) if args.quick else (args.L, args.n, SETTINGS)
    if L < 2 or n < 2:
        p.error("--L and --n must be >= 2")
    print(f"2D phi^4, L = {L}, lambda = {LAM}, v = 0, {n} paths per setting (seed {args.seed}): var(log w) and "
          f"ESS / n of the exact path weights")
    print(f"{'kappa':>6} {'T':>5} {'N':>4} " + " ".join(f"{name + ' var':>13} {'ESS/n':>7}" for name in PRIORS))
    rows = []
    for kappa in args.kappa:
        for T, steps in settings:
            row = {"kappa": kappa, "T": T, "N": steps,
                   **{prior: measure(kappa, L, T, steps, prior, n, args.seed) for prior in PRIORS}}
            rows.append(row)
            print(f"{kappa:6g} {T:5g} {steps:4d} " + " ".join(
                f"{row[prior]['var_log_w']:13.3f} {row[prior]['ess_fraction']:7.3f}" for prior in PRIORS), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"L": L, "lambda": LAM, "n": n, "seed": args.seed, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
