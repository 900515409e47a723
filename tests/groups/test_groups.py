import math

import pytest
import torch

from lgdiff import SU, U1, group_from_name
from lgdiff._groups.base import trace

GROUPS = [U1(), SU(2), SU(3)]
DTYPES = [torch.complex64, torch.complex128]


def tol(dtype):
    return 2e-5 if dtype == torch.complex64 else 1e-12


# ---- properties ---------------------------------------------------------------------------------

@pytest.mark.parametrize("group", [*GROUPS, SU(4)], ids=str)
def test_generators_are_normalised_hermitian_traceless(group):
    t = group.generators()
    assert t.shape == (group.n_generators, group.n, group.n)
    torch.testing.assert_close(t, t.mH)
    gram = torch.einsum("aij,bji->ab", t, t)
    torch.testing.assert_close(gram, group.norm * torch.eye(group.n_generators, dtype=gram.dtype))
    if isinstance(group, SU):
        torch.testing.assert_close(trace(t), torch.zeros(group.n_generators, dtype=t.dtype))


@pytest.mark.parametrize("n", [2, 3])
def test_su_n_structure_constants_close(n):
    # [T^a, T^b] = i f^{abc} T^c with real totally antisymmetric f
    group = SU(n)
    t = group.generators()
    comm = torch.einsum("aij,bjk->abik", t, t) - torch.einsum("bij,ajk->abik", t, t)
    f = torch.einsum("abij,cji->abc", comm, t) / (1j * group.norm)
    torch.testing.assert_close(f.imag, torch.zeros_like(f.imag), atol=1e-12, rtol=0)
    recon = 1j * torch.einsum("abc,cij->abij", f.real.to(t.dtype), t)
    torch.testing.assert_close(recon, comm)
    assert torch.allclose(f.real, -f.real.transpose(0, 1)) and torch.allclose(f.real, -f.real.transpose(0, 2))
    if n == 2:  # f^{abc} = epsilon^{abc} for T = sigma / 2 (up to the ordering of the basis)
        assert torch.allclose(f.real.abs().sum(), torch.tensor(6.0, dtype=torch.float64))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_group_axioms(group, dtype, generator):
    a, b, c = (group.random((64,), generator=generator, dtype=dtype) for _ in range(3))
    eye = group.identity((64,), dtype=dtype)
    assert bool(group.is_member(a @ b).all())                              # closure
    torch.testing.assert_close((a @ b) @ c, a @ (b @ c), atol=tol(dtype), rtol=0)  # associativity
    torch.testing.assert_close(a @ eye, a)                                  # identity
    torch.testing.assert_close(a @ a.mH, eye, atol=tol(dtype), rtol=0)       # inverse = dagger
    assert bool(group.is_member(a.mH).all())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("group", [*GROUPS, SU(4)], ids=str)
def test_exp_of_algebra_is_member_and_log_inverts_it(group, dtype, generator):
    x = group.random_algebra((128,), generator=generator, dtype=dtype) * 0.7
    u = group.exp(x)
    assert bool(group.is_member(u).all())
    torch.testing.assert_close(group.log(u), x, atol=50 * tol(dtype), rtol=0)


@pytest.mark.parametrize("group", [*GROUPS, SU(4)], ids=str)
def test_coordinates_round_trip(group, generator):
    omega = torch.randn(10, group.n_generators, generator=generator)
    x = group.from_coords(omega)
    torch.testing.assert_close(x, -x.mH)
    torch.testing.assert_close(group.to_coords(x), omega)
    y = group.from_coords(torch.randn(10, group.n_generators, generator=generator))
    torch.testing.assert_close(group.lie_inner(x, y), (omega * group.to_coords(y)).sum(-1))


@pytest.mark.parametrize("group", [*GROUPS, SU(4)], ids=str)
def test_projection_is_idempotent_and_traceless(group, generator):
    m = torch.randn(20, group.n, group.n, dtype=torch.complex128, generator=generator)
    p = group.project_algebra(m)
    torch.testing.assert_close(p, -p.mH)
    torch.testing.assert_close(group.project_algebra(p), p)
    if isinstance(group, SU):
        torch.testing.assert_close(trace(p), torch.zeros(20, dtype=p.dtype))


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_reunitarize_returns_nearby_member(group, generator):
    u = group.random((50,), generator=generator)
    noisy = u + 1e-3 * torch.randn(u.shape, dtype=u.dtype, generator=generator)
    assert not bool(group.is_member(noisy).any())
    fixed = group.reunitarize(noisy)
    assert bool(group.is_member(fixed).all())
    assert float((fixed - u).abs().max()) < 1e-2


# ---- cross-implementation: closed forms against matrix_exp ----------------------------------------

