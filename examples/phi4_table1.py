"""Seed Table 1 with lgdiff: 2D phi^4, lambda = 0.022, kappa = 0.21, L = 32.

Generated configurations (raw reverse SDE, and the exact path-space / MAALA routes) against an independent
HMC test set: <M>, chi_2, U_L (jackknife errors); and R^2 of the effective action S_eff = -log q
(PF-ODE, Skilling-Hutchinson divergence: a diagnostic) against the true action S.

    OMP_NUM_THREADS=1 python examples/phi4_table1.py --test /tmp/lgdiff-phi4/k0.21_L32_test.safetensors \
        --n-sde 1024 --steps 100 --n-r2 128 --r2-steps 50 --path-chains 16 --path-n 16 --maala-chains 32 --maala-n 400

The test set is made by ``examples/train_phi4_models.py data`` (or the ``lgdiff generate`` command it prints).
Every part is optional (set its count to 0). Numbers are printed as a table and written to --json.

Cost on one CPU core (estimated from 0.39 CPU s per call of the shipped network on a batch of 128 at L = 32):
the defaults (raw reverse SDE, 1024 samples x 100 steps, and R^2) about 7 minutes; the command above, with the
path and MAALA routes, roughly twice that. Each row prints its own CPU seconds.

``--smoke`` runs every route (raw SDE, R^2, path IMH, MAALA) with the shipped model at tiny sizes (L = 8, a few
samples, 4 SDE steps: seconds on one core); without ``--test`` it generates a tiny HMC test set itself in a
temporary directory (the ``k0.21_L32_test`` smoke ensemble of ``train_phi4_models.py``). Explicit sizes are
capped at the smoke sizes (so a documented full-size command plus ``--smoke`` stays a smoke run; 0 still switches
a route off):

    OMP_NUM_THREADS=1 python examples/phi4_table1.py --smoke
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _phi4 import LAM, MODELS, CpuTimer, fmt, load_score, magnetisation_table, r_squared  # noqa: E402

from lgdiff._actions.phi4 import Phi4Action  # noqa: E402
from lgdiff._fields.scalar import Field  # noqa: E402
from lgdiff._geometry.lattice import Lattice  # noqa: E402
from lgdiff._io.ensemble import Ensemble  # noqa: E402
from lgdiff._samplers.maala import maala, path_imh  # noqa: E402
from lgdiff._samplers.reverse import log_likelihood, reverse_sde  # noqa: E402

from _smoke import HelpFormatter, parse_sized, wants_smoke  # noqa: E402  (examples/_smoke.py)

# --smoke: every route at tiny sizes (explicit sizes are capped at these)
SMOKE = {"L": 8, "n_sde": 8, "batch": 8, "steps": 4, "n_r2": 8, "r2_steps": 2, "path_chains": 2, "path_n": 2,
         "maala_chains": 2, "maala_n": 4, "maala_therm": 2}



def smoke_test_set(work: Path) -> Path:
    """The tiny HMC test set of a smoke run (``train_phi4_models.py``'s smoke ``k0.21_L32_test``, L = 8)."""
    import train_phi4_models

    train_phi4_models.make_ensemble(train_phi4_models.SMOKE, work, "k0.21_L32_test")
    return work / "k0.21_L32_test.safetensors"


def main() -> None:
    smoke = wants_smoke(sys.argv[1:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--model", type=Path, default=MODELS / "phi4_k0.21_L32.safetensors", help="score model file")
    p.add_argument("--test", type=Path, required=not smoke,
                   help="independent HMC ensemble at the same couplings (--smoke: generated if not given)")
    p.add_argument("--L", type=int, default=32, help="lattice size L (L x L); the seed: 32")
    p.add_argument("--kappa", type=float, default=0.21, help="hopping parameter")
    p.add_argument("--n-sde", type=int, default=1024, help="raw reverse-SDE samples")
    p.add_argument("--batch", type=int, default=128, help="reverse-SDE batch size")
    p.add_argument("--steps", type=int, default=100, help="reverse-SDE steps (raw and path routes)")
    p.add_argument("--n-r2", type=int, default=128, help="generated samples for R^2")
    p.add_argument("--r2-steps", type=int, default=50, help="PF-ODE Heun steps for R^2")
    p.add_argument("--path-chains", type=int, default=0, help="path-space IMH chains (full: 16)")
    p.add_argument("--path-n", type=int, default=0, help="path-space IMH steps per chain (full: 16)")
    p.add_argument("--maala-chains", type=int, default=0, help="MAALA chains (full: 32)")
    p.add_argument("--maala-n", type=int, default=0, help="MAALA records per chain after --maala-therm (full: 400)")
    p.add_argument("--maala-t", type=float, default=0.02, help="MAALA Langevin time t")
    p.add_argument("--maala-step", type=float, default=0.1, help="MAALA step size e")
    p.add_argument("--maala-therm", type=int, default=50, help="MAALA steps discarded")
    p.add_argument("--seed", type=int, default=0, help="seed of the one generator")
    p.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = parse_sized(p, SMOKE, smoke=smoke)
    for option, path in (("--model", args.model), ("--test", args.test)):
        if path is not None and not path.is_file():
            p.error(f"{option} {path}: no such file (the test set is made by train_phi4_models.py data; "
                    f"--smoke makes a tiny one itself)")
    torch.set_num_threads(1)
    if args.test is None:  # only in a smoke run (required otherwise)
        with tempfile.TemporaryDirectory(prefix="lgdiff-smoke-") as work:
            args.test = smoke_test_set(Path(work))
            run(args)
    else:
        run(args)


def run(args: argparse.Namespace) -> None:
    score, net, meta = load_score(args.model)
    sde = net.sde
    lattice = Lattice(shape=(args.L, args.L))
    V = lattice.volume
    action = Phi4Action(kappa=args.kappa, lam=LAM)
    g = torch.Generator().manual_seed(args.seed)
    rows: dict[str, dict] = {}
    report: dict = {"model": str(args.model), "L": args.L, "kappa": args.kappa, "steps": args.steps, "rows": rows}

    test = Ensemble.load(args.test).configs().data.reshape(-1, *lattice.shape)
    rows["HMC test set"] = {"n": test.shape[0], **magnetisation_table(test.mean(dim=(1, 2)).numpy(), V)}

    generated = []
    if args.n_sde:
        with CpuTimer() as tm:
            for start in range(0, args.n_sde, args.batch):
                b = min(args.batch, args.n_sde - start)
                x_T = sde.prior_sample((b, *lattice.shape), generator=g, dtype=torch.float64)
                generated.append(reverse_sde(score, sde, x_T, steps=args.steps, generator=g, t_min=0.0))
        x = torch.cat(generated)
        rows[f"DM raw (reverse SDE, {args.steps} steps)"] = {
            "n": x.shape[0], "cpu_s": tm.cpu, **magnetisation_table(x.mean(dim=(1, 2)).numpy(), V)}
    if args.n_r2 and generated:
        x = torch.cat(generated)[: args.n_r2]
        with CpuTimer() as tm:
            logq = torch.cat([log_likelihood(score, sde, x[i:i + 32], steps=args.r2_steps, divergence="hutchinson",
                                             generator=g) for i in range(0, x.shape[0], 32)])
        S = action(Field(x, lattice)).numpy()
        r2, slope = r_squared(S, -logq.numpy())
        report["R2"] = {"n": x.shape[0], "R2": r2, "slope": slope, "steps": args.r2_steps, "cpu_s": tm.cpu}
    if args.path_chains and args.path_n:
        with CpuTimer() as tm:
            res = path_imh(score, sde, action, Field.zeros(lattice, batch=args.path_chains), n=args.path_n,
                           steps=args.steps, generator=g, t_min=0.0)
        M = res.samples.mean(dim=(2, 3)).numpy()
        rows[f"DM path IMH ({args.steps} steps)"] = {
            "n": int(M.size), "acceptance": float(res.acceptance.mean()), "cpu_s": tm.cpu,
            **magnetisation_table(M, V, n_bins=min(8, M.shape[0]))}
    if args.maala_chains and args.maala_n:
        with CpuTimer() as tm:
            res = maala(score, sde, action, Field.zeros(lattice, batch=args.maala_chains), n=args.maala_n,
                        therm=args.maala_therm, steps=args.steps, t_langevin=args.maala_t,
                        step_size=args.maala_step, generator=g)
        M = res.samples.mean(dim=(2, 3)).numpy()
        rows[f"DM MAALA (t = {args.maala_t}, e = {args.maala_step})"] = {
            "n": int(M.size), "acceptance": float(res.acceptance.mean()), "cpu_s": tm.cpu,
            **magnetisation_table(M, V, n_bins=min(20, M.shape[0]))}

    print(f"2D phi^4 L = {args.L}, kappa = {args.kappa}, lambda = {LAM}; model {args.model.name} "
          f"(trained {meta.get('step')} steps on L = {meta.get('lattice')})")
    print(f"{'':42} {'n':>6} {'acc':>6} {'<M>':>12} {'chi_2':>10} {'chi_2_abs':>10} {'U_L':>10} {'cpu s':>8}")
    for name, r in rows.items():
        chi_abs = r["chi_2'"]
        print(f"{name:42} {r['n']:6d} {r.get('acceptance', 1.0):6.3f} {fmt(*r['<M>']):>12} {fmt(*r['chi_2']):>10} "
              f"{fmt(*chi_abs):>10} {fmt(*r['U_L']):>10} {r.get('cpu_s', 0):8.0f}")
    if "R2" in report:
        r = report["R2"]
        print(f"R^2(S_eff vs S) = {r['R2']:.3f} (slope {r['slope']:.3f}) on {r['n']} generated samples, "
              f"PF-ODE {r['steps']} Heun steps, 1 Rademacher probe, {r['cpu_s']:.0f} CPU s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
