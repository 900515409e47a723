import math

import pytest
import torch

from lgdiff import SU, U1, AlgebraField, Field, Lattice, LinkField, Phi4Action, WilsonAction
from lgdiff._integrators.schemes import LEAPFROG, OMELYAN, SplittingScheme
from lgdiff._samplers.base import run_chain
from lgdiff._samplers.hmc import HMC, FourierMass, GaugeHMC, UnitMass
from lgdiff._samplers.maala import maala_kernel, wilson_score
from lgdiff.testing import assert_group_member, assert_links_close

SCHEMES = [LEAPFROG, OMELYAN]
GROUPS = [U1(), SU(2), SU(3)]


def exact_free_field(lattice: Lattice, kappa: float, batch: int, generator) -> Field:
    """Exact samples of the lambda = 0 theory: S = phi K phi / 2 with K(k) = 2 - 4 kappa sum_mu cos k_mu."""
    p = lattice.momenta()
    kernel = 2 - 4 * kappa * torch.cos(p).sum(0)
    xi = torch.randn((batch, *lattice.shape), generator=generator)
    dims = lattice.site_dims
    phi = torch.fft.ifftn(torch.fft.fftn(xi, dim=dims) / kernel.sqrt(), dim=dims).real
    return Field(phi, lattice)


def free_propagator(lattice: Lattice, kappa: float) -> torch.Tensor:
    return 1 / (2 - 4 * kappa * torch.cos(lattice.momenta()).sum(0))


# ---- the schemes as data ------------------------------------------------------------------------

def test_scheme_validation():
    with pytest.raises(ValueError, match="must sum to 1"):
        SplittingScheme(name="bad", a=(1.0,), b=(0.5, 0.6))
    with pytest.raises(ValueError, match="palindromic"):
        SplittingScheme(name="bad", a=(0.3, 0.7), b=(0.2, 0.6, 0.2))
    with pytest.raises(ValueError, match="len\\(b\\) == len\\(a\\) \\+ 1"):
        SplittingScheme(name="bad", a=(1.0,), b=(1.0,))


def test_plan_merges_kicks():
    plan = LEAPFROG.plan(3)
    assert [k for k, _ in plan] == ["p", "q", "p", "q", "p", "q", "p"]
    assert [w for k, w in plan if k == "p"] == [0.5, 1.0, 1.0, 0.5]
    assert sum(1 for k, _ in OMELYAN.plan(4) if k == "p") == 4 * OMELYAN.forces_per_step + 1


def test_hmc_bad_settings():
    with pytest.raises(ValueError, match="step_size must be positive"):
        HMC(action=Phi4Action(kappa=0.1, lam=0.1), step_size=0.0, n_steps=5)
    with pytest.raises(ValueError, match="n_steps must be >= 1"):
        GaugeHMC(action=WilsonAction(beta=1.0, group=U1()), step_size=0.1, n_steps=0)
    with pytest.raises(ValueError, match="m_eff2 > 0"):
        FourierMass(m_eff2=0.0)


# ---- reversibility ------------------------------------------------------------------------------

@pytest.mark.parametrize("kinetic", [UnitMass(), FourierMass(m_eff2=0.5)], ids=lambda k: k.name)
@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_scalar_md_is_reversible(scheme, kinetic, generator):
    lat = Lattice(shape=(6, 6))
    hmc = HMC(action=Phi4Action(kappa=0.27, lam=0.022), step_size=0.1, n_steps=20, scheme=scheme, kinetic=kinetic)
    phi = Field.randn(lat, batch=4, generator=generator)
    p = kinetic.sample(phi.data, lat, generator)
    phi1, p1 = hmc.evolve(phi, p)
    phi2, p2 = hmc.evolve(phi1, -p1)
    assert float((phi1.data - phi.data).abs().max()) > 1e-2  # the trajectory went somewhere
    torch.testing.assert_close(phi2.data, phi.data, atol=1e-10, rtol=0)
    torch.testing.assert_close(-p2, p, atol=1e-10, rtol=0)


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_gauge_md_is_reversible(group, scheme, generator):
    lat = Lattice(shape=(4, 4))
    hmc = GaugeHMC(action=WilsonAction(beta=2.0, group=group), step_size=0.1, n_steps=10, scheme=scheme)
    U = LinkField.random(group, lat, batch=2, generator=generator)
    P = AlgebraField.randn(group, lat, batch=2, generator=generator)
    U1_, P1 = hmc.evolve(U, P)
    U2, P2 = hmc.evolve(U1_, -1.0 * P1)
    assert float((U1_.data - U.data).abs().max()) > 1e-2
    assert_links_close(U2, U, atol=1e-10)
    torch.testing.assert_close(-P2.data, P.data, atol=1e-10, rtol=0)


