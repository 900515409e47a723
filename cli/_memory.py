"""Refuse a run that cannot fit in memory before allocating it, with both numbers.

A lattice that is too large otherwise ends in a 40-line ``DefaultCPUAllocator: can't allocate memory``
traceback, or worse, in the kernel's OOM killer ending the process silently half-way through the run. The
estimate is cheap and deliberately simple: the bytes of the state (``chains`` configurations) times a factor for
the sampler's temporaries (or the network's activations), measured once per algorithm on the CPU, plus the records
the ensemble writer buffers between flushes. Where the estimate misses, an allocation that fails at once still
becomes a one-line error (``cli.main._user_errors``).
"""

import os
from pathlib import Path

import torch

from lgdiff._run.theory import Theory

GENERATE_FACTORS = {("scalar", "hmc"): 10.0, ("scalar", "fahmc"): 18.0, ("scalar", "metropolis"): 15.0,
                    ("scalar", "wolff"): 17.0, ("links", "hmc"): 19.0, ("links", "heatbath"): 11.0,
                    ("links", "direct"): 12.0}
"""Peak memory of ``lgdiff generate`` per byte of the state (all chains), by field kind and ``--algorithm``: the
state itself, the hot start's temporaries and the sampler's (momenta, proposal, force, staples). Measured with
``benchmarks/bench_memory.py`` (CPU, 64 MB states, 3 updates; the largest over theories and dtypes, rounded up):
phi4 HMC 9.0, FA-HMC 16.6, Metropolis 13.7, Wolff 15.8; U(1) 2D HMC 12.5, heatbath 9.6; SU(2) 4D HMC 11.7,
heatbath 7.0; SU(3) 4D HMC 15.8 (float64) and 17.0 (float32), heatbath 6.5 and 7.0. At 200 MB states SU(3) HMC
measured 16.5 and phi4 FA-HMC 10.0."""
SAMPLE_FACTORS = {"phi4": 320.0, "u1": 80.0, "su3": 55.0}
"""Peak memory of ``lgdiff sample`` per byte of the float32 state (``lgdiff train`` and the shipped models work in
float32), by theory: the network's activations dominate. Measured once on the CPU with the shipped models (1
record, the reverse SDE and a few MAALA or path steps; peak ``VmHWM`` as in ``benchmarks/bench_memory.py``): phi4
NCSN++ 296 (path) and 299 (sde) on 512^2; U(1) L-CNN 74 (maala) and 73 (sde) on 512^2; SU(3) L-CNN 49 (maala) on
10^4. A wider network than the shipped one needs more: for it the check is a lower bound."""


def state_bytes(theory: Theory, chains: int, dtype: str) -> int:
    """Bytes of ``chains`` configurations of ``theory`` in the real ``dtype`` (``float32``/``float64``): a real
    number per site for scalars, ``D`` complex ``N x N`` matrices per site for links."""
    real = torch.finfo(getattr(torch, dtype)).bits // 8
    group = theory.group
    per_site = real if group is None else theory.lattice.dim * group.n * group.n * 2 * real
    return chains * theory.lattice.volume * per_site


