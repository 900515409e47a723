"""Topological autocorrelation and cost: MAALA (shipped 2D U(1) L-CNN), diffusion resampling mixed with the heatbath,
HMC, the heatbath and the exact direct sampler, in one run.

2D U(1) at beta (default 7, where local algorithms freeze the topology) on an L x L torus (default 16, the model's
training volume). For each algorithm: acceptance, <plaquette> and chi_t = <Q^2>/V against the exact finite-volume
values, tau_int of Q and of the plaquette by the Gamma method (independent chains as replicas; "nan" when no
window fits inside the chain, i.e. tau_int is of the order of the chain length or more), configurations per
CPU-second and effective samples of Q per CPU-second (sampling only; the model's training is not counted).

Updates: one HMC trajectory (length 1, Omelyan), one heatbath sweep + one overrelaxation sweep, one MAALA
Langevin step (every link moves). MAALA runs twice: from the model's denoiser (what `lgdiff sample` does) and from
heatbath-equilibrated links (the stationary Markov chain, the honest measure of its tau_int(Q)). "dm-resample+hb"
(with ``--resample-model``): one update is one `DiffusionResample` move (noise to ``--t-max``, ``--resample-steps``
reverse steps, accepted exactly; its acceptance is the one reported) followed by ``--local-sweeps`` heatbath+OR
sweeps, from exact draws (heatbath-thermalised links keep the charges of their hot start: at beta = 7 1000 sweeps
do not equilibrate the topology). "direct": exact independent draws (`U1Direct`, 2D U(1) only), the
reference for what a sampler without autocorrelation costs.

    OMP_NUM_THREADS=1 python benchmarks/bench_gauge_tau.py                 # beta = 7, L = 16
    OMP_NUM_THREADS=1 python benchmarks/bench_gauge_tau.py --quick         # smoke run
    OMP_NUM_THREADS=1 python benchmarks/bench_gauge_tau.py --chains 8 --n 20000 --therm 1000 --skip-maala \
        --resample-model lgdiff/models/u1_b7.0_L16.safetensors --t-max 0.18 --resample-steps 40 --precondition \
        --resample-n 2000      # docs/gauge-diffusion.md's table: tau_int(Q) 9.8(1.1) updates, 0.97 N_eff(Q)/CPU s
"""

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from lgdiff import (OMELYAN, U1, Composite, ConditionedScore, DiffusionResample, GaugeHMC, Heatbath, Lattice,
                    LinkField, StepSizeAdaptation, U1Direct, WilsonAction, gamma_method, load_lcnn, maala_kernel, mean_plaquette, run_chain,
                    topological_charge_u1_2d)
from lgdiff._exact import u1_2d_plaquette, u1_2d_topological_susceptibility
from lgdiff._run.sample_gauge import default_model
from lgdiff._samplers.maala import denoise
from lgdiff._sde.precondition import FreeU1Preconditioner
from lgdiff._train.gauge import lcnn_score


def tau(series: np.ndarray) -> tuple[float, float, float, float, float]:
    """``(mean, error, tau_int, tau_int error, N_eff)``; tau fields NaN when the Gamma method finds no window,
    everything but the mean NaN when the series never changes (a frozen topological charge)."""
    if float(np.var(series)) == 0.0:
        return float(series.mean()), math.nan, math.nan, math.nan, math.nan
    try:
        g = gamma_method(series)
    except ValueError:
        m = float(series.mean())
        return m, float(series.mean(axis=0).std(ddof=1) / math.sqrt(series.shape[1])), math.nan, math.nan, math.nan
    return g.mean, g.error, g.tau_int, g.tau_int_error, g.n_eff


