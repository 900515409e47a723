"""Cross-implementation tests: the fast loop kernels of lgdiff._geometry.paths against the naive
reference (torch.roll + complex ``@``, the obvious code). Invariance and covariance are tested in
tests/actions; here only "the fast code computes the same function"."""

import pytest
import torch

from lgdiff import SU, U1, Lattice, LinkField, WilsonAction
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
SHAPES = [(3, 4), (2, 3, 4), (3, 2, 4, 2)]  # D = 2, 3, 4; unequal sizes catch swapped axes
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
def test_plaquette_trace_sum_matches_naive(group, shape, dtype, generator):
    u = random_links(group, shape, dtype, generator)
    planes = Lattice(shape=shape).planes
    naive = sum(naive_plaquette(u, mu, nu).diagonal(dim1=-2, dim2=-1).sum(-1).real for mu, nu in planes)
    assert_close(plaquette_trace_sum(u), naive, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_staples_and_closed_staples_match_naive(group, shape, dtype, generator):
    u = random_links(group, shape, dtype, generator)
    closed = closed_staples(u)
    for mu in range(len(shape)):
        a = naive_staples(u, mu)
        assert_close(staples(u, mu), a, dtype)
        assert_close(closed[:, mu], u[:, mu] @ a, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_projected_closed_staples_is_scaled_projection(group, dtype, generator):
    u = random_links(group, (2, 3, 2, 3), dtype, generator)
    naive = torch.stack([group.project_algebra(u[:, mu] @ naive_staples(u, mu)) for mu in range(4)], 1)
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


def test_kernels_accept_any_strides(generator):
    # Haar links come out of QR with transposed matrices; a batch slice is non-contiguous too
    u = random_links(SU(3), (3, 2, 2, 2), torch.complex128, generator, batch=4)
    for v in (u.transpose(-2, -1).contiguous().transpose(-2, -1), u[::2], u.contiguous()):
        assert_close(plaquette_trace_sum(v), plaquette_trace_sum(v.contiguous()), torch.complex128)
        assert_close(closed_staples(v), closed_staples(v.contiguous()), torch.complex128)


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
