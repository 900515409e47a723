"""Peak memory of the classical samplers per byte of the state they update: the factors behind the memory check of
``lgdiff generate`` (``cli/_memory.py``, ``GENERATE_FACTORS``).

    python benchmarks/bench_memory.py [--quick] [--json out.json]

Each case runs in a fresh subprocess (Linux: it reads ``/proc/self/status``): it builds the kernel of
``GenerateConfig`` (the run ``lgdiff generate`` makes), reads the resident set size ``VmRSS``, resets the peak
(``/proc/self/clear_refs``), creates the hot start and runs ``--updates`` updates, then reads the peak ``VmHWM``.
The factor is ``(VmHWM - VmRSS before) / state bytes``: the state itself (1) plus the sampler's temporaries (the
momenta, the proposal, the force, staples, ...). The state is made large (``--mbytes``, default 64 MB) so that the
allocator's fixed overheads do not count.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

CASES = (  # (theory, dim, algorithm, dtype)
    ("phi4", 2, "hmc", "float64"),
    ("phi4", 2, "fahmc", "float64"),
    ("phi4", 2, "metropolis", "float64"),
    ("phi4", 2, "wolff", "float64"),
    ("phi4", 4, "hmc", "float32"),
    ("u1", 2, "hmc", "float64"),
    ("u1", 2, "heatbath", "float64"),
    ("su2", 4, "hmc", "float64"),
    ("su2", 4, "heatbath", "float64"),
    ("su3", 4, "hmc", "float64"),
    ("su3", 4, "heatbath", "float64"),
    ("su3", 4, "hmc", "float32"),
    ("su3", 4, "heatbath", "float32"),
)


def _status(key: str) -> int:
    """A ``/proc/self/status`` entry in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


def _case(theory: str, dim: int, algorithm: str, dtype: str, mbytes: float, updates: int) -> dict:
    import torch

    from cli._memory import state_bytes
    from lgdiff._geometry.lattice import Lattice
    from lgdiff._run.generate import GenerateConfig
    from lgdiff._run.theory import Theory

    params = {"kappa": 0.2, "lam": 0.02} if theory == "phi4" else {"beta": 1.0}
    per_site = state_bytes(Theory(name=theory, lattice=Lattice(shape=(1,) * dim), params=params), 1, dtype)
    chains = 4
    L = max(2, 2 * round((mbytes * 2**20 / (chains * per_site)) ** (1 / dim) / 2))  # even: the heatbath's checkerboard
    th = Theory(name=theory, lattice=Lattice(shape=(L,) * dim), params=params)
    config = GenerateConfig(theory=th, algorithm=algorithm, n=1, chains=chains, dtype=dtype)
    kernel = config.kernel()
    generator = torch.Generator().manual_seed(0)
    before = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    state = th.initial(chains=chains, generator=generator, dtype=config.torch_dtype)
    for _ in range(updates):
        state, _ = kernel.step(state, generator=generator)
    size = state_bytes(th, chains, dtype)
    peak = _status("VmHWM")
    return {"theory": theory, "dim": dim, "algorithm": algorithm, "dtype": dtype, "L": L, "chains": chains,
            "state_mb": size / 2**20, "peak_mb": (peak - before) / 2**20, "factor": (peak - before) / size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 8 MB states, 1 update, three cases")
    ap.add_argument("--mbytes", type=float, default=64.0, help="size of the state (all chains) in MB")
    ap.add_argument("--updates", type=int, default=2)
    ap.add_argument("--json", type=str, default=None)
    ap.add_argument("--case", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        theory, dim, algorithm, dtype = args.case
        print(json.dumps(_case(theory, int(dim), algorithm, dtype, args.mbytes, args.updates)))
        return
    cases = CASES[::5] if args.quick else CASES
    mbytes, updates = (8.0, 1) if args.quick else (args.mbytes, args.updates)
    root = Path(__file__).resolve().parents[1]
    rows = []
    print(f"{'theory':>6} {'D':>2} {'algorithm':>10} {'dtype':>8} {'L':>4} {'state MB':>9} {'peak MB':>9} "
          f"{'factor':>7}")
    for case in cases:
        proc = subprocess.run([sys.executable, __file__, "--case", *map(str, case), "--mbytes", str(mbytes),
                               "--updates", str(updates)], capture_output=True, text=True, cwd=root, check=True)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{row['theory']:>6} {row['dim']:>2} {row['algorithm']:>10} {row['dtype']:>8} {row['L']:>4} "
              f"{row['state_mb']:>9.1f} {row['peak_mb']:>9.1f} {row['factor']:>7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"mbytes": mbytes, "updates": updates, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
