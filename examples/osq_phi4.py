"""Optimal stochastic quantisation (OSQ) for 2D phi^4: a data-free drift, its raw and exact samplers, against HMC +
Wolff, and a snapshot sequence of one configuration along the OSQ path (issue #20).

lambda = 0.022 (docs/conventions.md); kappa = 0.21 (symmetric, near the seed's Table 1), 0.25 (closer to the
critical point) or 0.5 (broken phase). The path starts from the Hartree free field of the action (``--prior
hartree``, `lgdiff._samplers.osq.OSQProcess.hartree`: the best Gaussian approximation, from the couplings alone)
or from white noise (``--prior white``). The drift ``v = a(t) grad S + b(t) phi + NCSN++(phi, t)``
(`lgdiff._models.osq.OSQDrift`) is trained on the exact OSQ objective ``E_Q[-log w]``
(`lgdiff._train.osq.train_osq`: no training data), then

- the raw sampler (`lgdiff._samplers.osq.OSQDraws`: the ends of fresh OSQ paths; biased by whatever the drift misses),
- the exact sampler (`lgdiff._samplers.osq.OSQPathIMH`: independence Metropolis over paths with the exact weight),
- the same exact sampler with ``v = 0`` (no network: what the training adds)

are compared with HMC + Wolff on <|M|>, chi_2' = V (<M^2> - <|M|>^2) (sign blind) and U_L (jackknife errors;
for the Markov chains also Gamma-method errors, and the deviations use the larger of the two), with the
acceptance, tau_int of |M| and the Kish effective sample size of the path weights.

    OMP_NUM_THREADS=1 python examples/osq_phi4.py --kappa 0.25 --L 16 --train-steps 600 --imh-n 4000 \
        --imh-therm 200 --model /tmp/lgdiff-osq/osq_k0.25_L16_h.safetensors

On one core at L = 16: about 0.45 CPU s per training step (batch 16, T = 0.5, 20 path steps), then about 8 CPU
minutes of sampling with these settings (the exact sampler's 8 x 4200 network paths most of it). Results and
their discussion: docs/osq.md.

``--model FILE``: the model file: loaded if its training run is complete, else trained (or resumed) with these
settings up to ``--train-steps`` (``--train-steps 0``: load only). Without it the drift is trained into
``osq_phi4_k<kappa>_L<L>.safetensors`` in ``--work``.
``--train-only`` stops after the training (for background runs). The figure (``--out``, default
``osq_phi4_k<kappa>_L<L>.png``) shows one configuration at 6 times along its OSQ path.

``--smoke`` takes the same path at tiny sizes (L = 4, 3 training steps, a few samples: seconds on one core) in a
fresh temporary directory. Explicit sizes are capped at the smoke sizes:

    OMP_NUM_THREADS=1 python examples/osq_phi4.py --smoke
"""

import argparse
import json
import math
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _phi4 import LAM, CpuTimer, chain_row, fmt, hmc_wolff, magnetisation_table, osq_draws  # noqa: E402

from lgdiff._actions.phi4 import Phi4Action  # noqa: E402
from lgdiff._fields.scalar import Field  # noqa: E402
from lgdiff._geometry.lattice import Lattice  # noqa: E402
from lgdiff._io.checkpoint import load_checkpoint  # noqa: E402
from lgdiff._models.files import load_osq  # noqa: E402
from lgdiff._models.ncsnpp import NCSNppConfig  # noqa: E402
from lgdiff._observables.scalar import magnetization  # noqa: E402
from lgdiff._samplers.osq import Drift, OSQPathIMH, OSQProcess, osq_path, zero_drift  # noqa: E402
from lgdiff._stats import effective_sample_size, reweighted_mean  # noqa: E402
from lgdiff._train.osq import OSQTrainConfig, train_osq  # noqa: E402

from _smoke import HelpFormatter, parse_sized, wants_smoke  # noqa: E402  (examples/_smoke.py)

# --smoke: the same stages at tiny sizes (explicit sizes are capped at these)
SMOKE = {"L": 4, "train_steps": 3, "batch": 4, "channels": 4, "path_steps": 5, "raw_n": 16, "imh_chains": 2,
         "imh_n": 8, "imh_therm": 2, "hmc_chains": 2, "hmc_n": 20, "hmc_therm": 5}
