import doctest
import importlib
import math

import numpy as np
import pytest
import torch

from lgdiff import U1, Field, Lattice, Phi4Action, ToyAction, WilsonAction, _native
from lgdiff._exact import free_field_propagator, toy_moments
from lgdiff._samplers.metropolis import Metropolis, checkerboard, neighbour_sum


def ring_moments(n_sites: int, kappa_bond: float, lam: float) -> dict[str, float]:
    """Exact ``<phi^2>``, ``<phi^4>``, ``<phi(0) phi(1)>`` on a ring of ``n_sites`` sites with
    ``S = sum_i [-2 kappa_bond phi_i phi_(i+1) + (1 - 2 lam) phi_i^2 + lam phi_i^4]``, by the transfer matrix
    ``T(a, b) = h sqrt(w(a)) e^{2 kappa_bond a b} sqrt(w(b))`` on a uniform grid (spectrally accurate for
    these smooth, fast-decaying integrands): ``<f> = tr(F T^n) / tr(T^n)``.

    1-D L >= 2 is the ring with ``kappa_bond = kappa`` (for L = 2 the ring's two bonds are the two hopping
    terms ``phi0 phi1`` and ``phi1 phi0``); the 2-D 2x2 lattice is a 4-ring whose bonds each appear twice:
    ``kappa_bond = 2 kappa``.
    """
    a, h = np.linspace(-7.0, 7.0, 281, retstep=True)  # converged to 1e-15 (checked against 1401 points)
    s = (1 - 2 * lam) * a**2 + lam * a**4
    T = h * np.exp(-s[:, None] / 2 + 2 * kappa_bond * np.outer(a, a) - s[None, :] / 2)
    Tn = np.linalg.matrix_power(T, n_sites)
    Tn1 = np.linalg.matrix_power(T, n_sites - 1)
    z = np.trace(Tn)
    return {
        "phi2": float(np.sum(a**2 * np.diag(Tn)) / z),
        "phi4": float(np.sum(a**4 * np.diag(Tn)) / z),
        "phi0phi1": float(np.trace((a[:, None] * T * a[None, :]) @ Tn1) / z),
    }


def assert_within(samples: torch.Tensor, exact: float, what: str, nsigma: float = 4.0) -> None:
    """Mean over independent chains (axis 0) within ``nsigma`` standard errors of ``exact``."""
    mean, err = float(samples.mean()), float(samples.std() / math.sqrt(samples.shape[0]))
    assert abs(mean - exact) < nsigma * err, f"{what}: {mean:.5f} +- {err:.5f} vs exact {exact:.5f}"


# ---- local action ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2,), (5,), (4, 4), (2, 3, 2), (2, 2, 3, 2)])
def test_phi4_local_action_is_the_action_difference(shape, generator):
    # chain b changes one site x_b to a new value: S' - S = s(new, n) - s(old, n), n = sum_mu phi(x +- mu)
    lattice, batch = Lattice(shape=shape), 8
    action = Phi4Action(kappa=0.31, lam=0.17)
    phi = torch.randn((batch, *shape), generator=generator)
    site = torch.randint(lattice.volume, (batch,), generator=generator)
    value = 2 * torch.randn(batch, generator=generator)
    new = phi.reshape(batch, -1).clone()
    new[torch.arange(batch), site] = value
    old_value = phi.reshape(batch, -1)[torch.arange(batch), site]
    n = neighbour_sum(phi, lattice).reshape(batch, -1)[torch.arange(batch), site]
    dS = action(Field(new.reshape(phi.shape), lattice)) - action(Field(phi, lattice))
    torch.testing.assert_close(dS, action.local_action(value, n) - action.local_action(old_value, n))


@pytest.mark.parametrize("shape", [(), (4, 2)])
def test_toy_local_action_is_the_action_difference(shape, generator):
    lattice, batch = Lattice(shape=shape), 6
    action = ToyAction(m2=-1.0, g=0.4)
    phi = 3 * torch.randn((batch, *shape), generator=generator)
    new = phi + torch.randn(phi.shape, generator=generator)  # every site: sites do not interact
    junk = torch.randn(phi.shape, generator=generator)       # the neighbour sum must not matter
    dS = action(Field(new, lattice)) - action(Field(phi, lattice))
    local = action.local_action(new, junk) - action.local_action(phi, junk)
    torch.testing.assert_close(dS, local.reshape(batch, -1).sum(1))


