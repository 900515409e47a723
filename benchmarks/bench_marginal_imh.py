"""The exact likelihood of marginal independence Metropolis (`lgdiff.MarginalIMH`) against its cost: PF-ODE steps and
time grid against the spread of the exact log weights, and the CPU cost of the exact divergence (issue #18, item 2).

Each proposal is a probability-flow ODE solve (Heun) from the prior with the exact log-determinant of the
discretised map (one forward-mode JVP per degree of freedom and step, batched with ``torch.func.vmap``, ``--chunk``
at a time), so ``log w = -S(x) - log q(x)`` is exact for the map actually used, at any number of steps. For
``--n`` fresh proposals per setting (one batch) the script reports var(log w), the Kish ESS per proposal and the
stationary acceptance of an independence chain over such proposals, estimated from the same draws by
self-normalised importance sampling: ``acc = sum_ij w_i min(1, w_j / w_i) / (n sum_i w_i)`` (i from the target,
j from the proposal; noisy where the ESS is small), with the CPU seconds per proposal. ``--cost-L`` times one
proposal at other volumes (the divergence's cost grows as V^2: V JVPs of a V-site network).

    OMP_NUM_THREADS=1 python benchmarks/bench_marginal_imh.py --L 16 --steps 5 10 20 --cost-L 32
    OMP_NUM_THREADS=1 python benchmarks/bench_marginal_imh.py --quick

``--route path`` measures the path-space route (`lgdiff.PathIMH`: reverse-SDE proposals weighed against the
forward noising path, ``--steps`` reverse-SDE steps) the same way, for comparison; its spacing is uniform.

The default model is the shipped ``phi4_k0.27_L16`` (kappa = 0.27, lambda = 0.022, VE SDE).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _phi4 import LAM, MODELS, CpuTimer, grad_score, load_score  # noqa: E402

from lgdiff._actions.phi4 import Phi4Action  # noqa: E402
from lgdiff._fields.scalar import Field  # noqa: E402
from lgdiff._geometry.lattice import Lattice  # noqa: E402
from lgdiff._samplers.hartree import hartree_gaussian  # noqa: E402
from lgdiff._samplers.independence import AbstractIMH, MarginalIMH, PathIMH  # noqa: E402
from lgdiff._sde.precondition import FreeScalarPreconditioner  # noqa: E402
from lgdiff._stats import effective_sample_size  # noqa: E402


def stationary_acceptance(log_w: np.ndarray) -> float:
    """``E_{x ~ p, x' ~ q} min(1, w(x') / w(x))`` estimated from proposals alone (module docstring)."""
    lw = log_w - log_w.max()
    w = np.exp(lw)
    ratio = np.exp(np.minimum(0.0, lw[None, :] - lw[:, None]))  # [i (target, weighted), j (proposal)]
    return float((w[:, None] * ratio).sum() / (len(lw) * w.sum()))


def proposals(kernel: AbstractIMH, lattice: Lattice, n: int, seed: int) -> tuple[np.ndarray, float]:
    like = Field.zeros(lattice, batch=n)
    g = torch.Generator().manual_seed(seed)
    with CpuTimer() as tm:
        _, log_w = kernel.propose(like, generator=g)
    return log_w.numpy().astype(np.float64), tm.cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--L", type=int, default=16, help="lattice of the acceptance study")
    p.add_argument("--kappa", type=float, default=0.27)
    p.add_argument("--model", type=Path, default=MODELS / "phi4_k0.27_L16.safetensors")
    p.add_argument("--route", choices=("marginal", "path"), default="marginal",
                   help="marginal (PF-ODE, exact log det) or path (reverse SDE, path-space weight)")
    p.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20], help="PF-ODE Heun (or reverse-SDE) steps")
    p.add_argument("--spacing", nargs="+", default=["uniform", "geometric"], help="time grids")
    p.add_argument("--n", type=int, default=16, help="proposals per setting (one batch)")
    p.add_argument("--t-min", type=float, default=1e-3)
    p.add_argument("--chunk", type=int, default=64, help="JVPs per vmap call")
    p.add_argument("--cost-L", type=int, nargs="*", default=[], help="time one proposal (fewest steps) at these L")
    p.add_argument("--precondition", action="store_true",
                   help="path route: the reverse kernel exact for the Hartree Gaussian (FreeScalarPreconditioner)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="L = 4, 2 and 3 steps, 4 proposals, cost at L = 8")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if args.quick:
        args.L, args.steps, args.n, args.cost_L = 4, [2, 3], 4, [8]
    if args.L < 4 or any(L % 4 for L in [args.L, *args.cost_L]) or args.n < 2 or min(args.steps) < 1:
        p.error("--L and --cost-L must be multiples of 4 (the NCSN++ halves the lattice twice), --n >= 2 and "
                "--steps >= 1")
    torch.set_num_threads(1)
    if not args.model.is_file():
        p.error(f"--model {args.model} does not exist")
    _, net, meta = load_score(args.model)
    score = grad_score(net)  # differentiable by forward-mode AD (the exact log det)
    action = Phi4Action(kappa=args.kappa, lam=LAM)
    if args.route == "path":
        args.spacing = ["uniform"]
    if args.precondition and args.route != "path":
        p.error("--precondition is for --route path (the probability-flow ODE has no reverse kernel)")
    pre = None
    if args.precondition:
        gauss = hartree_gaussian(action, (args.L, args.L))
        pre = FreeScalarPreconditioner(std=gauss.std, kinetic=gauss.kinetic)
        print(f"preconditioned reverse kernel: Hartree Gaussian ({gauss.phase}) std {gauss.std:.4f}, kinetic "
              f"{gauss.kinetic:.4f}, t_min {args.t_min}")
    print(f"{args.route} IMH, 2D phi^4 L = {args.L}, kappa = {args.kappa}, model {args.model.name} (trained on "
          f"{meta.get('lattice')}), {args.n} proposals per setting, exact log det (JVPs, chunk {args.chunk})")
    print(f"{'steps':>5} {'spacing':>9} {'var(log w)':>10} {'ESS/n':>6} {'acc (SNIS)':>10} {'CPU s/proposal':>14}")
    def make_kernel(steps: int, spacing: str) -> AbstractIMH:
        if args.route == "path":
            if pre is not None:  # the preconditioned kernel evaluates the score at the lower time: t_min > 0
                return PathIMH(score=score, process=net.sde, action=action, steps=steps, t_min=args.t_min,
                               preconditioner=pre)
            return PathIMH(score=score, process=net.sde, action=action, steps=steps, t_min=0.0)
        return MarginalIMH(score=score, process=net.sde, action=action, steps=steps, t_min=args.t_min,
                           spacing=spacing, chunk=args.chunk)

    rows = []
    for spacing in args.spacing:
        for steps in args.steps:
            kernel = make_kernel(steps, spacing)
            log_w, cpu = proposals(kernel, Lattice(shape=(args.L, args.L)), args.n, args.seed)
            row = {"steps": steps, "spacing": spacing, "var_log_w": float(log_w.var(ddof=1)),
                   "ess_fraction": effective_sample_size(torch.from_numpy(log_w)) / args.n,
                   "acceptance": stationary_acceptance(log_w), "cpu_s_per_proposal": cpu / args.n}
            rows.append(row)
            print(f"{steps:5d} {spacing:>9} {row['var_log_w']:10.2f} {row['ess_fraction']:6.3f} "
                  f"{row['acceptance']:10.3f} {row['cpu_s_per_proposal']:14.2f}", flush=True)
    costs = []
    for L in args.cost_L:
        kernel = make_kernel(min(args.steps), args.spacing[0])
        _, cpu = proposals(kernel, Lattice(shape=(L, L)), 1, args.seed)
        costs.append({"L": L, "steps": min(args.steps), "cpu_s_per_proposal": cpu,
                      "cpu_s_per_step": cpu / min(args.steps)})
        print(f"L = {L}: one proposal of {min(args.steps)} steps: {cpu:.1f} CPU s ({cpu / min(args.steps):.2f} per "
              f"step)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"L": args.L, "kappa": args.kappa, "model": str(args.model), "n": args.n, "route": args.route,
                                         "precondition": args.precondition,
                                         "rows": rows, "costs": costs}, indent=1))


if __name__ == "__main__":
    main()
