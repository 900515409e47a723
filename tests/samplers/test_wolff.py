import doctest
import importlib
import math

import numpy as np
import pytest
import torch

from lgdiff import Field, Lattice, Phi4Action, ToyAction
from lgdiff._exact import free_field_propagator
from lgdiff._samplers.base import Composite
from lgdiff._samplers.metropolis import Metropolis
from lgdiff._samplers.wolff import Wolff, cluster_labels

from .test_metropolis import assert_within, ring_moments, shift_ring


def union_find_labels(bonds: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Reference: components by a site-by-site union-find, labelled by their smallest flat site index."""
    n_dirs, batch = bonds.shape[:2]
    volume = math.prod(shape)
    out = torch.empty(batch, volume, dtype=torch.int64)
    for b in range(batch):
        parent = list(range(volume))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for mu in range(n_dirs):
            for x in np.ndindex(*shape):
                if bonds[mu, b][x]:
                    y = list(x)
                    y[mu] = (y[mu] + 1) % shape[mu]
                    i, j = find(int(np.ravel_multi_index(x, shape))), find(int(np.ravel_multi_index(tuple(y), shape)))
                    parent[max(i, j)] = min(i, j)
        out[b] = torch.tensor([find(i) for i in range(volume)])
    return out.reshape(batch, *shape)


def exact_free_field(lattice: Lattice, kappa: float, batch: int, generator: torch.Generator) -> Field:
    """Exact samples of the lambda = 0 theory: phi~(k) = xi~(k) sqrt(G(k)), xi real white noise."""
    dims = lattice.site_dims
    xi = torch.randn((batch, *lattice.shape), generator=generator)
    G = free_field_propagator(lattice.shape, kappa)
    return Field(torch.fft.ifftn(torch.fft.fftn(xi, dim=dims) * G.sqrt(), dim=dims).real, lattice)


def two_point_z(phi: Field, kappa: float) -> torch.Tensor:
    """(G(k) - exact) / error at every momentum, chains as independent samples."""
    lattice, chains = phi.lattice, phi.batch
    gk = torch.fft.fftn(phi.data, dim=lattice.site_dims).abs() ** 2 / lattice.volume
    return (gk.mean(0) - free_field_propagator(lattice.shape, kappa)) / (gk.std(0) / math.sqrt(chains))


# ---- connected components ---------------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
@pytest.mark.parametrize("shape", [(1,), (2,), (7,), (2, 2), (5, 4), (3, 1, 4), (2, 3, 2, 2)])
def test_cluster_labels_match_union_find(shape, p, generator):
    lattice = Lattice(shape=shape)
    bonds = torch.rand((lattice.dim, 3, *shape), generator=generator) < p
    torch.testing.assert_close(cluster_labels(bonds, lattice), union_find_labels(bonds, shape), rtol=0, atol=0)


def test_cluster_labels_long_spiral():
    # one cluster threading an 8x8 lattice as a serpentine path: the worst case for plain propagation
    L = 8
    bonds = torch.zeros(2, 1, L, L, dtype=torch.bool)
    bonds[1, 0, :, : L - 1] = True          # every row is a path along direction 1
    bonds[0, 0, :-1:2, L - 1] = True        # rows 0-1, 2-3, ... joined at the right end
    bonds[0, 0, 1:-1:2, 0] = True           # rows 1-2, 3-4, ... joined at the left end
    labels = cluster_labels(bonds, Lattice(shape=(L, L)))
    assert bool((labels == 0).all())
    torch.testing.assert_close(labels, union_find_labels(bonds, (L, L)), rtol=0, atol=0)


# ---- construction and errors ------------------------------------------------------------------------

def test_wolff_errors(generator):
    with pytest.raises(TypeError, match="Wolff.action must be a Phi4Action.*got ToyAction"):
        Wolff(ToyAction(m2=-1.0, g=0.4))
    with pytest.raises(ValueError, match="Wolff needs a lattice with D >= 1.*got lattice shape \\(\\)"):
        Wolff(Phi4Action(kappa=0.2, lam=0.1)).step(Field.zeros(Lattice(shape=()), batch=2), generator=generator)


def test_settings_and_name():
    kernel = Wolff(Phi4Action(kappa=0.2, lam=0.1))
    assert kernel.name == "wolff" and kernel.settings() == {}
    composite = Composite((Metropolis(Phi4Action(kappa=0.2, lam=0.1), 1.5), kernel))
    assert composite.name == "metropolis+wolff"


# ---- mechanics --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape", [(6,), (4, 4), (3, 2, 4), (2, 2, 2, 2)])
def test_same_seed_same_chain(shape, dtype, device):
    kernel = Wolff(Phi4Action(kappa=0.3, lam=0.05))
    runs = []
    for _ in range(2):
        g = torch.Generator(device=device).manual_seed(7)
        phi = Field.randn(Lattice(shape=shape), batch=3, generator=g, dtype=dtype, device=device)
        start = phi.data
        for _ in range(4):
            phi, acc = kernel.step(phi, generator=g)
        runs.append((phi.data, acc))
    assert runs[0][0].dtype == dtype and runs[0][0].device.type == device.type
    assert torch.equal(runs[0][0].abs(), start.abs())  # only signs change
    assert torch.equal(acc, torch.ones(3, dtype=dtype, device=device))  # rejection-free
    assert torch.equal(runs[0][0], runs[1][0])


def test_zero_kappa_flips_only_the_seed(generator):
    # kappa = 0: no bond is ever active, every cluster is a single site
    phi = Field.randn(Lattice(shape=(4, 6)), batch=32, generator=generator)
    new, _ = Wolff(Phi4Action(kappa=0.0, lam=0.1)).step(phi, generator=generator)
    flipped = (new.data == -phi.data).reshape(32, -1).sum(1)
    assert torch.equal(flipped, torch.ones(32, dtype=torch.int64))


def test_aligned_field_at_huge_kappa_flips_everything(generator):
    # kappa large, all phi > 0: every bond is active with probability 1 - exp(-4 kappa phi phi) = 1
    phi = Field(torch.rand((8, 4, 4, 2), generator=generator) + 0.5, Lattice(shape=(4, 4, 2)))
    new, _ = Wolff(Phi4Action(kappa=1e3, lam=0.1)).step(phi, generator=generator)
    torch.testing.assert_close(new.data, -phi.data, rtol=0, atol=0)


def test_opposite_signs_are_never_bonded(generator):
    # a staggered field at kappa > 0: phi(x) phi(x+mu) < 0 everywhere, so no bond and single-site clusters
    lattice = Lattice(shape=(4, 4))
    x = torch.arange(4)
    sign = 1 - 2 * ((x[:, None] + x[None, :]) % 2)
    phi = Field(sign * (torch.rand((16, 4, 4), generator=generator) + 0.5), lattice)
    kernel = Wolff(Phi4Action(kappa=1e3, lam=0.1))
    assert not bool(kernel.bonds(phi, generator=generator).any())
    new, _ = kernel.step(phi, generator=generator)
    assert torch.equal((new.data != phi.data).reshape(16, -1).sum(1), torch.ones(16, dtype=torch.int64))


def test_bond_probability(generator):
    # two sites, phi = (a, b): P(bond) = 1 - exp(-4 kappa a b) for a b > 0; 1-D L = 2 has two bonds between them
    kappa, chains = 0.3, 20000
    a, b = 0.8, 1.1
    phi = Field(torch.tensor([a, b]).expand(chains, 2).clone(), Lattice(shape=(2,)))
    bonds = Wolff(Phi4Action(kappa=kappa, lam=0.1)).bonds(phi, generator=generator)  # [1, B, 2]
    frac = bonds.to(torch.float64).reshape(chains, 2)
    p = 1 - math.exp(-4 * kappa * a * b)
    mean, err = float(frac.mean()), math.sqrt(p * (1 - p) / (2 * chains))
    assert abs(mean - p) < 4 * err, f"P(bond) = {mean:.4f} vs {p:.4f} +- {err:.4f}"


# ---- exactness ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(16,), (6, 6), (4, 4, 4)])
def test_wolff_keeps_free_field_two_point_function(shape, generator):
    # exact free-field samples stay exact under Wolff steps alone: G(k) within 4 sigma at every k.
    # kappa near 1/(2D): large clusters; a wrong bond probability shifts G(0) by tens of sigma.
    lattice, chains = Lattice(shape=shape), 4000
    kappa = 0.9 / (2 * lattice.dim)
    phi = exact_free_field(lattice, kappa, chains, generator)
    kernel = Wolff(Phi4Action(kappa=kappa, lam=0.0))
    for _ in range(5):
        phi, _ = kernel.step(phi, generator=generator)
    z = two_point_z(phi, kappa)
    assert float(z.abs().max()) < 4, f"max |z| = {float(z.abs().max()):.2f} at k index {int(z.abs().argmax())}"


@pytest.mark.slow
def test_wolff_keeps_free_field_two_point_function_8x8(generator):
    # the 2-D, L = 8, kappa = 0.2 free field: 2048 exact samples, 50 Wolff steps, G(k) at all 64 momenta
    lattice, kappa, chains = Lattice(shape=(8, 8)), 0.2, 2048
    phi = exact_free_field(lattice, kappa, chains, generator)
    kernel = Wolff(Phi4Action(kappa=kappa, lam=0.0))
    z_max = []
    for _ in range(5):
        for _ in range(10):
            phi, _ = kernel.step(phi, generator=generator)
        z_max.append(float(two_point_z(phi, kappa).abs().max()))
    print(f"max |z| over 64 momenta after 10, 20, ..., 50 Wolff steps: {[round(z, 2) for z in z_max]}")
    assert max(z_max) < 4


@pytest.mark.parametrize(("shape", "kappa", "kappa_bond"), [((6,), 0.5, 0.5), ((2, 2), 0.25, 0.5)])
def test_metropolis_plus_wolff_small_lattice_moments(shape, kappa, kappa_bond, generator):
    # the interacting theory on rings (strongly coupled, double-peaked M), against the transfer matrix
    lattice, lam, chains, n = Lattice(shape=shape), 0.05, 4000, 150
    action = Phi4Action(kappa=kappa, lam=lam)
    kernel = Composite((Metropolis(action, 1.0), Wolff(action)))
    phi = Field.randn(lattice, batch=chains, generator=generator)
    for _ in range(50):
        phi, _ = kernel.step(phi, generator=generator)
    sums = torch.zeros(3, chains)
    for _ in range(n):
        phi, _ = kernel.step(phi, generator=generator)
        x = phi.data.reshape(chains, -1)
        x2 = x * x
        sums += torch.stack([x2.mean(1), (x2 * x2).mean(1), (x * shift_ring(phi)).mean(1)]) / n
    exact = ring_moments(lattice.volume, kappa_bond, lam)
    assert exact["phi0phi1"] > 0.6 * exact["phi2"]
    for samples, key in zip(sums, ("phi2", "phi4", "phi0phi1")):
        assert_within(samples, exact[key], key)


@pytest.mark.slow
def test_metropolis_plus_wolff_agrees_with_metropolis_near_criticality(generator):
    # 2-D, L = 8, kappa = 0.27, lambda = 0.022: two exact chains with independent errors must agree on <|M|>
    # and <M^2>. 256 chains each, cold start; each chain's time average after thermalisation is one sample.
    lattice, chains = Lattice(shape=(8, 8)), 256
    action = Phi4Action(kappa=0.27, lam=0.022)
    metropolis = Metropolis(action, 1.5)
    results = {}
    for name, kernel, therm, n in [("metropolis", metropolis, 1000, 4000),
                                   ("metropolis+wolff", Composite((metropolis, Wolff(action))), 300, 1500)]:
        phi = Field.zeros(lattice, batch=chains)
        for _ in range(therm):
            phi, _ = kernel.step(phi, generator=generator)
        m_abs, m2 = torch.zeros(chains), torch.zeros(chains)
        for _ in range(n):
            phi, _ = kernel.step(phi, generator=generator)
            M = phi.data.mean((1, 2))
            m_abs, m2 = m_abs + M.abs() / n, m2 + M * M / n
        results[name] = [(float(o.mean()), float(o.std() / math.sqrt(chains))) for o in (m_abs, m2)]
    for i, what in enumerate(("<|M|>", "<M^2>")):
        (a, da), (b, db) = results["metropolis"][i], results["metropolis+wolff"][i]
        print(f"{what}: metropolis {a:.5f} +- {da:.5f}, metropolis+wolff {b:.5f} +- {db:.5f}")
        assert abs(a - b) < 4 * math.hypot(da, db)


@pytest.mark.parametrize("name", ["lgdiff._samplers.wolff"])
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
