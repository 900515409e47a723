import math

import numpy as np
import pytest
import torch

from lgdiff import SU, U1
from lgdiff._sde.heat_kernel import (
    TAU_SPLIT,
    SU2HeatKernel,
    SUNHeatKernel,
    U1HeatKernel,
    heat_kernel,
)

GROUPS = [U1(), SU(2), SU(3)]
TAUS = [0.01, 0.3, 0.999, 1.0, 1.999, TAU_SPLIT, 5.0, 25.0]  # both sides of every switch between forms


def casimir_fundamental(group) -> float:
    """C_F with the docs/conventions.md generators: 1 for U(1), (N^2 - 1) / (2N) for SU(N)."""
    return 1.0 if group == U1() else (group.n**2 - 1) / (2 * group.n)


# ---- independent references (numpy, float64) ------------------------------------------------------

def u1_images(theta: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """log K and a bound on its rounding error from sqrt(2 pi/tau) sum_k exp(-(theta + 2 pi k)^2 / (2 tau))."""
    k = np.arange(-40, 41)
    y = theta[:, None] + 2 * np.pi * k
    e = -y * y / (2 * tau)
    m = e.max(1, keepdims=True)
    return 0.5 * np.log(2 * np.pi / tau) + m[:, 0] + np.log(np.exp(e - m).sum(1)), np.full(theta.shape, 1e-15)


def u1_fourier(theta: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """log K from 1 + 2 sum_n exp(-n^2 tau / 2) cos(n theta), with its cancellation error bound."""
    n = np.arange(1, 400)
    terms = 2 * np.exp(-n * n * tau / 2) * np.cos(np.outer(theta, n))
    k = 1 + terms.sum(1)
    return np.log(k), 1e-15 * (1 + np.abs(terms).sum(1)) / k


def su2_characters(theta: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """log K from sum_m m exp(-(m^2 - 1) tau / 8) sin(m theta) / sin(theta), with its cancellation error bound.
    Above pi/2 the characters are evaluated at psi = pi - theta, sin(m theta) = (-1)^(m+1) sin(m psi), because
    the rounding of m theta near m pi would cost 1e-16 / psi relative accuracy."""
    m = np.arange(1, 400)
    far = theta > np.pi / 2
    psi = np.where(far, np.pi - theta, theta)
    sign = np.where(far[:, None], (-1.0) ** (m + 1), 1.0)
    s = np.sin(psi)[:, None]
    chi = np.where(s > 1e-12, sign * np.sin(np.outer(psi, m)) / np.where(s > 1e-12, s, 1.0), sign * m)
    terms = m * np.exp(-(m * m - 1) * tau / 8) * chi
    k = terms.sum(1)
    return np.log(k), 1e-14 * np.abs(terms).sum(1) / np.abs(k)


def su2_images(theta: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """log K from e^{tau/8} sqrt(8 pi/tau) (2/tau) sum_n (theta + 2 pi n) e^{-2(theta + 2 pi n)^2/tau} / sin(theta),
    summed naively (theta away from 0 and pi) after factoring out the largest exponential, with its
    cancellation error bound."""
    n = np.arange(-40, 41)
    y = theta[:, None] + 2 * np.pi * n
    e = -2 * y * y / tau
    m = e.max(1)
    terms = y * np.exp(e - m[:, None])
    h = terms.sum(1)
    log_a = tau / 8 + 0.5 * np.log(8 * np.pi / tau) + np.log(2 / tau)
    return log_a + m + np.log(h / np.sin(theta)), 1e-15 * np.abs(terms).sum(1) / np.abs(h)


def assert_log_close(got: torch.Tensor, ref: tuple[np.ndarray, np.ndarray], rtol: float = 1e-12) -> None:
    want, err = ref
    got = got.numpy()
    tol = rtol * np.maximum(1.0, np.abs(want)) + 100 * err
    worst = np.argmax(np.abs(got - want) / tol)
    assert np.all(np.abs(got - want) <= tol), f"log K = {got[worst]!r}, reference {want[worst]!r} (+- {tol[worst]:.1e})"


# ---- log K against independent representations ------------------------------------------------------

@pytest.mark.parametrize("tau", TAUS)
def test_u1_log_kernel_matches_images_and_fourier_sums(tau):
    theta = np.concatenate([np.linspace(-np.pi, np.pi, 101), [1e-9, np.pi - 1e-9]])
    got = U1HeatKernel().log_density_angle(torch.tensor(theta), torch.tensor(tau))
    assert_log_close(got, u1_images(theta, tau))
    if tau >= 0.3:  # the Fourier sum loses everything to cancellation where K is e^-(pi^2 / 2 tau) small
        assert_log_close(got, u1_fourier(theta, tau))


@pytest.mark.parametrize("tau", TAUS)
def test_su2_log_kernel_matches_character_and_image_sums(tau):
    theta = np.concatenate([np.linspace(1e-3, np.pi - 1e-3, 97), [1e-6, np.pi / 2, np.pi - 1e-6]])
    got = SU2HeatKernel().log_density_angle(torch.tensor(theta), torch.tensor(tau))
    if tau <= 5.0:   # the naive image sum needs exp(-2 pi^2 / tau) representable and converged
        assert_log_close(got, su2_images(theta, tau))
    if tau >= 0.999:
        assert_log_close(got, su2_characters(theta, tau))


@pytest.mark.parametrize("tau", [0.01, 0.3, 1.0, 3.0, 25.0])
def test_su2_kernel_at_the_centre_is_finite_and_continuous(tau):
    # exactly at theta = 0 and pi the image form is 0/0; the kernel must be the limit of its neighbours
    k = SU2HeatKernel()
    t = torch.tensor(tau)
    for end, inside in [(0.0, 1e-7), (math.pi, math.pi - 1e-7)]:
        at = k.log_density_angle(torch.tensor([end]), t)
        near = k.log_density_angle(torch.tensor([inside]), t)
        assert torch.isfinite(at).all()
        torch.testing.assert_close(at, near, rtol=1e-10, atol=1e-10)
    for U in [torch.eye(2, dtype=torch.complex128)[None], -torch.eye(2, dtype=torch.complex128)[None]]:
        s = k.score(U, t)
        assert torch.isfinite(s.abs()).all() and float(s.abs().max()) == 0.0


@pytest.mark.parametrize("tau", [0.05, 0.5, 1.5, 3.0])
def test_sun_kernel_for_n2_agrees_with_the_su2_kernel(tau, generator):
    # cross-implementation: Jacobi-Trudi characters (tau >= 1) / leading image (tau < 1) against the SU(2) forms
    U = SU(2).random((200,), generator=generator)
    got = SUNHeatKernel(2).log_density(U, torch.tensor(tau))
    want = SU2HeatKernel().log_density(U, torch.tensor(tau))
    if tau >= 1.0:
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-11)
    else:  # near the identity the neglected images are exp(-8 pi^2 / tau) small
        X = SU(2).random_algebra((200,), generator=generator)
        V = SU(2).exp(0.5 * X)
        torch.testing.assert_close(SUNHeatKernel(2).log_density(V, torch.tensor(tau)),
                                   SU2HeatKernel().log_density(V, torch.tensor(tau)), rtol=1e-11, atol=1e-11)


def _torus_grid(n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Diagonal SU(n) (U(1) for n = 1) elements on a periodic grid of the maximal torus, with the Weyl
    measure prod_{i<j} |e^{i theta_i} - e^{i theta_j}|^2 / (n! (2 pi)^{n-1}) times the cell volume."""
    t = torch.arange(m) * 2 * math.pi / m - math.pi
    if n == 1:
        return torch.polar(torch.ones_like(t), t)[:, None, None], torch.full((m,), 1 / m)
    grids = torch.meshgrid(*([t] * (n - 1)), indexing="ij")
    th = torch.stack([*grids, -sum(grids)], -1).reshape(-1, n)
    e = torch.polar(torch.ones_like(th), th)
    w = torch.ones(th.shape[0])
    for i in range(n):
        for j in range(i + 1, n):
            w = w * (e[:, i] - e[:, j]).abs() ** 2
    w = w / (math.factorial(n) * m ** (n - 1))
    return torch.diag_embed(e), w


@pytest.mark.parametrize("tau", [0.05, 0.3, 1.0, 2.5, 25.0])
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_kernel_is_normalised_and_has_exact_character_moments(group, tau):
    # Haar quadrature on the torus (spectrally accurate for smooth periodic integrands):
    # int K dU = 1 and <chi_F> = <tr U> = N exp(-C_F tau / 2), which fixes the Casimir normalisation
    m = {1: 4096, 2: 1024, 3: 96}[group.n if group != U1() else 1]
    U, w = _torus_grid(group.n if group != U1() else 1, m)
    K = torch.exp(heat_kernel(group).log_density(U, torch.tensor(tau)))
    norm = float((w * K).sum())
    tr = float((w * K * U.diagonal(dim1=-2, dim2=-1).sum(-1).real).sum()) / norm
    # SU(3) below tau = 1 keeps only the leading image: normalised to ~exp(-8 pi^2 / tau), 4e-8 at tau -> 1
    tol = 1e-10 if not (group == SU(3) and tau < 1) else 1e-7
    assert abs(norm - 1) < tol, f"int K dU = {norm}"
    assert abs(tr - group.n * math.exp(-casimir_fundamental(group) * tau / 2)) < tol


@pytest.mark.parametrize("tau", [0.5, 1.0, 3.0])
def test_su2_kernel_higher_character_moments(tau):
    # <chi_j> = (2j + 1) exp(-j (j + 1) tau / 2) for j = 1, 3/2 (character orthogonality)
    theta = torch.linspace(0, math.pi, 20001)
    K = torch.exp(SU2HeatKernel().log_density_angle(theta, torch.tensor(tau)))
    weyl = 2 / math.pi * torch.sin(theta) ** 2
    for two_j in (2, 3):
        chi = torch.sin((two_j + 1) * theta) / torch.sin(theta).clamp_min(1e-300)
        chi[0], chi[-1] = two_j + 1, (-1) ** two_j * (two_j + 1)
        got = float(torch.trapezoid(K * weyl * chi, theta))
        j = two_j / 2
        assert abs(got - (two_j + 1) * math.exp(-j * (j + 1) * tau / 2)) < 1e-9


# ---- the score is the Lie derivative ----------------------------------------------------------------

def _fd_lie_derivative(kernel, U: torch.Tensor, tau: torch.Tensor, eps: float) -> torch.Tensor:
    """Richardson-extrapolated central differences d/de log K(exp(i e T^a) U) (error O(eps^4)), [..., a]."""
    gens = kernel.group.generators()
    out = []
    for t_a in gens:
        def d(e: float) -> torch.Tensor:
            up = torch.linalg.matrix_exp(1j * e * t_a) @ U
            dn = torch.linalg.matrix_exp(-1j * e * t_a) @ U
            return (kernel.log_density(up, tau) - kernel.log_density(dn, tau)) / (2 * e)
        out.append((4 * d(eps / 2) - d(eps)) / 3)
    return torch.stack(out, -1)


def _test_matrices(group, generator) -> dict[str, torch.Tensor]:
    X = group.random_algebra((20,), generator=generator)
    mats = {"haar": group.random((20,), generator=generator), "near identity": group.exp(1e-3 * X)}
    if group == SU(2):
        mats["near -1"] = -group.exp(1e-3 * X)
    if group == U1():
        mats["near -1"] = -group.exp(1e-3 * X)
    return mats


SCORE_CASES = [(g, t) for g in (U1(), SU(2)) for t in TAUS] + [(SU(3), t) for t in (0.01, 0.3, 0.999, 1.0, 5.0)]


@pytest.mark.parametrize(("group", "tau"), SCORE_CASES, ids=str)
def test_score_is_the_lie_derivative_of_log_kernel(group, tau, generator):
    kernel = heat_kernel(group)
    t = torch.tensor(tau)
    eps = 1e-3 * min(1.0, tau)  # the kernel varies on the scale tau near the cut locus
    for name, U in _test_matrices(group, generator).items():
        score = group.to_coords(kernel.score(U, t))
        fd = _fd_lie_derivative(kernel, U, t, eps)
        # FD rounding floor: log K to ~1e-13 relative (cancellation in the sums), divided by eps
        floor = 1e-13 * kernel.log_density(U, t).abs().clamp_min(1.0) / eps
        err = (score - fd).norm(dim=-1)
        bound = 1e-6 * fd.norm(dim=-1) + floor
        worst = int((err / bound).argmax())
        assert bool((err <= bound).all()), (
            f"{name}: score {score[worst].tolist()} vs finite differences {fd[worst].tolist()}")


def _assert_linear_at(kernel, centre: torch.Tensor, tau: float, generator) -> None:
    # score(c exp(e X)) / e converges as e -> 0 (no 0/0 at theta = 0 or pi); the input matrix itself only
    # resolves e X to ~1e-16 / e relative, which bounds what any formula can deliver
    group = kernel.group
    X = group.random_algebra((5,), generator=generator)
    t = torch.tensor(tau)
    ref = kernel.score(centre @ group.exp(1e-7 * X), t) / 1e-7  # (near -1 at tau = 0.01 f varies on 1e-3)
    for e in (1e-8, 1e-9):
        got = kernel.score(centre @ group.exp(e * X), t) / e
        rtol = 1e-6 + 100 * torch.finfo(torch.float64).eps / e
        torch.testing.assert_close(got, ref, rtol=rtol, atol=rtol * float(ref.abs().max()))
    assert float(kernel.score(centre.expand(1, -1, -1), t).abs().max()) == 0.0


@pytest.mark.parametrize("tau", [0.01, 0.3, 1.5, 3.0])
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_score_is_linear_in_the_log_near_the_identity(group, tau, generator):
    _assert_linear_at(heat_kernel(group), group.identity(()), tau, generator)


@pytest.mark.parametrize("tau", [0.01, 0.3, 1.5, 3.0])
def test_su2_score_is_linear_near_minus_one(tau, generator):
    _assert_linear_at(SU2HeatKernel(), -SU(2).identity(()), tau, generator)


# ---- the kernel solves the heat equation --------------------------------------------------------------

@pytest.mark.parametrize("tau", [0.3, 0.8, 1.5, 2.5])
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_kernel_solves_the_heat_equation(group, tau, generator):
    # dK/dtau = (1/2) sum_a nabla^a nabla^a K, by central differences in tau and along every generator
    kernel = heat_kernel(group)
    X = group.random_algebra((6,), generator=generator)
    U = group.exp(0.7 * X)  # typical points of the kernel: K is O(1), finite differences are well conditioned
    dtau, e = 1e-4, 1e-3
    logk = kernel.log_density(U, torch.tensor(tau))
    k0 = torch.exp(logk)
    dk = (torch.exp(kernel.log_density(U, torch.tensor(tau + dtau)))
          - torch.exp(kernel.log_density(U, torch.tensor(tau - dtau)))) / (2 * dtau)
    lap = torch.zeros_like(k0)
    for t_a in group.generators():
        up = torch.exp(kernel.log_density(torch.linalg.matrix_exp(1j * e * t_a) @ U, torch.tensor(tau)))
        dn = torch.exp(kernel.log_density(torch.linalg.matrix_exp(-1j * e * t_a) @ U, torch.tensor(tau)))
        lap = lap + (up - 2 * k0 + dn) / (e * e)
    torch.testing.assert_close(dk, lap / 2, rtol=1e-5, atol=1e-5 * float(k0.abs().max()))


# ---- Brownian motion and exact sampling ----------------------------------------------------------------

@pytest.mark.parametrize("tau", [0.3, 1.5])
@pytest.mark.parametrize("group", [U1(), SU(2), pytest.param(SU(3), marks=pytest.mark.slow)], ids=str)
def test_brownian_motion_matches_kernel_trace(group, tau, generator):
    # many small exponential steps exp(i sqrt(dtau) sum_a T^a z^a); <Re tr U>/N from the kernel by quadrature.
    # Per-step bias of the one-shot exponential: O(dtau^2) (for SU(2): -dtau^2/32), i.e. 1e-4 here vs sigma 2e-3.
    n_walkers, n_steps = 20000, 60
    dtau = tau / n_steps
    U = group.identity((n_walkers,))
    for _ in range(n_steps):
        U = group.exp(math.sqrt(dtau) * group.random_algebra((n_walkers,), generator=generator)) @ U
    x = U.diagonal(dim1=-2, dim2=-1).sum(-1).real / group.n
    m = {1: 4096, 2: 1024, 3: 96}[group.n if group != U1() else 1]
    V, w = _torus_grid(group.n if group != U1() else 1, m)
    K = torch.exp(heat_kernel(group).log_density(V, torch.tensor(tau)))
    exact = float((w * K * V.diagonal(dim1=-2, dim2=-1).sum(-1).real).sum()) / group.n
    err = float(x.std()) / math.sqrt(n_walkers)
    assert abs(float(x.mean()) - exact) < 4 * err, f"{float(x.mean())} vs {exact} +- {err}"


@pytest.mark.parametrize("tau", [1e-3, 0.2, 1.5, 6.0])
@pytest.mark.parametrize("kernel", [U1HeatKernel(), SU2HeatKernel()], ids=repr)
def test_exact_samples_have_the_kernel_character_moments(kernel, tau, generator):
    # <chi_R(U)> = d_R exp(-C_R tau / 2) for the fundamental and the next representation; <U> is central
    n = 40000
    U = kernel.sample(torch.tensor([tau, tau]), (n // 2,), generator=generator).reshape(n, kernel.group.n, -1)
    tr = U.diagonal(dim1=-2, dim2=-1).sum(-1)
    if kernel.group == U1():
        obs = {"cos": (tr.real, math.exp(-tau / 2)), "cos2": ((tr * tr).real, math.exp(-2 * tau)),
               "sin": (tr.imag, 0.0)}
    else:
        obs = {"chi_1/2": (tr.real, 2 * math.exp(-3 * tau / 8)), "chi_1": (tr.real ** 2 - 1, 3 * math.exp(-tau)),
               "U_01": (U[:, 0, 1].real, 0.0), "Im U_00": (U[:, 0, 0].imag, 0.0)}
    for name, (x, exact) in obs.items():
        err = float(x.std()) / math.sqrt(n)
        assert abs(float(x.mean()) - exact) < 4 * err + 1e-15, f"{name}: {float(x.mean())} vs {exact} +- {err}"


def test_exact_samples_are_group_members(generator):
    for kernel in (U1HeatKernel(), SU2HeatKernel()):
        U = kernel.sample(torch.tensor([0.01, 30.0]), (3, 5), generator=generator)
        assert U.shape == (2, 3, 5, kernel.group.n, kernel.group.n)
        assert bool(kernel.group.is_member(U).all())


# ---- errors -----------------------------------------------------------------------------------------

def test_errors():
    U = SU(2).identity((3, 4))
    with pytest.raises(ValueError, match="does not broadcast against"):
        SU2HeatKernel().log_density(U, torch.ones(5))
    with pytest.raises(ValueError, match="implemented for U\\(1\\) and SU\\(2\\); got SU\\(3\\)"):
        SUNHeatKernel(3).sample(torch.ones(2), (4,), generator=torch.Generator())
    assert not heat_kernel(SU(3)).can_sample and heat_kernel(SU(2)).can_sample and heat_kernel(U1()).can_sample


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_single_precision_agrees_with_double(group, generator):
    kernel = heat_kernel(group)
    U = group.random((4, 6), generator=generator)
    tau = torch.tensor([0.01, 0.5, 1.5, 3.0])[:, None]
    for t in tau:  # one tau per row, both sides of every switch
        lo = kernel.log_density(U.to(torch.complex64), t.float())
        hi = kernel.log_density(U, t)
        assert lo.dtype == torch.float32
        torch.testing.assert_close(lo.double(), hi, rtol=1e-5, atol=1e-5)
        s_lo, s_hi = kernel.score(U.to(torch.complex64), t.float()), kernel.score(U, t)
        assert s_lo.dtype == torch.complex64
        torch.testing.assert_close(s_lo.to(torch.complex128), s_hi, rtol=1e-4, atol=1e-4 * float(s_hi.abs().max()))
    if kernel.can_sample:
        V = kernel.sample(torch.tensor([1e-3, 0.5, 3.0]), (200,), generator=generator, dtype=torch.complex64)
        assert V.dtype == torch.complex64 and bool(group.is_member(V).all())