# ---- energy violation: scaling, and <exp(-dH)> = 1 ------------------------------------------------

def _rms_dh(hmc_factory, phi, p, eps):
    hmc = hmc_factory(eps)
    h0 = hmc.hamiltonian(phi, p)
    new, p_new = hmc.evolve(phi, p)
    return float(((hmc.hamiltonian(new, p_new) - h0) ** 2).mean().sqrt())


def test_dh_scales_as_step_squared_and_omelyan_beats_leapfrog(generator):
    lat = Lattice(shape=(8, 8))
    action = Phi4Action(kappa=0.2, lam=0.0)
    phi = exact_free_field(lat, 0.2, 64, generator)
    p = torch.randn(phi.data.shape, generator=generator)
    length = 1.0
    rms = {}
    for scheme in SCHEMES:
        for eps in (0.1, 0.05, 0.025, 0.0125):
            n = round(length / eps)
            rms[scheme.name, eps] = _rms_dh(
                lambda e: HMC(action=action, step_size=e, n_steps=n, scheme=scheme), phi, p, eps)
        # asymptotic order from the two smallest steps (Omelyan reaches its asymptotic regime below eps ~ 0.1)
        slope = math.log(rms[scheme.name, 0.025] / rms[scheme.name, 0.0125]) / math.log(2)
        assert abs(slope - 2) < 0.15, f"{scheme.name}: rms dH ~ eps^{slope:.3f}, expected eps^2"
    # equal cost (force evaluations per unit time): Omelyan at eps is leapfrog at eps / 2
    for eps in (0.1, 0.05, 0.025):
        assert rms["omelyan", eps] < rms["leapfrog", eps / 2] / 2


def test_exp_minus_dh_averages_to_one_scalar(generator):
    # exact equilibrium samples of the free field: <exp(-dH)> = 1 must hold exactly
    lat = Lattice(shape=(8, 8))
    phi = exact_free_field(lat, 0.2, 4000, generator)
    hmc = HMC(action=Phi4Action(kappa=0.2, lam=0.0), step_size=0.25, n_steps=4)
    traj = hmc.trajectory(phi, generator=generator)
    w = torch.exp(-traj.delta_h)
    mean, err = float(w.mean()), float(w.std() / math.sqrt(w.numel()))
    assert float(traj.delta_h.abs().mean()) > 0.05  # the test is not vacuous: dH is sizeable
    assert abs(mean - 1) < 4 * err, f"<exp(-dH)> = {mean} +- {err}"


@pytest.mark.parametrize("group", [U1(), SU(2)], ids=str)
def test_exp_minus_dh_averages_to_one_gauge(group, generator):
    lat = Lattice(shape=(4, 4))
    action = WilsonAction(beta=2.0, group=group)
    U = LinkField.random(group, lat, batch=1000, generator=generator)
    therm = GaugeHMC(action=action, step_size=0.2, n_steps=5)
    for _ in range(15):
        U, _ = therm.step(U, generator=generator)
    traj = GaugeHMC(action=action, step_size=0.35, n_steps=3).trajectory(U, generator=generator)
    w = torch.exp(-traj.delta_h)
    mean, err = float(w.mean()), float(w.std() / math.sqrt(w.numel()))
    assert float(traj.delta_h.abs().mean()) > 0.05
    assert abs(mean - 1) < 4 * err, f"<exp(-dH)> = {mean} +- {err}"


# ---- exactness against the free field ---------------------------------------------------------------

