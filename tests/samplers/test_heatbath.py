import math

import numpy as np
import pytest
import torch
from scipy import integrate, special

from lgdiff import SU, U1, Lattice, LinkField, WilsonAction
from lgdiff._geometry.paths import plaquette, staples
from lgdiff._groups.base import trace
from lgdiff._samplers.base import run_chain
from lgdiff._samplers.heatbath import (
    Heatbath,
    Overrelaxation,
    heatbath_links,
    overrelax_links,
    overrelaxation_sweep,
    sample_su2_a0,
    sample_von_mises,
)
from lgdiff.testing import assert_group_member, assert_links_close

GROUPS = [U1(), SU(2), SU(3)]
DTYPES = [torch.complex64, torch.complex128]


def thermalised(group, shape, beta, generator, batch=2, sweeps=3, dtype=torch.complex128):
    U = LinkField.random(group, Lattice(shape=shape), batch=batch, generator=generator, dtype=dtype)
    kernel = Heatbath(WilsonAction(beta=beta, group=group), n_overrelax=0)
    for _ in range(sweeps):
        U, _ = kernel.step(U, generator=generator)
    return U


def z_score(samples: torch.Tensor, exact: float) -> float:
    """(mean - exact) / (std / sqrt(n)) for independent samples."""
    return float((samples.mean() - exact) / (samples.std() / math.sqrt(samples.numel())))


# ---- overrelaxation: exactly microcanonical, an involution, the textbook reflection ------------------

@pytest.mark.parametrize("shape", [(4, 4), (2, 4, 2, 2)])
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_overrelaxation_preserves_action(group, shape, generator):
    action = WilsonAction(beta=2.5, group=group)
    U = thermalised(group, shape, 2.5, generator)
    V = U
    for _ in range(3):
        V, acc = Overrelaxation(action).step(V, generator=generator)
    torch.testing.assert_close(action(V), action(U), atol=1e-10, rtol=0)
    assert_group_member(V)
    assert float(acc.min()) == 1.0


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_overrelaxation_preserves_the_local_weight(group, generator):
    # on independent links with fixed staples: Re tr(U' A) = Re tr(U A), link by link
    u = group.random((500,), generator=generator)
    a = sum(group.random((500,), generator=generator) for _ in range(3))
    u1 = overrelax_links(u, a, group)
    torch.testing.assert_close(trace(u1 @ a).real, trace(u @ a).real, atol=1e-12, rtol=0)
    assert float(group.membership_error(u1).max()) < 1e-12


@pytest.mark.parametrize("group", [U1(), SU(2)], ids=str)
def test_overrelaxation_is_an_involution(group, generator):
    # one reflection per link (for SU(N), N > 2, each subgroup's reflection is one; their product is not)
    u = group.random((500,), generator=generator)
    a = sum(group.random((500,), generator=generator) for _ in range(3))
    twice = overrelax_links(overrelax_links(u, a, group), a, group)
    lattice = Lattice(shape=(1,))
    assert_links_close(LinkField(twice[:, None, None], group, lattice), LinkField(u[:, None, None], group, lattice),
                       atol=1e-10)


