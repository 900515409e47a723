import math

import pytest
import torch

from lgdiff import Lattice, shift


def test_shift_fetches_positive_neighbour():
    # g(x) = f(x + mu): on 1-D [0, 1, 2, 3] the neighbour of site 0 is site 1, of site 3 is site 0
    f = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    assert shift(f, 0, site_axis=1).tolist() == [[1.0, 2.0, 3.0, 0.0]]
    assert shift(f, 0, site_axis=1, steps=-1).tolist() == [[3.0, 0.0, 1.0, 2.0]]


def test_shift_acts_on_the_named_direction_only():
    f = torch.arange(12.0).reshape(1, 3, 4)
    g = shift(f, 1, site_axis=1)
    assert torch.equal(g[0, :, 0], f[0, :, 1])
    assert torch.equal(g[0, 2, 3], f[0, 2, 0])


@pytest.mark.parametrize("shape", [(), (5,), (4, 6), (2, 3, 4), (2, 2, 2, 3)])
def test_lattice_geometry(shape):
    lat = Lattice(shape=shape)
    assert lat.dim == len(shape)
    assert lat.volume == math.prod(shape)
    assert list(lat.directions) == list(range(len(shape)))
    assert len(lat.planes) == len(shape) * (len(shape) - 1) // 2
    assert all(mu < nu for mu, nu in lat.planes)


def test_momentum_squared_is_laplacian_spectrum():
    # eigenvalues of -Laplacian on the periodic lattice: FFT of (2D f(x) - sum_mu f(x+mu) + f(x-mu))
    lat = Lattice(shape=(4, 6))
    f = torch.randn(1, 4, 6, generator=torch.Generator().manual_seed(0))
    lap = 2 * lat.dim * f - sum(shift(f, mu, site_axis=1) + shift(f, mu, site_axis=1, steps=-1) for mu in range(2))
    lhs = torch.fft.fftn(lap, dim=(1, 2))
    rhs = lat.momentum_squared() * torch.fft.fftn(f, dim=(1, 2))
    torch.testing.assert_close(lhs, rhs)


def test_lattice_rejects_bad_shapes():
    with pytest.raises(ValueError, match="dimension must be 0..4"):
        Lattice(shape=(2, 2, 2, 2, 2))
    with pytest.raises(ValueError, match="sizes must be positive"):
        Lattice(shape=(4, 0))
    with pytest.raises(TypeError, match="tuple of ints"):
        Lattice(shape=(4.0, 4))


def test_lattice_is_a_frozen_value():
    a, b = Lattice(shape=(4, 4)), Lattice(shape=[4, 4])
    assert a == b and hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.shape = (2, 2)
