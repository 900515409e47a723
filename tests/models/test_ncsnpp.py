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
