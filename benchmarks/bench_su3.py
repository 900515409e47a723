"""Cost and efficiency of four exact SU(3) samplers at one physics point, in one run: heatbath + overrelaxation,
HMC, and MAALA with the exact force drift and with the shipped SU(3) L-CNN score as drift.

4D SU(3), Wilson action at beta (default 5.5) on an L^4 torus (default 6). Every algorithm starts from copies of
the same heatbath-equilibrated configurations (``--chains`` chains after ``--therm-hb`` heatbath + overrelaxation
sweeps), runs its own unrecorded warm-up of ``--therm`` updates (MAALA adapts its step there, towards an acceptance
of 0.6, from ``0.1 n_dof^(-1/3)``, ``n_dof = 4 V 8``) and then ``--n`` recorded updates: what is measured is the
stationary Markov chain, not the approach to equilibrium.

Updates: one heatbath sweep + one overrelaxation sweep; one HMC trajectory (length 1, ``--hmc-steps`` Omelyan
steps); one MAALA Langevin step (every link moves). MAALA's drift is ``r s(U, t_L)`` with ``r = beta / beta_0``
(``beta_0`` = 5.0, the shipped model's coupling) and ``t_L = 0.01``: "force" is the exact ``t -> 0`` score
``-grad S`` of the Wilson action at ``beta_0``, "score" is the shipped L-CNN (trained on 4^4 at ``beta_0``). The
Metropolis step uses the exact action at beta, so all four are exact whatever the drift.

    OMP_NUM_THREADS=1 python benchmarks/bench_su3.py                  # beta = 5.5, L = 6, 4 chains x 200 updates
    OMP_NUM_THREADS=1 python benchmarks/bench_su3.py --quick          # smoke run (L = 4, seconds)
    OMP_NUM_THREADS=1 python benchmarks/bench_su3.py --json su3.json  # also write the rows to a file
    OMP_NUM_THREADS=1 python benchmarks/bench_su3.py --to-ensemble    # CPU s to N effective configurations,
                                                                      # thermalisation included (below)
    OMP_NUM_THREADS=1 python benchmarks/bench_su3.py --relax --chains 16 --n 30    # the heatbath from the
                                                                      # model's start vs a hot start (below)

``--relax`` (issue #19): what the model's start is worth to the heatbath chain. At L = 4, beta = 5.0 and L = 6,
beta = 5.0 and 5.5, ``--chains`` chains relax for ``--n`` heatbath + overrelaxation updates from the shipped
model's denoised start (40 steps, the CLI's) and from a hot start; after every update the plaquette, W(1,2) and
W(2,2) are printed as deviations in % from the mean of both starts' last half (give ``--n`` well above the
thermalisation, e.g. 30 at beta = 5.0 and 60 at 5.5), with the standard error of the mean over chains. The costs
per configuration of the start, of an update and of one HMC trajectory are printed beside them.

``--to-ensemble`` (issue #19): at L = 4, beta = 5.0 and L = 6, beta = 5.5 in one run, the CPU-seconds to an
ensemble of N = 16 and 256 effective configurations *including thermalisation*, for heatbath + overrelaxation
from the shipped model's denoised start (the default of ``lgdiff sample --theory su3``) and from a hot (Haar) start,
and HMC from the model's start (at a fixed HMC step here), from a cold (identity) and from a hot start. Each runs ``--chains`` chains of
``--n`` updates from its start. The thermalisation ``t_th`` is the first cut on a grid of ``n / 40`` updates from
which a window of ``n / 5`` plaquette records passes lgdiff's equilibration-drift test (|z| < 3) and agrees with the
last half of the chains within 3 standard errors (``thermalisation``); ``tau_int`` is the Gamma method's on the
records after it. With ``c`` the CPU s per update and chain and ``s_0`` the start's cost per chain (the
denoiser), ``CPU(N) = chains (s_0 + t_th c) + 2 tau_int N c``. The model's training cost is listed beside it.

Columns: ``acc`` mean acceptance (heatbath: 1 by construction); ``step`` the HMC step size or MAALA's adapted
Langevin step ``e``; ``plaquette`` <P> with its Gamma-method error (independent chains as replicas); ``W(2,2)`` the
mean of Re W(2,2); ``tau(P)``, ``tau(W22)`` integrated autocorrelation times in updates ("nan" when no Gamma-method
window fits, i.e. the chain is too short for tau_int); ``cfg/CPU s`` configurations (chains x updates) per
CPU-second of the recorded updates (process CPU time around the updates only: warm-up and measurements excluded;
with one thread it is one core's time); ``Neff(P)/CPU s`` effective plaquette samples per CPU-second. The model's
training is not counted.
"""

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gauge_tau import kernel_states, tau  # noqa: E402