SNAPSHOTS = 6



def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--kappa", type=float, default=0.21, help="hopping parameter (lambda = 0.022)")
    p.add_argument("--L", type=int, default=16, help="lattice size L x L")
    p.add_argument("--model", type=Path, help="OSQ model file (trained or resumed up to --train-steps)")
    p.add_argument("--work", type=Path, help="where the model file goes without --model (default: the current "
                                             "directory; --smoke: a fresh temporary directory)")
    p.add_argument("--train-steps", type=int, default=1500, help="Adam steps of the exact OSQ objective (0: load)")
    p.add_argument("--train-only", action="store_true", help="stop after the training")
    p.add_argument("--batch", type=int, default=16, help="paths per training step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--channels", type=int, default=8, help="NCSN++ channels of the drift body")
    p.add_argument("--T", type=float, default=0.5, help="OSQ time horizon")
    p.add_argument("--path-steps", type=int, default=20, help="Euler-Maruyama steps of the OSQ path")
    p.add_argument("--prior", choices=("hartree", "white"), default="hartree",
                   help="the path's Gaussian prior: the Hartree free field of the action (OSQProcess.hartree) or "
                        "white noise N(0, 1)")
    p.add_argument("--gradient", choices=("path", "log-variance"), default="path", help="training gradient")
    p.add_argument("--raw-n", type=int, default=2000, help="raw OSQ draws (also the ESS sample)")
    p.add_argument("--imh-chains", type=int, default=8, help="chains of the exact OSQ path IMH")
    p.add_argument("--imh-n", type=int, default=2000, help="proposals per chain of the exact OSQ path IMH")
    p.add_argument("--imh-therm", type=int, default=100, help="discarded proposals per chain of the OSQ path IMH")
    p.add_argument("--hmc-chains", type=int, default=8, help="chains of the HMC + Wolff reference")
    p.add_argument("--hmc-n", type=int, default=20000, help="HMC + Wolff updates per chain (after --hmc-therm)")
    p.add_argument("--hmc-therm", type=int, default=200, help="thermalisation updates per HMC + Wolff chain")
    p.add_argument("--seed", type=int, default=0, help="seed of the training and sampling generators")
    p.add_argument("--out", type=Path, help="the snapshot figure (default osq_phi4_k<kappa>_L<L>.png)")
    p.add_argument("--json", type=Path, help="write the numbers to this JSON file")
    return p


def finished(path: Path) -> bool:
    """Whether the model file ``path`` exists and its training run is complete (it is then loaded as it is)."""
    if not path.exists():
        return False
    meta = load_checkpoint(path)[1]
    return int(meta["step"]) >= int(meta["train"]["steps"])


