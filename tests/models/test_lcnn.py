import json
import math

import attrs
import pytest
import torch

from lgdiff import SU, U1, AlgebraField, GaugeTransform, Lattice, LinkField, WilsonAction
from lgdiff._geometry.lattice import shift
from lgdiff._geometry.paths import plaquette, rectangle
from lgdiff._groups.base import trace
from lgdiff._models import lcnn
from lgdiff._models.lcnn import LCNN, LCNNConfig
from lgdiff.testing import assert_gauge_covariant, assert_translation_equivariant

GROUPS = [U1(), SU(2), SU(3)]
DTYPES = [torch.complex64, torch.complex128]
SHAPES = [(4, 4), (3, 2, 3, 2)]  # D = 2 and D = 4; unequal sizes catch swapped axes


def real_name(dtype: torch.dtype) -> str:
    return "float32" if dtype == torch.complex64 else "float64"


def make_model(group, dim, dtype, generator, **kwargs) -> LCNN:
    return LCNN.from_config(LCNNConfig(group=group, dim=dim, dtype=real_name(dtype), **kwargs), generator=generator)


def links(group, shape, dtype, generator, batch=2) -> LinkField:
    return LinkField.random(group, Lattice(shape=shape), batch=batch, generator=generator, dtype=dtype)


def times(batch, dtype, generator) -> torch.Tensor:
    return torch.rand((batch,), generator=generator, dtype=torch.empty((), dtype=dtype).real.dtype)


def rms(x: torch.Tensor) -> float:
    return float(x.detach().abs().square().mean().sqrt())


def detached(model: LCNN, t: torch.Tensor):
    # lgdiff.testing reports errors with float(tensor): feed it tensors that do not require grad
    return lambda V: model(V, t).data.detach()


# ---- symmetry ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_score_is_gauge_covariant(group, shape, dtype, generator):
    model = make_model(group, len(shape), dtype, generator)
    U = links(group, shape, dtype, generator)
    t = times(2, dtype, generator)
    omega = GaugeTransform.random(group, U.lattice, batch=2, generator=generator, dtype=dtype)
    assert_gauge_covariant(detached(model, t), U, omega)
    # not vacuous: the output is O(1) and depends on the links
    s = model(U, t).data
    assert rms(s) > 0.05
    other = model(links(group, shape, dtype, generator), t).data
    assert rms(other - s) > 0.1 * rms(s)


@pytest.mark.parametrize("group", [U1(), SU(2), SU(3), SU(4)], ids=str)
def test_covariant_with_rectangles_and_wide_kernel(group, generator):
    # D = 3, K = 2 (two-step Wilson lines in the L-Conv), 2x1 loops, three blocks; SU(4) for general N
    model = make_model(group, 3, torch.complex128, generator, kernel_size=5, rectangles=True, blocks=3, channels=4)
    U = links(group, (4, 3, 5), torch.complex128, generator)
    omega = GaugeTransform.random(group, U.lattice, batch=2, generator=generator)
    t = times(2, torch.complex128, generator)
    assert_gauge_covariant(detached(model, t), U, omega)
    assert rms(model(U, t).data) > 0.05


@pytest.mark.parametrize("group", [SU(2), SU(3)], ids=str)
def test_covariance_check_catches_convolution_without_parallel_transport(group, generator, monkeypatch):
    # the test that the test can fail: shift W without the Wilson lines inside the model (L-Conv and read-out);
    # for U(1) the adjoint action is trivial, so only non-abelian groups can see this defect
    model = make_model(group, 2, torch.complex128, generator)
    U = links(group, (4, 4), torch.complex128, generator)
    omega = GaugeTransform.random(group, U.lattice, batch=2, generator=generator)
    t = times(2, torch.complex128, generator)
    assert_gauge_covariant(detached(model, t), U, omega)
    monkeypatch.setattr(lcnn, "_transport_forward", lambda x, u, uc, mu: lcnn._roll(x, mu))
    monkeypatch.setattr(lcnn, "_transport_backward", lambda x, u, uc, mu: lcnn._roll(x, mu, steps=-1))
    with pytest.raises(AssertionError, match="gauge covariance violated"):
        assert_gauge_covariant(detached(model, t), U, omega)


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_covariance_check_catches_an_open_path_term(group, generator):
    # adding eps P_alg(U_mu(x) U_01(x + mu)) (path not closed by U_mu(x)^dagger) breaks covariance even for U(1);
    # the closed version U_mu(x) U_01(x + mu) U_mu(x)^dagger keeps it
    model = make_model(group, 2, torch.complex128, generator)
    U = links(group, (4, 4), torch.complex128, generator)
    omega = GaugeTransform.random(group, U.lattice, batch=2, generator=generator)
    t = times(2, torch.complex128, generator)

    def with_extra(closed: bool):
        def score(V: LinkField) -> torch.Tensor:
            u, p = V.data, plaquette(V.data, 0, 1)
            close = [u[:, mu].mH if closed else torch.eye(group.n, dtype=u.dtype) for mu in range(2)]
            extra = [u[:, mu] @ shift(p, mu, site_axis=1) @ close[mu] for mu in range(2)]
            return model(V, t).data.detach() + 1e-3 * group.project_algebra(torch.stack(extra, dim=1))
        return score

    assert_gauge_covariant(with_extra(closed=True), U, omega)
    with pytest.raises(AssertionError, match="gauge covariance violated"):
        assert_gauge_covariant(with_extra(closed=False), U, omega)


