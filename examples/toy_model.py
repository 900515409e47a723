"""The 0-dimensional toy model (seed Fig. 3): learned drift and effective action against the exact ones.

``S(phi) = mu^2 phi^2 / 2 + g phi^4 / 4!`` with g = 0.4, single well (mu^2 = +1) and double well
(mu^2 = -1) (docs/conventions.md, Actions). Under the VE SDE (sigma = 25, T = 1) the density at time t is the
target convolved with a Gaussian of width s(t):

    p_t(x) = int dy exp(-S(y)) N(x; y, s(t)^2) / Z,

so the exact score ``d log p_t / dx``, the exact drift of the reverse SDE ``g(t)^2 d log p_t / dx``
(g = sigma^t) and the exact effective action ``S_t(x) = -log p_t(x)`` follow by quadrature on a grid.

Why a small MLP and not NCSNpp: NCSNpp is a convolutional network for D >= 1 (the toy model has one site,
nothing to convolve). The learned score here is a 3-layer MLP of (x, log s(t)), parametrised like NCSNpp
(output / s(t)), trained by the same denoising score matching loss (``lgdiff._train.dsm.dsm_loss``) on
exact samples of exp(-S) (inverse-CDF sampling on the quadrature grid). It is then used by lgdiff's
reverse SDE sampler, and the generated <phi^2>, <phi^4> are compared with ``lgdiff._exact.toy_moments``.

    python examples/toy_model.py                  # writes toy_model.png if matplotlib is installed
    python examples/toy_model.py --out fig.png --steps 3000

The default run (3000 DSM steps of a width-64 MLP per well, 20000 reverse-SDE samples at 500 steps as in the
seed, quadrature on 8001 points) takes about a minute on one CPU core.

``--smoke`` takes the same path at tiny sizes (20 training steps, width 8, 200 samples, 20 SDE steps, 1601
quadrature points: seconds on one core) and writes its figure into a fresh temporary directory unless ``--out``
is given. Explicit sizes are capped at the smoke sizes (a documented command plus ``--smoke`` stays a smoke run):

    python examples/toy_model.py --smoke
"""

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from lgdiff._exact import toy_moments  # noqa: E402
from lgdiff._samplers.reverse import reverse_sde  # noqa: E402
from lgdiff._sde.ve import VESDE  # noqa: E402
from lgdiff._train.dsm import dsm_loss  # noqa: E402

from _smoke import HelpFormatter, parse_sized, wants_smoke  # noqa: E402  (examples/_smoke.py)

G = 0.4
TIMES = (0.05, 0.2, 0.4, 0.6, 1.0)


def toy_action(phi: Tensor, m2: float) -> Tensor:
    return m2 * phi**2 / 2 + G * phi**4 / 24


class MLPScore(nn.Module):
    """``s(x, t) = [mlp(x, log s(t)) - mlp(-x, log s(t))] / (2 s(t))`` for the one-site model (x: ``[B]``):
    odd in x, as the score of a Z2-symmetric theory is (the same choice as ``NCSNppConfig(z2_odd=True)``)."""

    def __init__(self, sde: VESDE, width: int = 64) -> None:
        super().__init__()
        self.sde = sde
        self.net = nn.Sequential(nn.Linear(2, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 1))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        std = self.sde.std(t)
        # the input is scaled to O(1) at every t (x_t has spread ~ s(t) at large t)
        u, log_std = x / torch.sqrt(1 + std**2), torch.log(std)
        odd = self.net(torch.stack([u, log_std], -1)) - self.net(torch.stack([-u, log_std], -1))
        return odd[..., 0] / (2 * std)


def exact_density(grid: Tensor, m2: float, sde: VESDE, t: float) -> tuple[Tensor, Tensor]:
    """``(-log p_t(x), d log p_t / dx)`` on ``grid`` by quadrature over the target on the same grid."""
    dy = grid[1] - grid[0]
    log_p0 = -toy_action(grid, m2)
    s = float(sde.std(torch.tensor(t, dtype=grid.dtype)))
    # log p_t(x) = logsumexp_y [log p0(y) - (x - y)^2 / (2 s^2)] + const
    diff = grid[:, None] - grid[None, :]
    logk = log_p0[None, :] - diff**2 / (2 * s * s)
    log_pt = torch.logsumexp(logk, dim=1) + math.log(dy) - 0.5 * math.log(2 * math.pi * s * s)
    w = torch.softmax(logk, dim=1)
    score = (w * (-diff / (s * s))).sum(1)  # E[(y - x) / s^2 | x]
    log_pt = log_pt - torch.logsumexp(log_pt, 0) - math.log(dy)
    return -log_pt, score


def exact_samples(n: int, m2: float, generator: torch.Generator) -> Tensor:
    """Inverse-CDF samples of exp(-S) on a fine grid (exact to the grid spacing, 1e-4)."""
    grid = torch.linspace(-12, 12, 240_001, dtype=torch.float64)
    p = torch.exp(-(toy_action(grid, m2) - toy_action(grid, m2).min()))
    cdf = torch.cumsum(p, 0)
    cdf = cdf / cdf[-1]
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return grid[torch.searchsorted(cdf, u).clamp(max=grid.numel() - 1)]


def train(m2: float, steps: int, seed: int, width: int = 64) -> tuple[MLPScore, float]:
    sde = VESDE()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = MLPScore(sde, width).double()
    data = exact_samples(100_000, m2, generator)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, data.numel(), (512,), generator=generator)
        loss = dsm_loss(model, sde, data[idx], generator=generator)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval().requires_grad_(False), time.perf_counter() - t0


