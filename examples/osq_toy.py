r"""Optimal stochastic quantisation (OSQ) of the seed talk's one-site (0+0 dimension) models, against quadrature.

The two potentials of the talk: the double well ``S = (phi^2 - 1)^2`` (``ToyAction(m2=-4, g=24)``, equal up to a
constant) and the cosine ``S = phi^2 / 2 - cos(5 phi)`` (``CosineAction(k=5)``). For each, a residual drift
``v_theta`` (`lgdiff._models.osq.OSQDrift` with a one-site MLP body) is trained without data by
`lgdiff._train.osq.train_osq` on the exact objective (``E_Q[-log w]``, optimum ``exp(-S)``) and on the talk's plain
objective (``E[sum h v^2 / (2 g^2) + S(phi_N)]``, optimum ``p_ref,N exp(-S)``), along ``T = 1``, 50 Euler-Maruyama
steps, ``g = sqrt(2)``, prior ``N(0, 1)`` (`lgdiff._samplers.osq`, module docstring).

**Quadrature** (no sampling noise, exact for the discrete chain up to the grid): the marginals of the discrete
process are propagated on a fine grid with its Gaussian kernels, ``q_{k+1}(y) = int F_k(y | x) q_k(x) dx`` from the
prior. From them: ``KL(q_N || exp(-S) / Z)`` of every drift, and the Fisher information ``c(t_k) = E_{q_k}[(d ln
q_k / d phi)^2]`` along the path (one site, N = 1). The optimal drifts, by quadrature too:

- plain objective: the Doob drift ``v*_k = g^2 d/dphi log h_k``, ``h_N = exp(-S)``, ``h_k(x) = int R_k(y | x)
  h_{k+1}(y) dy`` through the uncontrolled (``v = 0``) kernels: the discrete-time version of the talk's ``h_t(phi)
  = E_ref[exp(-S(phi_T)) | phi_t = phi]``. (The mean displacement of the optimal discrete kernel ``R_k h_{k+1} /
  h_k`` is that times ``1 / (1 - h S'')``, the same to first order in ``h``; it is drawn dotted.) Its marginals are
  ``p_ref,k h_k``, ending in ``p_ref,N exp(-S)``, against which the plain-trained sampler is measured.
- exact objective: the forward conditional of the extended target Gamma, ``Gamma_N = exp(-S) / Z`` propagated
  backwards through the annealed kernels ``B_k``; the optimal forward drift is its mean,
  ``(E_Gamma[phi_{k+1} | phi_k] - phi_k) / h + dS/dphi``.

**Exactness with a poor drift**: a drift trained for only 5 optimiser steps drives `OSQPathIMH` chains
(independent chains: errors from the spread of the per-chain means) and self-normalised importance sampling of
fresh paths (with the Kish ESS); ``<phi^2>``, ``<phi^4>``, ``P(phi > 0)`` against quadrature. **Gradients**: the
exact objective trained with ``gradient="path"`` (backpropagation through the path) and ``"log-variance"`` (no
backpropagation through the path) for the same CPU-time budget: ``KL(q_N || exp(-S))`` against CPU seconds.

    python examples/osq_toy.py                   # writes osq_toy.png if matplotlib is installed
    python examples/osq_toy.py --out fig.png --steps 500 --budget 20

The default run (per potential: 500 Adam steps of batch 256 for each objective, twice 20 CPU seconds for the
gradient comparison, 400 x 100 exact chains, 10^5 importance-sampled paths, 10^4 raw samples, quadrature on 1400
points) took about 500 CPU seconds for both potentials on one core (docs/osq.md has its numbers).

``--smoke`` takes the same path at tiny sizes (seconds on one core) and writes its figure into a fresh temporary
directory unless ``--out`` is given. Explicit sizes are capped at the smoke sizes:

    python examples/osq_toy.py --smoke
"""

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from lgdiff import CosineAction, Field, Lattice, ToyAction  # noqa: E402
from lgdiff._actions.base import AbstractScalarAction  # noqa: E402
from lgdiff._models.files import load_osq  # noqa: E402
from lgdiff._models.mlp import MLPConfig  # noqa: E402
from lgdiff._samplers.maala import sample_chain  # noqa: E402
from lgdiff._samplers.osq import Drift, OSQPathIMH, OSQProcess, osq_path, zero_drift  # noqa: E402
from lgdiff._stats import effective_sample_size, reweighted_mean  # noqa: E402
from lgdiff._train.osq import OSQTrainConfig, train_osq  # noqa: E402