@pytest.mark.parametrize("kinetic", [UnitMass(), FourierMass(m_eff2=0.4)], ids=lambda k: k.name)
def test_free_field_two_point_function(kinetic, generator):
    # cold start, thermalise, one sample per chain: G(k) against the exact propagator, 4 sigma per k
    lat, kappa, chains = Lattice(shape=(6, 6)), 0.2, 1024
    hmc = HMC(action=Phi4Action(kappa=kappa, lam=0.0), step_size=0.2, n_steps=5, kinetic=kinetic)
    phi = Field.zeros(lat, batch=chains)
    (last,) = list(run_chain(hmc, phi, n=1, therm=40, generator=generator))
    gk = torch.fft.fftn(last.state.data, dim=(1, 2)).abs() ** 2 / lat.volume
    mean, err = gk.mean(0), gk.std(0) / math.sqrt(chains)
    z = (mean - free_propagator(lat, kappa)) / err
    assert float(z.abs().max()) < 4, f"max |z| = {float(z.abs().max()):.2f} at k index {int(z.abs().argmax())}"
    assert float(last.acceptance.mean()) > 0.5


# ---- group structure and reproducibility ----------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128], ids=str)
def test_gauge_hmc_stays_on_group(dtype, generator):
    lat = Lattice(shape=(2, 2, 2, 2))
    U = LinkField.random(SU(3), lat, batch=2, generator=generator, dtype=dtype)
    hmc = GaugeHMC(action=WilsonAction(beta=5.5, group=SU(3)), step_size=0.05, n_steps=5, scheme=OMELYAN)
    for _ in range(10):
        U, _ = hmc.step(U, generator=generator)
    assert_group_member(U)


def test_same_seed_same_chain():
    lat = Lattice(shape=(4, 4))
    hmc = GaugeHMC(action=WilsonAction(beta=2.0, group=SU(2)), step_size=0.1, n_steps=5)
    runs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(11)
        U = LinkField.random(SU(2), lat, batch=3, generator=g)
        for _ in range(3):
            U, acc = hmc.step(U, generator=g)
        runs.append((U.data, acc))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def test_exploding_trajectory_is_rejected_not_nan(generator):
    lat = Lattice(shape=(4, 4))
    hmc = HMC(action=Phi4Action(kappa=0.2, lam=0.5), step_size=3.0, n_steps=10)
    phi = Field.randn(lat, batch=8, generator=generator)
    new, acc = hmc.step(phi, generator=generator)
    assert bool(torch.isfinite(new.data).all())
    torch.testing.assert_close(new.data, phi.data)  # every chain rejected
    assert float(acc.max()) == 0.0


@pytest.mark.slow
def test_unitarity_preserved_over_ten_thousand_trajectories(generator):
    lat = Lattice(shape=(2, 2))
    U = LinkField.random(SU(3), lat, batch=4, generator=generator)
    hmc = GaugeHMC(action=WilsonAction(beta=3.0, group=SU(3)), step_size=0.2, n_steps=5)
    for _ in range(10_000):
        U, _ = hmc.step(U, generator=generator)
    assert_group_member(U, atol=1e-12)


# ---- exact physics ------------------------------------------------------------------------------------

def _chain_means(series: torch.Tensor) -> tuple[float, float]:
    """Mean over chains of each chain's time average, and its error from the spread over chains."""
    per_chain = series.mean(0)
    return float(per_chain.mean()), float(per_chain.std() / math.sqrt(per_chain.numel()))


def test_toy_model_moments(generator):
    from lgdiff import ToyAction
    from lgdiff._exact import toy_moments

    for m2 in (1.0, -1.0):
        hmc = HMC(action=ToyAction(m2=m2, g=0.4), step_size=0.3, n_steps=5)
        phi = Field.zeros(Lattice(shape=()), batch=2000)
        xs = torch.stack([s.state.data for s in run_chain(hmc, phi, n=60, therm=30, generator=generator)])
        for k, exact in zip((2, 4), toy_moments(m2, 0.4)):
            mean, err = _chain_means(xs**k)
            assert abs(mean - exact) < 4 * err, f"m2={m2}: <phi^{k}> = {mean} +- {err}, exact {exact}"