def test_overrelaxation_formulas_su2_and_u1(generator):
    # SU(2): U' = V^dag U^dag V^dag with V = A / sqrt(det A)
    u = SU(2).random((200,), generator=generator)
    a = sum(SU(2).random((200,), generator=generator) for _ in range(6))
    v = a / torch.linalg.det(a).sqrt()[:, None, None]
    torch.testing.assert_close(overrelax_links(u, a, SU(2)), v.mH @ u.mH @ v.mH, atol=1e-12, rtol=0)
    # U(1): theta -> -theta - 2 phi_A
    theta = 2 * math.pi * torch.rand(200, generator=generator)
    a = sum(U1().random((200,), generator=generator) for _ in range(2))
    new = overrelax_links(torch.polar(torch.ones_like(theta), theta)[:, None, None], a, U1())
    expected = torch.polar(torch.ones_like(theta), -theta - 2 * torch.angle(a[:, 0, 0]))
    torch.testing.assert_close(new[:, 0, 0], expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize(("group", "shape"), [(U1(), (4, 2, 2)), (SU(2), (4, 4)), (SU(3), (2, 2, 2, 2))], ids=str)
def test_checkerboard_sweep_equals_site_by_site_sweep(group, shape, generator):
    # same-parity links of one direction share no plaquette: updating them together equals updating them
    # one at a time (with the staples recomputed after every link), in the same direction/parity order
    action = WilsonAction(beta=1.5, group=group)
    U = LinkField.random(group, Lattice(shape=shape), batch=2, generator=generator)
    u = U.data.clone()
    for mu in range(len(shape)):
        for parity in (0, 1):
            for x in np.ndindex(*shape):
                if sum(x) % 2 != parity:
                    continue
                a = staples(u, mu)[(slice(None), *x)]
                u[(slice(None), mu, *x)] = overrelax_links(u[(slice(None), mu, *x)], a, group)
    assert_links_close(overrelaxation_sweep(U, action), U.with_data(u), atol=1e-10)


# ---- the single-link heatbath samples the exact conditional distribution ------------------------------

@pytest.mark.parametrize("alpha", [0.2, 1.2, 2.5, 12.0, -0.2, -2.5])  # Creutz (|alpha| < 1.7), Kennedy-Pendleton; beta < 0
def test_su2_a0_distribution(alpha, generator):
    # density sqrt(1 - a0^2) exp(alpha a0): <a0> = I_2 / I_1 (Bessel), <a0^2> by quadrature
    a0 = sample_su2_a0(torch.full((200_000,), alpha), generator=generator)
    assert float(a0.abs().max()) <= 1.0
    weight = lambda x: math.sqrt(1 - x * x) * math.exp(alpha * (x - 1))  # noqa: E731
    norm = integrate.quad(weight, -1, 1)[0]
    second = integrate.quad(lambda x: x * x * weight(x), -1, 1)[0] / norm
    mean = special.ive(2, alpha) / special.ive(1, alpha)
    assert abs(z_score(a0, mean)) < 4, f"<a0> = {float(a0.mean()):.5f}, exact {mean:.5f}"
    assert abs(z_score(a0**2, second)) < 4, f"<a0^2> = {float((a0**2).mean()):.5f}, exact {second:.5f}"


@pytest.mark.parametrize("kappa", [0.0, 0.3, 2.0, 15.0, -2.0])
def test_von_mises_distribution(kappa, generator):
    psi = sample_von_mises(torch.full((200_000,), kappa), generator=generator)
    assert float(psi.abs().max()) <= math.pi
    for m in (1, 2):
        exact = special.ive(m, kappa) / special.ive(0, kappa)  # <cos(m psi)> = I_m / I_0
        assert abs(z_score(torch.cos(m * psi), exact)) < 4, f"<cos {m} psi> = {float(torch.cos(m * psi).mean())}, exact {exact}"
    assert abs(z_score(torch.sin(psi), 0.0)) < 4


@pytest.mark.parametrize("beta", [0.4, 3.0, -2.0])
def test_su2_link_heatbath_mean(beta, generator):
    # P(U) ~ exp((beta / 2) Re tr(U A)), A = k V_A: U = X V_A^dag with <X> = I_2(beta k) / I_1(beta k),
    # so <U> = (I_2 / I_1) V_A^dag. This also fixes the order X V^dag and the isotropy of the direction.
    m = 100_000
    a = (SU(2).random((1,), generator=generator) + SU(2).random((1,), generator=generator)).expand(m, 2, 2)
    u = SU(2).random((m,), generator=generator)  # the old link must not matter
    new = heatbath_links(u, a, beta, SU(2), generator=generator)
    k = float(torch.linalg.det(a[0]).real.sqrt())
    expected = special.ive(2, beta * k) / special.ive(1, beta * k) * (a[0] / k).mH
    for part in (torch.real, torch.imag):
        z = (part(new).mean(0) - part(expected)) / (part(new).std(0) / math.sqrt(m))
        assert float(z.abs().max()) < 4, f"max |z| = {float(z.abs().max()):.2f}"
    assert_group_member(LinkField(new[:, None, None], SU(2), Lattice(shape=(1,))), atol=1e-14)


@pytest.mark.parametrize("beta", [0.5, 4.0, -1.0])
def test_u1_link_heatbath_mean(beta, generator):
    # P(theta) ~ exp(beta k cos(theta + phi_A)): <e^{i theta}> = (I_1 / I_0)(beta k) e^{-i phi_A}
    m = 100_000
    a = (U1().random((1,), generator=generator) + 0.7 * U1().random((1,), generator=generator)).expand(m, 1, 1)
    u = U1().random((m,), generator=generator)
    new = heatbath_links(u, a, beta, U1(), generator=generator)[:, 0, 0]
    k = float(a[0, 0, 0].abs())
    expected = special.ive(1, beta * k) / special.ive(0, beta * k) * a[0, 0, 0].conj() / k
    assert abs(z_score(new.real, float(expected.real))) < 4
    assert abs(z_score(new.imag, float(expected.imag))) < 4


def su_n_one_link_mean(n: int, beta: float) -> float:
    """<Re tr U / N> for P(U) ~ exp((beta / N) Re tr U) on SU(N): Z(x) = sum_q det[I_{q+i-j}(x)], x = beta / N
    (Bars and Green's one-link integral), differentiated numerically."""
    def log_z(x: float) -> float:
        i, j = np.meshgrid(range(n), range(n), indexing="ij")
        return math.log(sum(np.linalg.det(special.iv(q + i - j, x)) for q in range(-30, 31)))
    x, h = beta / n, 1e-5
    return (log_z(x + h) - log_z(x - h)) / (2 * h) / n


def test_su_n_one_link_formula_against_u1_and_su2():
    # the test's own reference: SU(2) one-link mean is I_2(beta) / I_1(beta)
    assert abs(su_n_one_link_mean(2, 2.7) - special.iv(2, 2.7) / special.iv(1, 2.7)) < 1e-8


@pytest.mark.parametrize(("n", "beta"), [(3, 2.0), (3, 8.0), (4, 6.0), (3, -4.0)])
def test_cabibbo_marinari_converges_to_one_link_distribution(n, beta, generator):
    # independent links with staple A = G (random SU(N) per link): Re tr(U G) has the one-link distribution
    # of exp((beta / N) Re tr U); Cabibbo-Marinari passes from a Haar-random start must converge to it
    m = 40_000 if n == 3 else 20_000
    g = SU(n).random((m,), generator=generator)
    u = SU(n).random((m,), generator=generator)
    for _ in range(8):  # converged after about 3 passes for SU(3) at these beta
        u = heatbath_links(u, g, beta, SU(n), generator=generator)
    obs = trace(u @ g).real / n
    exact = su_n_one_link_mean(n, beta)
    assert abs(z_score(obs, exact)) < 4, f"<Re tr U / {n}> = {float(obs.mean()):.5f}, exact {exact:.5f}"


# ---- the kernel: group, dtype, reproducibility, errors ----------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("group", "shape"), [(U1(), (4, 4)), (SU(2), (4, 2, 2)), (SU(3), (2, 2, 2, 2)),
                                              (SU(4), (4, 4))], ids=str)