from _smoke import HelpFormatter, parse_sized, wants_smoke  # noqa: E402  (examples/_smoke.py)

POTENTIALS: dict[str, AbstractScalarAction] = {"double well": ToyAction(m2=-4.0, g=24.0),
                                               "cosine": CosineAction(k=5.0)}
OBSERVABLES: dict[str, Callable[[Tensor], Tensor]] = {
    "phi^2": lambda x: x**2, "phi^4": lambda x: x**4, "P(phi>0)": lambda x: (x > 0).to(x.dtype)}
PROCESS = OSQProcess(T=1.0, steps=50)
ARCH = MLPConfig(width=32, depth=3, z2_odd=True)  # both potentials are even: an odd drift
EMA = 0.95
PLOT_TIMES = (0.0, 0.5, 0.9)
UNDER_TRAINED_STEPS = 5


def _site(x: Tensor) -> Field:
    return Field(x, Lattice(shape=()))


# ------------------------------------------------------------------------------------------------------- quadrature


class Quadrature:
    """The discrete OSQ process on a grid of ``points`` on ``[-half_width, half_width]`` (module docstring)."""

    def __init__(self, action: AbstractScalarAction, process: OSQProcess, points: int, half_width: float) -> None:
        self.action, self.process = action, process
        self.x = torch.linspace(-half_width, half_width, points, dtype=torch.float64)
        self.dx = float(self.x[1] - self.x[0])
        self.S = action(_site(self.x))
        self.force = action.gradient(_site(self.x)).data
        self.log_target = self.normalise(-self.S)
        self.var = process.g**2 * process.h  # the variance of every kernel

    def normalise(self, log_q: Tensor) -> Tensor:
        return log_q - torch.logsumexp(log_q, 0) - math.log(self.dx)

    def expect(self, log_q: Tensor, f: Callable[[Tensor], Tensor]) -> float:
        return float((torch.exp(log_q) * f(self.x)).sum() * self.dx)

    def _log_gauss(self, y: Tensor, mean: Tensor) -> Tensor:
        return -(y - mean) ** 2 / (2 * self.var) - 0.5 * math.log(2 * math.pi * self.var)

    def drift(self, drift: Drift, k: int) -> Tensor:
        """``v(x, t_k)`` on the grid."""
        with torch.no_grad():
            return drift(self.x, torch.full_like(self.x, k * self.process.h), self.force)

    def forward(self, drift: Drift) -> list[Tensor]:
        """``log q_k`` for ``k = 0 .. N``: the prior pushed through the kernels ``F_k`` of ``drift`` (mass that
        the kernels move off the grid is lost: `mass` reports what is left)."""
        p = self.process
        log_q = [-self.x**2 / (2 * p.prior_std**2) - 0.5 * math.log(2 * math.pi * p.prior_std**2)]
        for k in range(p.steps):
            mean = self.x + p.h * (self.drift(drift, k) - self.force)  # [x]
            log_kernel = self._log_gauss(self.x[:, None], mean[None, :])  # [y, x]
            log_q.append(torch.logsumexp(log_kernel + log_q[-1][None, :], 1) + math.log(self.dx))
        return log_q

    def mass(self, log_q: Tensor) -> float:
        return float(torch.exp(log_q).sum() * self.dx)

    def doob(self) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """The plain objective's optimum: ``log h_k``, the talk's drift ``g^2 d log h_k / dphi`` and the mean
        displacement drift of the optimal kernel ``R_k h_{k+1} / h_k``, for ``k = 0 .. N - 1`` (``h`` first also
        at ``N``)."""
        p = self.process
        log_h = [-self.S]
        talk, mean_drift = [], []
        mean = self.x - p.h * self.force  # R_k(y | x): v = 0
        log_kernel = self._log_gauss(self.x[None, :], mean[:, None])  # [x, y]
        for _ in range(p.steps):
            joint = log_kernel + log_h[0][None, :]
            log_h.insert(0, torch.logsumexp(joint, 1) + math.log(self.dx))
            mean_drift.insert(0, (torch.softmax(joint, 1) @ self.x - self.x) / p.h + self.force)
            talk.insert(0, p.g**2 * torch.gradient(log_h[0], spacing=self.dx)[0])
        return log_h, talk, mean_drift

    def gamma(self) -> tuple[list[Tensor], list[Tensor]]:
        """The exact objective's optimum: the marginals ``log Gamma_k`` (``k = 0 .. N``) of the extended target and
        the mean drift of its forward conditional (``k = 0 .. N - 1``)."""
        p = self.process
        log_gamma = [self.log_target]
        opt = []
        for k in reversed(range(p.steps)):
            resid = p.back_residual(self.x[:, None], self.x[None, :], self.force[None, :], k)  # [x_k, y = x_{k+1}]
            joint = -resid**2 / (2 * self.var) - 0.5 * math.log(2 * math.pi * self.var) + log_gamma[0][None, :]
            log_gamma.insert(0, torch.logsumexp(joint, 1) + math.log(self.dx))
            opt.insert(0, (torch.softmax(joint, 1) @ self.x - self.x) / p.h + self.force)
        return log_gamma, opt

    def path_kl(self, drift: Drift, log_gamma: list[Tensor]) -> float:
        """``KL(Q || Gamma)`` of the whole discrete path, the exact objective's ``E_Q[-log w] + log Z``, by the chain
        rule: ``KL(q_0 || Gamma_0) + sum_k E_{q_k(x)} KL(F_k(. | x) || Gamma(phi_{k+1} = . | phi_k = x))``."""
        p = self.process
        log_q = self.forward(drift)
        total = self.kl(log_q[0], log_gamma[0])
        for k in range(p.steps):
            mean = self.x + p.h * (self.drift(drift, k) - self.force)
            log_f = self._log_gauss(self.x[:, None], mean[None, :])  # [y, x]
            resid = p.back_residual(self.x[None, :], self.x[:, None], self.force[:, None], k)
            log_g = (-resid**2 / (2 * self.var) - 0.5 * math.log(2 * math.pi * self.var)
                     + log_gamma[k + 1][:, None] - log_gamma[k][None, :])
            f = torch.exp(log_f)
            inner = torch.where(f > 0, f * (log_f - log_g), 0.0).sum(0) * self.dx  # [x]
            total += float((torch.exp(log_q[k]) * inner).sum() * self.dx)
        return total

    def log_z(self) -> float:
        return float(torch.logsumexp(-self.S, 0)) + math.log(self.dx)

    def kl(self, log_q: Tensor, log_p: Tensor) -> float:
        """``KL(q || p)`` of two grid densities (``q`` normalised on the grid first)."""
        log_q = self.normalise(log_q)
        q = torch.exp(log_q)
        keep = q > 0
        return float((q[keep] * (log_q[keep] - log_p[keep])).sum() * self.dx)

    def fisher(self, log_q: Tensor) -> float:
        """``E_q[(d ln q / dphi)^2]`` (central differences, where ``q`` does not underflow)."""
        log_q = self.normalise(log_q)
        keep = log_q > -600
        score = torch.gradient(torch.where(keep, log_q, -600.0), spacing=self.dx)[0]
        return float((torch.exp(log_q) * score**2)[keep].sum() * self.dx)

    def histogram_chi2(self, log_q: Tensor, samples: Tensor, bins: int) -> tuple[float, int]:
        """``chi^2`` and degrees of freedom of the samples' histogram against the grid density ``q`` (bins with at
        least 5 expected counts, on the central 99.8 % of ``q``)."""
        q = torch.exp(self.normalise(log_q)).numpy()
        cdf = np.concatenate([[0.0], np.cumsum((q[1:] + q[:-1]) / 2) * self.dx])
        cdf /= cdf[-1]
        lo, hi = np.interp([0.001, 0.999], cdf, self.x.numpy())
        edges = np.linspace(lo, hi, bins + 1)
        expected = np.diff(np.interp(edges, self.x.numpy(), cdf)) * samples.numel()
        observed = np.histogram(samples.numpy(), edges)[0]
        keep = expected >= 5
        return float(((observed - expected)[keep] ** 2 / expected[keep]).sum()), int(keep.sum()) - 1


