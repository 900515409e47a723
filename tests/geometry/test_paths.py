"""Cross-implementation tests: the fast loop kernels of lgdiff._geometry.paths against the naive
reference (torch.roll + complex ``@``, the obvious code). Invariance and covariance are tested in
tests/actions; here only "the fast code computes the same function"."""

import pytest
import torch

from lgdiff import SU, U1, Lattice, LinkField, WilsonAction
from lgdiff import _native
from lgdiff._geometry import _paths_triton, paths
from lgdiff._geometry.paths import (
    closed_staples,
    plaquette,
    plaquette_trace_sum,
    projected_closed_staples,
    rectangle,
    staples,
)

GROUPS = [U1(), SU(2), SU(3)]
DTYPES = [torch.complex64, torch.complex128]
SHAPES = [(3, 4), (3, 5), (2, 3, 4), (3, 2, 4, 2)]  # D = 2, 3, 4; unequal sizes catch swapped axes
# (3, 5): 2 x 15 sites, not a multiple of the native kernels' SIMD width (a partial last block)
TOL = {torch.complex64: 2e-5, torch.complex128: 1e-13}


# ---- the naive reference --------------------------------------------------------------------------

def roll(f, mu, steps=1):
    """f(x + steps mu) on a per-direction slice [B, *L, N, N]."""
    return torch.roll(f, -steps, 1 + mu)


def naive_plaquette(u, mu, nu):
    return u[:, mu] @ roll(u[:, nu], mu) @ roll(u[:, mu], nu).mH @ u[:, nu].mH


def naive_staples(u, mu):
    total = torch.zeros_like(u[:, mu])
    for nu in range(u.shape[1]):
        if nu != mu:
            total = total + roll(u[:, nu], mu) @ roll(u[:, mu], nu).mH @ u[:, nu].mH
            total = total + roll(roll(u[:, nu], mu).mH @ u[:, mu].mH @ u[:, nu], nu, -1)
    return total


def naive_rectangle(u, mu, nu, r, t):
    line_mu = u[:, mu]
    for k in range(1, r):
        line_mu = line_mu @ roll(u[:, mu], mu, k)
    line_nu = u[:, nu]
    for k in range(1, t):
        line_nu = line_nu @ roll(u[:, nu], nu, k)
    return line_mu @ roll(line_nu, mu, r) @ roll(line_mu, nu, t).mH @ line_nu.mH


def random_links(group, shape, dtype, generator, batch=2):
    return LinkField.random(group, Lattice(shape=shape), batch=batch, generator=generator, dtype=dtype).data


def assert_path(u, kernel_path):
    """The kernel under test is the one that runs."""
    assert _native.available(u) == (kernel_path == "native")


def assert_close(fast, naive, dtype):
    assert fast.shape == naive.shape and fast.dtype == naive.dtype
    torch.testing.assert_close(fast, naive, rtol=TOL[dtype], atol=TOL[dtype])