def _su3_with_eigenvalues(lam: torch.Tensor, generator) -> torch.Tensor:
    """i V diag(lam) V^dag with Haar V: algebra elements with chosen spectra."""
    v = SU(3).random((lam.shape[0],), generator=generator)
    return 1j * v @ torch.diag_embed(lam.to(torch.complex128)) @ v.mH


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("group", [SU(2), SU(3), U1()], ids=str)
@pytest.mark.parametrize("scale", [1e-9, 1e-4, 0.05, 0.3, 1.0, 3.0, 10.0])
def test_closed_form_exp_matches_matrix_exp(group, dtype, scale, generator):
    x = group.random_algebra((256,), generator=generator, dtype=dtype) * scale
    torch.testing.assert_close(group.exp(x), torch.linalg.matrix_exp(x), atol=20 * tol(dtype) * max(1, scale), rtol=0)


@pytest.mark.parametrize(
    "lam",
    [
        [1.0, 1.0, -2.0],                    # degenerate pair, c0 > 0
        [-1.0, -1.0, 2.0],                   # degenerate pair, c0 < 0
        [math.pi, -math.pi, 0.0],            # eigenvalues at +-pi
        [math.pi - 1e-7, -math.pi + 1e-7, 0.0],
        [1e-6, 1e-6, -2e-6],                 # near zero, degenerate
        [0.5 + 1e-9, 0.5 - 1e-9, -1.0],      # near-degenerate
        [2 * math.pi / 3, 2 * math.pi / 3, -4 * math.pi / 3],  # near a center element
    ],
)
def test_su3_exp_at_degenerate_and_extreme_spectra(lam, generator):
    x = _su3_with_eigenvalues(torch.tensor([lam] * 16), generator)
    torch.testing.assert_close(SU(3).exp(x), torch.linalg.matrix_exp(x), atol=1e-12, rtol=0)


@pytest.mark.parametrize("theta", [0.0, 1e-10, 1e-4, math.pi / 2, math.pi - 1e-8, math.pi, 2 * math.pi - 1e-3])
def test_su2_exp_near_zero_and_pi(theta, generator):
    axis = torch.nn.functional.normalize(torch.randn(8, 3, generator=generator), dim=-1)
    x = SU(2).from_coords(2 * theta * axis)  # rotation angle theta: exp = cos(theta) + i sin(theta) n.sigma
    torch.testing.assert_close(SU(2).exp(x), torch.linalg.matrix_exp(x), atol=1e-13, rtol=0)


# ---- Haar measure ---------------------------------------------------------------------------------

@pytest.mark.parametrize("group", [U1(), SU(2), SU(3)], ids=str)
def test_haar_trace_moments(group, generator):
    # For Haar U(1)/SU(N): E[tr U] = 0, E[|tr U|^2] = 1 (N >= 2 and U(1)),
    # E[|tr U|^4] = 2 for SU(N) with N >= 4 ... but 2 for SU(3) too (= # of ways), for SU(2) 2, for U(1) 1.
    # (Diaconis-Shahshahani: E|tr U|^{2k} = k! for U(N), N >= k; SU(N) agrees for N > k... checked by
    # the exact values: SU(2): E[(tr U)^4] = 2 (Catalan number C_2), SU(3): 2, U(1): 1.)
    n = 40000
    u = group.random((n,), generator=generator)
    t = trace(u)
    expect = {"U(1)": (1.0, 1.0), "SU(2)": (1.0, 2.0), "SU(3)": (1.0, 2.0)}[str(group)]
    for k, exact in zip((1, 2), expect):
        sample = t.abs() ** (2 * k)
        mean, err = float(sample.mean()), float(sample.std() / math.sqrt(n))
        assert abs(mean - exact) < 4 * err, f"E|tr U|^{2 * k} = {mean} +- {err}, exact {exact}"
    for part in (t.real, t.imag):
        mean, err = float(part.mean()), float(part.std() / math.sqrt(n))
        assert abs(mean) < 4 * err


def test_haar_is_left_invariant(generator):
    # Distribution of tr(V U) equals that of tr(U) for fixed V: compare a non-trivial moment
    group, n = SU(3), 40000
    v = group.random((1,), generator=generator)
    u = group.random((n,), generator=generator)
    s = (trace(v @ u).real ** 2)
    mean, err = float(s.mean()), float(s.std() / math.sqrt(n))
    assert abs(mean - 0.5) < 4 * err  # E[(Re tr U)^2] = E|tr U|^2 / 2 = 1/2


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_random_is_reproducible(group):
    a = group.random((5,), generator=torch.Generator().manual_seed(3))
    b = group.random((5,), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_group_names():
    assert group_from_name("u1") == U1()
    assert group_from_name("SU(3)") == SU(3)
    with pytest.raises(ValueError, match="unknown gauge group 'so3'"):
        group_from_name("so3")
    with pytest.raises(ValueError):
        SU(1)
