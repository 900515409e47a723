import math

import numpy as np
import pytest
import torch
from scipy.special import ive, ndtr, ndtri

import lgdiff
from lgdiff import SU, U1, AlgebraField, Lattice, LinkField
from lgdiff._samplers.reverse import Corrector, StepInfo, probability_flow, reverse_sde
from lgdiff._sde.group import GroupVE
from lgdiff._sde.heat_kernel import heat_kernel
from lgdiff._sde.ve import VESDE
from lgdiff.testing import assert_group_member

PROCESS = GroupVE()
T_MIN = 1e-3


def probability_flow_links(score, process, initial, **kw):
    """The probability-flow ODE's output without its likelihood (lgdiff.probability_flow, divergence "none")."""
    return probability_flow(score, process, initial, divergence="none", **kw)[0]


@pytest.fixture
def fast_loop():
    """Long integrations (hundreds of steps) run with the value checks off: each LinkField built per step
    would otherwise synchronise for its membership check (~1 ms). The tests assert membership themselves."""
    with lgdiff.checks(False):
        yield


def s2_of(t: float) -> float:
    """The kernel variance s(t)^2 of docs/conventions.md, sigma = 25."""
    return (25.0 ** (2 * t) - 1) / (2 * math.log(25.0))


def angles(U: LinkField) -> torch.Tensor:
    return torch.angle(U.data[..., 0, 0])


def u1_links(theta: torch.Tensor) -> LinkField:
    """U(1) links from angles ``[B, D, *L]``."""
    lat = Lattice(shape=tuple(theta.shape[2:]))
    return LinkField(torch.polar(torch.ones_like(theta), theta)[..., None, None], U1(), lat)


def heat_kernel_score(group, U0: LinkField | None = None):
    """The exact score of data concentrated at U0 (the identity by default): nabla log K_{s(t)^2}(U U0^dag)."""
    def score(U: LinkField, t: torch.Tensor) -> AlgebraField:
        base = U0 if U0 is not None else LinkField.identity(U.group, U.lattice, batch=U.batch, dtype=U.data.dtype,
                                                            device=U.data.device)
        return PROCESS.kernel_score(U, base, t)
    return score


def u1_wrapped_gaussian_score(U: LinkField, t: torch.Tensor) -> AlgebraField:
    """Independent exact score of U(1) data at the identity: d/dtheta log sum_k exp(-(theta + 2 pi k)^2 / (2 s^2))."""
    theta = angles(U)
    s2 = (25.0 ** (2 * t) - 1) / (2 * math.log(25.0))
    s2 = s2.reshape(-1, *([1] * (theta.ndim - 1)))[..., None]
    y = theta[..., None] + 2 * math.pi * torch.arange(-10, 11, dtype=theta.dtype)
    w = torch.softmax(-y * y / (2 * s2), -1)
    d = (w * (-y / s2)).sum(-1)
    return AlgebraField((1j * d.to(U.data.dtype))[..., None, None], U.group, U.lattice)


# ---- the forward process -------------------------------------------------------------------------------

