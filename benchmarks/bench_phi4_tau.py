"""Autocorrelation of |M| near criticality: exact DM-based Monte Carlo against HMC, HMC + Wolff and Metropolis.

2D phi^4 at kappa = 0.27, lambda = 0.022 (near-critical for L <= 32), all algorithms in one run on the same
lattice. For each: acceptance, <|M|>, the integrated autocorrelation time of |M| by Wolff's Gamma method
(independent chains as replicas), N_eff = N / (2 tau_int), the process CPU seconds of the sampling (training
cost not included) and effective samples per CPU-second. tau_int is counted in updates: one HMC trajectory,
one Metropolis sweep, one (FA-)HMC trajectory + one Wolff cluster, one DM proposal (path IMH: one reverse-SDE
generation), one MAALA Langevin step (every site moves), one mixture step (``--mix-local`` FA-HMC trajectories, then
one global path-space proposal against the current configuration re-weighed with a fresh path: `GlobalLocal`), one
OSQ proposal (row ``osq``: path-space independence Metropolis over optimal-stochastic-quantisation paths from the
Hartree free-field prior, `OSQPathIMH`, with the drift of ``--osq-model`` or, without one, ``v = 0``: no network and
no training, docs/osq.md).

    OMP_NUM_THREADS=1 python benchmarks/bench_phi4_tau.py                   # L = 16 and 32, the shipped models
    OMP_NUM_THREADS=1 python benchmarks/bench_phi4_tau.py --L 32 --model lgdiff/models/phi4_k0.27_L16.safetensors
    OMP_NUM_THREADS=1 python benchmarks/bench_phi4_tau.py --quick           # smoke run

Several ``--L`` run in one process, one after the other, each with its ``--model`` (one for all, or one per ``--L``;
default: the shipped kappa = 0.27 model trained nearest in L); the model's training cost (steps, CPU and wall
seconds, hardware, from its metadata) is printed beside each table. The DM rows use the reverse kernel of
``lgdiff sample --theory phi4 --method path``: preconditioned by the Hartree Gaussian of the lattice
(``--no-precondition``: the plain Euler-Maruyama kernel), starting from a `MagnetisedPrior` fitted to the model
(``--no-fit-prior``: the process's ``N(0, s_T^2)``; the fit's CPU time is printed, not counted in the rows).

The seed reports, at L = 32: local Metropolis 80.0, HMC 41.4, DM-MC 2.36 (GPU likelihood, acceptance ~0.6).
"""

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _phi4 import (LAM, MODELS, CpuTimer, fmt, gamma_table, grad_score, load_score, magnetisation_table,  # noqa: E402
                   tau_int)

from lgdiff._actions.phi4 import Phi4Action  # noqa: E402
from lgdiff._fields.scalar import Field  # noqa: E402
from lgdiff._geometry.lattice import Lattice  # noqa: E402
from lgdiff._integrators.schemes import SCHEMES  # noqa: E402
from lgdiff._samplers.base import AbstractKernel, Composite  # noqa: E402
from lgdiff._samplers.maala import MCResult, maala, marginal_imh  # noqa: E402
from lgdiff._samplers.hmc import HMC, FourierMass  # noqa: E402
from lgdiff._samplers.metropolis import Metropolis  # noqa: E402
from lgdiff._samplers.independence import PathIMH  # noqa: E402
from lgdiff._samplers.mixture import GlobalLocal  # noqa: E402
from lgdiff._samplers.osq import OSQPathIMH, OSQProcess, zero_drift  # noqa: E402
from lgdiff._models.files import load_osq  # noqa: E402
from lgdiff._samplers.wolff import Wolff  # noqa: E402
from lgdiff._samplers.hartree import hartree_gaussian  # noqa: E402
from lgdiff._sde.precondition import FreeScalarPreconditioner  # noqa: E402