def test_neighbour_sum_against_hand_count():
    # 1-D L = 4, phi = (1, 2, 4, 8): n(x) = phi(x+1) + phi(x-1)
    phi = torch.tensor([[1.0, 2.0, 4.0, 8.0]])
    torch.testing.assert_close(neighbour_sum(phi, Lattice(shape=(4,))), torch.tensor([[10.0, 5.0, 10.0, 5.0]]))


@pytest.mark.parametrize("shape", [(2,), (6,), (4, 2), (2, 4, 6), (2, 2, 2, 4)])
def test_checkerboard_neighbours_have_the_other_colour(shape):
    lattice = Lattice(shape=shape)
    odd = checkerboard(lattice, device=torch.device("cpu"))
    assert int(odd.sum()) == lattice.volume // 2
    for mu in lattice.directions:
        for steps in (1, -1):
            assert bool((torch.roll(odd, -steps, mu) != odd).all())


# ---- construction and errors ------------------------------------------------------------------------

def test_metropolis_errors():
    action = Phi4Action(kappa=0.2, lam=0.1)
    with pytest.raises(ValueError, match="needs every lattice extent even.*shape \\(4, 3\\).*Lattice\\(shape=\\(4, 4\\)\\)"):
        Metropolis(action, 1.0).step(Field.zeros(Lattice(shape=(4, 3)), batch=1), generator=torch.Generator())
    with pytest.raises(ValueError, match="step_size must be positive and finite; got 0.0"):
        Metropolis(action, 0.0)
    with pytest.raises(ValueError, match="step_size must be positive and finite; got inf"):
        Metropolis(action, math.inf)
    with pytest.raises(ValueError, match="hits must be an integer >= 1; got 0"):
        Metropolis(action, 1.0, hits=0)
    with pytest.raises(TypeError, match="action must be a scalar action .* got WilsonAction"):
        Metropolis(WilsonAction(beta=1.0, group=U1()), 1.0)


def test_settings_and_name():
    kernel = Metropolis(Phi4Action(kappa=0.2, lam=0.1), 1.5, hits=3)
    assert kernel.name == "metropolis"
    assert kernel.settings() == {"step_size": 1.5, "hits": 3}


# ---- mechanics: reproducibility, acceptance, dtype and device -----------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape", [(), (6,), (4, 4), (2, 2, 2, 2)])
def test_same_seed_same_chain(shape, dtype, device):
    kernel = Metropolis(Phi4Action(kappa=0.25, lam=0.1) if shape else ToyAction(m2=-1.0, g=0.4), 1.3, hits=2)
    runs = []
    for _ in range(2):
        g = torch.Generator(device=device).manual_seed(5)
        phi = Field.randn(Lattice(shape=shape), batch=3, generator=g, dtype=dtype, device=device)
        for _ in range(4):
            phi, acc = kernel.step(phi, generator=g)
        runs.append((phi.data, acc))
    assert runs[0][0].dtype == dtype and runs[0][0].device.type == device.type
    assert runs[0][1].shape == (3,) and runs[0][1].dtype == dtype
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize("shape", [(), (8,), (4, 6)])
def test_acceptance_is_the_fraction_of_moved_sites(shape, generator):
    # hits = 1: a proposal equals the old value with probability 0, so accepted <=> moved
    kernel = Metropolis(Phi4Action(kappa=0.25, lam=0.1) if shape else ToyAction(m2=1.0, g=0.4), 2.0)
    phi = Field.randn(Lattice(shape=shape), batch=16, generator=generator)
    new, acc = kernel.step(phi, generator=generator)
    moved = (new.data != phi.data).reshape(16, -1).to(acc.dtype).mean(1)
    torch.testing.assert_close(acc, moved)
    assert 0.05 < float(acc.mean()) < 0.95  # the test is not vacuous: some moves accepted, some rejected