def test_heatbath_keeps_links_in_group(group, shape, dtype, generator, device):
    g = torch.Generator(device).manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
    U = LinkField.random(group, Lattice(shape=shape), batch=2, generator=g, dtype=dtype, device=device)
    kernel = Heatbath(WilsonAction(beta=3.0, group=group), n_overrelax=2)
    for _ in range(10):  # 30 sweeps
        U, acc = kernel.step(U, generator=g)
    assert U.data.dtype == dtype and U.data.device.type == device.type
    assert acc.dtype == U.data.real.dtype and float(acc.min()) == 1.0
    assert_group_member(U, atol=1e-5 if dtype == torch.complex64 else 1e-13)


def test_same_seed_same_chain():
    kernel = Heatbath(WilsonAction(beta=2.0, group=SU(3)), n_overrelax=1)
    runs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(7)
        U = LinkField.random(SU(3), Lattice(shape=(4, 4)), batch=3, generator=g)
        for _ in range(3):
            U, _ = kernel.step(U, generator=g)
        runs.append(U.data)
    assert torch.equal(runs[0], runs[1])


def test_runs_in_a_chain_and_reports_settings(generator):
    action = WilsonAction(beta=2.0, group=U1())
    kernel = Heatbath(action, n_overrelax=2)
    assert kernel.name == "heatbath" and kernel.settings() == {"beta": 2.0, "group": "U(1)", "n_overrelax": 2}
    U = LinkField.identity(U1(), Lattice(shape=(4, 4)), batch=2)
    steps = list(run_chain(kernel, U, n=2, therm=1, generator=generator))
    assert [s.index for s in steps] == [1, 2]
    assert float(steps[-1].acceptance.min()) == 1.0


