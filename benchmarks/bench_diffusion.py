"""Diffusion-model sampling and likelihood cost for 2D phi^4 (issue #8's benchmark).

In one run, with one network (the shipped kappa = 0.21 model's NCSN++, or a freshly initialised network of
the same architecture: speed does not depend on the weights):

1. generated configurations per second by the reverse SDE (Euler-Maruyama, ``--steps`` = 500 steps):
   lgdiff's ``reverse_sde`` on a batch of ``--batch`` chains, against a straightforward single-chain
   implementation in the style of the seed's notebook code (one configuration at a time, batch of 1, the
   time and noise schedules recomputed per step with numpy, as in the score-SDE tutorial the seed's
   notebook follows), checked to produce the same distribution of M first;
2. PF-ODE log-likelihood cost per configuration (``log_likelihood``, Heun, trapezoidal divergence) with the
   exact divergence (V Jacobian-vector products per evaluation) and with one Skilling-Hutchinson probe,
   measured on ``--ode-steps`` steps and scaled to ``--likelihood-steps``.

    OMP_NUM_THREADS=1 python benchmarks/bench_diffusion.py                    # L = 32, batch 32, ~5 min idle
    OMP_NUM_THREADS=1 python benchmarks/bench_diffusion.py --quick            # smoke run (~30 s)
    python benchmarks/bench_diffusion.py --device cuda --batch 512

CPU seconds are process CPU time (all threads); on a shared machine they are the fairer measure, wall
seconds are printed beside them.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _phi4 import MODELS, CpuTimer  # noqa: E402

from lgdiff._models.ncsnpp import NCSNpp, NCSNppConfig  # noqa: E402
from lgdiff._samplers.reverse import log_likelihood, reverse_sde  # noqa: E402
from lgdiff._sde.ve import VESDE  # noqa: E402


def notebook_sampler(score_model: torch.nn.Module, L: int, num_steps: int, sigma: float, device: str,
                     eps: float = 1e-3) -> torch.Tensor:
    """One configuration, the way the seed's notebook (after Song's score-SDE tutorial) does it: batch of 1,
    ``marginal_prob_std``/``diffusion_coeff`` through numpy-style scalar code, a fresh tensor per step."""

    def marginal_prob_std(t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((sigma ** (2 * t) - 1.0) / 2.0 / np.log(sigma))

    def diffusion_coeff(t: torch.Tensor) -> torch.Tensor:
        return torch.tensor(sigma**t.cpu().numpy(), device=device)

    t = torch.ones(1, device=device)
    x = torch.randn(1, L, L, device=device) * marginal_prob_std(t)[:, None, None]
    time_steps = torch.linspace(1.0, eps, num_steps, device=device)
    step_size = time_steps[0] - time_steps[1]
    with torch.no_grad():
        for time_step in time_steps:
            batch_time_step = torch.ones(1, device=device) * time_step
            g = diffusion_coeff(batch_time_step).float()
            mean_x = x + (g**2)[:, None, None] * score_model(x, batch_time_step) * step_size
            x = mean_x + torch.sqrt(step_size) * g[:, None, None] * torch.randn_like(x)
    return mean_x


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=MODELS / "phi4_k0.21_L32.safetensors")
    p.add_argument("--L", type=int, default=32)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--n-single", type=int, default=2, help="configurations for the single-chain baseline")
    p.add_argument("--exact-L", type=int, nargs="*", default=[8, 16, 32], help="lattices for the exact divergence")
    p.add_argument("--ode-steps", type=int, default=1, help="ODE steps actually timed per likelihood")
    p.add_argument("--likelihood-steps", type=int, default=100, help="ODE steps the cost is quoted for")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if args.quick:
        args.L, args.steps, args.batch, args.n_single, args.exact_L = 16, 50, 8, 1, [8]
    device = args.device
    sde = VESDE()
    if args.model.exists():
        from lgdiff._train.dsm import load_ncsnpp

        net, meta = load_ncsnpp(args.model, device=device)
        source = f"{args.model.name} ({net.n_parameters()} parameters)"
    else:
        net = NCSNpp(NCSNppConfig(dim=2, channels=16, multipliers=(1, 2, 2)), sde,
                     generator=torch.Generator().manual_seed(0), dtype=torch.float32, device=device).eval()
        source = f"untrained NCSN++ 16 channels (1, 2, 2) ({net.n_parameters()} parameters)"
    net.requires_grad_(False)
    dtype = torch.float32
    print(f"device {device}, torch threads {torch.get_num_threads()}, network: {source}, float32")
    results: dict = {"device": device, "threads": torch.get_num_threads(), "network": source}

    score = net
    g = torch.Generator(device=device).manual_seed(0)
    # warm-up (allocator, kernels)
    reverse_sde(score, sde, sde.prior_sample((2, args.L, args.L), generator=g, dtype=dtype, device=device),
                steps=3, generator=g, t_min=0.0)
    with CpuTimer() as tb:
        x_T = sde.prior_sample((args.batch, args.L, args.L), generator=g, dtype=dtype, device=device)
        xb = reverse_sde(score, sde, x_T, steps=args.steps, generator=g, t_min=0.0)
        if device != "cpu":
            torch.cuda.synchronize()
    torch.manual_seed(0)
    with CpuTimer() as ts:
        xs = torch.cat([notebook_sampler(net, args.L, args.steps, sde.sigma, device) for _ in range(args.n_single)])
        if device != "cpu":
            torch.cuda.synchronize()
    rate_b, rate_s = args.batch / tb.wall, args.n_single / ts.wall
    cpu_b, cpu_s = tb.cpu / args.batch, ts.cpu / args.n_single
    print(f"\n1. reverse SDE, {args.steps} Euler-Maruyama steps, L = {args.L}")
    print(f"   lgdiff reverse_sde, batch {args.batch:4d}: {rate_b:8.3f} configs/s wall, {cpu_b:8.2f} CPU s/config")
    print(f"   notebook single-chain, {args.n_single:3d} configs: {rate_s:8.3f} configs/s wall, {cpu_s:8.2f} CPU s/config")
    print(f"   speed-up: {rate_b / rate_s:.1f}x (wall), {cpu_s / cpu_b:.1f}x (CPU time)")
    print(f"   sanity: <phi^2> batched {float((xb.double() ** 2).mean()):.3f}, single-chain "
          f"{float((xs.double() ** 2).mean()):.3f} (same network, same schedule)")
    results["reverse_sde"] = {"L": args.L, "steps": args.steps, "batch": args.batch, "batched_configs_per_s": rate_b,
                              "batched_cpu_s_per_config": cpu_b, "single_configs_per_s": rate_s,
                              "single_cpu_s_per_config": cpu_s, "speedup_wall": rate_b / rate_s}

    print(f"\n2. PF-ODE log-likelihood per configuration, quoted for {args.likelihood_steps} Heun steps "
          f"(timed on {args.ode_steps})")
    results["likelihood"] = []
    scale = args.likelihood_steps / args.ode_steps
    for L in sorted(set(args.exact_L) | {args.L}):
        for divergence in ("hutchinson", "exact"):
            if divergence == "exact" and L not in args.exact_L:
                continue
            batch = 1 if (divergence == "exact" and L >= 32) else 4
            x0 = torch.randn((batch, L, L), generator=g, dtype=dtype, device=device)
            if L == min(args.exact_L + [args.L]):  # warm-up: torch.func's first vmap/jvp call sets itself up
                log_likelihood(score, sde, x0[:1], steps=1, divergence=divergence, generator=g)
            with CpuTimer() as tl:
                log_likelihood(score, sde, x0, steps=args.ode_steps, divergence=divergence, generator=g,
                               chunk=64 if L <= 16 else 32)
            per = tl.cpu / batch * scale
            print(f"   L = {L:3d} {divergence:10s}: {per:10.2f} CPU s/config ({tl.wall / batch * scale:10.2f} s wall)")
            results["likelihood"].append({"L": L, "divergence": divergence, "cpu_s_per_config": per,
                                          "wall_s_per_config": tl.wall / batch * scale,
                                          "steps": args.likelihood_steps})
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    assert math.isfinite(rate_b)


if __name__ == "__main__":
    torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "1")))
    main()