def learned_action(model: MLPScore, grid: Tensor, t: float) -> tuple[Tensor, Tensor]:
    """``(S_eff, score)`` of the model on ``grid``: S_eff = -int score dx (trapezoid), normalised like the exact."""
    score = model(grid, torch.full_like(grid, t))
    dx = grid[1] - grid[0]
    log_q = torch.cat([grid.new_zeros(1), torch.cumsum((score[1:] + score[:-1]) / 2 * dx, 0)])
    log_q = log_q - torch.logsumexp(log_q, 0) - torch.log(dx)
    return -log_q, score


# --smoke: the same path at tiny sizes (explicit sizes are capped at these)
SMOKE = {"steps": 20, "width": 8, "samples": 200, "sde_steps": 20, "quad_points": 1601}



def main() -> None:
    smoke = wants_smoke(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--out", type=Path, help="the figure (default toy_model.png; --smoke: in a fresh "
                                                 "temporary directory)")
    parser.add_argument("--steps", type=int, default=3000, help="DSM training steps per model")
    parser.add_argument("--width", type=int, default=64, help="hidden width of the MLP score")
    parser.add_argument("--samples", type=int, default=20_000, help="reverse-SDE samples for the moments")
    parser.add_argument("--sde-steps", type=int, default=500, help="reverse-SDE steps for the moments (the seed: 500)")
    parser.add_argument("--quad-points", type=int, default=8001,
                        help="quadrature points on [-40, 40] for the exact p_t (memory grows as their square)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training and sampling generators")
    args = parse_sized(parser, SMOKE, smoke=smoke)
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="lgdiff-smoke-")) / "toy_model.png" if smoke else Path("toy_model.png")
    torch.set_num_threads(1)
    sde = VESDE()
    grid = torch.linspace(-6, 6, 601, dtype=torch.float64)
    # the quadrature needs the diffused tails
    wide = torch.linspace(-40, 40, args.quad_points, dtype=torch.float64)
    results = {}
    for label, m2 in (("single well", 1.0), ("double well", -1.0)):
        model, seconds = train(m2, args.steps, args.seed, args.width)
        curves = []
        print(f"\n{label} (mu^2 = {m2:+.0f}, g = {G}): MLP trained {args.steps} steps in {seconds:.1f} s")
        print(f"{'t':>5} {'s(t)':>7} {'max|drift err|/max|drift|':>26} {'max|S_eff err| (|phi|<4)':>26}")
        for t in TIMES:
            s_exact_w, score_exact_w = exact_density(wide, m2, sde, t)
            s_exact = torch.from_numpy(np.interp(grid.numpy(), wide.numpy(), s_exact_w.numpy()))
            score_exact = torch.from_numpy(np.interp(grid.numpy(), wide.numpy(), score_exact_w.numpy()))
            s_learn, score_learn = learned_action(model, grid, t)
            g2 = float(sde.diffusion(torch.tensor(t))) ** 2
            drift_exact, drift_learn = g2 * score_exact, g2 * score_learn
            inside = grid.abs() < 4
            # effective actions are defined up to a constant: align them at their minima over |phi| < 4
            s_e = s_exact - s_exact[inside].min()
            s_l = s_learn - s_learn[inside].min()
            d_err = float((drift_learn - drift_exact)[inside].abs().max() / drift_exact[inside].abs().max())
            a_err = float((s_l - s_e)[inside].abs().max())
            print(f"{t:5.2f} {float(sde.std(torch.tensor(t))):7.3f} {d_err:26.3f} {a_err:26.3f}")
            curves.append((t, drift_exact, drift_learn, s_e, s_l))
        generator = torch.Generator().manual_seed(args.seed + 1)
        x_T = sde.prior_sample((args.samples,), generator=generator, dtype=torch.float64)
        x0 = reverse_sde(model, sde, x_T, steps=args.sde_steps, generator=generator, t_min=0.0)
        m2_exact, m4_exact = toy_moments(m2, G)
        n = x0.numel()
        for k, exact in ((2, m2_exact), (4, m4_exact)):
            xk = x0**k
            mean, err = float(xk.mean()), float(xk.std() / math.sqrt(n))
            print(f"  reverse SDE ({args.sde_steps} steps, {n} samples): <phi^{k}> = {mean:.4f} +- {err:.4f}   exact {exact:.4f}   "
                  f"({(mean - exact) / err:+.1f} sigma)")
        results[label] = curves
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\nmatplotlib is not installed: numbers only (pip install matplotlib for the figure)")
        return
    fig, axes = plt.subplots(2, 2, figsize=(10, 8), constrained_layout=True)
    for col, (label, curves) in enumerate(results.items()):
        for t, drift_exact, drift_learn, s_e, s_l in curves:
            (line,) = axes[0, col].plot(grid, drift_exact, lw=1.5, label=f"t = {t}")
            axes[0, col].plot(grid, drift_learn, "--", color=line.get_color(), lw=1.5)
            axes[1, col].plot(grid, s_e, lw=1.5, color=line.get_color(), label=f"t = {t}")
            axes[1, col].plot(grid, s_l, "--", color=line.get_color(), lw=1.5)
        axes[0, col].set(title=f"{label}: drift g(t)^2 d log p_t/d phi (solid exact, dashed learned)",
                         xlabel="phi", ylabel="drift", yscale="symlog")
        axes[1, col].set(title=f"{label}: effective action -log p_t (solid exact, dashed learned)",
                         xlabel="phi", ylabel="S_t(phi) - min", ylim=(-0.5, 8))
        axes[0, col].legend(fontsize=8)
        axes[1, col].legend(fontsize=8)
    for ax in axes.flat:
        ax.title.set_fontsize(9)
    fig.savefig(args.out, dpi=120)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
