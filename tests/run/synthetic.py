"""Synthetic ensembles whose observables are known exactly, written with lgdiff's own EnsembleWriter."""

import math
from pathlib import Path

import numpy as np
import torch

from lgdiff import U1, AlgebraField, Field, Lattice, LinkField
from lgdiff._groups.base import AbstractGroup
from lgdiff._io.ensemble import EnsembleMetadata, EnsembleWriter


def constant_phi4(path: Path, m: np.ndarray, *, L: int = 4, kappa: float = 0.2, lam: float = 0.02) -> Path:
    """phi4 ensemble of constant fields phi(x) = m[t, c]: the magnetisation of record t, chain c is m[t, c]."""
    T, C = m.shape
    lattice = Lattice(shape=(L, L))
    meta = EnsembleMetadata(kind="scalar", theory="phi4", group=None, lattice=(L, L),
                            params={"kappa": kappa, "lam": lam}, algorithm="synthetic", settings={}, seed=0,
                            chains=C, dtype="float64")
    rng = torch.Generator().get_state()
    with EnsembleWriter.open(path, meta, flush_every=T) as w:
        for t in range(T):
            data = torch.as_tensor(m[t], dtype=torch.float64)[:, None, None].expand(C, L, L).clone()
            w.append(Field(data, lattice), t, torch.ones(C), rng)
    return path


def uniform_flux_u1(path: Path, charges: list[int], *, L: int = 4, beta: float = 1.0, chains: int = 2) -> Path:
    """2D U(1) ensemble of uniform flux: record t (every chain) has U_1(x) = exp(i f x_0) and
    U_0(x) = exp(-i f L x_1) on the last column x_0 = L - 1 (1 elsewhere), f = 2 pi Q / L^2 with Q = charges[t].
    Every plaquette angle is then f: topological charge Q, plaquette cos f."""
    lattice = Lattice(shape=(L, L))
    meta = EnsembleMetadata(kind="links", theory="u1", group="U(1)", lattice=(L, L), params={"beta": beta},
                            algorithm="synthetic", settings={}, seed=0, chains=chains, dtype="complex128")
    x0 = torch.arange(L, dtype=torch.float64)[:, None].expand(L, L)
    x1 = torch.arange(L, dtype=torch.float64)[None, :].expand(L, L)
    rng = torch.Generator().get_state()
    with EnsembleWriter.open(path, meta, flush_every=len(charges)) as w:
        for t, Q in enumerate(charges):
            f = 2 * math.pi * Q / (L * L)  # the plaquette angle
            a1 = f * x0  # theta = f inside; A_0 on the last column absorbs the jump of A_1 across the boundary
            a0 = torch.where(x0 == L - 1, -f * L * x1, torch.zeros_like(x1))
            angles = torch.stack([a0, a1])  # [D, L, L]
            data = torch.polar(torch.ones_like(angles), angles)[None, ..., None, None].expand(chains, 2, L, L, 1, 1)
            w.append(LinkField(data.clone(), U1(), lattice), t, torch.ones(chains), rng)
    return path


def rough_links(path: Path, group: AbstractGroup, *, records: int, chains: int, shape: tuple[int, ...] = (4, 4, 4, 4),
                amplitude: float = 0.5, seed: int = 0) -> Path:
    """Ensemble of ``records x chains`` distinct rough configurations ``exp(amplitude X) 1`` (X Gaussian in the
    algebra, `AlgebraField.randn`) of ``group`` on ``shape``, labelled with the theory of that group at beta = 5.5."""
    lattice = Lattice(shape=shape)
    theory = str(group).lower().replace("(", "").replace(")", "")
    meta = EnsembleMetadata(kind="links", theory=theory, group=str(group), lattice=shape, params={"beta": 5.5},
                            algorithm="synthetic", settings={}, seed=seed, chains=chains, dtype="complex128")
    generator = torch.Generator().manual_seed(seed)
    cold = LinkField.identity(group, lattice, batch=chains)
    with EnsembleWriter.open(path, meta, flush_every=records) as w:
        for t in range(records):
            x = AlgebraField.randn(group, lattice, batch=chains, generator=generator)
            w.append(cold.evolve(x, amplitude), t, torch.ones(chains), generator.get_state())
    return path