def test_heatbath_errors(generator):
    with pytest.raises(ValueError, match=r"needs D >= 2 and an even extent in every direction; got a lattice of shape \(5, 4\)"):
        Heatbath(WilsonAction(beta=1.0, group=SU(2))).step(
            LinkField.identity(SU(2), Lattice(shape=(5, 4)), batch=1), generator=generator)
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        Overrelaxation(WilsonAction(beta=1.0, group=U1())).step(
            LinkField.identity(U1(), Lattice(shape=(6,)), batch=1), generator=generator)
    with pytest.raises(ValueError, match=r"WilsonAction\(group=SU\(2\)\) got links of SU\(3\)"):
        Heatbath(WilsonAction(beta=1.0, group=SU(2))).step(
            LinkField.identity(SU(3), Lattice(shape=(4, 4)), batch=1), generator=generator)
    with pytest.raises(ValueError, match="n_overrelax must be an int >= 0"):
        Heatbath(WilsonAction(beta=1.0, group=SU(2)), n_overrelax=-1)
    with pytest.raises(TypeError, match="Heatbath.action must be a WilsonAction"):
        Heatbath("wilson")


# ---- exact 2D physics (slow) ------------------------------------------------------------------------------

def plaquette_history(kernel, U, *, therm, n, generator):
    """Per chain, per measured sweep: the volume-averaged Re tr U_P / N (2D), and the links at the end."""
    for _ in range(therm):
        U, _ = kernel.step(U, generator=generator)
    rows = []
    for _ in range(n):
        U, _ = kernel.step(U, generator=generator)
        rows.append(trace(plaquette(U.data, 0, 1)).real.mean((1, 2)) / U.group.n)
    return torch.stack(rows, 1), U


def chain_mean(per_chain_time_series: torch.Tensor) -> tuple[float, float]:
    """Mean over chains of each chain's time average; error = std over chains / sqrt(chains)."""
    avg = per_chain_time_series.mean(1)
    return float(avg.mean()), float(avg.std() / math.sqrt(avg.numel()))


@pytest.mark.slow
@pytest.mark.parametrize(("n", "beta"), [(2, 2.0), (2, 4.0), (3, 3.0), (3, 6.0)])
def test_2d_su_n_plaquette_is_exact(n, beta, generator):
    from lgdiff._exact import su_n_2d_plaquette

    L, chains = 32, 16
    U = LinkField.random(SU(n), Lattice(shape=(L, L)), batch=chains, generator=generator)
    history, U = plaquette_history(Heatbath(WilsonAction(beta=beta, group=SU(n))), U, therm=30, n=60,
                                   generator=generator)
    mean, err = chain_mean(history)
    exact = su_n_2d_plaquette(n, beta)
    print(f"SU({n}) beta={beta} L={L}: <P> = {mean:.6f} +- {err:.6f}, exact {exact:.6f}")
    assert abs(mean - exact) < 4 * err
    assert_group_member(U)


