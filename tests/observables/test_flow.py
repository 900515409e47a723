import inspect
import math

import numpy as np
import pytest
import torch

from lgdiff import SU, U1, AlgebraField, Field, GaugeTransform, Lattice, LinkField, WilsonAction
from lgdiff._observables.flow import wilson_flow
from lgdiff._observables.gauge import energy_density, topological_charge_clover
from lgdiff.testing import assert_group_member, assert_links_close

from .configs import embed, flux_2d, thooft_4d

GROUPS = [U1(), SU(2), SU(3)]
DTYPES = [torch.complex64, torch.complex128]
SHAPES = [(4, 5), (3, 4, 3, 3)]


def links(group, shape, dtype, generator, batch=2):
    return LinkField.random(group, Lattice(shape=shape), batch=batch, generator=generator, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_flow_lowers_the_wilson_action_and_stays_in_the_group(group, shape, dtype, generator):
    U = links(group, shape, dtype, generator)
    action = WilsonAction(beta=1.0, group=group)
    S, V = [action(U)], U
    for _ in range(4):
        V = wilson_flow(V, t=0.1, eps=0.05)
        S.append(action(V))
    S = torch.stack(S)
    assert (S[1:] < S[:-1]).all(), S
    assert_group_member(V)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_flow_is_gauge_covariant(group, shape, dtype, generator):
    U = links(group, shape, dtype, generator)
    omega = GaugeTransform.random(group, U.lattice, batch=2, generator=generator, dtype=dtype)
    flowed_then_rotated = wilson_flow(U, t=0.15, eps=0.05).gauge_transform(omega)
    rotated_then_flowed = wilson_flow(U.gauge_transform(omega), t=0.15, eps=0.05)
    assert_links_close(rotated_then_flowed, flowed_then_rotated, atol=1e-4 if dtype == torch.complex64 else 1e-11)


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_rk3_converges_at_third_order(group, generator):
    U = links(group, (4, 4), torch.complex128, generator)
    t = 0.4
    reference = wilson_flow(U, t=t, eps=t / 64)
    steps = np.array([4, 8, 16])
    errors = []
    for n in steps:
        V = wilson_flow(U, t=t, eps=t / n)
        errors.append(float(group.log(reference.data.mH @ V.data).abs().amax()))
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert 2.7 < slope < 3.3, (errors, slope)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_linearised_flow_is_the_heat_equation_with_unit_rate(group, shape):
    # Luscher's normalisation: a small transverse abelian wave theta_0(x) = a cos(k x_1) obeys the heat
    # equation d theta_0 / dt = -p_hat^2 theta_0, p_hat^2 = 4 sin^2(k/2), up to O(a^3) (a wrong beta would
    # change the rate). Any 3-stage third-order Runge-Kutta scheme multiplies it by the stability polynomial
    # R(z) = 1 + z + z^2/2 + z^3/6, z = -p_hat^2 eps, per step: exp(-p_hat^2 t) as eps -> 0.
    lat, a, t, eps = Lattice(shape=shape), 1e-5, 0.3, 0.05
    k = 2 * math.pi / shape[1]
    x1 = torch.arange(shape[1], dtype=torch.float64).reshape((1, -1) + (1,) * (len(shape) - 2)).expand(shape)
    theta = torch.zeros((len(shape), *shape), dtype=torch.float64)
    theta[0] = a * torch.cos(k * x1)
    U = LinkField(embed(theta[None], group, torch.complex128), group, lat)
    V = wilson_flow(U, t=t, eps=eps)
    got = torch.angle(V.data[0, :, ..., 0, 0])  # the abelian angle on every link
    z = -4 * math.sin(k / 2) ** 2 * eps
    want = torch.zeros_like(got)
    want[0] = a * (1 + z + z**2 / 2 + z**3 / 6) ** round(t / eps) * torch.cos(k * x1)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-9 * a)


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_flow_fixed_points(group):
    # the cold start and the constant-field configurations are stationary points of the Wilson action
    cold = LinkField.identity(group, Lattice(shape=(3, 4)), batch=1)
    torch.testing.assert_close(wilson_flow(cold, t=0.2, eps=0.05).data, cold.data, rtol=0, atol=0)
    for U in (flux_2d(group, (5, 4), 2), thooft_4d(group, (3, 4, 3, 3), 1, -1)):
        assert_links_close(wilson_flow(U, t=0.5, eps=0.05), U, atol=1e-12)
    U = links(group, (3, 4), torch.complex128, torch.Generator().manual_seed(0))
    assert wilson_flow(U, t=0.0, eps=0.05) is U


