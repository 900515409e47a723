import inspect
import math

import pytest
import torch

from lgdiff import SU, Field, Lattice, LinkField
from lgdiff._observables.scalar import (
    abs_magnetization,
    binder,
    connected_correlator,
    correlator,
    cumulants,
    effective_mass,
    magnetization,
    susceptibility,
    two_point_momentum,
)

SHAPES = [(7,), (6, 4), (3, 4, 5), (2, 3, 4, 3)]


def plane_wave(shape, n, phase=0.3):
    """cos(k.x + phase) with k_mu = 2 pi n_mu / L_mu, [1, *L]."""
    grids = torch.meshgrid(*[torch.arange(L, dtype=torch.float64) for L in shape], indexing="ij")
    kx = sum(2 * math.pi * n_mu * x / L for n_mu, x, L in zip(n, grids, shape))
    return torch.cos(kx + phase)[None]


def jackknife(estimator, *series, blocks=50):
    """Jackknife mean and error of estimator(*block-averaged means) over independent samples."""
    blocked = [s.reshape(blocks, -1).mean(1) for s in series]
    full = estimator(*[b.mean() for b in blocked])
    loo = torch.stack([estimator(*[(b.sum() - b[i]) / (blocks - 1) for b in blocked]) for i in range(blocks)])
    err = ((blocks - 1) / blocks * ((loo - loo.mean()) ** 2).sum()).sqrt()
    return full, err


def free_field(shape, m2, batch, generator):
    """Exact samples of S = phi (-Laplacian + m^2) phi / 2: <|phi~(k)|^2> / V = 1 / (p_hat^2 + m^2)."""
    lat = Lattice(shape=shape)
    eta = torch.randn((batch, *shape), generator=generator)
    kernel = (lat.momentum_squared() + m2).rsqrt()
    phi = torch.fft.ifftn(torch.fft.fftn(eta, dim=lat.site_dims) * kernel, dim=lat.site_dims).real
    return Field(phi, lat)


def lattice_propagator_1d(T, m2):
    """(1/T) sum_k e^{ikt} / (4 sin^2(k/2) + m^2) = cosh(E (t - T/2)) / (2 sinh E sinh(E T/2)), cosh E = 1 + m^2/2."""
    E = math.acosh(1 + m2 / 2)
    t = torch.arange(T, dtype=torch.float64)
    return torch.cosh(E * (t - T / 2)) / (2 * math.sinh(E) * math.sinh(E * T / 2)), E


# ---- magnetisation and momentum-space two-point function ------------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_magnetization_of_hand_built_fields(shape):
    lat = Lattice(shape=shape)
    wave = plane_wave(shape, (1,) + (0,) * (len(shape) - 1))  # sums to zero over the lattice
    phi = Field(torch.cat([0.7 + wave, -1.3 + 2 * wave]), lat)
    torch.testing.assert_close(magnetization(phi), torch.tensor([0.7, -1.3]))
    torch.testing.assert_close(abs_magnetization(phi), torch.tensor([0.7, 1.3]))


