#!/usr/bin/env python
"""Core performance benchmark: SU(3) Wilson plaquette and force throughput (4D, batched).

For L = 4, 6, 8, 12, 16 it reports, in one run:

- sites/s of lgdiff's ``WilsonAction.density`` (the plaquette kernel) and ``WilsonAction.force``, for each
  code path the machine has: the fused native C++ kernels (``/native``, CPU) or Triton kernels (``/triton``,
  CUDA), and the eager PyTorch code (``/eager``);
- the roofline bound: the lesser of (copy bandwidth / bytes per site) and (peak flop rate / flops per site),
  with the copy bandwidth and the peak (a large real matmul of the same precision) measured in the same run,
  see ``BYTE MODEL`` and ``FLOP MODEL`` below, and the fraction of it that lgdiff reaches;
- the cost per site against the volume (ns/site);
- the speed-up over a naive implementation (plain ``torch.roll`` + complex ``@``, written here);
- the cost of the runtime type checks of the test suite (jaxtyping's import hook with beartype) in a
  100-step HMC-like loop of force evaluations, from two subprocesses, with and without the hook.

BYTE MODEL (the least a kernel must move through main memory):
  plaquette/density: read every link once, write one real number per site:
      B D V N^2 c + B V r   bytes     (c = 16 complex128 / 8 complex64; r = c / 2)
  force: read every link once, write one algebra matrix per link:
      2 B D V N^2 c         bytes
  bandwidth bound (sites/s) = copy bandwidth / (bytes per site); the copy bandwidth counts bytes
  read plus bytes written (``dst.copy_(src)`` on a buffer much larger than the caches).

FLOP MODEL (real floating-point operations of the least arithmetic known, P = D(D-1)/2 planes; an N x N complex
product is N^3 complex multiply-adds, 8 N^3 flops):
  plaquette/density: two products per plane, X = U_mu U_nu(x+mu) and Y = U_nu U_mu(x+nu), and Re tr(X Y^dag):
      P (16 N^3 + 4 N^2)                                       (SU(3), D = 4: 2808 flops per site)
  force: the products of a plane shared by its plaquette, its four staples and both orientations (6 per plane),
  one closing product U_mu A_mu per direction, the staple sum's additions:
      6 P 8 N^3 + D 8 N^3 + D (2D - 2) 2 N^2                   (SU(3), D = 4: 9072 flops per site)
  The fused CPU kernels compute each site's staples on their own (46 products per site, 10 kflop): more
  arithmetic than the model counts, so their fraction of the bound is conservative.
  compute bound (sites/s) = peak flop rate / (flops per site); the peak is the best rate of a real matmul
  (float64 for complex128, float32 for complex64) of 2048^2 (CPU) or 8192^2 (GPU) in the same run.

Usage:
  python benchmarks/bench_core.py [--quick] [--device cpu|cuda] [--dtype complex128|complex64]
                                  [--threads N] [--mbytes MB] [--json out.json]

Timings are the best of several repeats after a warm-up (``torch.cuda.synchronize`` on the GPU);
the spread between the best and the median is printed as the noise.
"""

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

N = 3  # SU(3)
D = 4
BETA = 5.5


# ---- the naive reference: the obvious code --------------------------------------------------------

def naive_density(u: torch.Tensor, beta: float) -> torch.Tensor:
    """``beta sum_{mu<nu} (1 - Re tr U_{mu nu}(x) / N)`` with torch.roll and complex ``@``."""
    d, n = u.shape[1], u.shape[-1]
    s = 0
    for mu in range(d):
        for nu in range(mu + 1, d):
            p = (u[:, mu] @ torch.roll(u[:, nu], -1, 1 + mu)
                 @ torch.roll(u[:, mu], -1, 1 + nu).mH @ u[:, nu].mH)
            s = s + (1 - p.diagonal(dim1=-2, dim2=-1).sum(-1).real / n)
    return beta * s


def naive_force(u: torch.Tensor, beta: float) -> torch.Tensor:
    """``(beta / 2N) P_alg(U_mu(x) A_mu(x))`` with the staple sum A from torch.roll and complex ``@``."""
    d, n = u.shape[1], u.shape[-1]
    eye = torch.eye(n, dtype=u.dtype, device=u.device)
    out = []
    for mu in range(d):
        a = 0
        for nu in range(d):
            if nu == mu:
                continue
            u_nu_xpmu = torch.roll(u[:, nu], -1, 1 + mu)
            a = a + u_nu_xpmu @ torch.roll(u[:, mu], -1, 1 + nu).mH @ u[:, nu].mH
            a = a + torch.roll(u_nu_xpmu.mH @ u[:, mu].mH @ u[:, nu], 1, 1 + nu)
        m = u[:, mu] @ a
        m = (m - m.mH) / 2
        m = m - (m.diagonal(dim1=-2, dim2=-1).sum(-1) / n)[..., None, None] * eye
        out.append(m)
    return beta / (2 * n) * torch.stack(out, 1)


