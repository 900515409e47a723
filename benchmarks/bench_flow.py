"""The Wilson flow behind the measured 4D topological charge: CPU time per configuration against the chunk size.

``lgdiff measure`` flows every configuration of a 4D SU(N) ensemble to ``t = 1`` (RK3 steps of
``lgdiff._run.measure.FLOW_EPS``) before its clover charge, and this is most of its cost. `wilson_flow`
integrates ``chunk`` configurations at a time; each flows on its own, so the chunk changes only the speed. In one
run, on the same configurations (``--chains`` x ``--records`` rough SU(3) links ``exp(0.5 X)``, X Gaussian in the
algebra; the flow costs the same whatever the links): the process CPU seconds per configuration of the flow to
``--flow-time`` with chunks of 1, 4, 16, 64 configurations and the whole ensemble at once (what measure did before
it chunked: one read of up to 64 records x all chains), and with the default (`flow_chunk`: about
`FLOW_CHUNK_BYTES` of links); then `lgdiff._run.measure.measure` of the same configurations written as an ensemble
file, end to end (every observable, the flow included), per configuration. Results: docs/performance.md, "Wilson
flow in lgdiff measure".

    OMP_NUM_THREADS=1 python benchmarks/bench_flow.py              # 4^4 SU(3), 8 chains x 50 records (~3 min)
    OMP_NUM_THREADS=1 python benchmarks/bench_flow.py --quick      # smoke run (seconds)
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from lgdiff import SU, AlgebraField, Lattice, LinkField
from lgdiff._io.ensemble import Ensemble, EnsembleMetadata, EnsembleWriter
from lgdiff._observables.flow import FLOW_CHUNK_BYTES, flow_chunk, wilson_flow
from lgdiff._run.measure import FLOW_EPS, measure


def rough_links(group: SU, lattice: Lattice, *, batch: int, generator: torch.Generator) -> LinkField:
    cold = LinkField.identity(group, lattice, batch=batch)
    return cold.evolve(AlgebraField.randn(group, lattice, batch=batch, generator=generator), 0.5)


def cpu_seconds(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def write_ensemble(path: Path, U: LinkField, *, chains: int) -> Ensemble:
    meta = EnsembleMetadata(kind="links", theory=f"su{U.group.n}", group=str(U.group), lattice=U.lattice.shape,
                            params={"beta": 5.5}, algorithm="synthetic", settings={}, seed=0, chains=chains,
                            dtype="complex128")
    records = U.batch // chains
    rng = torch.Generator().get_state()
    with EnsembleWriter.open(path, meta, flush_every=records) as w:
        for t in range(records):
            w.append(U.with_data(U.data[t * chains:(t + 1) * chains]), t, torch.ones(chains), rng)
    return Ensemble.load(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--L", type=int, default=4)
    ap.add_argument("--N", type=int, default=3, help="SU(N)")
    ap.add_argument("--chains", type=int, default=8)
    ap.add_argument("--records", type=int, default=50)
    ap.add_argument("--flow-time", type=float, default=1.0)
    ap.add_argument("--chunks", type=int, nargs="+", default=[1, 4, 16, 64],
                    help="chunk sizes (configurations) to time, besides the default and the whole ensemble")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the clock is the process CPU time)")
    ap.add_argument("--quick", action="store_true", help="smoke run: L = 3, 2 chains x 4 records, t = 0.1")
    ap.add_argument("--json", type=Path, help="write the numbers to this file")
    args = ap.parse_args()
    if args.quick:
        args.L, args.chains, args.records, args.flow_time, args.chunks = 3, 2, 4, 0.1, [1, 4]
    torch.set_num_threads(args.threads)
    group, lattice = SU(args.N), Lattice(shape=(args.L,) * 4)
    U = rough_links(group, lattice, batch=args.chains * args.records, generator=torch.Generator().manual_seed(0))
    per_config_mb = U.data[0].numel() * U.data.element_size() / 1e6
    print(f"Wilson flow of 4D SU({args.N}) L = {args.L} to t = {args.flow_time} (eps = {FLOW_EPS}), {U.batch} "
          f"configurations ({per_config_mb:.3f} MB each), {args.threads} thread(s), process CPU time; load average "
          f"{os.getloadavg()[0]:.1f}")
    default = min(flow_chunk(U), U.batch)
    rows: dict[str, dict[str, float | int]] = {}
    reference = None
    sizes = [(f"chunk {c}", c) for c in args.chunks if c < U.batch]
    sizes += [(f"default ({FLOW_CHUNK_BYTES / 2**20:g} MiB)", default), ("whole ensemble", U.batch)]
    print(f"{'chunk':>22} {'configs':>8} {'MB':>7} {'ms/config':>10} {'x whole':>8}")
    for name, chunk in sizes:
        out: list[LinkField] = []
        seconds = cpu_seconds(lambda chunk=chunk: out.append(wilson_flow(U, t=args.flow_time, eps=FLOW_EPS,
                                                                         chunk=chunk)))
        if reference is None:
            reference = out[0].data
        elif not torch.allclose(out[0].data, reference, atol=1e-12, rtol=0):
            sys.exit(f"error: the flow in chunks of {chunk} differs from the flow in chunks of {sizes[0][1]}")
        rows[name] = {"configs": chunk, "MB": chunk * per_config_mb, "ms_per_config": 1e3 * seconds / U.batch}
    whole = rows["whole ensemble"]["ms_per_config"]
    for name, row in rows.items():
        row["speedup_vs_whole"] = whole / row["ms_per_config"]
        print(f"{name:>22} {row['configs']:>8} {row['MB']:>7.2f} {row['ms_per_config']:>10.2f} "
              f"{row['speedup_vs_whole']:>8.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        ens = write_ensemble(Path(tmp) / "e.safetensors", U, chains=args.chains)
        results: list[dict] = []
        seconds = cpu_seconds(lambda: results.append(measure(ens, flow_time=args.flow_time)))
    e2e = {"cpu_s": seconds, "ms_per_config": 1e3 * seconds / U.batch, "topo_charge": results[0]["topo_charge"]["mean"]}
    print(f"measure (every observable, flow to t = {args.flow_time} included): {seconds:.3g} CPU s, "
          f"{e2e['ms_per_config']:.2f} ms per configuration")
    if args.json:
        report = {"L": args.L, "N": args.N, "chains": args.chains, "records": args.records,
                  "flow_time": args.flow_time, "eps": FLOW_EPS, "threads": args.threads,
                  "default_chunk": default, "rows": rows, "measure": e2e, "loadavg": os.getloadavg()[0]}
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
