import inspect
import itertools
import math

import pytest
import torch

from lgdiff import SU, U1, Field, GaugeTransform, Lattice, LinkField, WilsonAction
from lgdiff._geometry.paths import rectangle
from lgdiff._groups.base import trace
from lgdiff._observables.flow import wilson_flow
from lgdiff._observables.gauge import (
    clover_field_strength,
    energy_density,
    mean_plaquette,
    plaquette_field,
    polyakov_loop,
    topological_charge_clover,
    topological_charge_u1_2d,
    wilson_loop,
)
from lgdiff.testing import assert_gauge_covariant, assert_gauge_invariant, assert_translation_equivariant

from .configs import abelian_plane_value, embed, flux_2d, reflect, thooft_4d, translate

GROUPS = [U1(), SU(2), SU(3)]
DTYPES = [torch.complex64, torch.complex128]
SHAPES = [(4, 5), (3, 4, 3, 5)]  # anisotropic, to catch axis mix-ups


def links(group, shape, dtype, generator, batch=2):
    return LinkField.random(group, Lattice(shape=shape), batch=batch, generator=generator, dtype=dtype)


def omega_for(U, generator):
    return GaugeTransform.random(U.group, U.lattice, batch=U.batch, generator=generator, dtype=U.data.dtype)


def tol(dtype):
    return 1e-4 if dtype == torch.complex64 else 1e-11


def per_config_observables(dim):
    obs = {
        "plaquette": mean_plaquette,
        "wilson_1x2": lambda V: wilson_loop(V, 1, 2),
        "polyakov": polyakov_loop,
        "polyakov_0": lambda V: polyakov_loop(V, 0),
        "energy": energy_density,
    }
    if dim == 4:
        obs["q_clover"] = topological_charge_clover
    return obs