@pytest.mark.parametrize("group", [U1(), SU(2), SU(3)], ids=str)
def test_perturb_is_the_exponential_of_scaled_gaussian_coordinates(group, generator):
    U0 = LinkField.random(group, Lattice(shape=(3, 2)), batch=3, generator=generator)
    t = torch.tensor([0.0, 0.02, 0.1])
    Ut, eta = PROCESS.perturb(U0, t, generator=generator)
    assert eta.shape == (3, 2, 3, 2, group.n_generators)
    # principal log of U_t U_0^dag recovers s(t) eta (small s: no wrapping)
    coords = group.to_coords(group.log(Ut.data @ U0.data.mH))
    s = PROCESS.std(t).reshape(3, 1, 1, 1, 1)
    torch.testing.assert_close(coords, s * eta, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_gaussian_kernel_has_the_one_shot_moments(t, generator):
    # U(1): <cos(theta_t - theta_0)> = exp(-s^2/2); SU(2): <Re tr(U_t U_0^dag)>/2 = <cos(s |eta| / 2)>
    # = (1 - s^2/4) exp(-s^2/8) for eta ~ N(0, 1_3), which differs from the heat kernel's exp(-3 s^2/8)
    s2 = s2_of(t)
    for group, exact in [(U1(), math.exp(-s2 / 2)), (SU(2), (1 - s2 / 4) * math.exp(-s2 / 8))]:
        U0 = LinkField.random(group, Lattice(shape=(32, 32)), batch=8, generator=generator)
        Ut, _ = PROCESS.perturb(U0, torch.full((8,), t), generator=generator)
        x = (Ut.data @ U0.data.mH).diagonal(dim1=-2, dim2=-1).sum(-1).real.flatten() / group.n
        err = float(x.std()) / math.sqrt(x.numel())
        assert abs(float(x.mean()) - exact) < 4 * err, f"{group}: {float(x.mean())} vs {exact} +- {err}"


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_exact_perturbation_has_the_heat_kernel_moments(t, generator):
    s2 = s2_of(t)
    U0 = LinkField.random(SU(2), Lattice(shape=(32, 32)), batch=8, generator=generator)
    Ut = PROCESS.perturb_exact(U0, torch.full((8,), t), generator=generator)
    x = (Ut.data @ U0.data.mH).diagonal(dim1=-2, dim2=-1).sum(-1).real.flatten() / 2
    err = float(x.std()) / math.sqrt(x.numel())
    assert abs(float(x.mean()) - math.exp(-3 * s2 / 8)) < 4 * err


def test_prior_is_haar(generator):
    U = PROCESS.prior(SU(2), Lattice(shape=(16, 16)), batch=8, generator=generator, dtype=torch.complex64)
    assert U.data.dtype == torch.complex64 and U.batch == 8
    x = U.data.diagonal(dim1=-2, dim2=-1).sum(-1).real.flatten().double()
    assert abs(float(x.mean())) < 4 * float(x.std()) / math.sqrt(x.numel())


@pytest.mark.parametrize("group", [U1(), SU(2), SU(3)], ids=str)
def test_the_exact_marginal_at_T_is_the_haar_prior(group, generator):
    # the process's t = T marginal of any data is the heat kernel K_{s(T)^2} (Brownian motion from the data);
    # sampling from the Haar prior with prior_logp = 0 is exact only if that kernel is flat. Its largest deviation
    # from 1 is at the identity (all characters maximal), so check it there and at Haar-random matrices.
    U = torch.cat([group.identity((1,), dtype=torch.complex128),
                   group.random((64,), generator=generator, dtype=torch.complex128)])
    links = LinkField(U.reshape(65, 1, 1, group.n, group.n), group, Lattice(shape=(1,)))
    s_T = PROCESS.std(torch.tensor(PROCESS.T, dtype=torch.float64))
    log_k = heat_kernel(group).log_density(U, s_T**2)
    assert float(log_k.abs().max()) < 1e-14, f"log K_s(T)^2 deviates from Haar by {float(log_k.abs().max())}"
    torch.testing.assert_close(PROCESS.prior_logp(links), torch.zeros(65, dtype=torch.float64))


def test_time_points():
    uni = PROCESS.time_points(4, t_min=0.2)
    assert uni == pytest.approx((1.0, 0.8, 0.6, 0.4, 0.2))
    geo = PROCESS.time_points(10, t_min=T_MIN, spacing="geometric")
    assert geo[0] == 1.0 and geo[-1] == T_MIN and all(a > b for a, b in zip(geo[:-1], geo[1:]))
    ratios = [s2_of(b) / s2_of(a) for a, b in zip(geo[:-1], geo[1:])]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-9)  # constant ratio of kernel variances
    assert GroupVE(sde=VESDE(sigma=10.0, t_final=0.5)).time_points(2, t_min=0.1)[0] == 0.5


# ---- denoising score matching --------------------------------------------------------------------------

@pytest.mark.parametrize("group", [U1(), SU(2)], ids=str)
def test_heat_kernel_loss_vanishes_for_the_exact_score(group, generator):
    # data: one configuration per batch entry (a point mass at U0); the exact score is the kernel score around U0
    U0 = LinkField.random(group, Lattice(shape=(4, 4)), batch=6, generator=generator)
    loss = PROCESS.dsm_loss(heat_kernel_score(group, U0), U0, generator=generator, target="heat_kernel")
    assert loss.shape == () and float(loss) < 1e-20
    # and it is the per-link sum of squares: a zero score costs E[s^2 |nabla log K|^2] per link
    zero = PROCESS.dsm_loss(lambda U, t: AlgebraField(torch.zeros_like(U.data), U.group, U.lattice), U0,
                            generator=generator, target="heat_kernel")
    assert 0.1 < float(zero) < 10 * group.n_generators


