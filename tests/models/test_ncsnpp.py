import pytest
import torch

from lgdiff import Field, Lattice
from lgdiff._models.ncsnpp import NCSNpp, NCSNppConfig, sde_from_dict, sde_to_dict
from lgdiff._sde.ve import VESDE
from lgdiff._sde.vp import VPSDE
from lgdiff.testing import assert_translation_equivariant


def make(dim=2, generator=None, **kw):
    return NCSNpp(NCSNppConfig(dim=dim, channels=8, **kw), VESDE(), generator=generator)


@pytest.mark.parametrize("dim, shape", [(1, (16,)), (2, (8, 8)), (3, (4, 4, 4))])
def test_translation_equivariance_on_the_coarse_grid(dim, shape, generator):
    net = make(dim, generator)
    phi = Field.randn(Lattice(shape=shape), batch=2, generator=generator)
    t = torch.full((2,), 0.3)
    # two levels: equivariant under shifts by multiples of 2 in every direction, exactly
    assert_translation_equivariant(lambda f: net(f.data, t), phi, tuple(2 for _ in shape), atol=1e-12)
    assert_translation_equivariant(lambda f: net(f.data, t), phi, tuple(0 if i else 4 for i in range(dim)), atol=1e-12)


def test_odd_shift_is_not_equivariant_with_pooling(generator):
    # the test above has power: a one-site shift does not commute with 2x2 pooling
    net = make(2, generator)
    phi = Field.randn(Lattice(shape=(8, 8)), batch=1, generator=generator)
    with pytest.raises(AssertionError, match="translation equivariance violated"):
        assert_translation_equivariant(lambda f: net(f.data, torch.full((1,), 0.3)), phi, (1, 0), atol=1e-12)


def test_lattice_size_independent_and_samples_independent(generator):
    net = make(2, generator)
    small = torch.randn(3, 8, 8, generator=generator)
    big = small.repeat(1, 2, 2)  # periodic tiling: the score of the tiled field is the tiled score
    t = torch.full((3,), 0.4)
    torch.testing.assert_close(net(big, t), net(small, t).repeat(1, 2, 2))
    torch.testing.assert_close(net(small, t)[1:], net(small[1:], t[1:]))  # no batch statistics


@torch.no_grad()
def test_z2_odd_option(generator):
    net = make(2, generator, z2_odd=True)
    x, t = torch.randn(2, 8, 8, generator=generator), torch.full((2,), 0.2)
    torch.testing.assert_close(net(-x, t), -net(x, t))
    assert float(make(2, generator)(x, t).add(make(2, generator)(-x, t)).abs().max()) > 0  # not odd by accident


@torch.no_grad()
def test_output_scaling_and_time_dependence(generator):
    net = make(2, generator)
    x = torch.randn(1, 8, 8, generator=generator)
    a, b = net(x, torch.tensor([0.1])), net(x, torch.tensor([0.9]))
    assert float((a - b).abs().max()) > 0


def test_bad_shapes(generator):
    net = make(2, generator)
    with pytest.raises(ValueError, match="divisible by 2"):
        net(torch.zeros(1, 7, 8), torch.tensor([0.5]))
    with pytest.raises(ValueError, match="channels >= 4"):
        NCSNppConfig(dim=2, channels=2)


@pytest.mark.parametrize("sde", [VESDE(sigma=10.0), VPSDE()], ids=lambda s: s.name)
def test_sde_round_trip(sde):
    assert sde_from_dict(sde_to_dict(sde)) == sde


# --- the phi^4 force base (NCSNppConfig.force_*): the score around its exact t -> 0 limit ---------------------------

def _force_net(kappa, lam, c0, generator, *, zero_residual=False, dtype=torch.float64, **kw):
    net = NCSNpp(NCSNppConfig(dim=2, channels=8, force_kappa=kappa, force_lam=lam, force_c0=c0, **kw), VESDE(),
                 generator=generator, dtype=dtype)
    if zero_residual:
        with torch.no_grad():
            for p in net.conv_out.parameters():
                p.zero_()
    return net