def train(args: argparse.Namespace, action: Phi4Action, model: Path) -> None:
    """Train (or resume) the OSQ drift into ``model`` up to ``args.train_steps``; the command and the settings go
    into the file's provenance (its ``train_seconds`` is the wall time of the training)."""
    config = OSQTrainConfig(steps=args.train_steps, batch_size=args.batch, lr=args.lr, seed=args.seed,
                            checkpoint_every=max(1, min(50, args.train_steps)), objective="exact",
                            gradient=args.gradient)
    process = (OSQProcess.hartree(action, (args.L, args.L), T=args.T, steps=args.path_steps)
               if args.prior == "hartree" else OSQProcess(T=args.T, steps=args.path_steps))
    arch = NCSNppConfig(dim=2, channels=args.channels, z2_odd=True)
    provenance = {"theory": "phi4", "kappa": args.kappa, "lambda": LAM,
                  "command": shlex.join(["python", "examples/osq_phi4.py", *sys.argv[1:]])}
    start = int(load_checkpoint(model)[1]["step"]) if model.exists() else 0

    def progress(step: int, loss: float) -> None:
        if step % max(1, args.train_steps // 20) == 0 or step == args.train_steps:
            print(f"  step {step:5d}  E[-log w]/V = {loss:.4f}", flush=True)

    with CpuTimer() as tm:
        train_osq(action, (args.L, args.L), model, config=config, arch=arch, process=process, provenance=provenance,
                  progress=progress)
    print(f"trained {model}: steps {start} -> {args.train_steps} in {tm.cpu:.0f} CPU s ({tm.wall:.0f} s wall)",
          flush=True)


def main() -> None:
    smoke = wants_smoke(sys.argv[1:])
    p = parser()
    args = parse_sized(p, SMOKE, smoke=smoke)
    torch.set_num_threads(1)
    action = Phi4Action(kappa=args.kappa, lam=LAM)
    tag = f"osq_phi4_k{args.kappa:g}_L{args.L}"
    work = args.work if args.work is not None else (Path(tempfile.mkdtemp(prefix="lgdiff-smoke-")) if smoke
                                                    else Path("."))
    model = args.model if args.model is not None else work / f"{tag}.safetensors"
    if args.train_steps == 0 and not model.exists():
        p.error(f"--train-steps 0 loads --model, but {model} does not exist")
    if args.train_steps > 0 and not finished(model):
        try:
            train(args, action, model)
        except ValueError as e:  # a model file of other settings: resuming it is refused
            p.error(str(e))
    if args.train_only:
        return
    loaded = load_osq(model)
    meta = loaded.metadata
    wanted = {"class": "Phi4Action", "kappa": args.kappa, "lam": LAM}
    if meta.get("action") != wanted or meta.get("lattice") != [args.L] * 2:
        p.error(f"--model {model} was trained for {meta.get('action')} on {meta.get('lattice')}, not Phi4Action("
                f"kappa={args.kappa}, lam={LAM}) on {[args.L] * 2}")
    print(f"OSQ drift {model}: {meta['step']} steps of {meta['train']['gradient']} gradient, batch "
          f"{meta['train']['batch_size']}, {loaded.network.n_parameters()} parameters, process {meta['osq']}",
          flush=True)
    results = run(args, action, loaded.drift, loaded.process)
    results["model"] = {"file": str(model), "step": meta["step"], "train_seconds": meta["train_seconds"],
                        "command": meta.get("command")}
    report(args, results)
    out = args.out if args.out is not None else work / f"{tag}.png"
    figure(out, args, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))


def run(args: argparse.Namespace, action: Phi4Action, drift: Drift, process: OSQProcess) -> dict:
    """Raw OSQ draws, the exact OSQ path IMH and HMC + Wolff at the same couplings; the numbers and the snapshots."""
    lattice = Lattice(shape=(args.L, args.L))
    V = lattice.volume
    g = torch.Generator().manual_seed(args.seed + 1)
    rows: dict[str, dict] = {}
    with CpuTimer() as tm:
        final, log_w = osq_draws(drift, action, process, lattice, n=args.raw_n, batch=64, generator=g)
    M = magnetization(Field(final, lattice)).numpy()
    ess = effective_sample_size(log_w) / log_w.numel()
    rows["OSQ raw"] = {"n": int(M.size), "acceptance": math.nan, "ess_fraction": ess, "cpu_s": tm.cpu,
                       "tau_int": math.nan, "tau_int_error": math.nan, **magnetisation_table(M, V)}
    rw = reweighted_mean(np.abs(M), log_w.numpy())
    rows["OSQ raw"]["<|M|> reweighted"] = (float(rw.mean), float(rw.error))
    kernel = OSQPathIMH(drift=drift, process=process, action=action)
    rows["OSQ exact (path IMH)"] = chain_row(kernel, lattice, chains=args.imh_chains, n=args.imh_n,
                                             therm=args.imh_therm,
                                             generator=g)
    rows["OSQ exact (path IMH)"]["ess_fraction"] = ess
    # the same exact sampler without the network (v = 0: finite-time Langevin from the prior): what training adds
    rows[UNTRAINED] = chain_row(OSQPathIMH(drift=zero_drift, process=process, action=action), lattice,
                                chains=args.imh_chains, n=args.imh_n, therm=args.imh_therm, generator=g)
    rows["HMC + Wolff"] = chain_row(hmc_wolff(action), lattice, chains=args.hmc_chains, n=args.hmc_n,
                                    therm=args.hmc_therm, generator=g)
    snapshots = snapshot_sequence(drift, action, process, lattice, g)
    return {"kappa": args.kappa, "L": args.L, "lambda": LAM, "process": process.settings(), "rows": rows,
            "snapshots": snapshots}