def _scaled_losses(group, generator, n_calls: int) -> np.ndarray:
    """Per call (one configuration, fresh t): the Gaussian-target loss at score = c * exact score for c = -1, 0, 1,
    with common random numbers (same generator state for the three)."""
    out = []
    U0 = LinkField.identity(group, Lattice(shape=(16, 16)), batch=1)
    exact = heat_kernel_score(group)
    for _ in range(n_calls):
        state = generator.get_state()
        row = []
        for c in (-1.0, 0.0, 1.0):
            generator.set_state(state)
            row.append(float(PROCESS.dsm_loss(lambda U, t, c=c: exact(U, t) * c, U0, generator=generator)))
        out.append(row)
    return np.array(out)


def test_gaussian_target_has_the_exact_minimiser_for_u1(generator):
    # L(c) = c^2 a + 2 c b + e per call; the minimiser c* = -b/a is 1 because E[-eta/s | U_t] is the exact
    # U(1) score (the wrapped Gaussian is the law of exp(i s eta)). A sign error in the loss gives c* = -1.
    losses = _scaled_losses(U1(), generator, 150)
    a = (losses[:, 0] + losses[:, 2]) / 2 - losses[:, 1]
    b = (losses[:, 2] - losses[:, 0]) / 4
    c_star = -b.sum() / a.sum()
    jack = np.array([-(b.sum() - b[i]) / (a.sum() - a[i]) for i in range(len(a))])
    err = math.sqrt((len(a) - 1) * ((jack - jack.mean()) ** 2).mean())
    assert abs(c_star - 1) < 4 * err, f"c* = {c_star} +- {err}"
    # a zero score costs E[eta^2] = n_generators per link
    l0 = losses[:, 1]
    assert abs(l0.mean() - 1) < 4 * l0.std() / math.sqrt(len(l0))


def test_dsm_loss_is_differentiable(generator):
    scale = torch.tensor(0.5, requires_grad=True)
    U0 = LinkField.random(SU(2), Lattice(shape=(4,)), batch=4, generator=generator)
    exact = heat_kernel_score(SU(2), U0)
    loss = PROCESS.dsm_loss(lambda U, t: exact(U, t) * scale, U0, generator=generator, target="heat_kernel")
    (grad,) = torch.autograd.grad(loss, scale)
    assert float(grad) < 0  # the loss falls towards scale = 1


def test_dsm_loss_errors(generator):
    U0 = LinkField.identity(SU(3), Lattice(shape=(2, 2)), batch=2)
    zero = lambda U, t: AlgebraField(torch.zeros_like(U.data), U.group, U.lattice)  # noqa: E731
    with pytest.raises(ValueError, match="target must be one of"):
        PROCESS.dsm_loss(zero, U0, generator=generator, target="exact")
    with pytest.raises(ValueError, match="0 < t_min < T"):
        PROCESS.dsm_loss(zero, U0, generator=generator, t_min=0.0)
    with pytest.raises(ValueError, match="available for U\\(1\\) and SU\\(2\\); got SU\\(3\\)"):
        PROCESS.dsm_loss(zero, U0, generator=generator, target="heat_kernel")
    with pytest.raises(TypeError, match="must return an AlgebraField"):
        PROCESS.dsm_loss(lambda U, t: U.data, U0, generator=generator)
    wrong = lambda U, t: AlgebraField(torch.zeros(2, 2, 2, 2, 2, 2, dtype=U.data.dtype), SU(2), U.lattice)  # noqa: E731
    with pytest.raises(ValueError, match="group, lattice and batch must match"):
        PROCESS.dsm_loss(wrong, U0, generator=generator)
    half = lambda U, t: AlgebraField(torch.zeros_like(U.data).to(torch.complex64), U.group, U.lattice)  # noqa: E731
    with pytest.raises(ValueError, match="return the links' dtype"):
        PROCESS.dsm_loss(half, U0, generator=generator)
    with pytest.raises(ValueError, match="one time per configuration"):
        PROCESS.perturb(U0, torch.ones(3), generator=generator)


# ---- reverse SDE with an exact score ---------------------------------------------------------------------