def _dense_quadratic(shape, kappa, c0):
    """The matrix ``K = c0 + 2 kappa p_hat^2`` in real space, built from the lattice Laplacian site by site."""
    n = shape[0] * shape[1]
    index = torch.arange(n).reshape(shape)
    k = torch.zeros(n, n, dtype=torch.float64)
    for i in range(shape[0]):
        for j in range(shape[1]):
            a = index[i, j]
            k[a, a] += c0 + 2 * kappa * 4
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                k[a, index[(i + di) % shape[0], (j + dj) % shape[1]]] -= 2 * kappa
    return k


@torch.no_grad()
@pytest.mark.parametrize("shape", [(4, 6), (8, 8)])
def test_force_base_is_the_exact_score_of_a_gaussian(shape, generator):
    # lambda = 0 and c0 = the action's own mass: S = x K x / 2, so p_t = N(0, K^-1 + s^2) and the score is
    # -(K^-1 + s^2)^-1 x; the untrained residual is switched off, so the model must equal it at every s
    kappa = 0.2
    c0 = 2 - 8 * kappa  # 2 (1 - 2 lambda) - 4 kappa D
    net = _force_net(kappa, 0.0, c0, generator, zero_residual=True)
    k = _dense_quadratic(shape, kappa, c0)
    x = torch.randn(3, *shape, generator=generator, dtype=torch.float64)
    t = torch.tensor([0.05, 0.4, 0.9], dtype=torch.float64)
    s = net.sde.std(t)
    n = shape[0] * shape[1]
    exact = torch.stack([-torch.linalg.solve(torch.linalg.inv(k) + s[b] ** 2 * torch.eye(n, dtype=torch.float64),
                                             x[b].reshape(n)) for b in range(3)]).reshape(x.shape)
    torch.testing.assert_close(net(x, t), exact, rtol=1e-10, atol=1e-10)
    # power: a filter with the wrong stiffness is not the exact score
    wrong = _force_net(kappa, 0.0, 1.5 * c0, generator, zero_residual=True)
    assert float((wrong(x, t) - exact).abs().max()) > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_force_base_tends_to_minus_grad_s(dtype, generator):
    # at s -> 0 the score of p_t is -grad S, whatever the residual network says (it is gated off)
    from lgdiff import Phi4Action

    kappa, lam = 0.27, 0.022
    net = _force_net(kappa, lam, 0.05, generator, dtype=dtype)
    phi = Field.randn(Lattice(shape=(8, 8)), batch=2, generator=generator)
    grad = Phi4Action(kappa=kappa, lam=lam).gradient(phi).data
    t = torch.full((2,), 1e-4, dtype=dtype)  # s(t) ~ 0.01: O(s^2) from the filter, O(s / gate^2) from the residual
    with torch.no_grad():
        out = net(phi.data.to(dtype), t).double()
        far = net(phi.data.to(dtype), torch.full((2,), 0.5, dtype=dtype)).double()
    err = float((out + grad).abs().max() / grad.abs().max())
    assert err < 0.05
    assert float((far + grad).abs().max() / grad.abs().max()) > 10 * err  # it is a limit, not an identity


@torch.no_grad()
def test_force_model_symmetries(generator):
    net = _force_net(0.27, 0.022, 0.05, generator, z2_odd=True)
    phi = Field.randn(Lattice(shape=(8, 8)), batch=2, generator=generator)
    x, t = phi.data, torch.full((2,), 0.3, dtype=torch.float64)
    torch.testing.assert_close(net(-x, t), -net(x, t))
    assert_translation_equivariant(lambda f: net(f.data, t), phi, (2, 4), atol=1e-12)
    big = x.repeat(1, 2, 2)  # the base's Fourier filter is periodic too: tiling commutes with the score
    torch.testing.assert_close(net(big, t), net(x, t).repeat(1, 2, 2))


def test_force_config_checks_and_round_trip():
    cfg = NCSNppConfig(dim=2, channels=8, force_kappa=0.27, force_lam=0.022, force_c0=0.0217)
    assert cfg.force and NCSNppConfig.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in NCSNppConfig(dim=2).to_dict().items() if not k.startswith("force")}
    assert not NCSNppConfig.from_dict(old).force  # files written before the force base load without it
    with pytest.raises(ValueError, match="Hartree mass force_c0 > 0"):
        NCSNppConfig(dim=2, force_kappa=0.27, force_lam=0.022)
    with pytest.raises(ValueError, match="finite numbers"):
        NCSNppConfig(dim=2, force_kappa=float("nan"))
