"""NERSC / ILDG export and import of one SU(3) configuration, and the SciDAC checksum's per-site CRC-32:
lgdiff's loop of zlib calls against a vectorised numpy alternative, measured in one run (ratios are
meaningful; absolute times are noise on a shared machine).

    python benchmarks/bench_io.py [--L 16] [--quick] [--json out.json]

The numpy alternative uses that CRC-32 is affine in the message bits: for messages of a fixed length
S, ``crc(m) = crc(0^S) XOR_j T_j[m_j]`` with one 256-entry table per byte position j; every site's CRC
is then a gather and an XOR-reduction over the S byte positions, with no Python loop over sites.
"""

import argparse
import json
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

from lgdiff import SU, Lattice, LinkField, read_ildg, read_nersc, write_ildg, write_nersc
from lgdiff._io.ildg import scidac_checksum
from _timing import best_time  # noqa: E402  (benchmarks/, on the path when run as a script)


def crc_tables(size: int) -> tuple[np.ndarray, int]:
    """``T[j, b]``: the CRC-32 contribution of byte value b at position j of a ``size``-byte message, and
    the CRC of ``size`` zero bytes."""
    zero = zlib.crc32(bytes(size))
    bits = np.empty((size, 8), np.uint32)
    for j in range(size):
        for k in range(8):
            m = bytearray(size)
            m[j] = 1 << k
            bits[j, k] = zlib.crc32(bytes(m)) ^ zero
    values = np.arange(256)
    table = np.zeros((size, 256), np.uint32)
    for k in range(8):
        table ^= np.where((values >> k) & 1, bits[:, k:k + 1], 0).astype(np.uint32)
    return table, zero


def site_crcs_numpy(data: bytes, sites: int, table: np.ndarray, zero: int, chunk: int = 2048) -> np.ndarray:
    size = len(data) // sites
    b = np.frombuffer(data, np.uint8).reshape(sites, size)
    out = np.empty(sites, np.uint32)
    j = np.arange(size)
    for s in range(0, sites, chunk):
        out[s:s + chunk] = np.bitwise_xor.reduce(table[j, b[s:s + chunk]], axis=1) ^ zero
    return out


def site_crcs_zlib(data: bytes, sites: int) -> np.ndarray:
    size = len(data) // sites
    view = memoryview(data)
    return np.fromiter((zlib.crc32(view[r * size:(r + 1) * size]) for r in range(sites)), np.uint32, count=sites)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--L", type=int, default=16, help="lattice extent (L^4 sites)")
    ap.add_argument("--quick", action="store_true", help="L = 4, one repeat")
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args()
    L, reps = (4, 1) if args.quick else (args.L, 3)
    sites = L**4
    U = LinkField.random(SU(3), Lattice(shape=(L, L, L, L)), batch=1, generator=torch.Generator().manual_seed(0))
    out: dict = {"L": L, "sites": sites, "threads": torch.get_num_threads(), "rows": {}}
    print(f"SU(3) on {L}^4 ({sites} sites, {U.data.numel() * 16 / 2**20:.0f} MiB complex128), best of {reps}")

    data = np.random.default_rng(0).standard_normal(sites * 72).astype(">f8").tobytes()  # 576 bytes per site
    table, zero = crc_tables(len(data) // sites)
    assert np.array_equal(site_crcs_numpy(data, sites, table, zero), site_crcs_zlib(data, sites))
    t_np = best_time(lambda: site_crcs_numpy(data, sites, table, zero), reps)
    t_zlib = best_time(lambda: site_crcs_zlib(data, sites), reps)
    t_sum = best_time(lambda: scidac_checksum(data, sites), reps)
    out["rows"]["site crc32: zlib loop"] = t_zlib
    out["rows"]["site crc32: numpy tables"] = t_np
    out["rows"]["scidac_checksum (lgdiff)"] = t_sum
    print(f"  site CRC-32, zlib loop      {t_zlib * 1e3:9.1f} ms")
    print(f"  site CRC-32, numpy tables   {t_np * 1e3:9.1f} ms   ({t_np / t_zlib:.1f}x the zlib loop)")
    print(f"  scidac_checksum (lgdiff)    {t_sum * 1e3:9.1f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        for name, write, read, path in (("nersc", write_nersc, read_nersc, Path(tmp) / "cfg.nersc"),
                                        ("ildg", write_ildg, read_ildg, Path(tmp) / "cfg.lime")):
            for precision in ("double", "single"):
                t_w = best_time(lambda: write(path, U, precision=precision), reps)
                t_r = best_time(lambda: read(path), reps)
                out["rows"][f"write {name} {precision}"] = t_w
                out["rows"][f"read {name} {precision}"] = t_r
                print(f"  {name:5s} {precision:6s}  write {t_w * 1e3:9.1f} ms   read (all checks) {t_r * 1e3:9.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