def _mean_with_error(x: torch.Tensor) -> tuple[float, float]:
    x = x.flatten().double()
    return float(x.mean()), float(x.std()) / math.sqrt(x.numel())


def test_reverse_sde_u1_point_mass_concentrates_at_the_exact_kernel(generator, fast_loop):
    # data = identity on every link; from the Haar prior the exact score must bring <cos theta> to
    # exp(-s(t_min)^2 / 2). Geometric grid: EM bias 1.1% of 1 - <cos>, i.e. 0.35 sigma at 2048 links.
    U = PROCESS.prior(U1(), Lattice(shape=(16, 16)), batch=4, generator=generator)
    out = reverse_sde(u1_wrapped_gaussian_score, PROCESS, U, steps=500, generator=generator, t_min=T_MIN,
                            spacing="geometric")
    mean, err = _mean_with_error(torch.cos(angles(out)))
    exact = math.exp(-s2_of(T_MIN) / 2)
    assert abs(mean - exact) < 4 * err, f"<cos theta> = {mean} +- {err}, exact {exact}"


def test_reverse_sde_on_the_uniform_grid_has_the_predicted_euler_maruyama_bias(generator, fast_loop):
    # The papers' uniform grid: the last steps have g^2 dt / s^2 ~ 1. In the linear regime (s < 0.3, no
    # wrapping) the EM chain is Gaussian with variance v' = v (1 - g^2 dt / s^2)^2 + g^2 dt, g and s at the
    # step's start; what came before s = 0.3 is forgotten (contraction ~1e-4). Predicted: 2.5x the exact variance.
    steps = 500
    ts = PROCESS.time_points(steps, t_min=T_MIN)
    start = next(i for i, t in enumerate(ts) if s2_of(t) < 0.09)
    v = s2_of(ts[start])
    for k in range(start, steps):
        dt, g2, s2 = ts[k] - ts[k + 1], 25.0 ** (2 * ts[k]), s2_of(ts[k])
        v = v * (1 - g2 * dt / s2) ** 2 + g2 * dt
    assert 2.3 < v / s2_of(T_MIN) < 2.6
    U = PROCESS.prior(U1(), Lattice(shape=(16, 16)), batch=4, generator=generator)
    out = reverse_sde(u1_wrapped_gaussian_score, PROCESS, U, steps=steps, generator=generator, t_min=T_MIN)
    mean, err = _mean_with_error(torch.cos(angles(out)))
    assert abs(mean - math.exp(-v / 2)) < 4 * err, f"<cos theta> = {mean} +- {err}, EM prediction {math.exp(-v / 2)}"


@pytest.mark.parametrize(("k", "c"), [(2, 0.5), (1, 1.5)])
def test_predictor_corrector_has_the_predicted_variance(k, c, generator, fast_loop):
    # point-mass data, exact score -x / s^2 in the linear regime: a predictor step maps the variance
    # V -> V (1 - g^2 dt / s^2)^2 + g^2 dt, each corrector step V -> V (1 - c)^2 + 2 c s'^2 (its fixed point is
    # s'^2 / (1 - c / 2), not s'^2: unadjusted Langevin). The exact kernel would give exp(-s^2 / 2): 8-12 sigma away.
    steps = 100
    ts = PROCESS.time_points(steps, t_min=T_MIN, spacing="geometric")
    start = next(i for i, t in enumerate(ts) if s2_of(t) < 0.09)
    v = s2_of(ts[start])
    for i in range(start, steps):
        dt, g2 = ts[i] - ts[i + 1], 25.0 ** (2 * ts[i])
        v = v * (1 - g2 * dt / s2_of(ts[i])) ** 2 + g2 * dt
        for _ in range(k):
            v = v * (1 - c) ** 2 + 2 * c * s2_of(ts[i + 1])
    U = PROCESS.prior(U1(), Lattice(shape=(16, 16)), batch=4, generator=generator)
    out = reverse_sde(u1_wrapped_gaussian_score, PROCESS, U, steps=steps, generator=generator, t_min=T_MIN,
                            spacing="geometric", corrector=Corrector(steps=k, scale=c))
    mean, err = _mean_with_error(torch.cos(angles(out)))
    assert abs(mean - math.exp(-v / 2)) < 4 * err, f"<cos theta> = {mean} +- {err}, predicted {math.exp(-v / 2)}"
    assert abs(mean - math.exp(-s2_of(T_MIN) / 2)) > 6 * err  # the prediction is not the exact kernel's