# ----------------------------------------------------------------------------------------------------- training


def train(action: AbstractScalarAction, out: Path, *, objective: str, gradient: str, steps: int, batch: int,
          lr: float, seed: int, checkpoint_every: int | None = None,
          progress: Callable[[int, float], None] | None = None) -> tuple[Drift, float]:
    """Train an OSQ drift into ``out`` and return it (EMA weights) with the CPU seconds of the training."""
    config = OSQTrainConfig(steps=steps, batch_size=batch, lr=lr, ema=EMA, seed=seed, objective=objective,
                            gradient=gradient, checkpoint_every=checkpoint_every or steps)
    t0 = time.process_time()
    train_osq(action, (), out, config=config, arch=ARCH, process=PROCESS, dtype=torch.float64, progress=progress,
              provenance={"theory": type(action).__name__, "command": " ".join(sys.argv)})
    return load_osq(out).drift, time.process_time() - t0


class _Budget(Exception):
    """The CPU budget of a training run is spent."""


def budget_curve(action: AbstractScalarAction, quad: Quadrature, log_gamma: list[Tensor], out: Path, *,
                 gradient: str, budget: float, every: int, batch: int, lr: float,
                 seed: int) -> list[tuple[int, float, float, float]]:
    """Train on the exact objective with ``gradient`` until ``budget`` CPU seconds are spent (the quadrature
    evaluations do not count); ``(step, CPU seconds, KL(Q || Gamma), KL(q_N || exp(-S)))`` at every checkpoint."""
    curve: list[tuple[int, float, float, float]] = []
    clock = {"start": time.process_time(), "eval": 0.0}
    pending: list[tuple[int, float]] = []

    def spent() -> float:
        return time.process_time() - clock["start"] - clock["eval"]

    def progress(step: int, loss: float) -> None:
        if pending:  # the model file now holds the checkpoint of the pending step
            e0 = time.process_time()
            done, cpu = pending.pop()
            drift = load_osq(out).drift
            curve.append((done, cpu, quad.path_kl(drift, log_gamma),
                          quad.kl(quad.forward(drift)[-1], quad.log_target)))
            clock["eval"] += time.process_time() - e0
            if cpu > budget:
                raise _Budget
        if step % every == 0:
            pending.append((step, spent()))

    try:
        train(action, out, objective="exact", gradient=gradient, steps=10**7, batch=batch, lr=lr, seed=seed,
              checkpoint_every=every, progress=progress)
    except _Budget:
        pass
    return curve


