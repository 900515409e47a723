"""Ensemble I/O: the cost of one append (``--flush-every 1``) as the ensemble grows, lgdiff's journal against
rewriting the whole file at every flush (what lgdiff did before format_version 2), measured in one run.

    python benchmarks/bench_ensemble_io.py                  # 2D U(1), L = 16, 4 chains, n up to 2000
    python benchmarks/bench_ensemble_io.py --quick          # smoke run (n up to 100, seconds)
    python benchmarks/bench_ensemble_io.py --json io.json

For each n it reports the median wall time of one ``EnsembleWriter.append`` that flushes (a frame appended to
the journal and fsynced) over the appends n - window + 1 .. n, the time of one atomic rewrite of a file of n
records (temporary file, fsync, rename: the old flush), the bytes each writes, and the ratio of the append cost
at n to that at the smallest n (flat: near 1). Then the one rewrite that ``close`` does to fold the journal
into the file, and the time to read every record back (checked, and with ``verify=False``). Wall time, since
fsync is what an append costs; on a shared machine compare the ratios of one run, not absolute times.
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lgdiff import SU, U1, Ensemble, EnsembleMetadata, EnsembleWriter, Lattice, LinkField
from lgdiff._io.ensemble import _atomic_save, _default_mode


def records(group_name: str, dim: int, L: int, chains: int, count: int) -> list[LinkField]:
    """A small pool of link configurations to append in turn (their values do not change the cost)."""
    group = U1() if group_name == "u1" else SU(3)
    g = torch.Generator().manual_seed(0)
    return [LinkField.random(group, Lattice(shape=(L,) * dim), batch=chains, generator=g, dtype=torch.complex128)
            for _ in range(count)]


def journal_appends(path: Path, pool: list[LinkField], n_max: int) -> list[float]:
    """Wall seconds of each append of a writer with flush_every 1 (append t is the record t + 1)."""
    first = pool[0]
    meta = EnsembleMetadata(kind="links", theory="bench", group=str(first.group), lattice=first.lattice.shape,
                            params={"beta": 1.0}, algorithm="none", settings={}, seed=0, chains=first.batch,
                            dtype="complex128")
    rng = torch.Generator().get_state()
    acc = torch.ones(pool[0].batch, dtype=torch.float64)
    times = []
    with EnsembleWriter.open(path, meta, flush_every=1) as w:
        for t in range(n_max):
            t0 = time.perf_counter()
            w.append(pool[t % len(pool)], t, acc, rng)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
    fold = time.perf_counter() - t0  # close(): the one rewrite that folds the journal into the file
    times.append(fold)
    return times


def rewrite_time(path: Path, pool: list[LinkField], n: int, repeats: int) -> float:
    """Median wall seconds of one atomic rewrite of a file of n records (the flush before format_version 2)."""
    configs = torch.stack([torch.view_as_real(pool[t % len(pool)].data) for t in range(n)])
    tensors = {"configs": configs, "index": torch.arange(n), "acceptance": torch.ones(n, pool[0].batch,
                                                                                    dtype=torch.float64),
               "rng_state": torch.Generator().get_state()}
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _atomic_save(path, tensors, {"lgdiff": "{}"}, _default_mode())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--group", choices=["u1", "su3"], default="u1")
    ap.add_argument("--dim", type=int, default=2)
    ap.add_argument("--L", type=int, default=16)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500, 1000, 2000],
                    help="the n at which the costs are reported")
    ap.add_argument("--window", type=int, default=9, help="appends per reported median")
    ap.add_argument("--rewrites", type=int, default=3, help="rewrites timed per n (median)")
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary directory)")
    ap.add_argument("--quick", action="store_true", help="n = 10, 50, 100")
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args()
    sizes = [10, 50, 100] if args.quick else sorted(args.sizes)
    pool = records(args.group, args.dim, args.L, args.chains, 4)
    record_bytes = torch.view_as_real(pool[0].data).numel() * 8
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        journal = journal_appends(Path(tmp) / "journal.safetensors", pool, sizes[-1])
        appends, fold = journal[:-1], journal[-1]
        rows = []
        for n in sizes:
            lo = max(2, n - args.window + 1)  # append 1 writes the file itself; later ones append frames
            rows.append({"n": n, "append_s": statistics.median(appends[lo - 1:n]),
                         "rewrite_s": rewrite_time(Path(tmp) / "rewrite.safetensors", pool, n, args.rewrites)})
        path = Path(tmp) / "journal.safetensors"
        file_bytes = path.stat().st_size
        t0 = time.perf_counter()
        Ensemble.load(path).series(lambda U: U.data.real.mean(dim=tuple(range(1, U.data.ndim))))
        read_checked = time.perf_counter() - t0
        t0 = time.perf_counter()
        Ensemble.load(path, verify=False).series(lambda U: U.data.real.mean(dim=tuple(range(1, U.data.ndim))))
        read_fast = time.perf_counter() - t0
    base = rows[0]["append_s"]
    print(f"{args.group} {args.dim}D L = {args.L}, {args.chains} chains, complex128: {record_bytes / 1e3:.1f} kB "
          f"per record; wall time, load average {os.getloadavg()[0]:.1f}")
    print(f"{'n':>6} {'append ms':>10} {'x n=' + str(sizes[0]):>8} {'rewrite ms':>11} {'rewrite/append':>15}")
    for row in rows:
        row["append_ratio"] = row["append_s"] / base
        row["rewrite_over_append"] = row["rewrite_s"] / row["append_s"]
        print(f"{row['n']:>6} {1e3 * row['append_s']:>10.2f} {row['append_ratio']:>8.2f} "
              f"{1e3 * row['rewrite_s']:>11.2f} {row['rewrite_over_append']:>15.1f}")
    print(f"close (fold the journal of {sizes[-1]} records into one {file_bytes / 1e6:.1f} MB file): {fold:.2f} s")
    print(f"read every record back: {read_checked:.2f} s checked (checksum, finite, U(1)/SU(3)), "
          f"{read_fast:.2f} s with verify=False")
    out = {"group": args.group, "dim": args.dim, "L": args.L, "chains": args.chains, "record_bytes": record_bytes,
           "rows": rows, "fold_s": fold, "file_bytes": file_bytes, "read_checked_s": read_checked,
           "read_unchecked_s": read_fast, "loadavg": os.getloadavg()[0]}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