@pytest.mark.parametrize("hits", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape", [(8,), (4, 6), (2, 4, 6)], ids=str)
def test_native_sweep_equals_the_eager_sweep(shape, dtype, hits, monkeypatch):
    # the fused native sweep (the default for phi^4 on the CPU) and the vectorised eager sweep take the same random
    # numbers and make the same decisions: same fields and acceptances, several sweeps in a row
    monkeypatch.setattr(_native, "ENABLED", True)
    if _native.library() is None:
        pytest.skip(f"native kernels: {_native.status()}")
    kernel = Metropolis(Phi4Action(kappa=0.3, lam=0.05), 1.5, hits=hits)
    runs = []
    for enabled in (True, False):
        monkeypatch.setattr(_native, "ENABLED", enabled)
        g = torch.Generator().manual_seed(11)
        phi = Field.randn(Lattice(shape=shape), batch=5, generator=g, dtype=dtype)
        assert _native.available_scalar(phi.data) == enabled
        accs = []
        for _ in range(4):
            phi, acc = kernel.step(phi, generator=g)
            accs.append(acc)
        runs.append((phi.data, torch.stack(accs)))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(runs[0][0], runs[1][0], rtol=tol, atol=tol)
    torch.testing.assert_close(runs[0][1], runs[1][1], rtol=0, atol=1e-6)
    assert 0.05 < float(runs[0][1].mean()) < 0.95


def test_native_sweep_splits_chains_over_threads_bit_for_bit(monkeypatch):
    monkeypatch.setattr(_native, "ENABLED", True)
    if _native.library() is None:
        pytest.skip(f"native kernels: {_native.status()}")
    kernel = Metropolis(Phi4Action(kappa=0.3, lam=0.05), 1.5)
    threads = torch.get_num_threads()
    runs = []
    try:
        for n_threads, min_sites in ((1, _native.MIN_SITES_PER_THREAD), (3, 1)):
            torch.set_num_threads(n_threads)
            monkeypatch.setattr(_native, "MIN_SITES_PER_THREAD", min_sites)
            g = torch.Generator().manual_seed(5)
            phi = Field.randn(Lattice(shape=(4, 6)), batch=7, generator=g, dtype=torch.float64)
            phi, acc = kernel.step(phi, generator=g)
            runs.append((phi.data, acc))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def test_infinite_proposal_action_is_rejected(generator):
    # an overflowing local action must be a rejection, never a NaN or inf field
    kernel = Metropolis(Phi4Action(kappa=0.2, lam=0.5), 1e300)
    phi = Field.randn(Lattice(shape=(4, 4)), batch=4, generator=generator)
    new, acc = kernel.step(phi, generator=generator)
    torch.testing.assert_close(new.data, phi.data)
    assert float(acc.max()) == 0.0


# ---- exactness against quadrature ---------------------------------------------------------------------

@pytest.mark.parametrize(("m2", "step_size"), [(-1.0, 4.0), (1.0, 2.5)], ids=["double-well", "single-well"])
def test_toy_model_moments(m2, step_size, generator):
    # 4000 chains from phi = 0; after 100 sweeps each chain's time average over 300 sweeps is one
    # independent sample (the double-well barrier, 3.75, is crossed often with step_size 4)
    g, chains = 0.4, 4000
    kernel = Metropolis(ToyAction(m2=m2, g=g), step_size)
    phi = Field.zeros(Lattice(shape=()), batch=chains)
    for _ in range(100):
        phi, _ = kernel.step(phi, generator=generator)
    phi2, phi4 = torch.zeros(chains), torch.zeros(chains)
    for _ in range(300):
        phi, _ = kernel.step(phi, generator=generator)
        x2 = phi.data**2
        phi2, phi4 = phi2 + x2 / 300, phi4 + x2 * x2 / 300
    exact2, exact4 = toy_moments(m2, g)
    assert_within(phi2, exact2, "<phi^2>")
    assert_within(phi4, exact4, "<phi^4>")


RINGS = [
    # (shape, kappa, kappa_bond, lambda, step_size, hits)
    ((2,), 0.3, 0.3, 0.1, 1.5, 1),
    ((4,), 0.45, 0.45, 0.05, 1.5, 1),
    ((4,), 0.45, 0.45, 0.05, 1.0, 3),
    ((2, 2), 0.2, 0.4, 0.1, 1.5, 1),
]


@pytest.mark.parametrize(("shape", "kappa", "kappa_bond", "lam", "step_size", "hits"), RINGS)
def test_small_lattice_moments(shape, kappa, kappa_bond, lam, step_size, hits, generator):
    # neighbours, checkerboard and hits: phi^2, phi^4 and the nearest-neighbour correlator on lattices
    # that are rings, against the transfer matrix. 4000 chains, 60 thermalisation sweeps, time averages
    # over 200 sweeps.
    lattice, chains, n = Lattice(shape=shape), 4000, 200
    kernel = Metropolis(Phi4Action(kappa=kappa, lam=lam), step_size, hits=hits)
    phi = Field.randn(lattice, batch=chains, generator=generator)
    for _ in range(60):
        phi, _ = kernel.step(phi, generator=generator)
    sums = torch.zeros(3, chains)
    for _ in range(n):
        phi, _ = kernel.step(phi, generator=generator)
        x = phi.data.reshape(chains, -1)
        x2 = x * x
        sums += torch.stack([x2.mean(1), (x2 * x2).mean(1), (x * shift_ring(phi)).mean(1)]) / n
    exact = ring_moments(4 if shape == (2, 2) else shape[0], kappa_bond, lam)
    assert exact["phi0phi1"] > 0.3 * exact["phi2"]  # strongly coupled: a checkerboard error would show
    for samples, key in zip(sums, ("phi2", "phi4", "phi0phi1")):
        assert_within(samples, exact[key], key)


def shift_ring(phi: Field) -> torch.Tensor:
    """phi at the ring neighbour of every site, ``[B, V]``: x + 0 in 1-D; on 2x2, x + mu, averaged over mu."""
    x = phi.data
    return torch.stack([torch.roll(x, -1, 1 + mu) for mu in phi.lattice.directions]).mean(0).reshape(x.shape[0], -1)


# ---- slow: free-field two-point function ----------------------------------------------------------------

@pytest.mark.slow
def test_free_field_two_point_function(generator):
    # lambda = 0, kappa = 0.2, 8x8: G(k) at every momentum against 1/(2 - 4 kappa sum cos k). Cold start,
    # 300 sweeps, then every chain's G(k) time-averaged over 300 sweeps is one independent sample.
    lattice, kappa, chains, n = Lattice(shape=(8, 8)), 0.2, 1024, 300
    kernel = Metropolis(Phi4Action(kappa=kappa, lam=0.0), 1.6)
    phi = Field.zeros(lattice, batch=chains)
    for _ in range(300):
        phi, _ = kernel.step(phi, generator=generator)
    gk, acc = torch.zeros(chains, *lattice.shape), torch.zeros(chains)
    for _ in range(n):
        phi, a = kernel.step(phi, generator=generator)
        gk += torch.fft.fftn(phi.data, dim=(1, 2)).abs() ** 2 / lattice.volume / n
        acc += a / n
    exact = free_field_propagator(lattice.shape, kappa)
    mean, err = gk.mean(0), gk.std(0) / math.sqrt(chains)
    z = (mean - exact) / err
    print(f"G(0) = {float(mean[0, 0]):.4f} +- {float(err[0, 0]):.4f} (exact {float(exact[0, 0]):.4f}); "
          f"G(pi, pi) = {float(mean[4, 4]):.4f} +- {float(err[4, 4]):.4f} (exact {float(exact[4, 4]):.4f}); "
          f"max |z| over 64 momenta = {float(z.abs().max()):.2f}; acceptance {float(acc.mean()):.3f}")
    assert float(z.abs().max()) < 4, f"max |z| = {float(z.abs().max()):.2f} at k index {int(z.abs().argmax())}"


@pytest.mark.parametrize("name", ["lgdiff._samplers.metropolis", "lgdiff._actions.phi4"])
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