def test_corrector_with_a_zero_score_keeps_haar_links_and_checks_its_settings(generator):
    zero = lambda U, t: AlgebraField(torch.zeros_like(U.data), U.group, U.lattice)  # noqa: E731
    U = PROCESS.prior(SU(3), Lattice(shape=(4, 4)), batch=64, generator=generator)
    out = reverse_sde(zero, PROCESS, U, steps=4, generator=generator, corrector=Corrector(steps=3))
    tr = (out.data.diagonal(dim1=-2, dim2=-1).sum(-1).real / 3).reshape(64, -1).mean(1)
    assert abs(float(tr.mean())) < 4 * float(tr.std() / 8)
    assert float(SU(3).membership_error(out.data).amax()) < 1e-12
    with pytest.raises(ValueError, match="corrector scale must be in \\(0, 2\\)"):
        Corrector(steps=1, scale=2.0)
    with pytest.raises(ValueError, match="corrector steps must be an int >= 0; got -1"):
        Corrector(steps=-1)


def test_reverse_sde_su2_point_mass_with_the_heat_kernel_score(generator, fast_loop):
    # <Re tr U>/2 at t_min is exp(-3 s^2 / 8) (the fundamental character under K_{s^2}); EM bias 0.35 sigma
    U = PROCESS.prior(SU(2), Lattice(shape=(16, 16)), batch=2, generator=generator)
    out = reverse_sde(heat_kernel_score(SU(2)), PROCESS, U, steps=500, generator=generator, t_min=T_MIN,
                            spacing="geometric")
    mean, err = _mean_with_error(out.data.diagonal(dim1=-2, dim2=-1).sum(-1).real / 2)
    exact = math.exp(-3 * s2_of(T_MIN) / 8)
    assert abs(mean - exact) < 4 * err, f"<Re tr U>/2 = {mean} +- {err}, exact {exact}"


@pytest.mark.slow
def test_reverse_sde_u1_von_mises_data(generator, fast_loop):
    # data theta_0 ~ von Mises(kappa = 2) on every link: p_t = vM * wrapped Gaussian, Fourier coefficients
    # r_n e^{-n^2 s^2 / 2} with r_n = I_n(kappa) / I_0(kappa); exact <cos(n theta)>_t = r_n e^{-n^2 s^2 / 2}
    kappa = 2.0
    n = np.arange(1, 40)
    r = torch.tensor(ive(n, kappa) / ive(0, kappa))
    nn = torch.tensor(n, dtype=torch.float64)

    def score(U: LinkField, t: torch.Tensor) -> AlgebraField:
        theta = angles(U)[..., None]
        s2 = ((25.0 ** (2 * t) - 1) / (2 * math.log(25.0))).reshape(-1, *([1] * (theta.ndim - 1)))
        w = r * torch.exp(-nn * nn * s2 / 2)
        p = 1 + 2 * (w * torch.cos(nn * theta)).sum(-1)
        dp = -2 * (w * nn * torch.sin(nn * theta)).sum(-1)
        return AlgebraField((1j * (dp / p))[..., None, None], U.group, U.lattice)

    U = PROCESS.prior(U1(), Lattice(shape=(32, 32)), batch=4, generator=generator)
    out = reverse_sde(score, PROCESS, U, steps=500, generator=generator, t_min=T_MIN, spacing="geometric")
    theta = angles(out)
    for k in (1, 2):
        mean, err = _mean_with_error(torch.cos(k * theta))
        exact = float(r[k - 1]) * math.exp(-k * k * s2_of(T_MIN) / 2)
        assert abs(mean - exact) < 4 * err, f"<cos {k} theta> = {mean} +- {err}, exact {exact}"


# ---- probability flow: the exact transport map -----------------------------------------------------------

def _u1_transport(theta_T: np.ndarray) -> np.ndarray:
    """Exact PF-ODE map for U(1) data at the identity: mass in [0, theta] is conserved (the flux vanishes at
    0 and pi by symmetry), so theta_min = F_min^{-1}(F_T(theta_T)); at t_min the wrapping is negligible."""
    k = np.arange(-10, 11)
    s_T, s_min = math.sqrt(s2_of(1.0)), math.sqrt(s2_of(T_MIN))
    a = np.abs(theta_T)[:, None]
    upper = (ndtr((np.pi + 2 * np.pi * k) / s_T) - ndtr((a + 2 * np.pi * k) / s_T)).sum(1)  # mass in [|theta|, pi]
    return np.sign(theta_T) * (-s_min * ndtri(upper))


