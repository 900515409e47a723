"""The free-field preconditioned reverse kernel: its operators against dense matrices built in real space from the
actions (the lattice Laplacian, the U(1) plaquette curl), and its defining property: with the exact score of a Gaussian
target it is the exact reverse transition at any number of steps, so a resampling move is always accepted, where the
plain Euler-Maruyama kernel is not."""

import math

import pytest
import torch

from lgdiff import SU, U1, DiffusionResample, Field, Lattice, LinkField, MarginalIMH, PathIMH, Phi4Action, WilsonAction
from lgdiff._samplers.reverse import forward_path_weight, reverse_path
from lgdiff._sde.group import GroupVE
from lgdiff._sde.precondition import FreeScalarPreconditioner, FreeU1Preconditioner
from lgdiff._sde.ve import VESDE
from lgdiff._sde.vp import VPSDE

from ..samplers.test_diffusion import gaussian_score


def laplacian_matrix(shape):
    """``-Delta`` on a periodic lattice as a dense ``[V, V]`` matrix (site index = row-major flattening)."""
    V = math.prod(shape)
    idx = torch.arange(V).reshape(shape)
    lap = torch.zeros(V, V, dtype=torch.float64)
    for mu in range(len(shape)):
        for sign in (1, -1):
            nb = torch.roll(idx, shifts=-sign, dims=mu).reshape(-1)
            lap[torch.arange(V), nb] -= 1
        lap[torch.arange(V), torch.arange(V)] += 2
    return lap


def curl_matrix(shape):
    """The 2D U(1) plaquette angles as a linear map of the link angles, ``[V, 2 V]``:
    ``theta_P(x) = A_0(x) + A_1(x + 0) - A_0(x + 1) - A_1(x)`` (tangent layout ``[D, *L]`` flattened)."""
    V = math.prod(shape)
    idx = torch.arange(V).reshape(shape)
    c = torch.zeros(V, 2 * V, dtype=torch.float64)
    rows = torch.arange(V)
    c[rows, idx.reshape(-1)] += 1                                       # A_0(x)
    c[rows, V + torch.roll(idx, -1, 0).reshape(-1)] += 1                # A_1(x + 0)
    c[rows, torch.roll(idx, -1, 1).reshape(-1)] -= 1                    # A_0(x + 1)
    c[rows, V + idx.reshape(-1)] -= 1                                   # A_1(x)
    return c


def dense_kernel(a0, v, noise):
    """``M = (1 + v A_t)^{-1}``, ``A_t = A_0 (1 + noise A_0)^{-1}``, by eigendecomposition; and ``M^p``."""
    evals, evecs = torch.linalg.eigh(a0)
    m = 1 / (1 + v * evals / (1 + noise * evals))
    return lambda p: evecs @ torch.diag(m**p) @ evecs.T