@pytest.mark.slow
@pytest.mark.parametrize("beta", [1.0, 3.0])
def test_gauge_hmc_2d_u1_plaquette_and_topological_susceptibility(beta, generator):
    from lgdiff import mean_plaquette, topological_charge_u1_2d
    from lgdiff._exact import u1_2d_plaquette, u1_2d_topological_susceptibility

    lat = Lattice(shape=(8, 8))
    hmc = GaugeHMC(action=WilsonAction(beta=beta, group=U1()), step_size=0.1, n_steps=10, scheme=OMELYAN)
    U = LinkField.random(U1(), lat, batch=256, generator=generator)
    steps = list(run_chain(hmc, U, n=100, therm=100, generator=generator))
    plaq = torch.stack([mean_plaquette(s.state) for s in steps])
    q2 = torch.stack([topological_charge_u1_2d(s.state) ** 2 / lat.volume for s in steps])
    for series, exact in ((plaq, u1_2d_plaquette(beta, (8, 8))), (q2, u1_2d_topological_susceptibility(beta, (8, 8)))):
        mean, err = _chain_means(series)
        assert abs(mean - exact) < 4 * err, f"{mean} +- {err} vs exact {exact}"


@pytest.mark.slow
@pytest.mark.parametrize("group, beta", [(SU(2), 2.0), (SU(3), 6.0)], ids=str)
def test_gauge_hmc_2d_sun_plaquette(group, beta, generator):
    from lgdiff import mean_plaquette
    from lgdiff._exact import su_n_2d_plaquette

    lat = Lattice(shape=(16, 16))  # finite-volume corrections ~ (ratio of characters)^V: negligible here
    hmc = GaugeHMC(action=WilsonAction(beta=beta, group=group), step_size=0.1, n_steps=10, scheme=OMELYAN)
    U = LinkField.random(group, lat, batch=32, generator=generator)
    plaq = torch.stack([mean_plaquette(s.state) for s in run_chain(hmc, U, n=60, therm=60, generator=generator)])
    mean, err = _chain_means(plaq)
    exact = su_n_2d_plaquette(group.n, beta)
    assert abs(mean - exact) < 4 * err, f"{mean} +- {err} vs exact {exact}"


def test_a_trajectory_reuses_the_force_at_its_start_and_gives_the_bits_of_a_fresh_evaluation():
    # K leapfrog steps need K + 1 kicks; the first is at the chain's current state, whose force the previous
    # trajectory computed: 5 trajectories of 3 steps cost 1 + 5 x 3 drift evaluations, not 5 x 4
    action = WilsonAction(beta=2.0, group=SU(2))
    force = wilson_score(action)
    calls = []

    def counting(U, t):
        calls.append(1)
        return force(U, t)

    U0 = LinkField.random(SU(2), Lattice(shape=(4, 4)), batch=3, generator=torch.Generator().manual_seed(1))
    kernel = maala_kernel(action, counting, t_langevin=0.1, step_size=0.02, leapfrog=3)
    g = torch.Generator().manual_seed(2)
    U = U0
    for _ in range(5):
        U, _ = kernel.step(U, generator=g)
    assert len(calls) == 1 + 5 * 3
    # a fresh kernel for every step knows nothing of the previous one: the same chain, bit for bit
    g, V = torch.Generator().manual_seed(2), U0
    for _ in range(5):
        V, _ = maala_kernel(action, force, t_langevin=0.1, step_size=0.02, leapfrog=3).step(V, generator=g)
    assert torch.equal(U.data, V.data)


def test_a_state_modified_in_place_is_not_taken_for_the_cached_one():
    # the cache is keyed by the tensor and its version: an in-place change (another kernel's move written into the
    # same storage) must be evaluated afresh, or the trajectory would start from a stale force
    action = WilsonAction(beta=2.0, group=SU(2))
    U0 = LinkField.random(SU(2), Lattice(shape=(4, 4)), batch=2, generator=torch.Generator().manual_seed(3))
    other = LinkField.random(SU(2), Lattice(shape=(4, 4)), batch=2, generator=torch.Generator().manual_seed(4))
    cached = GaugeHMC(action=action, step_size=0.1, n_steps=3)
    U, _ = cached.step(U0, generator=torch.Generator().manual_seed(5))
    U.data.copy_(other.data)  # same tensor object, new contents
    got, _ = cached.step(U, generator=torch.Generator().manual_seed(6))
    fresh, _ = GaugeHMC(action=action, step_size=0.1, n_steps=3).step(other, generator=torch.Generator().manual_seed(6))
    assert torch.equal(got.data, fresh.data)