def measure_chain(states: Iterator[tuple[LinkField, float]], n: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """``(Q [n, chains], plaquette [n, chains], mean acceptance, CPU s)`` of ``n`` states."""
    qs, ps, acc = [], [], []
    cpu0 = time.process_time()
    for _, (U, a) in zip(range(n), states):
        qs.append(topological_charge_u1_2d(U))
        ps.append(mean_plaquette(U))
        acc.append(a)
    cpu = time.process_time() - cpu0
    return torch.stack(qs).numpy(), torch.stack(ps).numpy(), float(np.mean(acc)), cpu


def kernel_states(kernel, U: LinkField, generator: torch.Generator) -> Iterator[tuple[LinkField, float]]:
    while True:
        U, a = kernel.step(U, generator=generator)
        yield U, float(a.mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--beta", type=float, default=7.0)
    p.add_argument("--L", type=int, default=16)
    p.add_argument("--chains", type=int, default=16)
    p.add_argument("--n", type=int, default=2000, help="recorded updates per chain")
    p.add_argument("--therm", type=int, default=500, help="thermalisation updates (MAALA: Langevin steps)")
    p.add_argument("--hmc-steps", type=int, default=10)
    p.add_argument("--model", type=Path, default=None, help="U(1) L-CNN model (default: the shipped one)")
    p.add_argument("--t-langevin", type=float, default=0.01)
    p.add_argument("--resample-model", type=Path, default=None,
                   help="U(1) L-CNN for the dm-resample+hb row (the row is skipped without it)")
    p.add_argument("--t-max", type=float, default=0.1, help="dm-resample: the time the move noises up to")
    p.add_argument("--resample-steps", type=int, default=100,
                   help="dm-resample: reverse steps (uniform grid, as lgdiff sample --method resample)")
    p.add_argument("--local-sweeps", type=int, default=1, help="dm-resample+hb: heatbath+OR sweeps per update")
    p.add_argument("--resample-n", type=int, default=None,
                   help="dm-resample+hb: recorded updates per chain (default --n; each costs ~100x a sweep)")
    p.add_argument("--precondition", action="store_true",
                   help="dm-resample: the reverse kernel exact for the Gaussian limit of the action "
                        "(FreeU1Preconditioner at the mean-field beta, as lgdiff sample --method resample)")
    p.add_argument("--skip-maala", action="store_true", help="leave out the two MAALA rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if args.quick:
        args.L, args.chains, args.n, args.therm = 8, 4, 40, 10
        args.resample_n = args.resample_n and min(args.resample_n, 10)
    torch.set_num_threads(1)
    lattice = Lattice(shape=(args.L, args.L))
    action = WilsonAction(beta=args.beta, group=U1())
    exact_plaq = u1_2d_plaquette(args.beta, lattice.shape)
    exact_chi = u1_2d_topological_susceptibility(args.beta, lattice.shape)
    V = lattice.volume
    g = torch.Generator().manual_seed(args.seed)
    rows: dict[str, dict] = {}

    def record(name: str, Q: np.ndarray, P: np.ndarray, acceptance: float, cpu: float, note: str) -> None:
        q2 = Q.astype(np.float64) ** 2 / V
        chi, dchi, tq, dtq, neff = tau(Q.astype(np.float64))
        plaq, dplaq, tp, dtp, _ = tau(P)
        chi_m, chi_e, *_ = tau(q2)
        rows[name] = {"acceptance": acceptance, "plaquette": [plaq, dplaq], "chi_t": [chi_m, chi_e],
                      "tau_int_Q": [tq, dtq], "tau_int_plaquette": [tp, dtp], "n_eff_Q": neff, "cpu_s": cpu,
                      "configs_per_cpu_s": Q.size / cpu, "n_eff_Q_per_cpu_s": neff / cpu, "note": note,
                      "z_plaquette": (plaq - exact_plaq) / dplaq, "z_chi_t": (chi_m - exact_chi) / chi_e}
        print(f"  {name:16s} acc {acceptance:.3f}  tau_int(Q) {tq:.1f}({dtq:.1f})  plaquette {plaq:.4f}({dplaq:.4f}) "
              f"chi_t {chi_m:.4f}({chi_e:.4f})  {cpu:.0f} CPU s", flush=True)

    # heatbath: the reference, and the source of equilibrated starts for the stationary MAALA run
    hb = Heatbath(action)
    U = LinkField.random(U1(), lattice, batch=args.chains, generator=g)
    for _ in range(args.therm):
        U, _ = hb.step(U, generator=g)
    equilibrated = U
    Q, P, acc, cpu = measure_chain(kernel_states(hb, U, g), args.n)
    record("heatbath+OR", Q, P, acc, cpu, f"{args.chains} chains x {args.n} sweeps")

    hmc = GaugeHMC(action=action, step_size=1.0 / args.hmc_steps, n_steps=args.hmc_steps, scheme=OMELYAN)
    U = equilibrated
    for _ in range(args.therm // 5):  # already equilibrated: a short HMC thermalisation of the momenta' dynamics
        U, _ = hmc.step(U, generator=g)
    Q, P, acc, cpu = measure_chain(kernel_states(hmc, U, g), args.n)
    record("hmc", Q, P, acc, cpu, f"{args.chains} chains x {args.n} trajectories ({args.hmc_steps} Omelyan steps)")

    exact = U1Direct(action).step(equilibrated, generator=g)[0]  # exact starts: every sector at its weight
    Q, P, acc, cpu = measure_chain(kernel_states(U1Direct(action), equilibrated, g), args.n)
    record("direct", Q, P, acc, cpu, f"{args.chains} chains x {args.n} independent draws")

    if args.resample_model is not None:
        net, process, meta = load_lcnn(args.resample_model)
        score = ConditionedScore(lcnn_score(net, process), args.beta / float(meta["beta"]))
        pre = FreeU1Preconditioner.mean_field(args.beta) if args.precondition else None
        move = DiffusionResample(score=score, process=process, action=action, steps=args.resample_steps,
                                 t_max=args.t_max, spacing="uniform", preconditioner=pre)
        kernel = Composite((move, *[hb] * args.local_sweeps))  # reports the resampling move's acceptance
        n_resample = args.resample_n or args.n
        Q, P, acc, cpu = measure_chain(kernel_states(kernel, exact, g), n_resample)
        record("dm-resample+hb", Q, P, acc, cpu,
               f"{args.chains} chains x {n_resample} updates: t_max {args.t_max}, {args.resample_steps} steps, "
               f"{args.local_sweeps} heatbath+OR sweeps; "
               f"{'preconditioned (beta_eff %.3f); ' % pre.beta if pre is not None else ''}"
               f"model {args.resample_model.name}")

    if not args.skip_maala:
        net, process, meta = load_lcnn(args.model or default_model("u1"))
        r = args.beta / float(meta["beta"])
        score = ConditionedScore(lcnn_score(net, process), r)  # r s: the physics-conditioned score
        n_dof = lattice.dim * V

        def maala_states(U0: LinkField) -> Iterator[tuple[LinkField, float]]:
            # one Langevin step per update (leapfrog = 1), e adapted towards acceptance 0.6 during therm, then frozen
            kernel = maala_kernel(action, score, t_langevin=args.t_langevin, step_size=0.1 * n_dof ** (-1 / 3))
            kernel, U = StepSizeAdaptation(target=0.6).tune(kernel, U0, steps=args.therm, generator=g)
            for rec in run_chain(kernel, U, n=args.n, generator=g):
                yield rec.state, float(rec.acceptance.mean())

        cpu0 = time.process_time()
        U = denoise(score, process, LinkField.identity(U1(), lattice, batch=args.chains), steps=40, generator=g,
                    t_min=args.t_langevin, spacing="geometric")
        denoise_cpu = time.process_time() - cpu0
        Q, P, acc, cpu = measure_chain(maala_states(U), args.n)
        record("maala (denoised)", Q, P, acc, cpu + denoise_cpu,
               f"{args.chains} chains: 40 reverse-SDE steps, {args.therm} adapting + {args.n} Langevin steps")
        Q, P, acc, cpu = measure_chain(maala_states(equilibrated), args.n)
        record("maala (equil.)", Q, P, acc, cpu, f"{args.chains} chains from heatbath links: {args.therm} adapting + "
                                                 f"{args.n} Langevin steps")

    print(f"\n2D U(1), beta = {args.beta}, L = {args.L}: exact plaquette {exact_plaq:.5f}, chi_t {exact_chi:.5f}; "
          f"tau_int in updates (Gamma method), CPU s of the recorded updates (MAALA (denoised): + denoising)")
    print(f"{'algorithm':17s} {'acc':>5} {'plaquette':>12} {'z':>6} {'chi_t':>15} {'z':>6} {'tau_int(Q)':>11} "
          f"{'tau(plaq)':>10} {'cfg/CPU s':>9} {'Neff(Q)/CPU s':>13}")
    for name, row in rows.items():
        print(f"{name:17s} {row['acceptance']:5.3f} {row['plaquette'][0]:7.4f}({row['plaquette'][1] * 1e4:3.0f}) "
              f"{row['z_plaquette']:6.1f} {row['chi_t'][0]:9.4f}({row['chi_t'][1] * 1e4:3.0f}) {row['z_chi_t']:6.1f} "
              f"{row['tau_int_Q'][0]:6.1f}({row['tau_int_Q'][1]:3.1f}) {row['tau_int_plaquette'][0]:10.1f} "
              f"{row['configs_per_cpu_s']:9.1f} {row['n_eff_Q_per_cpu_s']:13.2f}")
    if args.json:
        args.json.write_text(json.dumps({"beta": args.beta, "L": args.L, "exact_plaquette": exact_plaq,
                                         "exact_chi_t": exact_chi, "rows": rows}, indent=1))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