@pytest.mark.parametrize("power", [1.0, 0.5, -0.5])
def test_scalar_preconditioner_is_the_dense_free_field_kernel(power):
    shape, std, kinetic, v, noise = (3, 5), 0.7, 0.4, 0.3, 0.2
    pre = FreeScalarPreconditioner(std=std, kinetic=kinetic)
    a0 = kinetic * laplacian_matrix(shape) + torch.eye(15, dtype=torch.float64) / std**2
    dense = dense_kernel(a0, v, noise)
    u = torch.randn(2, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    m = pre.multipliers(u, v, noise)
    got = pre.apply(u, m, power).reshape(2, -1)
    assert torch.allclose(got, u.reshape(2, -1) @ dense(power).T, atol=1e-12)
    assert math.isclose(pre.logdet(m), float(torch.linalg.slogdet(dense(1.0))[1]), rel_tol=1e-10)


@pytest.mark.parametrize("power", [1.0, 0.5, -0.5])
def test_u1_preconditioner_is_the_dense_gaussian_wilson_kernel(power):
    shape, beta, v, noise = (3, 4), 2.5, 0.2, 0.1
    pre = FreeU1Preconditioner(beta=beta)
    curl = curl_matrix(shape)
    a0 = beta * curl.T @ curl  # beta / 2 sum_P theta_P^2
    dense = dense_kernel(a0, v, noise)
    u = torch.randn(2, 2, *shape, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    m = pre.multipliers(u, v, noise)
    got = pre.apply(u, m, power).reshape(2, -1)
    assert torch.allclose(got, u.reshape(2, -1) @ dense(power).T, atol=1e-12)
    assert math.isclose(pre.logdet(m), float(torch.linalg.slogdet(dense(1.0))[1]), rel_tol=1e-10)


def test_u1_preconditioner_leaves_gauge_directions_alone():
    # a pure gauge increment A_mu(x) = phi(x + mu) - phi(x) is a flat direction of the Wilson action: M = 1 on it
    pre = FreeU1Preconditioner(beta=4.0)
    phi = torch.randn(3, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    grad = torch.stack([torch.roll(phi, -1, 1) - phi, torch.roll(phi, -1, 2) - phi], 1).unsqueeze(-1)
    m = pre.multipliers(grad, 0.5, 0.0)
    assert torch.allclose(pre.apply(grad, m, 1.0), grad, atol=1e-12)
    assert float(m.min()) < 0.2  # while the stiff transverse modes are damped


def exact_resample(pre, steps):
    sde, kappa, lat = VESDE(), 0.2, Lattice(shape=(4, 4))
    return DiffusionResample(score=gaussian_score(sde, kappa, lat=lat), process=sde,
                             action=Phi4Action(kappa=kappa, lam=0.0), steps=steps, t_max=0.5, t_min=0.0,
                             preconditioner=pre), lat


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_the_preconditioned_kernel_is_the_exact_reverse_transition_of_a_gaussian(steps, generator):
    # the free field's exact score and its exact precision: every resampling move has w' = w (to rounding), at any
    # number of steps; the plain Euler-Maruyama kernel at the same steps is rejected (the power of this test)
    kappa = 0.2
    exact = FreeScalarPreconditioner(std=(2 - 8 * kappa) ** -0.5, kinetic=2 * kappa)
    kernel, lat = exact_resample(exact, steps)
    sde = kernel.process
    x0 = torch.fft.ifft2(torch.fft.fft2(torch.randn(32, 4, 4, dtype=torch.float64, generator=generator))
                         * (2 - 4 * kappa * torch.cos(lat.momenta()).sum(0)) ** -0.5).real
    grid = dict(steps=steps, generator=generator, t_min=0.0, t_max=0.5)
    top, log_r = forward_path_weight(kernel.score, sde, x0, preconditioner=exact, **grid)
    new, log_r_new = reverse_path(kernel.score, sde, top, weigh=True, preconditioner=exact, **grid)
    action = kernel.action
    log_w = -action(Field(x0, lat)) + log_r
    log_w_new = -action(Field(new, lat)) + log_r_new
    assert float((log_w_new - log_w).abs().max()) < 1e-8
    plain = exact_resample(None, steps)[0]
    _, acc = plain.step(Field(x0, lat), generator=generator)
    assert float(acc.mean()) < 0.5


def test_preconditioner_errors():
    for bad in (0.0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="must be a finite number > 0"):
            FreeU1Preconditioner(beta=bad)
        with pytest.raises(ValueError, match="must be a finite number > 0"):
            FreeScalarPreconditioner(std=bad, kinetic=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        FreeScalarPreconditioner(std=1.0, kinetic=-1.0)
    su2 = torch.zeros(1, 2, 4, 4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="U\\(1\\) link tangents"):
        FreeU1Preconditioner(beta=1.0).multipliers(su2, 0.1, 0.0)
    pre = FreeScalarPreconditioner(std=1.0, kinetic=0.5)
    action = Phi4Action(kappa=0.2, lam=0.0)
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    with pytest.raises(ValueError, match="variance-expanding process"):
        PathIMH(score=zero, process=VPSDE(), action=action, steps=4, preconditioner=pre)
    with pytest.raises(ValueError, match="no reverse kernel to precondition"):
        MarginalIMH(score=zero, process=VESDE(), action=action, steps=4, preconditioner=pre)
    with pytest.raises(TypeError, match="AbstractPreconditioner"):
        PathIMH(score=zero, process=VESDE(), action=action, steps=4, preconditioner="free")
    kernel = PathIMH(score=zero, process=GroupVE(), action=WilsonAction(beta=1.0, group=U1()), steps=4,
                     preconditioner=FreeU1Preconditioner(beta=1.0))
    assert kernel.settings()["precond_beta"] == 1.0
    with pytest.raises(ValueError, match="U\\(1\\) link tangents"):
        kernel.propose(LinkField.identity(SU(2), Lattice(shape=(4, 4)), batch=1), generator=torch.Generator())