def format_bytes(n: float) -> str:
    """``1.5 GB`` style (powers of 1024)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _read_int(path: Path) -> int | None:
    """An integer file of the cgroup tree; ``None`` for ``max``, an absent or unreadable file."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def cgroup_headroom(proc_cgroup: str, root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes this process's cgroup (and every cgroup above it) may still allocate: ``limit - usage``, the
    smallest along the path; ``None`` without a limit. ``proc_cgroup`` is the text of ``/proc/self/cgroup``
    (cgroup v2: ``0::/path``; v1: ``N:memory:/path``). Batch systems (Slurm, containers) limit jobs this way,
    below what ``/proc/meminfo`` shows."""
    best: int | None = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":  # v2
            base, limit_name, usage_name = root, "memory.max", "memory.current"
        elif "memory" in controllers.split(","):  # v1
            base, limit_name, usage_name = root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes"
        else:
            continue
        path = base / rel.strip("/")
        while True:
            limit, usage = _read_int(path / limit_name), _read_int(path / usage_name)
            if limit is not None and usage is not None and limit < 2**60:  # v1 writes ~2^63 for "no limit"
                best = max(limit - usage, 0) if best is None else min(best, max(limit - usage, 0))
            if path == base or base not in path.parents:
                break
            path = path.parent
    return best


def available_bytes(device: torch.device) -> tuple[int, str] | None:
    """Bytes free for a new allocation on ``device`` and where the number comes from; ``None`` where unknown
    (the check is then skipped). CUDA: ``torch.cuda.mem_get_info``; CPU: ``MemAvailable`` of ``/proc/meminfo``
    (else the free pages of ``os.sysconf``), lowered to the cgroup's headroom where a cgroup limits memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0], f"free on {device}"
    if device.type != "cpu":
        return None
    found: tuple[int, str] | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found = int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
    except OSError:
        pass
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free physical pages"
        except (ValueError, OSError, AttributeError):
            return None
    try:
        headroom = cgroup_headroom(Path("/proc/self/cgroup").read_text())
    except OSError:
        headroom = None
    if headroom is not None and headroom < found[0]:
        found = headroom, "the memory limit of this job's cgroup"
    return found


def check_memory(theory: Theory, *, chains: int, dtype: str, factor: float, why: str, device: torch.device,
                 buffered: int = 0, advice: tuple[str, ...] = ()) -> None:
    """Raise ``ValueError`` (one line, both numbers, what to change) when a run needs more memory than ``device``
    has free: ``state x (factor + buffered)`` (``buffered`` records held between file writes)."""
    state = state_bytes(theory, chains, dtype)
    need = state * (factor + buffered)
    free = available_bytes(device)
    if free is None or need <= free[0]:
        return
    shape = "x".join(map(str, theory.lattice.shape))
    parts = [f"{chains} chains of {theory.name} on {shape} in {dtype} = {format_bytes(state)}",
             f"x {factor:g} for {why}"]
    if buffered:
        parts.append(f"+ {buffered} buffered record{'s' if buffered > 1 else ''}")
    raise ValueError(f"--L {theory.lattice.shape[0]}: the run needs about {format_bytes(need)} ({', '.join(parts)}) "
                     f"but {device} has {format_bytes(free[0])} available ({free[1]}); use a smaller --L, fewer "
                     f"--chains{''.join(', ' + a for a in advice)} or a device with more memory")


def check_generate_memory(theory: Theory, *, algorithm: str, chains: int, dtype: str, flush_every: int,
                          device: torch.device) -> None:
    """`check_memory` for ``lgdiff generate``: ``state x GENERATE_FACTORS[kind, algorithm]`` plus ``flush_every``
    buffered records."""
    advice = (("--dtype float32",) if dtype == "float64" else ()) + (("a smaller --flush-every",) if flush_every > 1
                                                                     else ())
    check_memory(theory, chains=chains, dtype=dtype, factor=GENERATE_FACTORS["links" if theory.is_gauge else "scalar",
                                                                             algorithm],
                 why=f"{algorithm}'s temporaries", device=device, buffered=flush_every, advice=advice)


def check_sample_memory(theory: Theory, *, chains: int, device: torch.device) -> None:
    """`check_memory` for ``lgdiff sample``: ``float32 state x SAMPLE_FACTORS[theory]``."""
    if theory.name in SAMPLE_FACTORS:
        check_memory(theory, chains=chains, dtype="float32", factor=SAMPLE_FACTORS[theory.name],
                     why="the network's activations and the sampler's temporaries", device=device)


__all__ = ["GENERATE_FACTORS", "SAMPLE_FACTORS", "available_bytes", "cgroup_headroom", "check_generate_memory",
           "check_memory", "check_sample_memory", "format_bytes", "state_bytes"]
