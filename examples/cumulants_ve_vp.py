"""Higher-order cumulants along the reverse process, VE against VP (Aarts, Habibi, Wang, Zhou, NeurIPS 2024 ML4PS,
arXiv:2410.21212; the LATTICE2024 proceedings, seed 001). docs/cumulants.md has the formulas and the results.

For the magnetisation ``M = (1/V) sum_x phi(x)`` the script records, at ``--records`` times along the reverse SDE,
``chi_2 = V kappa_2``, ``chi_4 = V^3 kappa_4`` and the Binder cumulant in cumulant form ``U = -kappa_4 / (3
kappa_2^2)`` (``= U_L`` where ``<M> = 0``), with jackknife errors, and compares them with the exact forward
values ``chi_2(t) = a(t)^2 chi_2 + s(t)^2``, ``chi_4(t) = a(t)^4 chi_4`` (``lgdiff._exact.diffused_cumulants``):

- 2D free field (phi^4 at lambda = 0), kappa = 0.21: the exact score (``lgdiff._exact.FreeFieldScore``), VE
  (sigma = 25) and VP (beta in [0.1, 20]); the exact reverse value from the Gaussian prior is printed too
  (``free_field_reverse_kappa_2``).
- 2D phi^4 at kappa = 0.27, lambda = 0.022 (near-critical, U_L ~ 0.5 on 8^2: a strongly non-Gaussian M): two
  NCSN++ score networks, one per process, with the same architecture, data, steps and seed, trained here
  (``lgdiff._train.dsm.train_ncsnpp``) on an HMC + Wolff ensemble; the shipped phi^4 models are VE only and on
  16^2 / 32^2 lattices, too slow to train a VP twin of on a CPU. The exact forward values come from an
  independent HMC + Wolff ensemble of the same theory.

    python examples/cumulants_ve_vp.py                     # writes cumulants_ve_vp.png with matplotlib
    python examples/cumulants_ve_vp.py --out fig.png --samples 4096

The default run (8^2 lattices; two 1500-step trainings; 2048 phi^4 and 16384 free-field samples per process, 200
reverse-SDE steps) takes 2.5 minutes on one CPU core (3.5 under load): 33 s per training, 31 s per phi^4 sampling.

``--smoke`` takes the same path at tiny sizes (4^2 lattices, 4 training steps of a 4-channel network, 128 phi^4 and
256 free-field samples, 20 reverse steps: seconds on one core) and writes its figure into a fresh temporary directory unless ``--out``
is given. Explicit sizes are capped at the smoke sizes:

    python examples/cumulants_ve_vp.py --smoke
"""

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from lgdiff import VESDE, VPSDE, cumulants, jackknife  # noqa: E402
from lgdiff._exact import (FreeFieldScore, diffused_cumulants, free_field_cumulants,  # noqa: E402
                           free_field_reverse_kappa_2)
from lgdiff._geometry.lattice import Lattice  # noqa: E402
from lgdiff._models.ncsnpp import NCSNppConfig  # noqa: E402
from lgdiff._run.generate import GenerateConfig  # noqa: E402
from lgdiff._run.theory import Theory  # noqa: E402
from lgdiff._samplers.reverse import StepInfo, reverse_sde  # noqa: E402
from lgdiff._sde.base import AbstractSDE  # noqa: E402
from lgdiff._train.dsm import TrainConfig, load_ncsnpp, train_ncsnpp  # noqa: E402

from _smoke import HelpFormatter, parse_sized, wants_smoke  # noqa: E402  (examples/_smoke.py)

LAM = 0.022
T_MIN = 1e-3
PROCESSES: dict[str, AbstractSDE] = {"VE": VESDE(), "VP": VPSDE()}
OBSERVABLES = ("chi_2", "chi_4", "U")

# --smoke: the same path at tiny sizes (explicit sizes are capped at these)
SMOKE = {"L": 4, "samples": 128, "free_samples": 256, "sde_steps": 20, "records": 5, "train_steps": 4, "channels": 4,
         "data_chains": 8, "data_records": 8}