# ------------------------------------------------------------------------------------------------------ sampling


def raw_paths(drift: Drift, action: AbstractScalarAction, n: int, seed: int) -> Tensor:
    """``log_w`` and the ends of ``n`` fresh paths (no gradients)."""
    g = torch.Generator().manual_seed(seed)
    x0 = PROCESS.prior((n,), dtype=torch.float64, device="cpu", generator=g)
    with torch.no_grad():
        path = osq_path(drift, action, PROCESS, x0, generator=g)
    return torch.stack([path.final, path.log_w])


def exact_chains(drift: Drift, action: AbstractScalarAction, chains: int, records: int, therm: int,
                 seed: int) -> tuple[dict[str, tuple[float, float]], float]:
    """``OSQPathIMH`` chains: ``(mean, error)`` of every observable from the spread of the per-chain means
    (the chains are independent) and the acceptance."""
    kernel = OSQPathIMH(drift=drift, process=PROCESS, action=action)
    g = torch.Generator().manual_seed(seed)
    result = sample_chain(kernel, Field.zeros(Lattice(shape=()), batch=chains), n=records, generator=g, therm=therm)
    out = {}
    for name, f in OBSERVABLES.items():
        per_chain = f(result.samples).mean(0)
        out[name] = (float(per_chain.mean()), float(per_chain.std() / math.sqrt(chains)))
    return out, float(result.acceptance.mean())


# --------------------------------------------------------------------------------------------------------- main

# --smoke: the same path at tiny sizes (explicit sizes are capped at these); raw samples are cheap, and the
# histogram check against the quadrature needs many (20000: a 20 % error in the force of its kernels shows)
SMOKE = {"steps": 4, "batch": 16, "budget": 0.3, "curve_every": 4, "chains": 200, "records": 20, "therm": 5,
         "snis": 2000, "samples": 20000, "grid_points": 400}



def fmt(mean: float, err: float, exact: float) -> str:
    return f"{mean:.4f} +- {err:.4f}   exact {exact:.4f}   ({(mean - exact) / err:+.1f} sigma)"