def test_magnetization_of_the_toy_model_is_the_variable():
    phi = Field(torch.tensor([0.5, -2.0, 3.0]), Lattice(shape=()))
    torch.testing.assert_close(magnetization(phi), phi.data)
    torch.testing.assert_close(two_point_momentum(phi), phi.data**2)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_plane_wave_has_all_weight_at_plus_minus_k(shape):
    n = tuple(range(1, len(shape) + 1))
    n = tuple(ni % L for ni, L in zip(n, shape))
    G = two_point_momentum(Field(plane_wave(shape, n), Lattice(shape=shape)))[0]
    V = math.prod(shape)
    k = n
    minus_k = tuple((-ni) % L for ni, L in zip(n, shape))
    want = torch.zeros(shape)
    if k == minus_k:  # k = -k (k = 0 or pi components only): |sum_x cos(kx + a)|^2 = V^2 cos^2 a
        want[k] = V * math.cos(0.3) ** 2
    else:  # cos = (e^{ikx + ia} + e^{-ikx - ia}) / 2: |phi~|^2 = V^2 / 4 at +-k
        want[k] = want[minus_k] = V / 4
    torch.testing.assert_close(G, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_two_point_parseval_and_zero_mode(shape, generator):
    phi = Field.randn(Lattice(shape=shape), batch=3, generator=generator)
    phi = phi.with_data(phi.data + 0.4)
    G = two_point_momentum(phi)
    torch.testing.assert_close(G.reshape(3, -1).sum(1), (phi.data**2).reshape(3, -1).sum(1))  # Parseval
    V = phi.lattice.volume
    torch.testing.assert_close(G[(slice(None),) + (0,) * len(shape)], V * magnetization(phi) ** 2)


def test_free_field_propagator_matches_the_exact_one(generator):
    # exact independent samples: <G(k)> = 1 / (p_hat^2 + m^2) at every k, within 4 sigma
    shape, m2, B = (8, 6), 0.5, 4000
    phi = free_field(shape, m2, B, generator)
    G = two_point_momentum(phi)
    mean, err = G.mean(0), G.std(0) / math.sqrt(B)
    exact = 1 / (phi.lattice.momentum_squared() + m2)
    assert ((mean - exact).abs() < 4 * err).all(), ((mean - exact) / err).abs().max()


# ---- time-slice correlators -----------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_correlator_against_the_naive_double_sum(shape, generator):
    phi = Field.randn(Lattice(shape=shape), batch=2, generator=generator)
    V = phi.lattice.volume
    for mu in range(len(shape)):
        L = shape[mu]
        # C(t) = (1/V) sum_x phi(x) sum_{y: y_mu = x_mu + t} phi(y), by explicit slices
        naive = torch.zeros(2, L)
        for t in range(L):
            for tau in range(L):
                a = phi.data.select(1 + mu, tau).reshape(2, -1).sum(1)
                b = phi.data.select(1 + mu, (tau + t) % L).reshape(2, -1).sum(1)
                naive[:, t] += a * b / V
        torch.testing.assert_close(correlator(phi, mu), naive)


@pytest.mark.parametrize("shape", SHAPES[1:], ids=str)
def test_correlator_is_the_fourier_transform_of_the_zero_momentum_propagator(shape, generator):
    phi = Field.randn(Lattice(shape=shape), batch=2, generator=generator)
    G = two_point_momentum(phi)
    for mu in range(len(shape)):
        g = G
        for nu in reversed(range(len(shape))):
            if nu != mu:
                g = g.select(1 + nu, 0)  # k_perp = 0: [B, L_mu]
        want = torch.fft.ifft(g, dim=-1).real  # (1/L) sum_k G(k, 0) e^{ikt}
        torch.testing.assert_close(correlator(phi, mu), want)
        torch.testing.assert_close(correlator(phi, mu).sum(1), phi.lattice.volume * magnetization(phi) ** 2)


def test_connected_correlator_sums_to_the_susceptibility(generator):
    shape = (6, 4, 5)
    phi = Field.randn(Lattice(shape=shape), batch=20, generator=generator)
    phi = phi.with_data(phi.data + 0.3)
    V = phi.lattice.volume
    M = magnetization(phi)
    chi = susceptibility(M.mean(), (M**2).mean(), V)
    for mu in range(3):
        Cc = connected_correlator(correlator(phi, mu).mean(0), M.mean(), V)
        torch.testing.assert_close(Cc.sum(), chi)


def test_free_field_correlator_and_effective_mass(generator):
    # exact: <C(t)> along mu = 0 is the 1D lattice propagator at k_perp = 0, a single cosh with
    # cosh E = 1 + m^2 / 2, and its effective mass is E at every t
    shape, m2, B = (12, 4), 0.3, 4000
    exact, E = lattice_propagator_1d(12, m2)
    torch.testing.assert_close(effective_mass(exact), torch.full((12,), E), rtol=1e-10, atol=0)
    phi = free_field(shape, m2, B, generator)
    C = correlator(phi, 0)
    mean, err = C.mean(0), C.std(0) / math.sqrt(B)
    assert ((mean - exact).abs() < 4 * err).all(), ((mean - exact) / err).abs().max()
    Cc = connected_correlator(mean, magnetization(phi).mean(), phi.lattice.volume)  # <M> = 0 here, tiny shift
    assert ((Cc - exact).abs() < 4 * err).all()


# ---- estimators ---------------------------------------------------------------------------------

def test_estimators_on_exact_moments():
    torch.testing.assert_close(binder(2.0, 12.0), torch.tensor(0.0))  # Gaussian: <M^4> = 3 <M^2>^2
    torch.testing.assert_close(binder(0.25, 0.0625), torch.tensor(2 / 3))  # M = +-1/2
    torch.testing.assert_close(susceptibility(0.5, 0.5, 16), torch.tensor(4.0))
    # broadcast over jackknife samples, on the inputs' dtype
    m2, m4 = torch.tensor([1.0, 2.0], dtype=torch.float32), torch.tensor([3.0, 3.0], dtype=torch.float32)
    out = binder(m2, m4)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([0.0, 0.75], dtype=torch.float32))


