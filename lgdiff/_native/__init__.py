"""Fused native CPU kernels, one pass each (private): the SU(N)/U(1) plaquette trace sum, staple sum and Wilson
force, and the phi^4 action density, gradient and checkerboard Metropolis sweep.

``kernels.cpp`` is plain C++ with a C ABI (no torch or Python headers): it is compiled on first use with the
system's C++ compiler (``$CXX``, else ``c++``/``g++``/``clang++``) for this CPU (``-O3 -march=native``, about 4 s),
cached under ``$LGDIFF_CACHE`` (default ``~/.cache/lgdiff``) by a hash of the source, the compiler, the flags and
the CPU, and called through ``ctypes`` on the tensors' memory. docs/performance.md has what it buys and why it is
written this way.

``paths.py``, ``Phi4Action`` and ``Metropolis`` call these kernels where they apply (`available`, `available_scalar`: CPU
tensors that need no gradient; links of complex64/128 with N <= 3 and 2 <= D <= 8; fields of float32/64) and
their eager code everywhere else. ``LGDIFF_NATIVE=0`` switches them off;
without a working compiler they are off, and `status` says why (``lgdiff info`` prints it). The work is split
over ``torch.get_num_threads()`` Python threads (ctypes releases the GIL), so it follows torch's thread
setting.

Everything here is ``@typing.no_type_check``: per-step helpers, kept out of the test suite's import hook.
"""

import concurrent.futures
import ctypes
import hashlib
import math
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile
import threading
import typing

import torch
from torch import Tensor

_SOURCE = pathlib.Path(__file__).with_name("kernels.cpp")
_FLAGS = ("-std=c++17", "-O3", "-march=native", "-ffp-contract=fast", "-shared", "-fPIC")
ENABLED = os.environ.get("LGDIFF_NATIVE", "1") != "0"
"""Module switch (the benchmark and the tests flip it to time or compare both paths)."""
MIN_SITES_PER_THREAD = 4096
"""Below this many sites per thread one thread does the whole call (thread hand-off costs ~50 us)."""

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_error: str | None = None
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_size = 0


@typing.no_type_check
def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@typing.no_type_check
def _cpu_signature() -> str:
    """What ``-march=native`` depends on: the CPU model and its feature flags."""
    try:
        info = pathlib.Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags", "Features", "CPU part"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return platform.processor() + platform.machine()


@typing.no_type_check
def _build() -> ctypes.CDLL:
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++ or clang++)")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout
    source = _SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, version.encode(), " ".join(_FLAGS).encode(),
                                     _cpu_signature().encode()])).hexdigest()[:16]
    cache = pathlib.Path(os.environ.get("LGDIFF_CACHE", pathlib.Path.home() / ".cache" / "lgdiff")) / "native"
    target = cache / f"lgdiff_kernels_{key}.so"
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        # compile to a temporary name, then rename: concurrent processes (torchrun) never load a partial file
        fd, tmp = tempfile.mkstemp(dir=cache, suffix=".so")
        os.close(fd)
        try:
            result = subprocess.run([cxx, *_FLAGS, "-o", tmp, str(_SOURCE)], capture_output=True, text=True,
                                    check=False)
            if result.returncode != 0:
                first = (result.stderr.strip().splitlines() or ["(no output)"])[0]
                raise RuntimeError(f"{pathlib.Path(cxx).name} failed to compile {_SOURCE.name}: {first}")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    lib = ctypes.CDLL(str(target))
    i64, ptr, c_int = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    for suffix, real in (("f64", ctypes.c_double), ("f32", ctypes.c_float)):
        f = getattr(lib, f"lgdiff_plaquette_trace_sum_{suffix}")
        f.argtypes = [c_int, ptr, ptr, i64, c_int, ptr, i64, i64]
        f.restype = c_int
        f = getattr(lib, f"lgdiff_staples_{suffix}")
        f.argtypes = [c_int, ptr, ptr, i64, c_int, ptr, c_int, i64, i64]
        f.restype = c_int
        f = getattr(lib, f"lgdiff_projected_closed_staples_{suffix}")
        f.argtypes = [c_int, ptr, ptr, i64, c_int, ptr, real, c_int, i64, i64]
        f.restype = c_int
        f = getattr(lib, f"lgdiff_phi4_gradient_{suffix}")
        f.argtypes = [ptr, ptr, c_int, ptr, real, real, real, i64, i64]
        f.restype = None
        f = getattr(lib, f"lgdiff_phi4_metropolis_{suffix}")
        f.argtypes = [ptr, ptr, ptr, ptr, i64, c_int, ptr, real, real, real, c_int, i64, i64]
        f.restype = None
        f = getattr(lib, f"lgdiff_phi4_density_{suffix}")
        f.argtypes = [ptr, ptr, c_int, ptr, real, real, i64, i64]
        f.restype = None
    return lib