# ---- timing ---------------------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCK = time.perf_counter  # or time.process_time with --clock cpu


def best_of(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2) -> tuple[float, float]:
    """(best, median) time in seconds of ``fn()`` after ``warmup`` calls, by ``CLOCK``."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = CLOCK()
        fn()
        _sync(device)
        times.append(CLOCK() - t0)
    return min(times), statistics.median(times)


def flops_per_site(kernel: str, n: int = N, d: int = D) -> int:
    """The FLOP MODEL above."""
    planes = d * (d - 1) // 2
    if kernel == "plaquette":
        return planes * (16 * n**3 + 4 * n**2)
    return 6 * planes * 8 * n**3 + d * 8 * n**3 + d * (2 * d - 2) * 2 * n**2


def peak_flops(device: torch.device, dtype: torch.dtype, repeats: int, quick: bool) -> float:
    """Best flop rate of a large real matmul ``a @ b`` in the real type of ``dtype``."""
    size = (1024 if quick else 2048) if device.type == "cpu" else 8192
    real = torch.empty((), dtype=dtype).real.dtype
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, dtype=real, device=device, generator=gen)
    b = torch.randn(size, size, dtype=real, device=device, generator=gen)
    best, _ = best_of(lambda: a @ b, device, repeats, warmup=1)
    return 2 * size**3 / best


def copy_bandwidth(device: torch.device, mbytes: int, repeats: int) -> tuple[float, float]:
    """Bytes read + written per second by ``dst.copy_(src)``: (best, median) in bytes/s."""
    n = mbytes * 2**20 // 8
    src = torch.randn(n, dtype=torch.float64, device=device)
    dst = torch.empty_like(src)
    best, med = best_of(lambda: dst.copy_(src), device, repeats)
    return 2 * src.numel() * 8 / best, 2 * src.numel() * 8 / med


# ---- the type-check overhead worker (runs in a subprocess) ----------------------------------------

def typecheck_worker(args: argparse.Namespace) -> None:
    if args.hook:
        from jaxtyping import install_import_hook

        with install_import_hook("lgdiff", "beartype.beartype"):
            import lgdiff
    else:
        import lgdiff
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator(device=device).manual_seed(0)
    lat = lgdiff.Lattice(shape=(args.L,) * D)
    U = lgdiff.LinkField.random(lgdiff.SU(N), lat, batch=args.batch, generator=gen, dtype=dtype, device=device)
    P = lgdiff.AlgebraField.randn(lgdiff.SU(N), lat, batch=args.batch, generator=gen, dtype=dtype, device=device)
    action = lgdiff.WilsonAction(beta=BETA, group=lgdiff.SU(N))
    eps = 0.01

    def loop(steps: int) -> None:
        p = P
        for _ in range(steps):
            p = p - action.force(U) * eps  # the momentum update of a leapfrog step
        _sync(device)

    loop(3)
    times = []
    for _ in range(args.repeats):
        t0 = CLOCK()
        loop(args.steps)
        times.append(CLOCK() - t0)
    print(json.dumps({"best": min(times), "median": statistics.median(times)}))


def typecheck_overhead(device: torch.device, dtype: str, L: int, batch: int, steps: int, rounds: int,
                       threads: int, clock: str) -> dict:
    """Run the worker with and without the jaxtyping/beartype import hook, alternating, best of each."""
    res: dict[str, list[float]] = {"off": [], "on": []}
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for _ in range(rounds):
        for mode in ("off", "on"):
            cmd = [sys.executable, os.path.abspath(__file__), "--_worker", "--device", str(device), "--dtype", dtype,
                   "--L", str(L), "--batch", str(batch), "--steps", str(steps), "--repeats", "3",
                   "--threads", str(threads), "--clock", clock] + (["--hook"] if mode == "on" else [])
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            res[mode].append(json.loads(out.strip().splitlines()[-1])["best"])
    off, on = min(res["off"]), min(res["on"])
    return {"L": L, "batch": batch, "steps": steps, "seconds_off": off, "seconds_on": on,
            "overhead": on / off - 1, "all_off": res["off"], "all_on": res["on"]}


# ---- main -----------------------------------------------------------------------------------------

def main() -> None:
    # Tensors of 2 MB and more on transparent huge pages, as the lgdiff command line sets it (cli/main.py,
    # _tune_memory): otherwise every fresh 40 MB output is 10 000 page faults, a quarter of a 16^4 force
    # (docs/performance.md). Read by torch at its first large allocation; an explicit value in the environment is kept.
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, smaller tensors (a smoke run)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="complex128", choices=["complex128", "complex64"])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's default)")
    ap.add_argument("--mbytes", type=float, default=None,
                    help="size of the link tensor per lattice in MB (default: 40 on the CPU, 1024 on CUDA)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 6, 8, 12, 16])
    ap.add_argument("--json", default=None, help="write all numbers to this file")
    ap.add_argument("--no-typecheck", action="store_true", help="skip the type-check overhead measurement")
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="wall: elapsed time (default); cpu: process CPU time, which other jobs sharing the "
                         "cores do not inflate (CPU only; use it with --threads 1, where it is one core's time)")
    # internal: the type-check worker
    ap.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--hook", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--L", type=int, default=4, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=100, help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        global CLOCK
        if args.device != "cpu":
            sys.exit("--clock cpu measures the CPU's time: use it with --device cpu")
        CLOCK = time.process_time
    if args._worker:
        typecheck_worker(args)
        return

    import lgdiff
    from lgdiff import _native
    from lgdiff._geometry import _paths_triton

    defaults = (_paths_triton.ENABLED, _native.ENABLED)

    def use(path: str) -> None:
        """Switch lgdiff's kernels: "/triton" (CUDA), "/native" (CPU), "/eager" (neither), "" (the defaults)."""
        _paths_triton.ENABLED, _native.ENABLED = {"/triton": (True, False), "/native": (False, True),
                                                  "/eager": (False, False), "": defaults}[path]

    def fused_path(u: torch.Tensor) -> str | None:
        """The fused kernels this machine has for ``u``, if any."""
        for path, module in (("/triton", _paths_triton), ("/native", _native)):
            use(path)
            ok = module.available(u)
            use("")
            if ok:
                return path
        return None

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available on this machine")
    dtype = getattr(torch, args.dtype)
    c = torch.empty((), dtype=dtype).element_size()
    r = c // 2
    repeats = 3 if args.quick else 7
    mbytes = args.mbytes if args.mbytes is not None else (40.0 if device.type == "cpu" else 1024.0)
    if args.quick:
        mbytes = min(mbytes, 10.0)
    bw_mb = 256 if device.type == "cpu" else 4096
    if args.quick:
        bw_mb //= 4
    threads = torch.get_num_threads()

    bw_best, bw_med = copy_bandwidth(device, bw_mb, repeats + 3)
    peak = peak_flops(device, dtype, repeats, args.quick)
    info = {
        "peak_GFLOPs": peak / 1e9,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "threads": threads, "dtype": args.dtype, "group": f"SU({N})", "D": D,
        "copy_bandwidth_GBps": bw_best / 1e9, "copy_bandwidth_median_GBps": bw_med / 1e9,
        "copy_buffer_MB": bw_mb, "link_tensor_MB": mbytes, "quick": args.quick, "clock": args.clock,
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE"),
    }
    print(f"# lgdiff core benchmark: SU({N}) 4D, {args.dtype}, device {info['device']}, torch {torch.__version__}, "
          f"{threads} threads, {args.clock} clock, load average {info['loadavg']}, "
          f"THP_MEM_ALLOC_ENABLE={info['THP_MEM_ALLOC_ENABLE']}")
    print(f"# copy bandwidth (read + write, {bw_mb} MB buffer): best {bw_best / 1e9:.1f} GB/s, "
          f"median {bw_med / 1e9:.1f} GB/s")
    real_name = str(torch.empty((), dtype=dtype).real.dtype).removeprefix("torch.")
    print(f"# peak flop rate ({real_name} matmul): {peak / 1e9:.1f} GFLOP/s")
    for name, bytes_per_site in (("plaquette", D * N * N * c + r), ("force", 2 * D * N * N * c)):
        flops = flops_per_site(name)
        print(f"# {name}: {bytes_per_site} B/site, {flops} flop/site: bandwidth bound "
              f"{bw_best / bytes_per_site:.3g} sites/s, compute bound {peak / flops:.3g} sites/s")

    header = (f"{'kernel':<18}{'L':>3}{'B':>6}{'sites/s':>11}{'ns/site':>9}{'naive':>11}{'roofline':>11}"
              f"{'%roof':>7}{'naive%':>8}{'x naive':>9}{'noise':>7}")

    def line(w: dict) -> str:
        noise = w["seconds_median"] / w["seconds"] - 1
        return (f"{w['kernel']:<18}{w['L']:>3}{w['batch']:>6}{w['sites_per_s']:>11.3g}{1e9 / w['sites_per_s']:>9.0f}"
                f"{w['naive_sites_per_s']:>11.3g}{w['bound_sites_per_s']:>11.3g}{100 * w['fraction_of_bound']:>6.1f}%"
                f"{100 * w['naive_fraction_of_bound']:>7.1f}%{w['speedup_vs_naive']:>8.2f}x{100 * noise:>6.0f}%")

    print()
    print(header, flush=True)
    group = lgdiff.SU(N)
    action = lgdiff.WilsonAction(beta=BETA, group=group)
    gen = torch.Generator(device=device).manual_seed(1234)
    rows = []
    for L in args.sizes:
        V = L**D
        batch = max(1, round(mbytes * 2**20 / (D * V * N * N * c)))
        lat = lgdiff.Lattice(shape=(L,) * D)
        # random SU(3) links exp(X) with Gaussian X: any group elements do for timing, and the closed-form
        # exp is fast on every device (Haar sampling by batched QR is slow on a GPU)
        x = group.random_algebra((batch, D, *lat.shape), generator=gen, dtype=dtype, device=device)
        U = lgdiff.LinkField(group.exp(2 * x), group, lat)
        del x
        u = U.data
        sites = batch * V
        fused = fused_path(u)
        # lgdiff's fused kernels where the machine has them, and its device-agnostic eager code
        variants = [fused, "/eager"] if fused else ["/eager"]
        # correctness first: lgdiff (each code path) against the naive code
        tol = 1e-4 if dtype == torch.complex64 else 1e-10
        for path in variants:
            use(path)
            torch.testing.assert_close(action.density(U), naive_density(u, BETA), rtol=tol, atol=tol)
            torch.testing.assert_close(action.force(U).data, naive_force(u, BETA), rtol=tol, atol=tol)
        use("")
        kernels = {
            "plaquette": (lambda: naive_density(u, BETA), lambda: action.density(U), D * N * N * c + r),
            "force": (lambda: naive_force(u, BETA), lambda: action.force(U), 2 * D * N * N * c),
        }
        naive_times: dict[str, tuple[float, float]] = {}
        for (name, (naive, fast, bytes_per_site)), suffix in itertools.product(kernels.items(), variants):
            if name not in naive_times:
                naive_times[name] = best_of(naive, device, max(2, repeats // 2))
            t_naive, t_naive_med = naive_times[name]
            use(suffix)
            t_fast, t_fast_med = best_of(fast, device, repeats)
            use("")
            flops = flops_per_site(name)
            name = name + suffix
            # the roofline: bandwidth or arithmetic, whichever binds first
            bound = min(bw_best / bytes_per_site, peak / flops)
            row = {
                "kernel": name, "L": L, "batch": batch, "sites": sites, "bytes_per_site": bytes_per_site,
                "flops_per_site": flops, "bandwidth_bound_sites_per_s": bw_best / bytes_per_site,
                "compute_bound_sites_per_s": peak / flops,
                "seconds": t_fast, "seconds_median": t_fast_med, "sites_per_s": sites / t_fast,
                "naive_seconds": t_naive, "naive_seconds_median": t_naive_med, "naive_sites_per_s": sites / t_naive,
                "bound_sites_per_s": bound, "fraction_of_bound": sites / t_fast / bound,
                "naive_fraction_of_bound": sites / t_naive / bound, "speedup_vs_naive": t_naive / t_fast,
            }
            rows.append(row)
            print(line(row), flush=True)
        del U, u

    # the cost per site against the volume: the spread of each kernel's rate over the sizes
    print()
    for name in dict.fromkeys(w["kernel"] for w in rows):
        rates = [w["sites_per_s"] for w in rows if w["kernel"] == name]
        if len(rates) > 1:
            print(f"# {name}: ns/site from {1e9 / max(rates):.0f} to {1e9 / min(rates):.0f} over L = "
                  f"{', '.join(str(w['L']) for w in rows if w['kernel'] == name)}: "
                  f"max/min - 1 = {100 * (max(rates) / min(rates) - 1):.0f}%")

    overhead = []
    if not args.no_typecheck:
        configs = [(4, 1), (4, max(1, round(mbytes * 2**20 / (D * 4**D * N * N * c)) // 8))]
        if args.quick:
            configs = configs[:1]
        print()
        print("# runtime type checks (jaxtyping import hook + beartype), 100 steps of force + momentum update")
        for L, batch in configs:
            o = typecheck_overhead(device, args.dtype, L, batch, 20 if args.quick else 100,
                                   2 if args.quick else 3, threads, args.clock)
            overhead.append(o)
            print(f"L={L} B={batch}: {o['seconds_off'] * 1e3:.1f} ms without, {o['seconds_on'] * 1e3:.1f} ms with "
                  f"the hook: overhead {100 * o['overhead']:+.1f}%  "
                  f"(per step {1e3 * (o['seconds_on'] - o['seconds_off']) / o['steps']:+.3f} ms)")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "kernels": rows, "typecheck": overhead}, f, indent=1)
        print(f"\n# wrote {args.json}")


if __name__ == "__main__":
    main()