def run_kernel(kernel: AbstractKernel, lattice: Lattice, *, chains: int, n: int, therm: int,
               generator: torch.Generator) -> tuple[np.ndarray, float, float]:
    """``(M [n, chains], mean acceptance, CPU s of the n measured updates)`` after ``therm`` updates."""
    state = kernel.init(Field.randn(lattice, batch=chains, generator=generator, dtype=torch.float64),
                        generator=generator)  # an independence sampler starts from its first proposal
    for _ in range(therm):
        state, _ = kernel.step(state, generator=generator)
    ms, acc = [], []
    with CpuTimer() as tm:
        for _ in range(n):
            state, a = kernel.step(state, generator=generator)
            ms.append(kernel.config(state).data.mean(dim=tuple(range(1, lattice.dim + 1))))
            acc.append(a)
    return torch.stack(ms).numpy(), float(torch.stack(acc).mean()), tm.cpu


def run_dm(fn: Callable[[], MCResult], lattice: Lattice, burn: int) -> tuple[np.ndarray, float, float]:
    with CpuTimer() as tm:
        res = fn()
    M = res.samples.mean(dim=tuple(range(2, lattice.dim + 2)))[burn:].numpy()
    return M, float(res.acceptance[burn:].mean()), tm.cpu


def training_cost(meta: dict) -> str:
    """The training cost recorded in a model file (CPU and wall seconds, steps, hardware), for the table's note."""
    cpu, wall = meta.get("train_seconds_cpu", meta.get("train_cpu_seconds")), meta.get("train_seconds_wall",
                                                                                        meta.get("train_seconds"))
    parts = [f"{meta.get('step', '?')} steps"]
    parts += [f"{cpu:.0f} CPU s"] if isinstance(cpu, (int, float)) else []
    parts += [f"{wall:.0f} s wall"] if isinstance(wall, (int, float)) else []
    parts += [str(meta["train_hardware"])] if meta.get("train_hardware") else []
    return ", ".join(parts)