def _pf_error(method: str, steps: int) -> float:
    theta_T = np.linspace(-3.0, 3.0, 64)
    U = u1_links(torch.tensor(theta_T).reshape(2, 1, 32))
    out = probability_flow_links(u1_wrapped_gaussian_score, PROCESS, U, steps=steps, t_min=T_MIN,
                                 spacing="geometric")
    got = angles(out).flatten().numpy()
    return float(np.abs(got - _u1_transport(theta_T)).max()) / math.sqrt(s2_of(T_MIN))


@pytest.mark.parametrize(("method", "order"), [("heun", 2)])
def test_probability_flow_converges_to_the_exact_transport_at_its_order(method, order, fast_loop):
    errs = [_pf_error(method, steps) for steps in (50, 100, 200)]
    for coarse, fine in zip(errs[:-1], errs[1:]):
        assert 0.8 * 2**order < coarse / fine < 1.25 * 2**order, f"errors {errs} (in units of s(t_min))"
    if method == "heun":
        assert errs[-1] < 2e-3


def _su2_radial_cdf_tmin() -> tuple[np.ndarray, np.ndarray]:
    """(theta, F(theta)) on a fine grid, F = int_0^theta K(x) (2/pi) sin^2 x dx at t_min, by quadrature of the
    leading image e^{tau/8} sqrt(8 pi/tau) (2/tau) x e^{-2 x^2/tau} / sin x (the others: e^-(8 pi^2/tau))."""
    tau = s2_of(T_MIN)
    x = np.linspace(0.0, 0.5, 400001)
    norm = math.exp(tau / 8) * math.sqrt(8 * math.pi / tau) * (2 / tau) * 2 / math.pi
    f = norm * x * np.exp(-2 * x * x / tau) * np.sin(x)
    return x, np.concatenate([[0.0], np.cumsum((f[1:] + f[:-1]) / 2 * np.diff(x))])


def _su2_radial_cdf_T(theta: np.ndarray) -> np.ndarray:
    """F_T(theta) in closed form from the character sum: (1/pi) sum_m m e^{-(m^2-1) tau/8}
    [sin((m-1) theta)/(m-1) - sin((m+1) theta)/(m+1)] (m = 1: theta - sin(2 theta)/2)."""
    tau = s2_of(1.0)
    out = (theta - np.sin(2 * theta) / 2) / math.pi
    for m in range(2, 30):
        out = out + m * math.exp(-(m * m - 1) * tau / 8) * (
            np.sin((m - 1) * theta) / (m - 1) - np.sin((m + 1) * theta) / (m + 1)) / math.pi
    return out


def test_probability_flow_su2_follows_the_exact_radial_transport(generator, fast_loop):
    # each link stays on its one-parameter subgroup (the score of a class function is radial) and its
    # eigen-angle moves so that the heat-kernel mass in [0, theta] is conserved
    theta_T = torch.linspace(0.3, 2.8, 32, dtype=torch.float64)
    axis = torch.randn(32, 3, generator=generator)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    u = SU(2).exp(SU(2).from_coords(2 * theta_T[:, None] * axis)).reshape(1, 1, 32, 2, 2)
    U = LinkField(u, SU(2), Lattice(shape=(32,)))
    out = probability_flow_links(heat_kernel_score(SU(2)), PROCESS, U, steps=200, t_min=T_MIN, spacing="geometric")
    v = out.data.reshape(32, 2, 2)
    coords = SU(2).to_coords((v - v.mH) / 2)           # 2 sin(theta) n
    theta = torch.atan2(coords.norm(dim=-1) / 2, v.diagonal(dim1=-2, dim2=-1).sum(-1).real / 2).numpy()
    torch.testing.assert_close(coords / coords.norm(dim=-1, keepdim=True), axis, rtol=0, atol=1e-10)
    x, cdf = _su2_radial_cdf_tmin()
    want = np.interp(_su2_radial_cdf_T(theta_T.numpy()), cdf, x)
    scale = math.sqrt(s2_of(T_MIN))
    assert np.abs(theta - want).max() < 2e-3 * scale, f"max error {np.abs(theta - want).max() / scale} s(t_min)"