@typing.no_type_check
def library() -> ctypes.CDLL | None:
    """The compiled kernels, built on the first call; ``None`` (and `status` says why) if they cannot be."""
    global _lib, _error
    if _lib is None and _error is None:
        with _lock:
            if _lib is None and _error is None:
                try:
                    _lib = _build()
                except (RuntimeError, OSError) as exc:
                    _error = str(exc).splitlines()[0]
    return _lib


@typing.no_type_check
def status() -> str:
    """One line: whether the native kernels are in use, and if not why (for ``lgdiff info``)."""
    if not ENABLED:
        return "off (LGDIFF_NATIVE=0)"
    if library() is None:
        return f"unavailable ({_error}); using the eager PyTorch kernels"
    return "on (fused C++ plaquette, staples, Wilson force and phi^4 kernels on the CPU)"


_SUFFIX = {torch.complex128: "f64", torch.complex64: "f32", torch.float64: "f64", torch.float32: "f32"}


@typing.no_type_check
def _plain(x: Tensor) -> bool:
    """A CPU tensor with memory of its own that needs no gradient: not a subclass, not a torch.func wrapper
    (grad, vmap and jvp wrap tensors that have no storage to hand to C++)."""
    return (
        ENABLED
        and x.device.type == "cpu"
        and type(x) is Tensor
        and not torch._C._functorch.is_functorch_wrapped_tensor(x)
        and not (x.requires_grad and torch.is_grad_enabled())
    )


@typing.no_type_check
def available(u: Tensor) -> bool:
    """Whether the native kernels can run on the links ``u`` ``[B, D, *L, N, N]``: a plain CPU tensor (`_plain`)
    of complex64/128, N <= 3, 2 <= D <= 8, fewer than 2^31 links per configuration."""
    return (
        _plain(u)
        and u.dtype in (torch.complex64, torch.complex128)
        and u.shape[-1] <= 3
        and 2 <= u.shape[1] <= 8
        and math.prod(u.shape[1:-2]) < 2**31  # 32-bit neighbour tables
        and library() is not None
    )


@typing.no_type_check
def available_scalar(x: Tensor) -> bool:
    """Whether the native phi^4 kernels can run on the field ``x`` ``[B, *L]``: a plain CPU tensor (`_plain`) of
    float32/64 with D >= 1."""
    return _plain(x) and x.dtype in (torch.float32, torch.float64) and x.dim() >= 2 and library() is not None