def snapshot_sequence(drift: Drift, action: Phi4Action, process: OSQProcess, lattice: Lattice,
                      generator: torch.Generator) -> dict:
    """One configuration at ``SNAPSHOTS`` times along its OSQ path (the path's callback), with the path weight."""
    keep = sorted({round(i * process.steps / (SNAPSHOTS - 1)) for i in range(SNAPSHOTS)})
    x0 = process.prior((1, *lattice.shape), dtype=torch.float64, device="cpu", generator=generator)
    kept = {0: x0[0].clone()} if 0 in keep else {}

    def callback(k: int, x: torch.Tensor) -> None:
        if k in keep:
            kept[k] = x[0].clone()

    with torch.no_grad():
        path = osq_path(drift, action, process, x0, generator=generator, callback=callback)
    return {"t": [k * process.h for k in kept], "fields": [v.tolist() for v in kept.values()],
            "log_w": float(path.log_w[0])}


ORDER = ("<|M|>", "chi_2'", "U_L")
UNTRAINED = "OSQ exact, v = 0"


def report(args: argparse.Namespace, results: dict) -> None:
    print(f"\n2D phi^4, L = {args.L}, kappa = {args.kappa}, lambda = {LAM}; chi_2' = V(<M^2> - <|M|>^2) (sign "
          f"blind); jackknife errors (binned for the Markov chains); tau_int of |M| in updates")
    print(f"{'sampler':22s} {'n':>6} {'<|M|>':>12} {'chi_2prime':>12} {'U_L':>12} {'acc':>6} {'ESS/n':>7} "
          f"{'tau_int':>9} {'CPU s':>6}")
    rows = results["rows"]
    ref = rows["HMC + Wolff"]
    for name, r in rows.items():
        ess = r.get("ess_fraction", math.nan)
        print(f"{name:22s} {r['n']:6d} " + " ".join(f"{fmt(*r[k]):>12}" for k in ORDER)
              + f" {r['acceptance']:6.3f} {ess:7.4f} {fmt(r['tau_int'], r['tau_int_error']):>9} {r['cpu_s']:6.0f}")
    for name in ("OSQ raw", "OSQ exact (path IMH)", UNTRAINED):
        # a Markov chain's error: the larger of the binned jackknife's and the Gamma method's (bins shorter than
        # tau_int make the first too small; the second needs chains of many tau_int)
        def error(row: dict, k: str) -> float:
            jackknife, gamma = row[k][1], row.get("gamma", {}).get(k, (math.nan, math.nan))[1]
            return max(jackknife, gamma) if math.isfinite(gamma) else jackknife

        devs = [(rows[name][k][0] - ref[k][0]) / math.hypot(error(rows[name], k), error(ref, k)) for k in ORDER]
        results["rows"][name]["sigma_vs_hmc"] = dict(zip(ORDER, devs, strict=True))
        print(f"{name} - HMC + Wolff in sigma: " + ", ".join(f"{k} {d:+.1f}" for k, d in zip(ORDER, devs,
                                                                                               strict=True)))
    for name in ("OSQ exact (path IMH)", UNTRAINED, "HMC + Wolff"):
        gamma = rows[name]["gamma"]
        print(f"{name}, Gamma-method errors: " + ", ".join(f"{k} {fmt(*gamma[k])}" for k in ORDER))
    print(f"OSQ raw <|M|> reweighted by the path weights (SNIS): {fmt(*rows['OSQ raw']['<|M|> reweighted'])}")


def figure(out: Path, args: argparse.Namespace, results: dict) -> None:
    """The snapshot sequence of one configuration along its OSQ path (matplotlib; skipped without it)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figure")
        return
    snap = results["snapshots"]
    fields = [np.asarray(f) for f in snap["fields"]]
    vmax = max(float(np.abs(f).max()) for f in fields)
    fig, axes = plt.subplots(1, len(fields), figsize=(2.2 * len(fields), 2.5))
    for ax, t, f in zip(np.atleast_1d(axes), snap["t"], fields, strict=True):
        im = ax.imshow(f, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_title(f"t = {t:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(np.atleast_1d(axes)), shrink=0.8)
    fig.suptitle(f"OSQ path of one configuration, 2D phi^4 L = {args.L}, kappa = {args.kappa}, lambda = {LAM} "
                 f"(log w = {snap['log_w']:.1f})", fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