def test_binder_and_susceptibility_of_gaussian_white_noise(generator):
    # M of unit white noise on V sites is N(0, 1/V): U_L = 0 and chi_2 = V Var(M) = 1 exactly
    lat, B = Lattice(shape=(4, 4)), 20000
    M = magnetization(Field.randn(lat, batch=B, generator=generator))
    U, dU = jackknife(binder, M**2, M**4)
    assert abs(float(U)) < 4 * float(dU), (float(U), float(dU))
    chi, dchi = jackknife(lambda m, m2: susceptibility(m, m2, lat.volume), M, M**2)
    assert abs(float(chi) - 1) < 4 * float(dchi), (float(chi), float(dchi))
    assert float(dU) < 0.03 and float(dchi) < 0.02  # the test resolves the exact values


@pytest.mark.parametrize("T", [8, 9, 16, 31])
@pytest.mark.parametrize("m", [0.05, 0.4, 1.3, 4.0])
def test_effective_mass_recovers_a_cosh_exactly(T, m):
    t = torch.arange(T, dtype=torch.float64)
    c = torch.stack([2.5 * torch.cosh(m * (t - T / 2)), 0.1 * torch.cosh(m * (t - T / 2))])
    got = effective_mass(c)
    defined = torch.ones(T, dtype=torch.bool)
    if T % 2:
        defined[(T - 1) // 2] = False  # C(t) = C(t+1) for every m
    assert got[:, ~defined].isnan().all()
    torch.testing.assert_close(got[:, defined], torch.full_like(got[:, defined], m), rtol=1e-12, atol=0)
    single = effective_mass(c.to(torch.float32))
    assert single.dtype == torch.float32
    rtol = 1e-2 if m == 0.05 else 1e-4  # small m: the ratio is 1 + O(m^2), float32 keeps few digits of it
    torch.testing.assert_close(single[:, defined], torch.full_like(single[:, defined], m), rtol=rtol, atol=0)


def test_effective_mass_is_nan_where_undefined():
    c = torch.tensor([1.0, 2.0, 0.5, -0.1, 0.2, 0.5])  # rises at t = 0, changes sign at t = 2, 3
    got = effective_mass(c)
    assert got[0].isnan() and got[2].isnan() and got[3].isnan()
    assert got[1].isfinite()


# ---- errors -----------------------------------------------------------------------------------

def test_wrong_field_type_and_direction_errors(generator):
    U = LinkField.identity(SU(2), Lattice(shape=(4, 4)), batch=1)
    for fn in (magnetization, abs_magnetization, two_point_momentum, correlator):
        with pytest.raises(TypeError):  # the runtime type check of the signature (test suite)
            fn(U)
        with pytest.raises(TypeError, match=r"expects a real scalar Field \[B, \*L\]; got LinkField"):
            inspect.unwrap(fn)(U)  # the library's own check, for users without runtime type checking
    phi = Field.randn(Lattice(shape=(4, 6)), batch=1, generator=generator)
    with pytest.raises(ValueError, match=r"correlator: direction mu must be in 0\.\.1 for a D = 2 lattice; got mu = 2"):
        correlator(phi, 2)
    with pytest.raises(ValueError, match=r"correlator needs a lattice with D >= 1 directions; got D = 0"):
        correlator(Field(torch.zeros(3), Lattice(shape=())))


# ---- device -----------------------------------------------------------------------------------

def test_scalar_observables_agree_across_devices(device, generator):
    phi = Field.randn(Lattice(shape=(6, 4, 5)), batch=3, generator=generator)
    on_device = phi.to(device)
    for fn in (magnetization, abs_magnetization, two_point_momentum, lambda f: correlator(f, 2)):
        torch.testing.assert_close(fn(on_device).cpu(), fn(phi))
    M = magnetization(on_device)
    C = correlator(on_device, 1).mean(0)
    torch.testing.assert_close(susceptibility(M.mean(), (M**2).mean(), 120).cpu(), susceptibility(M.mean().cpu(), (M**2).mean().cpu(), 120))
    torch.testing.assert_close(binder((M**2).mean(), (M**4).mean()).cpu(), binder((M**2).mean().cpu(), (M**4).mean().cpu()))
    Cc = connected_correlator(C, M.mean(), 120)
    assert Cc.device == C.device
    torch.testing.assert_close(effective_mass(Cc).cpu(), effective_mass(Cc.cpu()), equal_nan=True)


@pytest.mark.parametrize(("mu", "sigma"), [(0.0, 1.0), (1.5, 0.3), (-2.0, 4.0)])
def test_cumulants_of_a_gaussian_stop_at_the_second(mu, sigma):
    # raw moments of N(mu, sigma^2): kappa_1 = mu, kappa_2 = sigma^2, kappa_3 = kappa_4 = 0
    s2 = sigma * sigma
    moments = (mu, mu**2 + s2, mu**3 + 3 * mu * s2, mu**4 + 6 * mu**2 * s2 + 3 * s2 * s2)
    k1, k2, k3, k4 = (k.item() for k in cumulants(*moments))
    scale = max(1.0, abs(mu)) ** 4 * max(1.0, s2) ** 2
    assert (k1, k2) == (pytest.approx(mu, abs=1e-12), pytest.approx(s2, rel=1e-12))
    assert abs(k3) < 1e-12 * scale and abs(k4) < 1e-12 * scale


def test_cumulants_shift_and_scale_and_give_the_binder_cumulant(generator):
    # kappa_n(c A + b) = c^n kappa_n(A) for n >= 2; for M = +-m0 (mean 0) -kappa_4 / (3 kappa_2^2) = U_L = 2/3
    a = torch.rand(1000, generator=generator, dtype=torch.float64) ** 3
    c, b = -1.7, 0.4

    def raw(x):
        return [(x**k).mean() for k in range(1, 5)]

    base, moved = cumulants(*raw(a)), cumulants(*raw(c * a + b))
    for n in (2, 3, 4):
        torch.testing.assert_close(moved[n - 1], c**n * base[n - 1], rtol=1e-9, atol=0)
    _, k2, _, k4 = cumulants(0.0, 0.25, 0.0, 0.0625)
    assert (-k4 / (3 * k2 * k2)).item() == pytest.approx(binder(0.25, 0.0625).item(), rel=1e-14)
    assert binder(0.25, 0.0625).item() == pytest.approx(2 / 3, rel=1e-14)