@typing.no_type_check
def _split(kernel, head: tuple, count: int, sites: int) -> list:
    """``kernel(*head, lo, hi)`` over ``[0, count)``, split over torch's threads (at most one per
    ``MIN_SITES_PER_THREAD`` of the ``sites``); the return values."""
    threads = max(1, min(torch.get_num_threads(), sites // MIN_SITES_PER_THREAD, count))
    if threads == 1:
        return [kernel(*head, 0, count)]
    global _pool, _pool_size
    if _pool_size < threads:
        if _pool is not None:  # a larger thread count: replace the pool, let the old one's threads exit
            _pool.shutdown(wait=False)
        _pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lgdiff-native")
        _pool_size = threads
    edges = [count * k // threads for k in range(threads + 1)]
    return list(_pool.map(lambda k: kernel(*head, edges[k], edges[k + 1]), range(threads)))


@typing.no_type_check
def _run(kernel, u: Tensor, out: Tensor, *args) -> None:
    """Run ``kernel(n, u, out, B, D, shape, *args, site0, site1)`` over all ``B V`` sites."""
    shape = (ctypes.c_int64 * (u.dim() - 4))(*u.shape[2:-2])
    sites = u.shape[0] * (u.numel() // (u.shape[0] * u.shape[1] * u.shape[-1] ** 2))
    head = (u.shape[-1], u.data_ptr(), out.data_ptr(), u.shape[0], u.shape[1], shape, *args)
    codes = _split(kernel, head, sites, sites)
    if any(codes):  # available() admits only supported N and D: a nonzero code is a bug
        raise RuntimeError(f"lgdiff native kernel failed with code {max(codes)} on links of shape {tuple(u.shape)}")


@typing.no_type_check
def _phi4(name: str, x: Tensor, *params: float) -> Tensor:
    x = x.contiguous()
    out = torch.empty_like(x)
    shape = (ctypes.c_int64 * (x.dim() - 1))(*x.shape[1:])
    kernel = getattr(_lib, f"lgdiff_phi4_{name}_{_SUFFIX[x.dtype]}")
    _split(kernel, (x.data_ptr(), out.data_ptr(), x.dim() - 1, shape, *params),
           x.numel() // x.shape[-1], x.numel())
    return out


@typing.no_type_check
def phi4_gradient(x: Tensor, kappa: float, lam: float, sign: float = 1.0) -> Tensor:
    """``sign dS/dphi`` of the hopping-form phi^4 action (`Phi4Action`) on ``x`` ``[B, *L]``, in one pass
    (``sign = -1``: the HMC force, with no second pass to negate it)."""
    return _phi4("gradient", x, kappa, lam, sign)


@typing.no_type_check
def phi4_density(x: Tensor, kappa: float, lam: float) -> Tensor:
    """The action density of `Phi4Action` on ``x`` ``[B, *L]``, in one pass."""
    return _phi4("density", x, kappa, lam)


@typing.no_type_check
def plaquette_trace_sum(u: Tensor) -> Tensor:
    """``sum_{mu<nu} Re tr U_{mu nu}(x)``, ``[B, *L]`` real, in one pass over the links."""
    u = u.resolve_conj().contiguous()
    out = torch.empty((u.shape[0], *u.shape[2:-2]), dtype=u.real.dtype)
    _run(getattr(_lib, f"lgdiff_plaquette_trace_sum_{_SUFFIX[u.dtype]}"), u, out)
    return out


@typing.no_type_check
def staples(u: Tensor, mu: int) -> Tensor:
    """The staple sum ``A_mu(x)`` of one direction, ``[B, *L, N, N]``, in one pass over the links."""
    u = u.resolve_conj().contiguous()
    out = torch.empty((u.shape[0], *u.shape[2:]), dtype=u.dtype)
    _run(getattr(_lib, f"lgdiff_staples_{_SUFFIX[u.dtype]}"), u, out, mu)
    return out


@typing.no_type_check
def projected_closed_staples(u: Tensor, scale: float, traceless: bool) -> Tensor:
    """``scale P(U_mu(x) A_mu(x))``, ``[B, D, *L, N, N]``: the Wilson force, in one pass over the links."""
    u = u.resolve_conj().contiguous()
    out = torch.empty_like(u)
    _run(getattr(_lib, f"lgdiff_projected_closed_staples_{_SUFFIX[u.dtype]}"), u, out, scale, int(traceless))
    return out


@typing.no_type_check
def phi4_metropolis(x: Tensor, u: Tensor, log_r: Tensor, kappa: float, lam: float, step: float,
                    hits: int) -> tuple[Tensor, Tensor]:
    """One checkerboard Metropolis sweep of `Phi4Action` on ``x`` ``[B, *L]`` (every extent even) with the uniform
    numbers ``u`` and ``log_r`` ``[hits, B, *L]`` that :class:`lgdiff.Metropolis` draws: the new field and the number
    of accepted proposals per chain ``[B]``. The configurations are split over torch's threads."""
    out = x.contiguous().clone()
    accepted = torch.empty(x.shape[0], dtype=x.dtype)
    shape = (ctypes.c_int64 * (x.dim() - 1))(*x.shape[1:])
    kernel = getattr(_lib, f"lgdiff_phi4_metropolis_{_SUFFIX[x.dtype]}")
    _split(kernel, (out.data_ptr(), u.contiguous().data_ptr(), log_r.contiguous().data_ptr(), accepted.data_ptr(),
                    x.shape[0], x.dim() - 1, shape, kappa, lam, step, hits), x.shape[0], x.numel())
    return out, accepted