# ---- integrator hygiene ----------------------------------------------------------------------------------

def _pull_to_identity(U: LinkField, t: torch.Tensor) -> AlgebraField:
    """A cheap covariant score: -P(U) / s^2 (the small-s score of data at the identity)."""
    s2 = PROCESS.std(t.to(U.data.real.dtype)) ** 2
    x = -U.group.project_algebra(U.data) / s2.reshape(-1, *([1] * (U.data.ndim - 1)))
    return AlgebraField(x, U.group, U.lattice)


@pytest.mark.parametrize(("group", "dtype"), [
    (U1(), torch.complex64), (U1(), torch.complex128), (SU(2), torch.complex64), (SU(2), torch.complex128),
    (SU(3), torch.complex64), pytest.param(SU(3), torch.complex128, marks=pytest.mark.slow)], ids=str)
def test_integrators_keep_links_on_the_group(group, dtype, generator, fast_loop):
    # no re-unitarisation inside the loop: the last state before the final projection must be a member
    U = PROCESS.prior(group, Lattice(shape=(4, 4)), batch=2, generator=generator, dtype=dtype)
    states: list[StepInfo] = []
    out = reverse_sde(_pull_to_identity, PROCESS, U, steps=500, generator=generator, callback=states.append,
                            spacing="geometric")
    assert len(states) == 500
    assert_group_member(states[-1].state)
    assert_group_member(out)
    assert out.data.dtype == dtype
    states.clear()
    out = probability_flow_links(_pull_to_identity, PROCESS, U, steps=500, callback=states.append)
    assert_group_member(states[-1].state)
    assert_group_member(out)


def test_callback_receives_every_step(generator):
    U = PROCESS.prior(SU(2), Lattice(shape=(2, 2)), batch=2, generator=generator)
    seen: list[StepInfo] = []
    reverse_sde(_pull_to_identity, PROCESS, U, steps=7, generator=generator, callback=seen.append, t_min=0.1)
    assert [s.step for s in seen] == list(range(7))
    assert all(isinstance(s.t, float) and isinstance(s.state, LinkField) for s in seen)
    assert seen[-1].t == 0.1 and all(a.t > b.t for a, b in zip(seen[:-1], seen[1:]))


def test_integrator_errors(generator):
    U = PROCESS.prior(U1(), Lattice(shape=(2,)), batch=1, generator=generator)
    with pytest.raises(ValueError, match="steps >= 1"):
        reverse_sde(_pull_to_identity, PROCESS, U, steps=0, generator=generator)
    with pytest.raises(ValueError, match="0 < t_min < T"):
        probability_flow_links(_pull_to_identity, PROCESS, U, steps=3, t_min=0.0)
    with pytest.raises(ValueError, match="spacing must be one of"):
        reverse_sde(_pull_to_identity, PROCESS, U, steps=3, generator=generator, spacing="log")
    with pytest.raises(TypeError, match="must return an AlgebraField"):
        reverse_sde(lambda V, t: V.data, PROCESS, U, steps=3, generator=generator)


@pytest.mark.parametrize("group", [U1(), SU(2)], ids=str)
def test_sampling_and_loss_on_device(group, device):
    generator = torch.Generator(device=device).manual_seed(0)
    U0 = LinkField.identity(group, Lattice(shape=(4, 4)), batch=2, device=device)
    loss = PROCESS.dsm_loss(heat_kernel_score(group), U0, generator=generator, target="heat_kernel")
    assert loss.device.type == device.type and float(loss) < 1e-20
    U = PROCESS.prior(group, Lattice(shape=(4, 4)), batch=2, generator=generator, device=device)
    sync_checked = device.type == "cuda" and group == U1()  # SU(N) re-unitarisation (SVD) may synchronise once
    with lgdiff.checks(False):  # membership checks synchronise by design
        if sync_checked:
            torch.cuda.set_sync_debug_mode("error")
        try:
            out = reverse_sde(heat_kernel_score(group), PROCESS, U, steps=20, generator=generator)
            flow = probability_flow_links(heat_kernel_score(group), PROCESS, U, steps=20)
        finally:
            if sync_checked:
                torch.cuda.set_sync_debug_mode(0)
    assert out.data.device.type == device.type and flow.data.device.type == device.type
    assert_group_member(out)
    assert_group_member(flow)