@pytest.mark.parametrize("shape, shifts", [((4, 6), (1, 3)), ((3, 2, 3, 2), (1, 0, 2, 1))])
@pytest.mark.parametrize("group", [U1(), SU(3)], ids=str)
def test_score_is_translation_equivariant(group, shape, shifts, generator):
    model = make_model(group, len(shape), torch.complex128, generator)
    U = links(group, shape, torch.complex128, generator)
    t = times(2, torch.complex128, generator)
    assert_translation_equivariant(detached(model, t), U, shifts)


# ---- exact answers -----------------------------------------------------------------------------

def _loop_channel(dim: int, mu: int, nu: int) -> int:
    """Input channel of the oriented plaquette U_{mu nu}: planes mu < nu in order, U_{mu nu} then U_{nu mu}."""
    planes = [(a, b) for a in range(dim) for b in range(a + 1, dim)]
    return 2 * planes.index((mu, nu)) if mu < nu else 2 * planes.index((nu, mu)) + 1


@pytest.mark.parametrize("shape", [(4, 5), (3, 2, 3, 2)])
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_hand_set_weights_give_the_exact_wilson_score(group, shape, generator):
    r"""The L-CNN spans the exact score of exp(-S_Wilson) (the t -> 0 limit of DSM):
    ``-F_mu(x) = -(beta norm / N) P_alg(U_mu(x) A_mu(x))``, with the staple sum written in W objects as
    ``U_mu A_mu = sum_{nu != mu} [U_{mu nu}(x) + U_nu(x - nu)^dagger U_{nu mu}(x - nu) U_nu(x - nu)]``
    (upper plaquette at x; lower one at x - nu, transported back by the k = -1 tap of the L-Conv).
    One block, channel mu of the conv holds the lower staples, the bilinear layer adds the upper ones through
    its identity channel; activations and time factors are set to 1. Checked against WilsonAction.force."""
    dim, beta = len(shape), 1.7
    model = make_model(group, dim, torch.complex128, generator, channels=dim, blocks=1, kernel_size=3)
    identity = model.config.n_loops  # the bilinear layer's identity channel comes after the inputs
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # zero activations and time MLP: gates 2 sigmoid(0) = 1, time factors 1 + 0
        conv, bilin = model.convs[0].weight, model.bilins[0].weight
        for mu in range(dim):
            for nu in range(dim):
                if nu != mu:
                    conv[mu, _loop_channel(dim, nu, mu), 2 + 2 * nu] = 1.0  # tap (nu, k = -1)
                    bilin[mu, _loop_channel(dim, mu, nu), dim] = 1.0  # U_{mu nu} x identity
            bilin[mu, identity, mu] = 1.0  # identity x conv channel mu
            model.readout_local[mu, mu] = -beta * group.norm / group.n
    U = links(group, shape, torch.complex128, generator)
    with torch.no_grad():
        score = model(U, times(2, torch.complex128, generator)).data
    force = WilsonAction(beta=beta, group=group).force(U).data
    torch.testing.assert_close(score, -force, rtol=0, atol=1e-12)


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_input_loops_match_the_path_helpers(group, generator):
    # cross-implementation: the network's matrix-index-first loops against lgdiff._geometry.paths
    U = links(group, (3, 4, 2), torch.complex128, generator)
    u = U.data
    soa = lcnn._to_soa(u)
    torch.testing.assert_close(lcnn._to_aos(soa), u, rtol=0, atol=0)
    loops = lcnn._to_aos(lcnn._loops([x[None].contiguous() for x in soa.unbind(0)], rectangles=True))
    expected = []
    for mu in range(3):
        for nu in range(mu + 1, 3):
            expected += [plaquette(u, mu, nu), plaquette(u, mu, nu).mH]
    for mu in range(3):
        for nu in range(3):
            if mu != nu:
                expected += [rectangle(u, mu, nu, 2, 1), rectangle(u, mu, nu, 2, 1).mH]
    torch.testing.assert_close(loops, torch.stack(expected, dim=1), rtol=0, atol=1e-13)