def stats(M: Tensor, volume: int, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """``(chi_2, chi_4, U)`` of the series M (``[n]`` or ``[n, chains]``) and their jackknife errors."""

    def fn(m1: float, m2: float, m3: float, m4: float) -> list[float]:
        _, k2, _, k4 = (float(k) for k in cumulants(m1, m2, m3, m4))
        return [volume * k2, volume**3 * k4, -k4 / (3 * k2 * k2)]

    M = M.to(torch.float64)
    est = jackknife(fn, M, M**2, M**3, M**4, n_bins=n_bins)
    return np.asarray(est.mean), np.asarray(est.error)


def forward_exact(M0: Tensor, sde: AbstractSDE, t: Tensor, volume: int, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact forward ``(chi_2, chi_4, U)(t)`` ``[3, times]`` from a data ensemble's M ``[records, chains]``, with
    jackknife errors (the data's cumulants propagated by `diffused_cumulants`, re-evaluated per jackknife sample)."""

    def fn(m1: float, m2: float, m3: float, m4: float) -> np.ndarray:
        _, k2, _, k4 = cumulants(m1, m2, m3, m4)
        k2t, k4t = diffused_cumulants(k2, k4, sde, t, volume)
        return torch.stack([volume * k2t, volume**3 * k4t, -k4t / (3 * k2t * k2t)]).numpy()

    M0 = M0.to(torch.float64)
    est = jackknife(fn, M0, M0**2, M0**3, M0**4, n_bins=n_bins)
    return np.asarray(est.mean), np.asarray(est.error)


def reverse_record(score, sde: AbstractSDE, shape: tuple[int, ...], *, samples: int, steps: int, records: int,
                   dtype: torch.dtype, seed: int) -> tuple[Tensor, Tensor]:
    """Run the reverse SDE from the prior; M ``[samples, records + 1]`` at T and at ``records`` evenly spaced
    steps down to ``T_MIN``, and those times."""
    at = {round(k * steps / records) - 1 for k in range(1, records + 1)}
    generator = torch.Generator().manual_seed(seed)
    x_T = sde.prior_sample((samples, *shape), generator=generator, dtype=dtype)
    times, ms = [sde.T], [x_T.reshape(samples, -1).mean(1)]

    def callback(info: StepInfo) -> None:
        if info.step in at:
            times.append(info.t)
            ms.append(info.state.reshape(samples, -1).mean(1))

    with torch.no_grad():
        reverse_sde(score, sde, x_T, steps=steps, generator=generator, t_min=T_MIN, callback=callback)
    return torch.stack(ms, 1).to(torch.float64), torch.tensor(times, dtype=torch.float64)


def ensemble(work: Path, name: str, L: int, kappa: float, chains: int, records: int, seed: int) -> Tensor:
    """The configurations ``[records, chains, L, L]`` of an HMC + Wolff ensemble of 2D phi^4 (lgdiff generate's
    code; ``every`` 4 updates after 200 of thermalisation)."""
    theory = Theory(name="phi4", lattice=Lattice(shape=(L, L)), params={"kappa": kappa, "lam": LAM})
    config = GenerateConfig(theory=theory, algorithm="wolff", n=records, chains=chains, every=4, therm=200,
                            seed=seed)
    command = (f"lgdiff generate --theory phi4 --L {L} --kappa {kappa} --lam {LAM} --algorithm wolff --chains "
               f"{chains} --n {records} --every 4 --therm 200 --seed {seed} --out {name}.safetensors")
    ens = config.run(work / f"{name}.safetensors", command=command, flush_every=records)
    return ens.configs().data.reshape(records, chains, L, L)


def table(title: str, t: Tensor, rev: tuple[np.ndarray, np.ndarray], fwd: tuple[np.ndarray, np.ndarray],
          extra: np.ndarray | None = None) -> None:
    """One row per recorded time: each observable's reverse estimate +- error and the exact forward value."""
    print(f"\n{title}")
    head = f"{'t':>7}" + "".join(f" {name + ' reverse':>22} {name + ' exact':>19}" for name in OBSERVABLES)
    print(head + (f" {'chi_2 exact from prior':>23}" if extra is not None else ""))
    for j, tj in enumerate(t.tolist()):
        row = f"{tj:7.4f}"
        for i in range(3):
            exact = f"{fwd[0][i, j]:.5g}" + (f" +- {fwd[1][i, j]:.2g}" if fwd[1][i, j] > 0 else "")
            row += f" {rev[0][i, j]:11.5g} +- {rev[1][i, j]:7.2g} {exact:>19}"
        print(row + (f" {extra[j]:23.5g}" if extra is not None else ""))


def run_stats(M: Tensor, volume: int) -> tuple[np.ndarray, np.ndarray]:
    """``(chi_2, chi_4, U)`` ``[3, times]`` of independent samples M ``[n, times]`` with jackknife errors."""
    per = [stats(M[:, j], volume, n_bins=min(M.shape[0], 128)) for j in range(M.shape[1])]
    return np.stack([p[0] for p in per], 1), np.stack([p[1] for p in per], 1)



def main() -> None:
    smoke = wants_smoke(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--out", type=Path, help="the figure (default cumulants_ve_vp.png; --smoke: in a fresh "
                                                 "temporary directory)")
    parser.add_argument("--L", type=int, default=8, help="lattice size L (L x L, even)")
    parser.add_argument("--kappa-free", type=float, default=0.21, help="kappa of the free field (lambda = 0)")
    parser.add_argument("--kappa", type=float, default=0.27, help="kappa of phi^4 (lambda = 0.022)")
    parser.add_argument("--samples", type=int, default=2048, help="reverse-SDE samples per phi^4 model")
    parser.add_argument("--free-samples", type=int, default=16384,
                        help="reverse-SDE samples per process for the free field (exact score: cheap)")
    parser.add_argument("--sde-steps", type=int, default=200, help="reverse-SDE steps")
    parser.add_argument("--records", type=int, default=20, help="recorded times along the reverse process (and T)")
    parser.add_argument("--train-steps", type=int, default=1500, help="DSM steps per phi^4 model")
    parser.add_argument("--channels", type=int, default=16, help="NCSN++ base channels")
    parser.add_argument("--data-chains", type=int, default=64, help="chains of each phi^4 ensemble")
    parser.add_argument("--data-records", type=int, default=64, help="records per chain of each phi^4 ensemble")
    parser.add_argument("--seed", type=int, default=0, help="seed of training and sampling")
    args = parse_sized(parser, SMOKE, smoke=smoke)
    if args.L < 4 or args.L % 2:
        parser.error(f"--L must be even and >= 4 (the NCSN++ pools by 2); got {args.L}")
    if not 1 <= args.records <= args.sde_steps:
        parser.error(f"--records must be between 1 and --sde-steps = {args.sde_steps}; got {args.records}")
    if min(args.samples, args.free_samples) < 4 or args.data_chains * args.data_records < 4:
        parser.error("--samples, --free-samples and --data-chains x --data-records must be at least 4 (jackknife errors)")
    if args.out is None:
        args.out = (Path(tempfile.mkdtemp(prefix="lgdiff-smoke-")) / "cumulants_ve_vp.png" if smoke
                    else Path("cumulants_ve_vp.png"))
    torch.set_num_threads(1)
    shape, volume = (args.L, args.L), args.L * args.L
    results: dict[tuple[str, str], dict[str, object]] = {}
    start = time.perf_counter()

    # ---- free field: exact score ------------------------------------------------------------------
    for name, sde in PROCESSES.items():
        score = FreeFieldScore(shape=shape, kappa=args.kappa_free, sde=sde)
        M, t = reverse_record(score, sde, shape, samples=args.free_samples, steps=args.sde_steps,
                              records=args.records, dtype=torch.float64, seed=args.seed)
        rev = run_stats(M, volume)
        k2, k4 = free_field_cumulants(shape, args.kappa_free, sde, t)
        fwd = (np.stack([volume * k2.numpy(), volume**3 * k4.numpy(), (-k4 / (3 * k2 * k2)).numpy() + 0.0]),
               np.zeros((3, t.numel())))
        from_prior = volume * free_field_reverse_kappa_2(shape, args.kappa_free, sde, t).numpy()
        table(f"free field (kappa = {args.kappa_free}, {args.L}x{args.L}), {name}, exact score: "
              f"{args.sde_steps} reverse steps, {args.free_samples} samples", t, rev, fwd, from_prior)
        results["free", name] = {"t": t, "rev": rev, "fwd": fwd, "from_prior": from_prior}
        print(f"free field {name}: at t = {t[-1]:.4f} chi_2 = {rev[0][0, -1]:.5g} +- {rev[1][0, -1]:.2g} "
              f"(exact {fwd[0][0, -1]:.5g}), chi_4 = {rev[0][1, -1]:.5g} +- {rev[1][1, -1]:.2g} (exact 0)")

    # ---- phi^4: trained NCSN++ per process ---------------------------------------------------------
    with tempfile.TemporaryDirectory(prefix="lgdiff-cumulants-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        x_train = ensemble(work, "train", args.L, args.kappa, args.data_chains, args.data_records, seed=11)
        x_train = x_train.reshape(-1, *shape)
        m_ref = ensemble(work, "reference", args.L, args.kappa, args.data_chains, args.data_records, seed=12)
        m_ref = m_ref.mean((2, 3))  # M [records, chains]: the jackknife bins along each chain
        ref_bins = min(args.data_records, 16)
        data_stats = stats(m_ref, volume, n_bins=ref_bins)
        print(f"\nphi^4 (kappa = {args.kappa}, lambda = {LAM}, {args.L}x{args.L}): HMC + Wolff, "
              f"{x_train.shape[0]} training and {m_ref.numel()} reference configurations "
              f"({time.perf_counter() - t0:.1f} s); reference chi_2 = {data_stats[0][0]:.5g} +- "
              f"{data_stats[1][0]:.2g}, chi_4 = {data_stats[0][1]:.5g} +- {data_stats[1][1]:.2g}, "
              f"U = {data_stats[0][2]:.4f} +- {data_stats[1][2]:.2g}")
        arch = NCSNppConfig(dim=2, channels=args.channels, multipliers=(1, 2))
        config = TrainConfig(steps=args.train_steps, batch_size=64, lr=2e-3, ema=0.995, seed=args.seed,
                             checkpoint_every=args.train_steps)
        for name, sde in PROCESSES.items():
            t0 = time.perf_counter()
            report = train_ncsnpp(x_train, work / f"{name}.safetensors", config=config, arch=arch, sde=sde,
                                  provenance={"theory": "phi4", "params": {"kappa": args.kappa, "lam": LAM},
                                              "command": "python examples/cumulants_ve_vp.py"})
            tail = report.losses[-100:]
            print(f"phi^4 {name} model: {args.train_steps} DSM steps in {time.perf_counter() - t0:.1f} s, mean "
                  f"loss of the last {len(tail)} steps {sum(tail) / len(tail):.4f}")
            net, _ = load_ncsnpp(work / f"{name}.safetensors")
            t0 = time.perf_counter()
            M, t = reverse_record(net, sde, shape, samples=args.samples, steps=args.sde_steps,
                                  records=args.records, dtype=torch.float32, seed=args.seed + 1)
            rev = run_stats(M, volume)
            fwd = forward_exact(m_ref, sde, t, volume, n_bins=ref_bins)
            table(f"phi^4 {name}, trained NCSN++: {args.sde_steps} reverse steps, {args.samples} samples "
                  f"({time.perf_counter() - t0:.1f} s)", t, rev, fwd)
            results["phi4", name] = {"t": t, "rev": rev, "fwd": fwd}
            for i, obs in enumerate(OBSERVABLES):
                z = (rev[0][i, -1] - fwd[0][i, -1]) / math.hypot(rev[1][i, -1], fwd[1][i, -1])
                print(f"phi^4 {name}: at t = {t[-1]:.4f} {obs} = {rev[0][i, -1]:.5g} +- {rev[1][i, -1]:.2g}, "
                      f"exact {fwd[0][i, -1]:.5g} +- {fwd[1][i, -1]:.2g} ({z:+.1f} sigma)")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    plot(results, args.out, args.kappa_free, args.kappa, args.L)


def plot(results: dict[tuple[str, str], dict[str, object]], out: Path, kappa_free: float, kappa: float,
         L: int) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\nmatplotlib is not installed: numbers only (pip install matplotlib for the figure)")
        return
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), constrained_layout=True)
    colours = {"VE": "tab:blue", "VP": "tab:red"}
    labels = {"chi_2": r"$\chi_2 = V\kappa_2$", "chi_4": r"$\chi_4 = V^3\kappa_4$",
              "U": r"$U = -\kappa_4 / (3\kappa_2^2)$"}
    for row, (theory, title) in enumerate((("free", f"free field, kappa = {kappa_free}, exact score"),
                                           ("phi4", f"phi^4, kappa = {kappa}, lambda = {LAM}, trained NCSN++"))):
        for name in PROCESSES:
            r = results[theory, name]
            t = r["t"].numpy()
            rev, fwd = r["rev"], r["fwd"]
            for i, obs in enumerate(OBSERVABLES):
                ax = axes[row, i]
                ax.plot(t, fwd[0][i], "-", color=colours[name], lw=1.5, label=f"{name} exact forward")
                if fwd[1][i].any():
                    ax.fill_between(t, fwd[0][i] - fwd[1][i], fwd[0][i] + fwd[1][i], color=colours[name], alpha=0.2)
                if obs == "chi_2" and "from_prior" in r:
                    ax.plot(t, r["from_prior"], ":", color=colours[name], lw=1.2, label=f"{name} exact, from prior")
                ax.errorbar(t, rev[0][i], rev[1][i], fmt="o", ms=3.5, color=colours[name], capsize=2,
                            label=f"{name} reverse SDE")
                ax.set(xlabel="t", title=f"{title}: {labels[obs]}")
                ax.title.set_fontsize(8.5)
        axes[row, 0].set_yscale("log")
        axes[row, 1].set_yscale("symlog", linthresh=1.0 if row == 0 else 10.0)
        axes[row, 0].legend(fontsize=7)
    fig.suptitle(f"magnetisation cumulants along the reverse process, {L}x{L}: VE (sigma = 25) and VP "
                 f"(beta 0.1..20)", fontsize=10)
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