# ---- fast kernels against the reference -----------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_plaquette_matches_naive(group, shape, dtype, generator):
    u = random_links(group, shape, dtype, generator)
    for mu in range(len(shape)):
        for nu in range(len(shape)):
            if mu != nu:  # both orientations: U_{nu mu} = U_{mu nu}^dagger up to the corner
                assert_close(plaquette(u, mu, nu), naive_plaquette(u, mu, nu), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_plaquette_trace_sum_matches_naive(group, shape, dtype, generator, kernel_path):
    u = random_links(group, shape, dtype, generator)
    assert_path(u, kernel_path)
    planes = Lattice(shape=shape).planes
    naive = sum(naive_plaquette(u, mu, nu).diagonal(dim1=-2, dim2=-1).sum(-1).real for mu, nu in planes)
    assert_close(plaquette_trace_sum(u), naive, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_staples_and_closed_staples_match_naive(group, shape, dtype, generator, kernel_path):
    u = random_links(group, shape, dtype, generator)
    assert_path(u, kernel_path)
    closed = closed_staples(u)
    for mu in range(len(shape)):
        a = naive_staples(u, mu)
        assert_close(staples(u, mu), a, dtype)
        assert_close(closed[:, mu], u[:, mu] @ a, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_projected_closed_staples_is_scaled_projection(group, shape, dtype, generator, kernel_path):
    u = random_links(group, shape, dtype, generator)
    assert_path(u, kernel_path)
    naive = torch.stack([group.project_algebra(u[:, mu] @ naive_staples(u, mu)) for mu in range(len(shape))], 1)
    fast = projected_closed_staples(u, traceless=group.n > 1, scale=0.37)
    assert_close(fast, 0.37 * naive, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("group", GROUPS, ids=str)
@pytest.mark.parametrize(("mu", "nu", "r", "t"), [(0, 1, 1, 1), (0, 1, 2, 3), (2, 0, 3, 1)])
def test_rectangle_matches_naive(group, mu, nu, r, t, dtype, generator):
    u = random_links(group, (4, 3, 5), dtype, generator)
    assert_close(rectangle(u, mu, nu, r, t), naive_rectangle(u, mu, nu, r, t), dtype)


def test_wilson_action_density_and_force_match_naive(generator):
    # the action assembles the kernels: beta sum (1 - Re tr U_P / N), and (beta / 2N) P(U A)
    U = LinkField.random(SU(3), Lattice(shape=(2, 3, 2, 2)), batch=2, generator=generator)
    u, beta = U.data, 5.5
    action = WilsonAction(beta=beta, group=SU(3))
    naive_density = sum(1 - naive_plaquette(u, mu, nu).diagonal(dim1=-2, dim2=-1).sum(-1).real / 3
                        for mu, nu in U.lattice.planes)
    torch.testing.assert_close(action.density(U), beta * naive_density, rtol=1e-13, atol=1e-12)
    naive_force = torch.stack([SU(3).project_algebra(u[:, mu] @ naive_staples(u, mu)) for mu in range(4)], 1)
    torch.testing.assert_close(action.force(U).data, beta / 6 * naive_force, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("chunk_sites", [1, 30])  # one configuration per chunk; 2 + 2 + 1 configurations
def test_cpu_batch_chunks_match_naive(chunk_sites, generator, monkeypatch):
    monkeypatch.setattr(_native, "ENABLED", False)  # the chunks are the eager code's
    monkeypatch.setattr(paths, "CHUNK_SITES", chunk_sites)
    group = SU(3)
    u = random_links(group, (3, 2, 2), torch.complex128, generator, batch=5)  # V = 12
    assert len(paths._chunks(u)) == (5 if chunk_sites == 1 else 3)
    planes = ((0, 1), (0, 2), (1, 2))
    naive = sum(naive_plaquette(u, mu, nu).diagonal(dim1=-2, dim2=-1).sum(-1).real for mu, nu in planes)
    assert_close(plaquette_trace_sum(u), naive, torch.complex128)
    closed = closed_staples(u)
    forces = projected_closed_staples(u, traceless=True, scale=2.0)
    for mu in range(3):
        a = naive_staples(u, mu)
        assert_close(staples(u, mu), a, torch.complex128)
        assert_close(closed[:, mu], u[:, mu] @ a, torch.complex128)
        assert_close(forces[:, mu], 2.0 * group.project_algebra(u[:, mu] @ a), torch.complex128)


def test_kernels_accept_any_strides(generator, kernel_path):
    # Haar links come out of QR with transposed matrices; a batch slice is non-contiguous; a conjugate view
    # is lazily conjugated (its memory holds U, not U^*)
    u = random_links(SU(3), (3, 2, 2, 2), torch.complex128, generator, batch=4)
    for v in (u.transpose(-2, -1).contiguous().transpose(-2, -1), u[::2], u.conj(), u.contiguous()):
        plain = v.resolve_conj().contiguous()
        assert_close(plaquette_trace_sum(v), plaquette_trace_sum(plain), torch.complex128)
        assert_close(closed_staples(v), closed_staples(plain), torch.complex128)
        assert_close(projected_closed_staples(v, traceless=True, scale=1.0),
                     projected_closed_staples(plain, traceless=True, scale=1.0), torch.complex128)


def test_kernels_are_differentiable(generator):
    # the eager code path keeps autograd: d/dt Re tr sum_P U_P(exp(t X) U) at t = 0 by finite differences
    group = SU(2)
    u = random_links(group, (3, 2, 2), torch.complex128, generator)
    x = group.random_algebra(tuple(u.shape[:-2]), generator=generator)
    t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    s = plaquette_trace_sum(torch.linalg.matrix_exp(t * x) @ u).sum()
    (ds,) = torch.autograd.grad(s, t)
    h = 1e-6
    fd = (plaquette_trace_sum(torch.linalg.matrix_exp(h * x) @ u).sum()
          - plaquette_trace_sum(torch.linalg.matrix_exp(-h * x) @ u).sum()) / (2 * h)
    torch.testing.assert_close(ds, fd, rtol=1e-7, atol=1e-8)


# ---- the native CPU kernels: where they run, threads, and what happens without a compiler ----------

def test_native_kernels_run_only_where_they_apply(generator, kernel_path):
    u = random_links(SU(3), (2, 3, 2), torch.complex128, generator)
    assert_path(u, kernel_path)
    # SU(4) (N > 3), float links and a gradient-carrying input take the eager code, which is exact there too
    assert not _native.available(random_links(SU(4), (2, 3), torch.complex128, generator))
    assert not _native.available(u.clone().requires_grad_())
    with torch.no_grad():
        assert _native.available(u.clone().requires_grad_()) == (kernel_path == "native")
    # inside torch.func transforms the eager code runs (a wrapped tensor has no memory to hand to C++)
    seen = []
    torch.func.vmap(lambda x: seen.append(_native.available(x[None])) or x.sum())(u)
    assert seen == [False]
    v = random_links(SU(4), (2, 3), torch.complex128, generator)
    naive = torch.stack([SU(4).project_algebra(v[:, mu] @ naive_staples(v, mu)) for mu in range(2)], 1)
    assert_close(projected_closed_staples(v, traceless=True, scale=1.0), naive, torch.complex128)


def test_native_kernels_split_over_threads_bit_for_bit(generator, monkeypatch):
    monkeypatch.setattr(_native, "ENABLED", True)
    if _native.library() is None:
        pytest.skip(f"native kernels: {_native.status()}")
    u = random_links(SU(3), (3, 2, 4, 2), torch.complex128, generator, batch=3)  # 144 sites: 36 blocks of 4
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = (plaquette_trace_sum(u), projected_closed_staples(u, traceless=True, scale=1.0), staples(u, 2))
        torch.set_num_threads(3)
        monkeypatch.setattr(_native, "MIN_SITES_PER_THREAD", 1)
        three = (plaquette_trace_sum(u), projected_closed_staples(u, traceless=True, scale=1.0), staples(u, 2))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, three, strict=True))


def test_native_kernels_build_where_a_compiler_exists():
    # a broken kernels.cpp must fail here, not make the native tests above skip quietly
    if _native._compiler() is None:
        pytest.skip("no C++ compiler on this machine: the eager kernels run (tested below)")
    assert _native.library() is not None, _native.status()


def test_without_a_compiler_the_eager_kernels_run(generator, monkeypatch, tmp_path):
    monkeypatch.setattr(_native, "ENABLED", True)
    monkeypatch.setattr(_native, "_lib", None)
    monkeypatch.setattr(_native, "_error", None)
    monkeypatch.setattr(_native, "_compiler", lambda: None)
    u = random_links(SU(2), (3, 2), torch.complex128, generator)
    assert not _native.available(u)
    assert _native.status() == "unavailable (no C++ compiler found (set CXX, or install g++ or clang++)); using the eager PyTorch kernels"
    planes = ((0, 1),)
    naive = sum(naive_plaquette(u, mu, nu).diagonal(dim1=-2, dim2=-1).sum(-1).real for mu, nu in planes)
    assert_close(plaquette_trace_sum(u), naive, torch.complex128)


def test_a_failed_build_is_reported_in_one_line(monkeypatch, tmp_path):
    if _native._compiler() is None:
        pytest.skip("no C++ compiler")
    bad = tmp_path / "kernels.cpp"
    bad.write_text("this is not C++\n")
    for name, value in (("ENABLED", True), ("_lib", None), ("_error", None), ("_SOURCE", bad)):
        monkeypatch.setattr(_native, name, value)
    monkeypatch.setenv("LGDIFF_CACHE", str(tmp_path / "cache"))
    assert _native.library() is None
    line = _native.status()
    assert line.startswith("unavailable (") and "failed to compile kernels.cpp" in line and "\n" not in line
    assert list((tmp_path / "cache" / "native").iterdir()) == []  # no partial library left behind


# ---- the fused CUDA kernels against the eager code ------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_fused_cuda_kernels_match_naive(group, monkeypatch):
    if not torch.cuda.is_available() or _paths_triton.triton is None:
        pytest.skip("the fused kernels need CUDA and Triton")
    monkeypatch.setattr(_paths_triton, "ENABLED", True)  # opt-in (LGDIFF_TRITON=1) in the library
    gen = torch.Generator(device="cuda").manual_seed(7)
    for shape in SHAPES:
        for dtype in DTYPES:
            U = LinkField.random(group, Lattice(shape=shape), batch=3, generator=gen, dtype=dtype, device="cuda")
            u = U.data
            assert _paths_triton.available(u)
            planes = U.lattice.planes
            naive = sum(naive_plaquette(u, mu, nu).diagonal(dim1=-2, dim2=-1).sum(-1).real for mu, nu in planes)
            assert_close(plaquette_trace_sum(u), naive, dtype)
            naive_force = torch.stack(
                [group.project_algebra(u[:, mu] @ naive_staples(u, mu)) for mu in range(len(shape))], 1
            )
            fast = projected_closed_staples(u, traceless=group.n > 1, scale=0.37)
            assert_close(fast, 0.37 * naive_force, dtype)