from lgdiff import (OMELYAN, SU, ConditionedScore, GaugeHMC, Heatbath, Lattice, LinkField, Score,  # noqa: E402
                    StepSizeAdaptation, WilsonAction, load_lcnn, maala_kernel, mean_plaquette, wilson_loop,
                    wilson_score)
from lgdiff import run_chain as kernel_chain  # noqa: E402  (run_chain below is this benchmark's measurement)
from lgdiff._run.sample_gauge import default_model  # noqa: E402
from lgdiff._samplers.maala import denoise, langevin_step  # noqa: E402
from lgdiff._stats.equilibration import MIN_CHAINS, equilibration_drift  # noqa: E402
from lgdiff._stats import format_value_error  # noqa: E402
from lgdiff._train.gauge import lcnn_score  # noqa: E402

REFERENCE_PLAQUETTE = (0.49657, 0.00034)
"""<P> at beta = 5.5 on 6^4 from a 640-configuration heatbath run: context for the table, not a test."""

T_LANGEVIN = 0.01
TARGET_ACCEPTANCE = 0.6

Update = Callable[[LinkField], tuple[LinkField, float]]


def run_chain(update: Update, U: LinkField, n: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """``(plaquette [n, chains], Re W(2,2) [n, chains], mean acceptance, CPU s)`` of ``n`` updates from ``U``; the
    CPU time counts the updates only, not the measurements."""
    ps, ws, acc = [], [], []
    cpu = 0.0
    for _ in range(n):
        cpu0 = time.process_time()
        U, a = update(U)
        cpu += time.process_time() - cpu0
        ps.append(mean_plaquette(U))
        ws.append(wilson_loop(U, 2, 2))
        acc.append(a)
    return torch.stack(ps).numpy(), torch.stack(ws).numpy(), float(np.mean(acc)), cpu


def kernel_update(kernel: Heatbath | GaugeHMC, U: LinkField, generator: torch.Generator) -> Update:
    """The next state of ``kernel``'s chain from ``U`` (``bench_gauge_tau.kernel_states``); the update ignores its
    argument (the chain keeps its own state)."""
    states = kernel_states(kernel, U, generator)
    return lambda _: next(states)


def maala_update(drift: Score, action: WilsonAction, U: LinkField, *, therm: int, n: int, step_size: float,
                 beta_scale: float, generator: torch.Generator) -> tuple[LinkField, float, Update]:
    """MAALA's warm-up from ``U`` (``therm - 1`` steps adapting ``e`` from ``step_size``, one at the frozen step: the
    record that hands back the state), then the update that takes the next of ``n`` steps at the frozen ``e``.

    MAALA is :func:`lgdiff.maala_kernel`: one leapfrog step of size ``sqrt(2 e)`` with the drift
    ``r drift(U, t_L)`` (:class:`lgdiff.ConditionedScore`), accepted with the exact action.

    **Returns:** ``(state after the warm-up, frozen e, update)``; the update ignores its argument (the chain keeps
    its own state) and must be called in order, ``n`` times."""
    kernel = maala_kernel(action, ConditionedScore(drift, beta_scale), t_langevin=T_LANGEVIN, step_size=step_size)
    if therm > 0:
        kernel, U = StepSizeAdaptation(target=TARGET_ACCEPTANCE).tune(kernel, U, steps=therm - 1,
                                                                      generator=generator)
        U, _ = kernel.step(U, generator=generator)
    records = kernel_chain(kernel, U, n=n, generator=generator)

    def update(_: LinkField) -> tuple[LinkField, float]:
        rec = next(records)
        return rec.state, float(rec.acceptance.mean())

    return U, langevin_step(kernel), update


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--beta", type=float, default=5.5)
    p.add_argument("--L", type=int, default=6)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--n", type=int, default=200, help="recorded updates per chain")
    p.add_argument("--maala-n", type=int, default=None,
                   help="recorded Langevin steps per MAALA chain (default: --n); a step is far cheaper than a sweep "
                        "and MAALA's tau_int is ~100 steps, so give it more")
    p.add_argument("--therm", type=int, default=50, help="warm-up updates of each algorithm (MAALA adapts its step)")
    p.add_argument("--therm-hb", type=int, default=100, help="shared heatbath thermalisation sweeps")
    p.add_argument("--hmc-steps", type=int, default=10, help="Omelyan steps per unit-length HMC trajectory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: L = 4, 2 chains, n = 10, therm = 5, therm-hb = 5")
    p.add_argument("--json", type=Path, help="also write the results to this file")
    p.add_argument("--to-ensemble", action="store_true",
                   help="CPU s to N = 16, 256 effective configurations including thermalisation (module docstring)")
    p.add_argument("--relax", action="store_true",
                   help="the plaquette, W(1,2), W(2,2) after each heatbath update from the model's start and from a "
                        "hot start, and the costs of the start, an update and an HMC trajectory (module docstring)")
    args = p.parse_args()
    if args.to_ensemble:
        return to_ensemble(args)
    if args.relax:
        return relax(args)
    if args.quick:
        args.L, args.chains, args.n, args.therm, args.therm_hb = 4, 2, 10, 5, 5
    maala_n = args.n if args.maala_n is None else args.maala_n
    torch.set_num_threads(1)
    group = SU(3)
    lattice = Lattice(shape=(args.L,) * 4)
    action = WilsonAction(beta=args.beta, group=group)
    n_dof = lattice.dim * lattice.volume * group.n_generators
    rows: dict[str, dict] = {}

    def record(name: str, P: np.ndarray, W: np.ndarray, acceptance: float, cpu: float, step: float,
               note: str) -> None:
        plaq, dplaq, tp, dtp, neff = tau(P.astype(np.float64))
        w, dw, tw, dtw, _ = tau(W.astype(np.float64))
        rows[name] = {"acceptance": acceptance, "step_size": step, "plaquette": [plaq, dplaq], "wilson_2x2": [w, dw],
                      "tau_int_plaquette": [tp, dtp], "tau_int_wilson_2x2": [tw, dtw], "n_eff_plaquette": neff,
                      "cpu_s": cpu, "configs_per_cpu_s": P.size / cpu, "n_eff_plaquette_per_cpu_s": neff / cpu,
                      "n": P.shape[0], "note": note}
        print(f"  {name:14s} acc {acceptance:.3f}  plaquette {_fmt(plaq, dplaq)}  tau_int(P) {tp:.1f}  "
              f"tau_int(W22) {tw:.1f}  {cpu:.1f} CPU s", flush=True)

    # shared start: heatbath-equilibrated links; every algorithm starts from its own copy (start())
    hb = Heatbath(action)
    g = torch.Generator().manual_seed(args.seed)
    U = LinkField.random(group, lattice, batch=args.chains, generator=g)
    cpu0 = time.process_time()
    for _ in range(args.therm_hb):
        U, _ = hb.step(U, generator=g)
    equilibrated = U

    def start() -> LinkField:
        return equilibrated.with_data(equilibrated.data.clone())

    print(f"4D SU(3), beta = {args.beta}, L = {args.L}, {args.chains} chains: {args.therm_hb} heatbath sweeps "
          f"({time.process_time() - cpu0:.1f} CPU s), then per algorithm {args.therm} warm-up + {args.n} recorded "
          f"updates", flush=True)

    U = start()
    update = kernel_update(hb, U, torch.Generator().manual_seed(args.seed + 1))
    for _ in range(args.therm):
        U, _ = update(U)
    P, W, acc, cpu = run_chain(update, U, args.n)
    record("heatbath+OR", P, W, acc, cpu, math.nan, "1 heatbath + 1 overrelaxation sweep per update")

    hmc = GaugeHMC(action=action, step_size=1.0 / args.hmc_steps, n_steps=args.hmc_steps, scheme=OMELYAN)
    U = start()
    update = kernel_update(hmc, U, torch.Generator().manual_seed(args.seed + 2))
    for _ in range(args.therm):
        U, _ = update(U)
    P, W, acc, cpu = run_chain(update, U, args.n)
    record("hmc", P, W, acc, cpu, hmc.step_size, f"1 trajectory of {args.hmc_steps} Omelyan steps per update")

    net, process, meta = load_lcnn(default_model("su3"))
    beta_0 = float(meta["beta"])
    r = args.beta / beta_0
    drifts = {"maala (force)": wilson_score(WilsonAction(beta=beta_0, group=group)),
              "maala (score)": lcnn_score(net, process)}
    for k, (name, drift) in enumerate(drifts.items()):
        generator = torch.Generator().manual_seed(args.seed + 3 + k)
        U, step, update = maala_update(drift, action, start(), therm=args.therm, n=maala_n,
                                       step_size=0.1 * n_dof ** (-1 / 3), beta_scale=r, generator=generator)
        P, W, acc, cpu = run_chain(update, U, maala_n)
        record(name, P, W, acc, cpu, step, f"1 Langevin step per update, t_L = {T_LANGEVIN}, r = {r:.4g}, step "
                                           f"adapted over the first {max(args.therm - 1, 0)} of {args.therm} warm-up "
                                           f"steps towards acceptance {TARGET_ACCEPTANCE}")

    ref, dref = REFERENCE_PLAQUETTE
    print(f"\n4D SU(3), beta = {args.beta}, L = {args.L}, {args.chains} chains x {args.n} updates ({maala_n} for "
          f"MAALA; after "
          f"{args.therm_hb} shared heatbath sweeps and {args.therm} warm-up updates each); tau_int in updates, CPU s "
          f"of the recorded updates only")
    print(f"context: <P> = {format_value_error(ref, dref)} at beta = 5.5 on 6^4 from a 640-configuration heatbath run")
    print(f"{'algorithm':14s} {'acc':>5} {'step':>7} {'plaquette':>12} {'W(2,2)':>12} {'tau(P)':>7} {'tau(W22)':>8} "
          f"{'cfg/CPU s':>9} {'Neff(P)/CPU s':>13}")
    for name, row in rows.items():
        print(f"{name:14s} {row['acceptance']:5.3f} {row['step_size']:7.4f} {_fmt(*row['plaquette']):>12} "
              f"{_fmt(*row['wilson_2x2']):>12} {row['tau_int_plaquette'][0]:7.2f} {row['tau_int_wilson_2x2'][0]:8.2f} "
              f"{row['configs_per_cpu_s']:9.2f} {row['n_eff_plaquette_per_cpu_s']:13.3f}")
    if args.json:
        args.json.write_text(json.dumps({
            "beta": args.beta, "L": args.L, "chains": args.chains, "n": args.n, "maala_n": maala_n, "therm": args.therm,
            "therm_hb": args.therm_hb, "seed": args.seed, "beta_0": beta_0, "t_langevin": T_LANGEVIN,
            "reference_plaquette": {"value": list(REFERENCE_PLAQUETTE), "beta": 5.5, "L": 6,
                                    "source": "640-configuration heatbath run"},
            "rows": rows}, indent=1))
    sys.stdout.flush()


ENSEMBLE_POINTS = ((4, 5.0), (6, 5.5))
"""(L, beta) of ``--to-ensemble``: the model's training point and the headline run's."""


def thermalisation(P: np.ndarray, grid: int, window: int) -> int | None:
    """The first cut ``t`` (a multiple of ``grid``, ``t <= n / 2``) from which the ``window`` records
    ``P[t:t + window]`` pass the drift test and their mean agrees with the last half's, ``P[n/2:]``, within 3 standard
    errors (from the spread of the independent chains' last-half means, so that chains still stuck at their start
    cannot widen it), or None. The window is short so that a transient at its start moves its first half's mean
    enough to be seen; the comparison with the last half catches a drift too slow for the window and chains that
    leave a cold start late (at beta = 5.5 on 6^4 some HMC chains keep U = 1 for over 100 trajectories)."""
    n, chains = P.shape
    late = P[n // 2:].mean(0)
    se = math.sqrt(2 * late.var(ddof=1) / chains)
    for cut in range(0, n // 2 + 1, grid):
        w = P[cut:cut + window]
        if not equilibration_drift(w).drifting() and abs(w.mean() - late.mean()) < 3 * se:
            return cut
    return None


def to_ensemble(args: argparse.Namespace) -> None:
    """``--to-ensemble`` (module docstring): CPU s to N effective configurations including thermalisation."""
    if args.quick:
        args.chains, args.n = 4, 20
    if args.chains < MIN_CHAINS or args.n < 20:
        raise SystemExit(f"--to-ensemble needs --chains >= {MIN_CHAINS} (the drift test compares independent chains) "
                         f"and --n >= 20; got --chains {args.chains} --n {args.n}")
    points = ((4, 5.0),) if args.quick else ENSEMBLE_POINTS
    torch.set_num_threads(1)
    group = SU(3)
    net, process, meta = load_lcnn(default_model("su3"))
    beta_0 = float(meta["beta"])
    report: dict = {"chains": args.chains, "n": args.n, "hmc_steps": args.hmc_steps, "seed": args.seed,
                    "model_train_cpu_s": float(meta.get("train_seconds", math.nan)), "points": {}}
    print(f"4D SU(3): CPU s to N effective configurations including thermalisation; {args.chains} chains x {args.n} "
          f"updates per algorithm; model training {report['model_train_cpu_s']:.0f} s (listed, not counted)",
          flush=True)
    for L, beta in points:
        lattice = Lattice(shape=(L,) * 4)
        action = WilsonAction(beta=beta, group=group)
        hmc = GaugeHMC(action=action, step_size=1.0 / args.hmc_steps, n_steps=args.hmc_steps, scheme=OMELYAN)
        score = ConditionedScore(lcnn_score(net, process), beta / beta_0)
        rows: dict[str, dict] = {}
        routes = (("heatbath+OR (model start)", Heatbath(action), "model"), ("hmc (model start)", hmc, "model"),
                  ("hmc (cold)", hmc, "cold"), ("hmc (hot)", hmc, "hot"), ("heatbath+OR (hot)", Heatbath(action), "hot"))
        for k, (name, kernel, how) in enumerate(routes):
            g = torch.Generator().manual_seed(args.seed + k)
            cpu0 = time.process_time()
            if how == "model":
                U = denoise(score, process, LinkField.identity(group, lattice, batch=args.chains), steps=40,
                            generator=g, t_min=T_LANGEVIN, spacing="geometric")
            elif how == "cold":
                U = LinkField.identity(group, lattice, batch=args.chains)
            else:
                U = LinkField.random(group, lattice, batch=args.chains, generator=g)
            start_cpu = (time.process_time() - cpu0) / args.chains
            P, W, acc, cpu = run_chain(kernel_update(kernel, U, g), U, args.n)
            c = cpu / (args.chains * args.n)
            t_th = thermalisation(P.astype(np.float64), max(1, args.n // 40), max(4, args.n // 5))
            row = {"acceptance": acc, "start_cpu_s_per_chain": start_cpu, "cpu_s_per_update": c,
                   "plaquette_first": float(P[0].mean()), "thermalisation": t_th,
                   "plaquette_chain_mean": P.mean(1).tolist(), "plaquette_series": P.tolist()}
            if t_th is not None:
                plaq, dplaq, tp, dtp, _ = tau(P[t_th:].astype(np.float64))
                w, dw, tw, dtw, _ = tau(W[t_th:].astype(np.float64))
                row |= {"plaquette": [plaq, dplaq], "tau_int_plaquette": [tp, dtp], "wilson_2x2": [w, dw],
                        "tau_int_wilson_2x2": [tw, dtw]}
                for n_eff in (16, 256):
                    row[f"cpu_s_to_{n_eff}"] = args.chains * (start_cpu + t_th * c) + 2 * tp * n_eff * c
            rows[name] = row
            cost = "  ".join(f"N={m}: {row.get(f'cpu_s_to_{m}', math.nan):8.1f} CPU s" for m in (16, 256))
            print(f"  L = {L}, beta = {beta}: {name:18s} acc {acc:.3f}  first plaquette {row['plaquette_first']:.4f}  "
                  f"t_th {t_th}  tau_int(P) {row.get('tau_int_plaquette', [math.nan])[0]:.2f}  "
                  f"{c:.4f} CPU s/update  start {start_cpu:.2f} s  {cost}", flush=True)
        report["points"][f"L{L}_beta{beta}"] = {"L": L, "beta": beta, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


RELAX_POINTS = ((4, 5.0), (6, 5.0), (6, 5.5))
"""(L, beta) of ``--relax``: the model's training point, the headline run's lattice, and the source's target."""


def relax(args: argparse.Namespace) -> None:
    """``--relax`` (module docstring): what the model's start is worth to the heatbath chain."""
    if args.quick:
        args.chains, args.n = 4, 4
    points = ((4, 5.0),) if args.quick else RELAX_POINTS
    torch.set_num_threads(1)
    group = SU(3)
    net, process, meta = load_lcnn(default_model("su3"))
    report: dict = {"chains": args.chains, "n": args.n, "hmc_steps": args.hmc_steps, "seed": args.seed, "points": {}}
    print(f"4D SU(3): heatbath + OR from the model's denoised start and from a hot start; {args.chains} chains x "
          f"{args.n} updates; deviation from the mean of both starts' last half, in % (standard error)", flush=True)
    for L, beta in points:
        lattice = Lattice(shape=(L,) * 4)
        action = WilsonAction(beta=beta, group=group)
        score = ConditionedScore(lcnn_score(net, process), beta / float(meta["beta"]))
        point: dict = {"L": L, "beta": beta}
        for k, how in enumerate(("model", "hot")):
            g = torch.Generator().manual_seed(args.seed + k)
            cpu0 = time.process_time()
            if how == "model":
                U = denoise(score, process, LinkField.identity(group, lattice, batch=args.chains), steps=40,
                            generator=g, t_min=T_LANGEVIN, spacing="geometric")
            else:
                U = LinkField.random(group, lattice, batch=args.chains, generator=g)
            start = (time.process_time() - cpu0) / args.chains
            records = [_loops(U)]
            cpu = 0.0
            for _ in range(args.n):
                cpu0 = time.process_time()
                U, _ = Heatbath(action).step(U, generator=g)
                cpu += time.process_time() - cpu0
                records.append(_loops(U))
            point[how] = {"start_cpu_s_per_config": start, "cpu_s_per_update_and_config": cpu / (args.n * args.chains),
                          "loops": np.stack(records).tolist()}  # [update, chain, (P, W(1,2), W(2,2))]
        hmc = GaugeHMC(action=action, step_size=1.0 / args.hmc_steps, n_steps=args.hmc_steps, scheme=OMELYAN)
        states = kernel_states(hmc, U, torch.Generator().manual_seed(args.seed + 2))
        cpu0 = time.process_time()
        next(states), next(states)
        point["hmc_cpu_s_per_trajectory_and_config"] = (time.process_time() - cpu0) / (2 * args.chains)
        late = np.concatenate([np.asarray(point[h]["loops"])[args.n // 2 + 1:] for h in ("model", "hot")], axis=1)
        point["equilibrium"] = late.mean((0, 1)).tolist()
        report["points"][f"L{L}_beta{beta}"] = point
        costs = (f"start {point['model']['start_cpu_s_per_config']:.3f} s, update "
                 f"{point['model']['cpu_s_per_update_and_config']:.4f} s, HMC trajectory "
                 f"{point['hmc_cpu_s_per_trajectory_and_config']:.4f} s per configuration")
        print(f"  L = {L}, beta = {beta}: equilibrium P, W(1,2), W(2,2) = "
              f"{', '.join(f'{x:.5f}' for x in point['equilibrium'])}; {costs}", flush=True)
        for update in range(args.n + 1):
            cells = []
            for how in ("model", "hot"):
                x = np.asarray(point[how]["loops"])[update] / np.asarray(point["equilibrium"])
                m, e = 100 * (x.mean(0) - 1), 100 * x.std(0, ddof=1) / math.sqrt(args.chains)
                cells.append(" ".join(f"{a:+7.2f}({b:.2f})" for a, b in zip(m, e)))
            print(f"    {update:3d}  model {cells[0]}  |  hot {cells[1]}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


def _loops(U: LinkField) -> np.ndarray:
    """``[chains, 3]``: the plaquette, W(1,2) and W(2,2) of each chain."""
    return torch.stack([mean_plaquette(U), wilson_loop(U, 1, 2), wilson_loop(U, 2, 2)], -1).numpy()


def _fmt(value: float, error: float) -> str:
    """``value(error)``; five decimals and ``(nan)`` when the error is not finite (chain too short)."""
    return format_value_error(value, error) if math.isfinite(error) and error > 0 else f"{value:.5f}(nan)"


if __name__ == "__main__":
    main()
