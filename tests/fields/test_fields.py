import pytest
import torch

import lgdiff
from lgdiff import SU, U1, AlgebraField, Field, GaugeTransform, Lattice, LinkField
from lgdiff.testing import assert_group_member, assert_links_close

GROUPS = [U1(), SU(2), SU(3)]


def test_field_shape_and_dtype_errors():
    lat = Lattice(shape=(4, 4))
    with pytest.raises(ValueError, match=r"must have shape \[B, 4, 4\].*got \(4, 4\)"):
        Field(torch.zeros(4, 4), lat)
    with pytest.raises(ValueError, match="real floating tensor"):
        Field(torch.zeros(1, 4, 4, dtype=torch.complex128), lat)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        Field([[0.0]], lat)


def test_link_field_errors():
    lat = Lattice(shape=(4, 4))
    with pytest.raises(ValueError, match=r"must be complex \[B, 2, 4, 4, 3, 3\] for SU\(3\).*got real dtype"):
        LinkField(torch.zeros(1, 2, 4, 4, 3, 3), SU(3), lat)
    with pytest.raises(ValueError, match=r"must have shape \[B, 2, 4, 4, 2, 2\] for SU\(2\).*got \(1, 2, 4, 4, 3, 3\)"):
        LinkField(torch.zeros(1, 2, 4, 4, 3, 3, dtype=torch.complex128), SU(2), lat)
    with pytest.raises(ValueError, match=r"not in SU\(2\).*reunitarize"):
        LinkField(2 * torch.eye(2, dtype=torch.complex128).expand(1, 2, 4, 4, 2, 2), SU(2), lat)
    with pytest.raises(TypeError, match="must be a group"):
        LinkField(torch.zeros(1, 2, 4, 4, 1, 1, dtype=torch.complex128), "u1", lat)


def test_membership_check_is_skipped_when_checks_are_off():
    lat = Lattice(shape=(2, 2))
    data = 2 * torch.eye(2, dtype=torch.complex128).expand(1, 2, 2, 2, 2, 2)
    with lgdiff.checks(False):
        U = LinkField(data, SU(2), lat)  # no device sync in production paths
    with pytest.raises(AssertionError, match=r"links not in SU\(2\)"):
        assert_group_member(U)


@pytest.mark.parametrize("group", GROUPS, ids=str)
@pytest.mark.parametrize("shape", [(4, 4), (2, 2, 2, 2)])
def test_gauge_transform_is_a_group_action(group, shape, generator):
    lat = Lattice(shape=shape)
    U = LinkField.random(group, lat, batch=2, generator=generator)
    a = GaugeTransform.random(group, lat, batch=2, generator=generator)
    b = GaugeTransform.random(group, lat, batch=2, generator=generator)
    ab = GaugeTransform(a.data @ b.data, group, lat)
    assert_links_close(U.gauge_transform(b).gauge_transform(a), U.gauge_transform(ab))
    assert_group_member(U.gauge_transform(a))


def test_gauge_transform_convention_by_hand():
    # U_mu(x) -> Omega(x) U_mu(x) Omega(x+mu)^dag on a 1-D U(1) chain of 3 sites
    lat = Lattice(shape=(3,))
    theta = torch.tensor([[[0.1, 0.2, 0.3]]])
    alpha = torch.tensor([[1.0, 2.0, 4.0]])
    U = LinkField(torch.polar(torch.ones_like(theta), theta)[..., None, None], U1(), lat)
    om = GaugeTransform(torch.polar(torch.ones_like(alpha), alpha)[..., None, None], U1(), lat)
    got = torch.angle(U.gauge_transform(om).data[0, 0, :, 0, 0])
    want = torch.tensor([0.1 + 1.0 - 2.0, 0.2 + 2.0 - 4.0, 0.3 + 4.0 - 1.0])
    torch.testing.assert_close(got, torch.remainder(want + torch.pi, 2 * torch.pi) - torch.pi)


def _exp_by_eigh(x: torch.Tensor) -> torch.Tensor:
    """exp of anti-Hermitian matrices, independently of the groups' exp: -i x = V diag(w) V^dag is Hermitian, so
    exp(x) = V diag(e^{i w}) V^dag."""
    w, V = torch.linalg.eigh(-1j * x)
    return (V * torch.exp(1j * w).unsqueeze(-2)) @ V.mH


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_algebra_field_exp_and_evolve(group, generator):
    lat = Lattice(shape=(3, 3))
    U = LinkField.random(group, lat, batch=2, generator=generator)
    X = AlgebraField.randn(group, lat, batch=2, generator=generator)
    # the left update U' = exp(eps X) U (PHYSICS.md), against the exponential by diagonalisation
    torch.testing.assert_close(U.evolve(X, 0.3).data, _exp_by_eigh(0.3 * X.data) @ U.data)
    torch.testing.assert_close(X.exp().data, _exp_by_eigh(X.data))
    # a one-parameter subgroup: eps = 0 is the identity, evolving by 0.3 then 0.5 is evolving by 0.8, and
    # d/d eps exp(eps X) U at 0 is X U (central difference, O(h^2))
    torch.testing.assert_close(U.evolve(X, 0.0).data, U.data)
    assert_links_close(U.evolve(X, 0.3).evolve(X, 0.5), U.evolve(X, 0.8))
    h = 1e-4
    torch.testing.assert_close((U.evolve(X, h).data - U.evolve(X, -h).data) / (2 * h), X.data @ U.data,
                               rtol=1e-6, atol=1e-6)
    # |X|^2 = sum_a (omega^a)^2 for X = i omega^a T^a: tr(T^a T^b) = delta^{ab} / 2 for SU(N), T = 1 for U(1)
    trace_x2 = (X.data @ X.data).diagonal(dim1=-2, dim2=-1).sum(-1).real.flatten(1).sum(1)
    torch.testing.assert_close(X.norm2(), -trace_x2 * (1 if group == U1() else 2))
    torch.testing.assert_close(X.norm2(), (X.coords() ** 2).flatten(1).sum(1))
    assert_group_member(U.evolve(X, 0.3))


def test_batch_indexing_keeps_batch_axis(generator):
    U = LinkField.random(SU(2), Lattice(shape=(2, 2)), batch=3, generator=generator)
    assert U[1].data.shape == (1, 2, 2, 2, 2, 2)
    assert U[0:2].batch == 2
    assert "SU(2)" in repr(U) and "B=3" in repr(U)


def test_fields_follow_device(device):
    g = torch.Generator(device=device).manual_seed(0)
    U = LinkField.random(SU(3), Lattice(shape=(2, 2)), batch=1, generator=g, device=device)
    assert U.data.device.type == device.type
    assert U.evolve(AlgebraField.randn(SU(3), U.lattice, batch=1, generator=g, device=device)).data.device.type == device.type