def run_potential(label: str, action: AbstractScalarAction, args: argparse.Namespace, work: Path) -> dict:
    slug = label.replace(" ", "_")
    quad = Quadrature(action, PROCESS, args.grid_points, 6.0)
    exact = {name: quad.expect(quad.log_target, f) for name, f in OBSERVABLES.items()}
    print(f"\n=== {label}: S = {action!r}; T = {PROCESS.T}, {PROCESS.steps} steps, g = {PROCESS.g:.4f} ===")
    print("quadrature of exp(-S): " + ", ".join(f"<{n}> = {v:.4f}" for n, v in exact.items()))

    drifts: dict[str, Drift] = {"v = 0": zero_drift}
    for objective in ("exact", "plain"):
        drift, cpu = train(action, work / f"{slug}_{objective}.safetensors", objective=objective, gradient="path",
                           steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed)
        drifts[objective] = drift
        print(f"trained ({objective} objective, path gradient): {args.steps} steps of batch {args.batch} "
              f"in {cpu:.1f} CPU s")
    drifts["under-trained"], _ = train(action, work / f"{slug}_under.safetensors", objective="exact",
                                       gradient="path", steps=UNDER_TRAINED_STEPS, batch=args.batch, lr=args.lr,
                                       seed=args.seed)

    # quadrature of every drift's discrete process, and of the optima
    marginals = {name: quad.forward(d) for name, d in drifts.items()}
    log_h, doob_talk, doob_mean = quad.doob()
    log_gamma, gamma_drift = quad.gamma()
    p_ref = marginals["v = 0"]
    plain_optimum = [quad.normalise(lq + lh) for lq, lh in zip(p_ref, log_h)]
    plain_target = plain_optimum[-1]  # p_ref,N exp(-S) / Z'
    print(f"quadrature ({args.grid_points} points on [-6, 6]): mass left on the grid at t = T: "
          + ", ".join(f"{n} {quad.mass(m[-1]):.6f}" for n, m in marginals.items()))
    print("KL(Q || Gamma) of the path (the exact objective + log Z) by quadrature: "
          + ", ".join(f"{n} {quad.path_kl(d, log_gamma):.4f}" for n, d in drifts.items()))
    print(f"KL(q_N || exp(-S)/Z) by quadrature: "
          + ", ".join(f"{n} {quad.kl(m[-1], quad.log_target):.4f}" for n, m in marginals.items()))
    print(f"plain objective: KL(p_ref,N exp(-S)/Z' || exp(-S)/Z) = {quad.kl(plain_target, quad.log_target):.4f} "
          f"(its optimum's bias); plain-trained KL(q_N || p_ref,N exp(-S)/Z') = "
          f"{quad.kl(marginals['plain'][-1], plain_target):.4f}")
    for name, f in OBSERVABLES.items():
        print(f"  <{name}>: exp(-S) {exact[name]:.4f}, p_ref,N exp(-S) {quad.expect(plain_target, f):.4f}, "
              f"exact-trained q_N {quad.expect(quad.normalise(marginals['exact'][-1]), f):.4f}, "
              f"plain-trained q_N {quad.expect(quad.normalise(marginals['plain'][-1]), f):.4f}")

    # learned drift against the optimal one, weighted by the optimum's marginal
    ks = [round(t / PROCESS.h) for t in PLOT_TIMES]
    print("learned v vs optimal v: rms of the difference / rms of the optimum (weighted by the optimal marginal):")
    for name, optimum, marg in (("exact", gamma_drift, log_gamma), ("plain", doob_talk, plain_optimum)):
        parts = []
        for k in ks:
            w = torch.exp(quad.normalise(marg[k]))
            diff = quad.drift(drifts[name], k) - optimum[k]
            rms = [math.sqrt(float((w * d**2).sum() * quad.dx)) for d in (diff, optimum[k])]
            parts.append(f"t = {k * PROCESS.h:.1f}: {rms[0]:.3f}/{rms[1]:.3f}")
        print(f"  {name}-trained: " + ", ".join(parts))
    inside = torch.exp(plain_optimum[ks[1]]) > 1e-3
    gap = max(float(((a - b)[inside]).abs().max() / b[inside].abs().max())
              for a, b in ((doob_talk[k], doob_mean[k]) for k in ks))
    print(f"  (talk's g^2 d log h_k vs the optimal kernel's mean drift: max relative difference {gap:.3f})")

    # the Fisher information along the path
    fisher = {name: [quad.fisher(lq) for lq in m] for name, m in marginals.items() if name != "under-trained"}
    fisher["Gamma (exact optimum)"] = [quad.fisher(lq) for lq in log_gamma]
    fisher["P_ref exp(-S) (plain optimum)"] = [quad.fisher(lq) for lq in plain_optimum]
    print("Fisher information c(t_k) = E_q[(d ln q_k/dphi)^2] at t = 0, 0.25, 0.5, 0.75, 1 (monotone in t?):")
    for name, c in fisher.items():
        steps = np.diff(c)
        mono = "increasing" if (steps >= 0).all() else "decreasing" if (steps <= 0).all() else "not monotone"
        print(f"  {name:30s} " + " ".join(f"{c[round(f * PROCESS.steps)]:8.3f}" for f in (0, .25, .5, .75, 1))
              + f"   {mono}")

    # raw samples of the trained drifts
    raw = {name: raw_paths(drifts[name], action, args.samples, args.seed + 1)[0] for name in ("exact", "plain")}
    for name, x in raw.items():
        chi2, dof = quad.histogram_chi2(marginals[name][-1], x, 40)
        print(f"raw {name}-trained sampler, {x.numel()} samples: histogram vs quadrature q_N: chi^2/dof = "
              f"{chi2:.1f}/{dof}")

    # exactness with a deliberately under-trained drift: IMH chains and SNIS
    for name in ("under-trained", "exact"):
        moments, acc = exact_chains(drifts[name], action, args.chains, args.records, args.therm, args.seed + 2)
        steps_done = UNDER_TRAINED_STEPS if name == "under-trained" else args.steps
        print(f"OSQPathIMH, {name} drift ({steps_done} steps), {args.chains} chains x {args.records} records "
              f"(therm {args.therm}): acceptance {acc:.3f}")
        for obs, (mean, err) in moments.items():
            print(f"  <{obs}> = {fmt(mean, err, exact[obs])}")
        x, log_w = raw_paths(drifts[name], action, args.snis, args.seed + 3)
        ess = effective_sample_size(log_w)
        kl_mc, kl_err = float(-log_w.mean()) + quad.log_z(), float(log_w.std() / math.sqrt(args.snis))
        print(f"SNIS, {name} drift, {args.snis} paths: ESS {ess:.0f} ({ess / args.snis:.3f} of the draws); "
              f"KL(Q || Gamma) = E[-log w] + log Z = {kl_mc:.4f} +- {kl_err:.4f} (quadrature "
              f"{quad.path_kl(drifts[name], log_gamma):.4f})")
        for obs, f in OBSERVABLES.items():
            est = reweighted_mean(f(x), log_w)
            print(f"  <{obs}> = {fmt(est.mean, est.error, exact[obs])}")

    # path vs log-variance gradient at the same CPU budget
    curves = {}
    for gradient in ("path", "log-variance"):
        curves[gradient] = budget_curve(action, quad, log_gamma, work / f"{slug}_budget_{gradient}.safetensors",
                                        gradient=gradient, budget=args.budget, every=args.curve_every, batch=args.batch,
                                        lr=args.lr, seed=args.seed)
        step, cpu, kl_path, kl = curves[gradient][-1]
        print(f"gradient {gradient:12s}: {step:5d} steps in {cpu:6.1f} CPU s (budget {args.budget:g}): "
              f"KL(Q || Gamma) = {kl_path:.4f}, KL(q_N || exp(-S)) = {kl:.4f}; KL(Q || Gamma) along the run "
              f"(CPU s: KL) " + " ".join(f"{c:.1f}:{v:.3f}" for _, c, v, _ in curves[gradient]))
    return {"quad": quad, "drifts": drifts, "raw": raw, "gamma_drift": gamma_drift, "doob_talk": doob_talk,
            "doob_mean": doob_mean, "fisher": fisher, "plain_target": plain_target, "ks": ks,
            "log_gamma": log_gamma, "plain_optimum": plain_optimum, "curves": curves}