# ---- symmetries ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_observables_are_gauge_invariant(group, shape, dtype, generator):
    U = links(group, shape, dtype, generator)
    omega = omega_for(U, generator)
    for name, obs in per_config_observables(len(shape)).items():
        assert_gauge_invariant(obs, U, omega)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_u1_2d_charge_is_gauge_invariant(dtype, generator):
    U = links(U1(), (6, 5), dtype, generator)
    assert_gauge_invariant(topological_charge_u1_2d, U, omega_for(U, generator))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_clover_and_plaquette_fields_are_gauge_covariant(group, shape, dtype, generator):
    U = links(group, shape, dtype, generator)
    omega = omega_for(U, generator)
    for mu in U.lattice.directions:  # F[:, mu] is [B, D, *L, N, N]: one adjoint matrix per (nu, x)
        assert_gauge_covariant(lambda V, mu=mu: clover_field_strength(V)[:, mu], U, omega)
    assert_gauge_covariant(lambda V: plaquette_field(V, 1, 0)[:, None], U, omega)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_translation_invariance(group, shape, generator):
    U = links(group, shape, torch.complex128, generator)
    a = tuple(range(1, len(shape) + 1))
    moved = translate(U, a)
    for name, obs in per_config_observables(len(shape)).items():
        torch.testing.assert_close(obs(moved), obs(U), rtol=1e-12, atol=1e-12, msg=name)
    for mu in U.lattice.directions:
        assert_translation_equivariant(lambda V, mu=mu: clover_field_strength(V)[:, mu], U, a)


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_reflection_flips_the_topological_charges(group, generator):
    U4 = links(group, (3, 4, 3, 5), torch.complex128, generator)
    for mu in range(4):
        P = reflect(U4, mu)
        torch.testing.assert_close(topological_charge_clover(P), -topological_charge_clover(U4), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(energy_density(P), energy_density(U4), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(mean_plaquette(P), mean_plaquette(U4), rtol=1e-12, atol=1e-12)
    U2 = links(U1(), (6, 5), torch.complex128, generator)
    torch.testing.assert_close(topological_charge_u1_2d(reflect(U2, 1)), -topological_charge_u1_2d(U2))
    # on a smooth configuration with charge 2 q1 q2 the reflection gives exactly minus that
    T = thooft_4d(group, (4, 4, 3, 5), 1, 2)
    torch.testing.assert_close(topological_charge_clover(reflect(T, 2)), -topological_charge_clover(T))


# ---- plaquette and Wilson loops -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_unit_wilson_loop_is_the_plaquette_and_the_action(group, shape, dtype, generator):
    U = links(group, shape, dtype, generator)
    P = mean_plaquette(U)
    torch.testing.assert_close(wilson_loop(U, 1, 1), P, rtol=tol(dtype), atol=tol(dtype))
    lat = U.lattice
    S = WilsonAction(beta=1.0, group=group)(U)
    torch.testing.assert_close(S, lat.volume * len(lat.planes) * (1 - P), rtol=10 * tol(dtype), atol=10 * tol(dtype))
    torch.testing.assert_close(wilson_loop(U, 1, 2), wilson_loop(U, 2, 1), rtol=tol(dtype), atol=tol(dtype))


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_wilson_loop_against_naive_path(group, generator):
    # walk every link of the r x t loop by hand, without the rectangle helper
    U = links(group, (4, 5, 3), torch.complex128, generator)
    u, (L0, L1, L2), n = U.data, U.lattice.shape, group.n
    r, t = 2, 1
    total, count = 0.0, 0
    for mu in range(3):
        for nu in range(3):
            if mu == nu:
                continue
            for x in [(0, 0, 0), (3, 4, 2), (1, 3, 1)]:
                y, m = list(x), torch.eye(n, dtype=u.dtype).expand(2, n, n)
                for d, steps, sign in [(mu, r, 1), (nu, t, 1), (mu, r, -1), (nu, t, -1)]:
                    for _ in range(steps):
                        if sign > 0:
                            m = m @ u[(slice(None), d, *y)]
                            y[d] = (y[d] + 1) % U.lattice.shape[d]
                        else:
                            y[d] = (y[d] - 1) % U.lattice.shape[d]
                            m = m @ u[(slice(None), d, *y)].mH
                assert tuple(y) == x
                total = total + trace(m).real / n
                count += 1
    # the same sites and planes from the library's field of loops
    lib = sum(trace(rectangle(u, mu, nu, r, t))[(slice(None), *x)].real / n
              for mu in range(3) for nu in range(3) if mu != nu for x in [(0, 0, 0), (3, 4, 2), (1, 3, 1)])
    torch.testing.assert_close(lib / count, total / count)
    # and wilson_loop is the full average of that field
    full = sum(trace(rectangle(u, mu, nu, r, t)).real.mean((1, 2, 3)) / n for mu in range(3) for nu in range(3) if mu != nu)
    torch.testing.assert_close(wilson_loop(U, r, t), full / 6)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_loops_of_constant_flux_follow_the_area_law(group, dtype):
    # every plaquette carries phi = 2 pi q / V, so an r x t loop carries r t phi exactly (abelian Stokes)
    shape, q = (6, 5), 2
    U = flux_2d(group, shape, q, dtype)
    phi = 2 * math.pi * q / 30
    for r, t in [(1, 1), (2, 1), (3, 2), (4, 4)]:
        want = torch.tensor([abelian_plane_value(group, r * t * phi)], dtype=U.data.real.dtype)
        torch.testing.assert_close(wilson_loop(U, r, t), want, rtol=tol(dtype), atol=tol(dtype))
    torch.testing.assert_close(mean_plaquette(U), torch.tensor([abelian_plane_value(group, phi)], dtype=U.data.real.dtype))
    # in 4D only the (0, 1) and (2, 3) planes carry flux: 4 of 12 ordered planes
    T = thooft_4d(group, (4, 4, 3, 5), 1, -1, dtype)
    p1, p2 = 2 * math.pi / 16, -2 * math.pi / 15
    for r, t in [(1, 1), (2, 1)]:
        w = (2 * abelian_plane_value(group, r * t * p1) + 2 * abelian_plane_value(group, r * t * p2) + 8) / 12
        torch.testing.assert_close(wilson_loop(T, r, t), torch.tensor([w], dtype=T.data.real.dtype), rtol=tol(dtype), atol=tol(dtype))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_cold_start_values(group, shape):
    U = LinkField.identity(group, Lattice(shape=shape), batch=2)
    ones, zeros = torch.ones(2), torch.zeros(2)
    torch.testing.assert_close(mean_plaquette(U), ones, rtol=0, atol=1e-15)
    torch.testing.assert_close(wilson_loop(U, 2, 2), ones, rtol=0, atol=1e-15)
    torch.testing.assert_close(polyakov_loop(U), torch.ones(2, dtype=torch.complex128), rtol=0, atol=1e-15)
    torch.testing.assert_close(energy_density(U), zeros, rtol=0, atol=0)
    if len(shape) == 4:
        torch.testing.assert_close(topological_charge_clover(U), zeros, rtol=0, atol=0)
    if group == U1() and len(shape) == 2:
        torch.testing.assert_close(topological_charge_u1_2d(U), zeros, rtol=0, atol=0)


# ---- Polyakov loops -----------------------------------------------------------------------------

@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_polyakov_loop_of_constant_links(group):
    # U_mu(x) = embed(alpha_mu) everywhere: P_mu = Re-part formula with angle alpha_mu L_mu, and Im from the U(1) phase
    shape, alphas = (4, 3, 5), (0.3, -0.7, 1.1)
    theta = torch.stack([torch.full(shape, a, dtype=torch.float64) for a in alphas])
    U = LinkField(embed(theta[None], group, torch.complex128), group, Lattice(shape=shape))
    for mu, (a, L) in enumerate(zip(alphas, shape)):
        n = group.n
        z = torch.polar(torch.tensor(1.0), torch.tensor(a * L))
        want = z if n == 1 else (z + z.conj() + (n - 2)) / n
        torch.testing.assert_close(polyakov_loop(U, mu), want.reshape(1).to(torch.complex128))
    torch.testing.assert_close(polyakov_loop(U), polyakov_loop(U, 2))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_polyakov_loop_picks_up_the_centre_element(group, dtype, generator):
    U = links(group, (4, 3, 5), dtype, generator)
    n = group.n
    z = torch.polar(torch.tensor(1.0), torch.tensor(2 * math.pi / n if n > 1 else 0.9)).to(dtype)
    for mu in range(3):
        twisted = U.data.clone()
        index = [slice(None)] * twisted.ndim
        index[1], index[2 + mu] = mu, 2  # the links along mu on the slice x_mu = 2
        twisted[tuple(index)] = z * twisted[tuple(index)]
        got = polyakov_loop(U.with_data(twisted), mu)
        torch.testing.assert_close(got, z * polyakov_loop(U, mu), rtol=tol(dtype), atol=tol(dtype))
        # a twist of links orthogonal to mu leaves it alone
        other = (mu + 1) % 3
        index[1] = other
        twisted = U.data.clone()
        twisted[tuple(index)] = z * twisted[tuple(index)]
        torch.testing.assert_close(polyakov_loop(U.with_data(twisted), mu), polyakov_loop(U, mu), rtol=tol(dtype), atol=tol(dtype))


def test_polyakov_loop_against_naive_product(generator):
    U = links(SU(3), (4, 3, 5), torch.complex128, generator)
    u = U.data
    for mu in range(3):
        vals = []
        sites = [(a, b) for a in range(U.lattice.shape[(mu + 1) % 3]) for b in range(U.lattice.shape[(mu + 2) % 3])]
        for a, b in sites:
            m = torch.eye(3, dtype=u.dtype).expand(2, 3, 3)
            for k in range(U.lattice.shape[mu]):
                x = [0, 0, 0]
                x[mu], x[(mu + 1) % 3], x[(mu + 2) % 3] = k, a, b
                m = m @ u[(slice(None), mu, *x)]
            vals.append(trace(m) / 3)
        torch.testing.assert_close(polyakov_loop(U, mu), torch.stack(vals, 1).mean(1))


# ---- topological charge ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_u1_2d_charge_is_an_integer(dtype, generator):
    U = links(U1(), (8, 6), dtype, generator, batch=64)
    Q = topological_charge_u1_2d(U)
    assert (Q - Q.round()).abs().max() < (1e-4 if dtype == torch.complex64 else 1e-12)
    assert Q.round().abs().max() >= 1  # hot configurations are not all trivial: the test sees nonzero sectors


@pytest.mark.parametrize("q", [-3, -1, 0, 1, 2, 5])
@pytest.mark.parametrize("shape", [(6, 6), (8, 5)], ids=str)
def test_u1_2d_charge_of_constant_flux(shape, q, generator):
    U = flux_2d(U1(), shape, q)
    torch.testing.assert_close(topological_charge_u1_2d(U), torch.tensor([float(q)]), rtol=0, atol=1e-12)
    omega = GaugeTransform.random(U1(), U.lattice, batch=1, generator=generator)
    torch.testing.assert_close(topological_charge_u1_2d(U.gauge_transform(omega)), torch.tensor([float(q)]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_clover_charge_and_energy_of_the_thooft_configuration(group, dtype, generator):
    # constant abelian flux phi1 in the (0, 1) planes and phi2 in the (2, 3) planes: the clover is exact,
    # F_01 = i sin(phi1) diag(1, -1, 0..), so Q = c V sin(phi1) sin(phi2) / (4 pi^2) and
    # E = c (sin^2 phi1 + sin^2 phi2), c = 2 for SU(N) (two nonzero eigenvalues), 1 for U(1)
    shape = (4, 6, 5, 4)
    V, c = math.prod(shape), 1 if group.n == 1 else 2
    for q1, q2 in [(1, 1), (1, -2), (2, 3)]:
        U = thooft_4d(group, shape, q1, q2, dtype)
        p1, p2 = 2 * math.pi * q1 / 24, 2 * math.pi * q2 / 20
        q_want = c * V * math.sin(p1) * math.sin(p2) / (4 * math.pi**2)
        e_want = c * (math.sin(p1) ** 2 + math.sin(p2) ** 2)
        real = U.data.real.dtype
        torch.testing.assert_close(topological_charge_clover(U), torch.tensor([q_want], dtype=real), rtol=tol(dtype), atol=tol(dtype))
        torch.testing.assert_close(energy_density(U), torch.tensor([e_want], dtype=real), rtol=tol(dtype), atol=tol(dtype))
        omega = GaugeTransform.random(group, U.lattice, batch=1, generator=generator, dtype=dtype)
        assert_gauge_invariant(topological_charge_clover, U, omega)
    # the continuum value 2 q1 q2 is approached as the flux per plaquette shrinks (O(phi^2) corrections)
    big = thooft_4d(group, (8, 8, 8, 8), 1, 1)
    assert abs(float(topological_charge_clover(big)[0]) - c) < 0.01 * c


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_energy_bounds_the_charge(group, generator):
    # pointwise sum_{mu<nu} |F_mu nu|^2 >= 2 |<F01, F23> - <F02, F13> + <F03, F12>| (Cauchy-Schwarz), i.e.
    # V E >= 8 pi^2 |Q| for the clover definitions, with equality exactly for self-dual fields
    U = links(group, (3, 4, 3, 5), torch.complex128, generator, batch=4)
    for V in (U, wilson_flow(U, t=0.2, eps=0.05)):
        assert (60 * energy_density(V) >= 8 * math.pi**2 * topological_charge_clover(V).abs()).all()
    self_dual = thooft_4d(group, (4, 5, 5, 4), 1, 1)  # equal flux per plaquette in (0, 1) and (2, 3)
    torch.testing.assert_close(400 * energy_density(self_dual), 8 * math.pi**2 * topological_charge_clover(self_dual))
    anti_self_dual = thooft_4d(group, (4, 5, 5, 4), 1, -1)
    torch.testing.assert_close(400 * energy_density(anti_self_dual), -8 * math.pi**2 * topological_charge_clover(anti_self_dual))
    not_self_dual = thooft_4d(group, (4, 5, 5, 4), 1, 2)
    assert 400 * energy_density(not_self_dual) > 1.1 * 8 * math.pi**2 * topological_charge_clover(not_self_dual)


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_clover_field_strength_structure(group, generator):
    U = links(group, (3, 4, 3, 5), torch.complex128, generator)
    F = clover_field_strength(U)
    torch.testing.assert_close(F, -F.transpose(1, 2), rtol=0, atol=0)
    torch.testing.assert_close(F, -F.mH, rtol=0, atol=1e-14)  # anti-Hermitian
    if group.n > 1:
        torch.testing.assert_close(trace(F), torch.zeros_like(trace(F)), rtol=0, atol=1e-14)


def _leaf_products(u, mu, nu):
    """The four clover leaves from their explicit link products (torch.roll only, independent of the library)."""
    def at(f, **steps):  # f(x + sum steps)
        for d, s in steps.items():
            f = torch.roll(f, shifts=-s, dims=1 + int(d[1:]))
        return f

    m, n = f"d{mu}", f"d{nu}"
    Um, Un = u[:, mu], u[:, nu]
    leaf1 = Um @ at(Un, **{m: 1}) @ at(Um, **{n: 1}).mH @ Un.mH
    leaf2 = Un @ at(Um, **{m: -1, n: 1}).mH @ at(Un, **{m: -1}).mH @ at(Um, **{m: -1})
    leaf3 = at(Um, **{m: -1}).mH @ at(Un, **{m: -1, n: -1}).mH @ at(Um, **{m: -1, n: -1}) @ at(Un, **{n: -1})
    leaf4 = at(Un, **{n: -1}).mH @ at(Um, **{n: -1}) @ at(Un, **{m: 1, n: -1}) @ Um.mH
    return leaf1 + leaf2 + leaf3 + leaf4


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_clover_field_strength_against_explicit_leaves(group, generator):
    U = links(group, (3, 4, 3, 5), torch.complex128, generator)
    F = clover_field_strength(U)
    n = group.n
    for mu, nu in U.lattice.planes:
        Q = _leaf_products(U.data, mu, nu)
        A = (Q - Q.mH) / 8
        if n > 1:
            A = A - trace(A)[..., None, None] / n * torch.eye(n, dtype=A.dtype)
        torch.testing.assert_close(F[:, mu, nu], A)


def test_clover_charge_is_the_epsilon_contraction(generator):
    U = links(SU(2), (3, 3, 3, 3), torch.complex128, generator)
    F = clover_field_strength(U)
    eps = torch.zeros(4, 4, 4, 4)
    for p in itertools.permutations(range(4)):
        inversions = sum(p[i] > p[j] for i in range(4) for j in range(i + 1, 4))
        eps[p] = (-1) ** inversions
    # -(1/32 pi^2) sum_x eps_{mu nu rho sigma} tr(F_mu nu F_rho sigma), the full 4^4 contraction
    full = torch.einsum("abcd,zabpqrsij,zcdpqrsji->z", eps.to(F.dtype), F, F)
    torch.testing.assert_close(topological_charge_clover(U), -full.real / (32 * math.pi**2))


# ---- errors -----------------------------------------------------------------------------------

def test_wrong_field_type_is_refused(generator):
    phi = Field.randn(Lattice(shape=(4, 4)), batch=1, generator=generator)
    for fn in (mean_plaquette, energy_density, clover_field_strength, topological_charge_clover, polyakov_loop):
        with pytest.raises(TypeError):  # the runtime type check of the signature (test suite)
            fn(phi)
        with pytest.raises(TypeError, match=r"expects gauge links as a LinkField \[B, D, \*L, N, N\]; got Field"):
            inspect.unwrap(fn)(phi)  # the library's own check, for users without runtime type checking


def test_direction_and_size_errors(generator):
    U = links(SU(2), (4, 5, 3), torch.complex128, generator)
    with pytest.raises(ValueError, match=r"polyakov_loop: direction must be in 0\.\.2 for a D = 3 lattice; got 3"):
        polyakov_loop(U, 3)
    with pytest.raises(ValueError, match=r"direction must be in 0\.\.2 .* got -1"):
        polyakov_loop(U, -1)
    with pytest.raises(ValueError, match=r"two different directions; got mu = nu = 1"):
        plaquette_field(U, 1, 1)
    with pytest.raises(ValueError, match=r"1 <= r, t < min\(L\) = 3 .* got r = 3, t = 1"):
        wilson_loop(U, 3, 1)
    with pytest.raises(ValueError, match=r"got r = 0, t = 2"):
        wilson_loop(U, 0, 2)
    U1d = LinkField.identity(U1(), Lattice(shape=(5,)), batch=1)
    with pytest.raises(ValueError, match=r"mean_plaquette needs a lattice with D >= 2 directions; got shape \(5,\) \(D = 1\)"):
        mean_plaquette(U1d)
    torch.testing.assert_close(polyakov_loop(U1d), torch.ones(1, dtype=torch.complex128))  # D = 1 is fine here


def test_topological_charge_errors(generator):
    with pytest.raises(ValueError, match=r"defined for U\(1\) links on a 2D lattice; got SU\(2\) on L = \(4, 4\) \(D = 2\)"):
        topological_charge_u1_2d(links(SU(2), (4, 4), torch.complex128, generator))
    with pytest.raises(ValueError, match=r"got U\(1\) on L = \(3, 3, 3\) \(D = 3\)"):
        topological_charge_u1_2d(links(U1(), (3, 3, 3), torch.complex128, generator))
    with pytest.raises(ValueError, match=r"topological_charge_clover needs a 4D lattice .* got L = \(4, 4\) \(D = 2\)"):
        topological_charge_clover(links(SU(3), (4, 4), torch.complex128, generator))


# ---- device -----------------------------------------------------------------------------------

def test_gauge_observables_agree_across_devices(device, generator):
    U = links(SU(3), (3, 4, 3, 5), torch.complex128, generator)
    on_device = U.to(device)
    for name, obs in per_config_observables(4).items():
        torch.testing.assert_close(obs(on_device).cpu(), obs(U), msg=name)
    torch.testing.assert_close(clover_field_strength(on_device).cpu(), clover_field_strength(U))
    torch.testing.assert_close(wilson_loop(on_device, 2, 1).cpu(), wilson_loop(U, 2, 1))
    V = links(U1(), (6, 5), torch.complex64, generator)
    torch.testing.assert_close(topological_charge_u1_2d(V.to(device)).cpu(), topological_charge_u1_2d(V))
    torch.testing.assert_close(wilson_flow(on_device, t=0.1, eps=0.05).data.cpu(), wilson_flow(U, t=0.1, eps=0.05).data)