# ---- lattice-size independence, batch independence, algebra, time ------------------------------

@pytest.mark.parametrize(
    "group, small, reps", [(U1(), (4, 4), (2, 3)), (SU(3), (3, 3, 3, 3), (2, 2, 2, 2))], ids=str
)
def test_same_module_on_a_larger_lattice_gives_the_tiled_score(group, small, reps, generator):
    # a fully convolutional periodic network maps a periodically repeated field (e.g. 3^4 -> 6^4) to the
    # repeated score, exactly
    model = make_model(group, len(small), torch.complex128, generator)
    U = links(group, small, torch.complex128, generator, batch=1)
    t = times(1, torch.complex128, generator)
    big_shape = tuple(r * s for r, s in zip(reps, small, strict=True))
    tile = (1, 1, *reps, 1, 1)
    big = LinkField(U.data.repeat(tile), group, Lattice(shape=big_shape))
    s_big = model(big, t)
    assert s_big.lattice == big.lattice
    torch.testing.assert_close(s_big.data, model(U, t).data.repeat(tile), rtol=0, atol=1e-12)


def test_configurations_in_a_batch_are_independent(generator):
    model = make_model(SU(2), 2, torch.complex128, generator)
    U = links(SU(2), (4, 4), torch.complex128, generator, batch=3)
    t = times(3, torch.complex128, generator)
    torch.testing.assert_close(model(U[1], t[1:2]).data[0], model(U, t).data[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_score_is_in_the_algebra(group, dtype, generator):
    model = make_model(group, 4, dtype, generator, rectangles=True)
    U = links(group, (2, 3, 2, 3), dtype, generator)
    with torch.no_grad():
        s = model(U, times(2, dtype, generator))
    assert isinstance(s, AlgebraField) and s.data.dtype == dtype
    tol = 1e-5 if dtype == torch.complex64 else 1e-13
    assert float((s.data + s.data.mH).abs().amax()) < tol  # anti-Hermitian
    if isinstance(group, SU):
        assert float(trace(s.data).abs().amax()) < tol  # traceless


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_score_depends_on_time(group, generator):
    model = make_model(group, 2, torch.complex128, generator)
    U = links(group, (4, 4), torch.complex128, generator)
    early = model(U, torch.full((2,), 0.1)).data
    late = model(U, torch.full((2,), 0.9)).data
    assert rms(late - early) > 0.05 * rms(early)


def test_gradients_reach_every_parameter(generator):
    model = make_model(SU(3), 4, torch.complex128, generator, rectangles=True)
    U = links(SU(3), (2, 3, 2, 2), torch.complex128, generator)
    loss = model(U, times(2, torch.complex128, generator)).data.abs().square().sum()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert float(p.grad.abs().amax()) > 0, name


# ---- configuration, dtypes, devices ------------------------------------------------------------

def test_default_model_is_small():
    # hand count for SU(3), D = 4, C = 8, K = 1, 12 oriented plaquettes, 16 time features:
    # conv 8*12*9 + 8*8*9, bilinear 8*13*9 + 8*9*9, activations 2*3*8, time MLP 16*16+16 + 16*24+24,
    # read-out 2 * 4 * (8 + 12)
    model = LCNN.from_config(LCNNConfig(group=SU(3), dim=4), generator=torch.Generator().manual_seed(0))
    expected = 864 + 576 + 936 + 648 + 48 + 272 + 408 + 160
    assert model.n_parameters() == expected == sum(p.numel() for p in model.parameters())
    assert expected < 2e4


def test_config_round_trip_and_checkpoint(generator):
    cfg = LCNNConfig(group=SU(2), dim=3, channels=5, blocks=1, kernel_size=5, time_features=8, rectangles=True)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["group"] == "SU(2)"
    assert LCNNConfig.from_dict(d) == cfg
    model = LCNN.from_config(cfg, generator=generator)
    clone = LCNN.from_config(LCNNConfig.from_dict(d), generator=torch.Generator().manual_seed(123))
    U = links(SU(2), (3, 2, 4), torch.complex128, generator)
    t = times(2, torch.complex128, generator)
    assert rms(clone(U, t).data - model(U, t).data) > 1e-3  # different initialisation
    clone.load_state_dict(model.state_dict())
    torch.testing.assert_close(clone(U, t).data, model(U, t).data, rtol=0, atol=0)


def test_float32_model_matches_float64(generator):
    model = make_model(SU(3), 2, torch.complex128, generator)
    U = links(SU(3), (4, 4), torch.complex128, generator)
    t = times(2, torch.complex128, generator)
    ref = model(U, t).data
    model32 = make_model(SU(3), 2, torch.complex64, generator)
    model32.load_state_dict(model.state_dict())  # copies and casts to float32
    assert model32.config.dtype == "float32"
    out = model32(U.to(dtype=torch.complex64), t.float()).data
    torch.testing.assert_close(out, ref.to(torch.complex64), rtol=1e-4, atol=1e-5)
    assert model.to(torch.float32).config.dtype == "float32"


def test_model_moves_to_device(device, generator):
    model = make_model(SU(2), 2, torch.complex128, generator)
    U = links(SU(2), (4, 4), torch.complex128, generator)
    t = times(2, torch.complex128, generator)
    ref = model(U, t).data
    out = model.to(device)(U.to(device), t.to(device)).data
    assert out.device.type == device.type
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dim": 1}, "dim must be 2, 3 or 4"),
        ({"channels": 0}, "channels must be an int >= 1"),
        ({"blocks": 0}, "blocks must be an int >= 1"),
        ({"kernel_size": 2}, "kernel_size must be odd"),
        ({"time_features": 7}, "time_features must be even"),
        ({"time_scale": -1.0}, "time_scale must be a finite float > 0"),
        ({"dtype": "float16"}, "dtype must be 'float32' or 'float64'"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LCNNConfig(**{"group": SU(2), "dim": 2, **kwargs})


def test_config_rejects_bad_group_and_keys():
    with pytest.raises(TypeError, match="group must be a group such as"):
        LCNNConfig(group="SU(2)", dim=2)
    with pytest.raises(ValueError, match="unknown keys \\['width'\\]"):
        LCNNConfig.from_dict({"group": "SU(2)", "dim": 2, "width": 3})
    with pytest.raises(ValueError, match="needs the group's name"):
        LCNNConfig.from_dict({"dim": 2})


def test_model_rejects_mismatched_inputs(generator):
    model = make_model(SU(2), 2, torch.complex128, generator)
    t = torch.full((2,), 0.5)
    with pytest.raises(ValueError, match="built for SU\\(2\\) but got links of SU\\(3\\)"):
        model(links(SU(3), (4, 4), torch.complex128, generator), t)
    with pytest.raises(ValueError, match="links must be torch.complex128; got torch.complex64"):
        model(links(SU(2), (4, 4), torch.complex64, generator), t)
    with pytest.raises(ValueError, match="expects links \\[B, 2, \\*L"):
        model.score_raw(links(SU(2), (2, 2, 2), torch.complex128, generator).data, t)
    with pytest.raises(ValueError, match="t of shape \\[2\\]; got \\(3,\\)"):
        model._check_raw(links(SU(2), (4, 4), torch.complex128, generator).data, torch.zeros(3))


# ---- learning ----------------------------------------------------------------------------------

def test_denoising_score_matching_learns_pure_gauge_noise(generator):
    r"""DSM at one noise level on 2D U(1) 4x4 (docs/conventions.md, group forward process):
    ``U_t = exp(i s eta) U_0``, loss ``sum_{x, mu} (s score + eta)^2``, with pure-gauge data
    ``U_0 = Omega(x) Omega(x + mu)^dagger`` (Haar Omega). Exact bounds on the per-configuration loss:
    - any score that ignores U has loss ``>= E|eta|^2 = D V = 32``;
    - no score beats ``E|eta_gauge|^2 = V - 1 = 15``: the pure-gauge part of eta is absorbed by the Haar
      Omega and is independent of U_t.
    A trained L-CNN must land clearly below 32 (it learns from U), and above 15."""
    group, lattice, s = U1(), Lattice(shape=(4, 4)), 0.5
    dim, volume = lattice.dim, lattice.volume

    def noisy(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        omega = GaugeTransform.random(group, lattice, batch=batch, generator=generator)
        u0 = LinkField.identity(group, lattice, batch=batch).gauge_transform(omega).data
        eta = torch.randn((batch, dim, *lattice.shape, 1), generator=generator)
        return group.exp(s * group.from_coords(eta)) @ u0, eta

    def losses(model: LCNN, ut: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        score = group.to_coords(model.score_raw(ut, torch.full((ut.shape[0],), 0.5)))
        return (s * score + eta).square().flatten(1).sum(1)

    model = LCNN.from_config(LCNNConfig(group=group, dim=dim, channels=4), generator=generator)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        loss = losses(model, *noisy(16)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        held_out = losses(model, *noisy(1024))
    mean, err = float(held_out.mean()), float(held_out.std() / math.sqrt(held_out.numel()))
    assert volume - 1 - 4 * err < mean < 0.7 * dim * volume, (mean, err)


# ---- the force residual: the score parametrised around its exact t -> 0 limit ---------------------------

@pytest.mark.parametrize("force_filter", [0, 4], ids=["damped", "filtered"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("group", "shape"), [(U1(), (4, 6)), (SU(3), (3, 2, 3, 2))], ids=str)
def test_force_residual_tends_to_the_wilson_force_and_stays_covariant(group, shape, dtype, force_filter, generator):
    model = make_model(group, len(shape), dtype, generator, force_beta=3.0, channels=4, force_filter=force_filter)
    U = links(group, shape, dtype, generator)
    force = -WilsonAction(beta=3.0, group=group).force(U).data
    real = torch.empty((), dtype=dtype).real.dtype
    errors = []
    for log_s in (-5.0, -8.0, -11.0):  # s(t) = e^{log_s}: the score R / s -> F, with a residual O(s / s_0^2)
        tau = torch.full((2,), log_s / 4, dtype=real)
        score = model.score_raw(U.data, tau).detach() / math.exp(log_s)
        errors.append(rms(score - force) / rms(force))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.01, errors
    # not the force alone at moderate noise, and covariant there
    tau = torch.full((2,), -0.2, dtype=real)
    assert rms(model.score_raw(U.data, tau).detach() / math.exp(-0.8) - force) > 0.05 * rms(force)
    omega = GaugeTransform.random(group, U.lattice, batch=2, generator=generator, dtype=dtype)
    assert_gauge_covariant(detached(model, times(2, dtype, generator)), U, omega)


def test_force_residual_config_and_old_files(generator):
    cfg = LCNNConfig(group=U1(), dim=2, channels=4, force_beta=7, force_gate=0.2)
    assert cfg.force_beta == 7.0 and LCNNConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    old = {k: v for k, v in LCNNConfig(group=U1(), dim=2).to_dict().items() if not k.startswith("force")}
    assert LCNNConfig.from_dict(old).force_beta == 0.0  # files written before the force residual load as before
    plain = LCNN.from_config(LCNNConfig(group=U1(), dim=2, channels=4), generator=generator)
    assert "force_scale" not in dict(plain.named_parameters())
    with pytest.raises(ValueError, match="force_beta must be a finite float >= 0"):
        LCNNConfig(group=U1(), dim=2, force_beta=-1.0)
    model = LCNN.from_config(cfg, generator=generator)
    U = links(U1(), (4, 4), torch.complex128, generator).data
    loss = model.score_raw(U, torch.full((2,), -0.3, dtype=torch.float64)).abs().square().sum()
    loss.backward()
    assert float(model.force_scale.grad.abs()) > 0
    # the covariant filter: its own learned strength, no scalar damping, recorded in the config
    filtered = LCNNConfig(group=SU(3), dim=4, channels=2, force_beta=5.0, force_filter=3)
    assert LCNNConfig.from_dict(json.loads(json.dumps(filtered.to_dict()))) == filtered
    assert LCNNConfig.from_dict(old).force_filter == 0
    with pytest.raises(ValueError, match="force_filter filters the Wilson force: it needs force_beta > 0"):
        LCNNConfig(group=U1(), dim=2, force_filter=2)
    with pytest.raises(ValueError, match="force_filter must be an int >= 0"):
        LCNNConfig(group=U1(), dim=2, force_beta=1.0, force_filter=-1)
    model = LCNN.from_config(attrs.evolve(cfg, force_filter=2), generator=generator)
    assert "force_scale" not in dict(model.named_parameters())
    model.score_raw(U, torch.full((2,), -0.3, dtype=torch.float64)).abs().square().sum().backward()
    assert float(model.filter_scale.grad.abs()) > 0