def run_lattice(args: argparse.Namespace, L: int, model: Path, g: torch.Generator) -> dict:
    """Every requested algorithm on one ``L x L`` lattice: ``{"L", "model", "training", "rows"}``."""
    lattice = Lattice(shape=(L, L))
    action = Phi4Action(kappa=args.kappa, lam=LAM)
    omelyan = SCHEMES["omelyan"]
    hmc = HMC(action=action, step_size=1.0 / args.hmc_steps, n_steps=args.hmc_steps, scheme=omelyan)
    m_eff2 = max((1 - 2 * LAM) / args.kappa - 4, 0.1)
    fahmc = HMC(action=action, step_size=2.0 / args.hmc_steps, n_steps=args.hmc_steps, scheme=omelyan,
                kinetic=FourierMass(m_eff2=m_eff2))
    kernels: dict[str, AbstractKernel] = {
        "hmc": hmc,
        "fahmc": fahmc,
        "hmc+wolff": Composite((hmc, Wolff(action))),
        "fahmc+wolff": Composite((fahmc, Wolff(action))),
        "metropolis": Metropolis(action=action, step_size=args.metropolis_step),
    }
    wanted = set(args.only or [*kernels, "path", "imh", "maala", "mix", "osq"])
    rows: dict[str, dict] = {}
    series: dict[str, np.ndarray] = {}

    def record(name: str, M: np.ndarray, acceptance: float, cpu: float, note: str) -> None:
        tau, dtau, n_eff = tau_int(np.abs(M))
        obs = magnetisation_table(M, lattice.volume, n_bins=min(20, M.shape[0]))
        rows[name] = {"acceptance": acceptance, "tau_int": tau, "tau_int_error": dtau, "n_eff": n_eff, "cpu_s": cpu,
                      "n_eff_per_cpu_s": n_eff / cpu if cpu > 0 else math.nan, "n": int(M.size), "note": note, **obs,
                      "gamma": gamma_table(M, lattice.volume), "chain_means": chain_mean_table(M, lattice.volume)}
        series[name] = M
        print(f"  L = {L} {name:12s} done: acc {acceptance:.3f}, tau_int(|M|) {tau:.2f}({dtau:.2f}), {cpu:.0f} CPU s",
              flush=True)

    for name, kernel in kernels.items():
        if name in wanted:
            M, acc, cpu = run_kernel(kernel, lattice, chains=args.chains, n=args.n, therm=args.therm, generator=g)
            record(name, M, acc, cpu, f"{args.chains} chains x {args.n}")
    if "osq" in wanted:
        if args.osq_model is not None:
            loaded = load_osq(args.osq_model)
            drift, process, what = loaded.drift, loaded.process, f"drift {args.osq_model.name}"
        else:
            drift, what = zero_drift, "v = 0"
            process = OSQProcess.hartree(action, lattice.shape, T=args.osq_T, steps=args.osq_steps)
        osq = OSQPathIMH(drift=drift, process=process, action=action)
        M, acc, cpu = run_kernel(osq, lattice, chains=args.dm_chains, n=args.osq_n, therm=args.osq_therm, generator=g)
        record("osq", M, acc, cpu, f"{args.dm_chains} chains x {args.osq_n} after {args.osq_therm}, {what}, "
                                   f"T = {process.T:g}, N = {process.steps}, prior kinetic {process.prior_kinetic:g}")
    training = ""
    if wanted & {"path", "imh", "maala", "mix"}:
        score, net, meta = load_score(model)
        sde = net.sde
        trained_on = meta.get("lattice")
        training = training_cost(meta)
        gauss = hartree_gaussian(action, lattice.shape)
        hartree = FreeScalarPreconditioner(std=gauss.std, kinetic=gauss.kinetic)
        pre = hartree if args.precondition else None  # the reverse kernel of `lgdiff sample` (default on)
        path = PathIMH(score=score, process=sde, action=action, steps=args.steps, t_min=0.0 if pre is None else 1e-3,
                       preconditioner=pre)
        how = f"{args.steps} SDE steps{', preconditioned' if pre is not None else ''}"
        dm_like = Field.zeros(lattice, batch=args.dm_chains)  # shape, dtype (float64) and device of the DM chains
        if args.fit_prior:  # the prior of `lgdiff sample --theory phi4 --method path|mix` (default on)
            with CpuTimer() as tm:
                path = path.with_fitted_prior(dm_like, generator=g, proposals=args.prior_proposals,
                                              gaussian=hartree)
            assert path.prior is not None
            how += (f", magnetised prior (|M| {path.prior.shift:.3f}, var {path.prior.zero_var:.4f}, ESS "
                    f"{path.prior.fit_ess:.0f}/{path.prior.fit_proposals}, fit {tm.cpu:.0f} CPU s)")
            print(f"  L = {L} prior fitted: {how}", flush=True)
        if "path" in wanted:
            M, acc, cpu = run_kernel(path, lattice, chains=args.dm_chains, n=args.dm_n, therm=args.dm_therm,
                                     generator=g)
            record("dm-path", M, acc, cpu, f"{args.dm_chains} chains x {args.dm_n} after {args.dm_therm}, {how}, "
                                           f"model trained on L = {trained_on}")
        if "imh" in wanted and args.imh_n:
            M, acc, cpu = run_dm(lambda: marginal_imh(grad_score(net), sde, action, dm_like, n=args.imh_n,
                                                      steps=args.imh_steps, generator=g), lattice, burn=2)
            record("dm-imh", M, acc, cpu, f"{args.dm_chains} chains x {args.imh_n}, {args.imh_steps} ODE steps")
        if "mix" in wanted:
            mix = GlobalLocal(global_=path, local=fahmc, local_steps=args.mix_local)
            M, acc, cpu = run_kernel(mix, lattice, chains=args.dm_chains, n=args.mix_n, therm=args.mix_therm,
                                     generator=g)
            record("dm-mix", M, acc, cpu, f"{args.dm_chains} chains x {args.mix_n}, {args.mix_local} FA-HMC + 1 path "
                                          f"proposal ({how}) per step; acc = global")
        if "maala" in wanted:
            M, acc, cpu = run_dm(lambda: maala(score, sde, action, dm_like, n=args.maala_n, steps=args.steps,
                                               t_langevin=args.maala_t, step_size=args.maala_step, generator=g),
                                 lattice, burn=args.maala_n // 10)
            record("dm-maala", M, acc, cpu, f"{args.dm_chains} chains x {args.maala_n}, t_L = {args.maala_t}, "
                                            f"e = {args.maala_step}")

    print(f"\n2D phi^4, L = {L}, kappa = {args.kappa}, lambda = {LAM}; tau_int of |M| in updates (Gamma method); "
          f"sampling cost only")
    if training:
        print(f"model {model.name} (trained on {trained_on}): training cost {training}")
    print(f"{'algorithm':12s} {'acc':>6} {'<|M|>':>11} {'chi_2p':>10} {'U_L':>10} {'tau_int':>13} {'N_eff':>7} "
          f"{'CPU s':>7} {'N_eff/CPU s':>11}  notes")
    for name, r in rows.items():
        chi = fmt(*r["chi_2'"])
        print(f"{name:12s} {r['acceptance']:6.3f} {fmt(*r['<|M|>']):>11} {chi:>10} {fmt(*r['U_L']):>10} "
              f"{fmt(r['tau_int'], r['tau_int_error']):>13} {r['n_eff']:7.0f} {r['cpu_s']:7.0f} "
              f"{r['n_eff_per_cpu_s']:11.3f}  {r['note']}")
    reference = rows.get(args.reference)
    if reference is not None:
        print(f"against {args.reference} (Gamma-method errors; chain-mean errors in brackets): z of <|M|>, chi_2', U_L")
        for name, r in rows.items():
            if name != args.reference:
                zs = [agreement(r, reference, key) for key in ("<|M|>", "chi_2'", "U_L")]
                print(f"  {name:12s} " + "  ".join(f"{z:+5.1f} [{zc:+5.1f}]" for z, zc in zs))
                r["z_vs_reference"] = {k: z for k, z in zip(("<|M|>", "chi_2'", "U_L"), zs)}
    if args.series is not None:  # the |M| time series of every row, [updates, chains], for later analysis
        np.savez_compressed(args.series.with_name(f"{args.series.stem}_L{L}.npz"), **series)
    return {"L": L, "model": str(model), "training": training, "reference": args.reference, "rows": rows}


def chain_mean_table(M: np.ndarray, volume: int) -> dict[str, tuple[float, float]]:
    """``<|M|>, chi_2', U_L`` with errors from the spread of the chains' own estimates (independent replicas: right
    whatever the autocorrelation, as long as every chain is equilibrated; nan for fewer than 4 chains)."""
    M = np.asarray(M, dtype=np.float64)
    a, m2, m4 = np.abs(M).mean(0), (M**2).mean(0), (M**4).mean(0)
    per_chain = {"<|M|>": a, "chi_2'": volume * (m2 - a * a), "U_L": 1 - m4 / (3 * m2 * m2)}
    pooled = {"<|M|>": float(a.mean()), "chi_2'": float(volume * (m2.mean() - a.mean() ** 2)),
              "U_L": float(1 - m4.mean() / (3 * m2.mean() ** 2))}
    n = M.shape[1]
    return {k: (pooled[k], float(v.std(ddof=1) / math.sqrt(n)) if n >= 4 else math.nan) for k, v in per_chain.items()}


def agreement(row: dict, reference: dict, key: str) -> tuple[float, float]:
    """z-scores of ``row[key]`` against ``reference[key]``: with Gamma-method errors, and with chain-mean errors."""
    out = []
    for kind in ("gamma", "chain_means"):
        (a, da), (b, db) = row[kind][key], reference[kind][key]
        out.append((a - b) / math.hypot(da, db) if math.isfinite(da) and math.isfinite(db) else math.nan)
    return out[0], out[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--L", type=int, nargs="+", default=None, help="lattices, in one run (default 16 32; --quick: 8)")
    p.add_argument("--kappa", type=float, default=0.27)
    p.add_argument("--model", type=Path, nargs="+", default=None,
                   help="score model per --L (one for all, or one each; default: the shipped kappa = 0.27 models, "
                        "the L = 32 one for L >= 32)")
    p.add_argument("--chains", type=int, default=16, help="chains of the classical algorithms")
    p.add_argument("--n", type=int, default=2000, help="measured updates of the classical algorithms")
    p.add_argument("--therm", type=int, default=500)
    p.add_argument("--dm-chains", type=int, default=8)
    p.add_argument("--dm-n", type=int, default=100, help="proposals per chain (path IMH, marginal IMH)")
    p.add_argument("--dm-therm", type=int, default=5, help="discarded path-IMH proposals per chain")
    p.add_argument("--precondition", action=argparse.BooleanOptionalAction, default=True,
                   help="path IMH and mixture: the reverse kernel preconditioned by the Hartree Gaussian (default, as "
                        "in lgdiff sample)")
    p.add_argument("--fit-prior", action=argparse.BooleanOptionalAction, default=True,
                   help="path IMH and mixture: start the proposals from a MagnetisedPrior fitted to the model (default, "
                        "as in lgdiff sample); --no-fit-prior: the process's N(0, s_T^2)")
    p.add_argument("--prior-proposals", type=int, default=64, help="proposals per round of the prior fit")
    p.add_argument("--steps", type=int, default=100, help="reverse-SDE steps of the DM proposals")
    p.add_argument("--imh-n", type=int, default=0, help="marginal IMH proposals per chain (exact log det; small L)")
    p.add_argument("--imh-steps", type=int, default=20, help="PF-ODE Heun steps of the marginal IMH")
    p.add_argument("--mix-n", type=int, default=200, help="mixture steps per chain (GlobalLocal)")
    p.add_argument("--mix-local", type=int, default=1, help="FA-HMC trajectories per mixture step")
    p.add_argument("--mix-therm", type=int, default=20, help="thermalisation steps of the mixture")
    p.add_argument("--osq-n", type=int, default=500, help="OSQ proposals per chain (row osq)")
    p.add_argument("--osq-therm", type=int, default=50, help="discarded OSQ proposals per chain")
    p.add_argument("--osq-T", type=float, default=0.5, help="OSQ horizon T (without --osq-model)")
    p.add_argument("--osq-steps", type=int, default=20, help="OSQ path steps N (without --osq-model)")
    p.add_argument("--osq-model", type=Path, help="a trained OSQ drift (lgdiff train --objective osq); default v = 0")
    p.add_argument("--maala-n", type=int, default=1000)
    p.add_argument("--maala-t", type=float, default=0.02)
    p.add_argument("--maala-step", type=float, default=0.1)
    p.add_argument("--hmc-steps", type=int, default=10, help="HMC steps per unit-length trajectory")
    p.add_argument("--metropolis-step", type=float, default=1.5)
    p.add_argument("--only", nargs="*",
                   help="run only these rows (hmc fahmc hmc+wolff metropolis path imh maala mix osq)")
    p.add_argument("--reference", default="fahmc+wolff", help="the row the others are compared with (z-scores)")
    p.add_argument("--series", type=Path, help="also write each lattice's M series to SERIES_L<L>.npz")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if args.quick:
        args.L = args.L or [8]
        args.n, args.therm, args.dm_n, args.steps, args.maala_n, args.chains = 200, 50, 10, 20, 100, 4
        args.mix_n, args.mix_therm, args.osq_n, args.osq_therm, args.dm_therm = 10, 2, 10, 2, 2
        args.prior_proposals = 8
    args.L = args.L or [16, 32]
    models = args.model or [MODELS / ("phi4_k0.27_L32.safetensors" if L >= 32 else "phi4_k0.27_L16.safetensors")
                            for L in args.L]
    if len(models) not in (1, len(args.L)):
        p.error(f"--model takes one model for all --L or one per --L; got {len(models)} for {len(args.L)} lattices")
    models = models * len(args.L) if len(models) == 1 else models
    for m in models:
        if not m.is_file():
            p.error(f"--model {m} does not exist")
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(args.seed)
    runs = [run_lattice(args, L, m, g) for L, m in zip(args.L, models)]
    if args.json:
        args.json.write_text(json.dumps({"kappa": args.kappa, "lam": LAM, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