@pytest.mark.slow
@pytest.mark.parametrize("beta", [1.0, 3.0])
def test_2d_u1_plaquette_and_topological_susceptibility_are_exact(beta, generator):
    from lgdiff._exact import u1_2d_plaquette, u1_2d_topological_susceptibility

    L, chains = 16, 64
    shape = (L, L)
    kernel = Heatbath(WilsonAction(beta=beta, group=U1()), n_overrelax=1)
    U = LinkField.random(U1(), Lattice(shape=shape), batch=chains, generator=generator)
    for _ in range(50):
        U, _ = kernel.step(U, generator=generator)
    plaq, q2 = [], []
    for _ in range(400):
        U, _ = kernel.step(U, generator=generator)
        up = plaquette(U.data, 0, 1)[..., 0, 0]
        plaq.append(up.real.mean((1, 2)))
        q = torch.angle(up).sum((1, 2)) / (2 * math.pi)  # angle in (-pi, pi]: Q is an integer
        q2.append(q.round() ** 2 / (L * L))
        assert float((q - q.round()).abs().max()) < 1e-8
    p_mean, p_err = chain_mean(torch.stack(plaq, 1))
    chi_mean, chi_err = chain_mean(torch.stack(q2, 1))
    p_exact, chi_exact = u1_2d_plaquette(beta, shape), u1_2d_topological_susceptibility(beta, shape)
    print(f"U(1) beta={beta} L={L}: <P> = {p_mean:.6f} +- {p_err:.6f}, exact {p_exact:.6f}; "
          f"chi_t = {chi_mean:.6f} +- {chi_err:.6f}, exact {chi_exact:.6f}")
    assert abs(p_mean - p_exact) < 4 * p_err
    assert abs(chi_mean - chi_exact) < 4 * chi_err


# ---- negative beta: the same exact 2D physics, through the staggered-sign map ------------------------------

def staggered_signs(shape: tuple[int, int]) -> torch.Tensor:
    """eta_0(x) = 1, eta_1(x) = (-1)^{x_0}: every plaquette of eta is -1 on a torus of even extents."""
    x0 = torch.arange(shape[0])[:, None].expand(shape)
    return torch.stack([torch.ones(shape), (-1.0) ** x0])


@pytest.mark.parametrize(("group", "beta"), [(U1(), -1.0), (SU(2), -2.0)], ids=str)
def test_2d_plaquette_at_negative_beta_is_exact(group, beta, generator):
    # -1 is in U(1) and SU(2), so U -> eta U maps Re tr U_P -> -Re tr U_P on every plaquette and the
    # Haar measure to itself: <P>(beta) = -<P>(-beta), and lgdiff._exact gives the right-hand side
    from lgdiff._exact import su_n_2d_plaquette, u1_2d_plaquette

    L, chains = 8, 32
    shape = (L, L)
    U = LinkField.random(group, Lattice(shape=shape), batch=chains, generator=generator)
    eta = staggered_signs(shape).to(U.data.dtype)[None, ..., None, None]
    p = trace(plaquette(U.data, 0, 1)).real
    torch.testing.assert_close(trace(plaquette(eta * U.data, 0, 1)).real, -p)
    exact = -(u1_2d_plaquette(-beta, shape) if group == U1() else su_n_2d_plaquette(2, -beta))
    history, U = plaquette_history(Heatbath(WilsonAction(beta=beta, group=group)), U, therm=20, n=100,
                                   generator=generator)
    mean, err = chain_mean(history)
    assert abs(mean - exact) < 4 * err, f"{group} beta={beta}: <P> = {mean:.5f} +- {err:.5f}, exact {exact:.5f}"
    assert exact < -0.4 and err < 0.01  # far from the wrong answer 0 of a sampler that ignores the sign
    assert_group_member(U)