def test_flow_errors(generator):
    U = links(SU(2), (4, 4), torch.complex128, generator)
    with pytest.raises(ValueError, match=r"t must be a whole multiple of eps; got t = 0\.25, eps = 0\.1 .* Use eps = t / 2 = 0\.125"):
        wilson_flow(U, t=0.25, eps=0.1)
    with pytest.raises(ValueError, match=r"positive finite step size eps; got eps = 0\.0"):
        wilson_flow(U, t=0.2, eps=0.0)
    with pytest.raises(ValueError, match=r"finite flow time t >= 0; got t = -0\.1"):
        wilson_flow(U, t=-0.1, eps=0.05)
    with pytest.raises(ValueError, match=r"needs a lattice with D >= 2 directions .* \(D = 1\)"):
        wilson_flow(LinkField.identity(U1(), Lattice(shape=(5,)), batch=1), t=0.1, eps=0.05)
    phi = Field.randn(Lattice(shape=(4, 4)), batch=1, generator=generator)
    with pytest.raises(TypeError):
        wilson_flow(phi, t=0.1, eps=0.05)
    with pytest.raises(TypeError, match=r"wilson_flow expects gauge links as a LinkField \[B, D, \*L, N, N\]; got Field"):
        inspect.unwrap(wilson_flow)(phi, t=0.1, eps=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("group", [SU(2), SU(3)], ids=str)
def test_flow_restores_the_topological_charge_of_a_noisy_instanton(group, generator):
    # 't Hooft's constant field with Q = 2 (continuum), exactly V sin^2(2 pi / 36) / (2 pi^2) = 1.97977 on 6^4,
    # buried in strong noise (Q far from an integer); the flow removes the noise and the charge returns
    shape = (6, 6, 6, 6)
    clean = thooft_4d(group, shape, 1, 1)
    clean = clean.with_data(clean.data.expand(3, *clean.data.shape[1:]).clone())
    q_clean = 1296 * math.sin(2 * math.pi / 36) ** 2 / (2 * math.pi**2)
    noise = AlgebraField.randn(group, clean.lattice, batch=3, generator=generator)
    noisy = clean.evolve(noise, 0.4)
    assert ((topological_charge_clover(noisy) - 2).abs() > 0.5).all()
    V = wilson_flow(noisy, t=2.0, eps=0.05)
    Q = topological_charge_clover(V)
    assert ((Q - q_clean).abs() < 0.01).all(), Q
    assert ((Q - 2).abs() < 0.05).all(), Q
    # and the field becomes (nearly) self-dual: V E >= 8 pi^2 |Q| holds exactly for the clover definitions,
    # with equality for self-dual fields such as the clean one; the noisy field is far above the bound
    ratio = lambda W: 1296 * energy_density(W) / (8 * math.pi**2 * topological_charge_clover(W).abs())  # noqa: E731
    assert (ratio(noisy) > 5).all()
    assert ((ratio(V) >= 1) & (ratio(V) < 1.01)).all(), ratio(V)


def distinct_charges(group, generator, noise=0.3):
    """Seven noisy 't Hooft fields on 4^4 with continuum charges 2, -2, 0, 4, -4, 2, 0: configurations whose flowed
    clover charges differ, so that a flow that mixed configurations of a batch would move them."""
    shape = (4, 4, 4, 4)
    fields = [thooft_4d(group, shape, q1, q2) for q1, q2 in ((1, 1), (1, -1), (1, 0), (2, 1), (-2, 1), (1, 1), (0, 0))]
    clean = LinkField(torch.cat([U.data for U in fields]), group, fields[0].lattice)
    return clean.evolve(AlgebraField.randn(group, clean.lattice, batch=clean.batch, generator=generator), noise)


@pytest.mark.parametrize("group", [SU(2), SU(3)], ids=str)
def test_flow_in_chunks_equals_one_configuration_at_a_time(group, generator):
    U = distinct_charges(group, generator)
    alone = [wilson_flow(U.with_data(U.data[b:b + 1]), t=0.2, eps=0.05, chunk=1) for b in range(U.batch)]
    q_alone = torch.cat([topological_charge_clover(V) for V in alone])
    assert (q_alone[:, None] - q_alone[None, :]).abs().add(torch.eye(U.batch)).min() > 1e-3, q_alone  # all differ
    done = []
    for chunk in (3, None, U.batch):  # 3 + 3 + 1, the default (flow_chunk) and the whole batch at once
        V = wilson_flow(U, t=0.2, eps=0.05, chunk=chunk, progress=done.append)
        for b, W in enumerate(alone):
            torch.testing.assert_close(V.data[b:b + 1], W.data, atol=1e-13, rtol=0)
        torch.testing.assert_close(topological_charge_clover(V), q_alone, atol=1e-12, rtol=0)
    assert done == [3, 3, 1, U.batch, U.batch]


def test_flow_chunk_is_a_few_megabytes_of_links_on_the_cpu(monkeypatch):
    import lgdiff._observables.flow as flow

    U = LinkField.identity(SU(3), Lattice(shape=(4, 4, 4, 4)), batch=40)  # 147456 bytes per configuration
    assert flow.flow_chunk(U) == flow.FLOW_CHUNK_BYTES // 147456
    monkeypatch.setattr(flow, "FLOW_CHUNK_BYTES", 3 * 147456 + 1)
    assert flow.flow_chunk(U) == 3
    steps = []
    monkeypatch.setattr(flow, "_rk3_step", lambda action, W, eps: steps.append(W.batch) or W)
    done = []
    V = wilson_flow(U, t=0.1, eps=0.05, progress=done.append)
    assert steps == [3, 3] * 13 + [1, 1] and done == [3] * 13 + [1] and V.batch == 40
    monkeypatch.setattr(flow, "FLOW_CHUNK_BYTES", 1000)  # less than a configuration: one at a time
    assert flow.flow_chunk(U) == 1
    done.clear()
    wilson_flow(U, t=0.0, eps=0.05, progress=done.append)  # nothing to integrate, all done
    assert done == [40]
    with pytest.raises(ValueError, match=r"wilson_flow needs chunk >= 1 configurations; got chunk = 0"):
        wilson_flow(U, t=0.1, eps=0.05, chunk=0)