def figure(results: dict[str, dict], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\nmatplotlib is not installed: numbers only (pip install matplotlib for the figure)")
        return
    fig, axes = plt.subplots(len(results), 5, figsize=(22, 4.4 * len(results)), constrained_layout=True)
    for row, (label, r) in zip(axes, results.items()):
        quad = r["quad"]
        x = quad.x.numpy()
        ax = row[0]
        ax.hist(r["raw"]["exact"].numpy(), bins=120, range=(-3, 3), density=True, alpha=0.6, color="C0",
                label=f"{r['raw']['exact'].numel()} raw samples, exact objective")
        ax.hist(r["raw"]["plain"].numpy(), bins=120, range=(-3, 3), density=True, histtype="step", color="C1",
                label="raw samples, plain objective")
        ax.plot(x, torch.exp(quad.log_target).numpy(), "r", lw=1.5, label="exp(-S) / Z")
        ax.plot(x, torch.exp(r["plain_target"]).numpy(), "--", color="C1", lw=1.2,
                label="p_ref,N exp(-S) / Z' (plain optimum)")
        ax.set(title=f"{label}: terminal marginal", xlabel="phi", xlim=(-3, 3))
        for ax, name, optimum, extra, title in (
                (row[1], "exact", r["gamma_drift"], None, "exact objective: learned v (dashed),\nGamma's mean drift (solid)"),
                (row[2], "plain", r["doob_talk"], r["doob_mean"], "plain objective: learned v (dashed),\nDoob g^2 dlog h_k (solid), kernel mean (dotted)")):
            for k in r["ks"]:
                marg = r["log_gamma"][k] if name == "exact" else r["plain_optimum"][k]
                inside = (torch.exp(quad.normalise(marg)) > 1e-3).numpy()
                (line,) = ax.plot(x[inside], optimum[k].numpy()[inside], lw=1.5, label=f"t = {k * PROCESS.h:.1f}")
                ax.plot(x[inside], quad.drift(r["drifts"][name], k).numpy()[inside], "--", color=line.get_color())
                if extra is not None:
                    ax.plot(x[inside], extra[k].numpy()[inside], ":", color=line.get_color())
            ax.set(title=title, xlabel="phi", ylabel="v(phi, t)")
        ax = row[3]
        t = np.arange(PROCESS.steps + 1) * PROCESS.h
        for name, c in r["fisher"].items():
            ax.plot(t, c, label=name)
        ax.set(title="Fisher information\nc(t) = E_q[(d ln q_t / dphi)^2]", xlabel="t", yscale="log")
        ax = row[4]
        for gradient, curve in r["curves"].items():
            ax.plot([c for _, c, _, _ in curve], [k for _, _, k, _ in curve], "o-", ms=3,
                    label=f"gradient={gradient}: KL(Q || Gamma)")
            ax.plot([c for _, c, _, _ in curve], [k for _, _, _, k in curve], "s:", ms=3,
                    label=f"gradient={gradient}: KL(q_N || exp(-S))")
        ax.set(title="exact objective:\nKL vs training CPU seconds", xlabel="CPU seconds", yscale="log")
        for ax in row:
            ax.legend(fontsize=7)
            ax.title.set_fontsize(9)
    fig.savefig(out, dpi=72)
    print(f"\nwrote {out}")


def main() -> None:
    smoke = wants_smoke(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--out", type=Path, help="the figure (default osq_toy.png; --smoke: in a fresh temporary "
                                                 "directory)")
    parser.add_argument("--steps", type=int, default=500, help="Adam steps of each trained drift")
    parser.add_argument("--batch", type=int, default=256, help="paths per optimiser step")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    parser.add_argument("--budget", type=float, default=20.0,
                        help="CPU seconds per gradient in the path vs log-variance comparison")
    parser.add_argument("--curve-every", type=int, default=25,
                        help="optimiser steps between the KL evaluations of the gradient comparison")
    parser.add_argument("--chains", type=int, default=400, help="independent OSQPathIMH chains")
    parser.add_argument("--records", type=int, default=100, help="records per chain")
    parser.add_argument("--therm", type=int, default=20, help="IMH steps discarded per chain")
    parser.add_argument("--snis", type=int, default=100_000, help="fresh paths for importance sampling")
    parser.add_argument("--samples", type=int, default=10_000, help="raw samples for the histograms")
    parser.add_argument("--grid-points", type=int, default=1400,
                        help="quadrature points on [-6, 6] (an even number: 0 is not a grid point)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training and sampling generators")
    args = parse_sized(parser, SMOKE, smoke=smoke)
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="lgdiff-smoke-")) / "osq_toy.png" if smoke else Path("osq_toy.png")
    torch.set_num_threads(1)
    t0 = time.process_time()
    with tempfile.TemporaryDirectory(prefix="lgdiff-osq-") as work:
        results = {label: run_potential(label, action, args, Path(work)) for label, action in POTENTIALS.items()}
    print(f"\ntotal {time.process_time() - t0:.0f} CPU s")
    figure(results, args.out)


if __name__ == "__main__":
    main()
