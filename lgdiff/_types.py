"""Every tensor alias of lgdiff, named once (docs/conventions.md conventions: batch first)."""

from jaxtyping import Bool, Complex, Float, Int
from torch import Tensor

Links = Complex[Tensor, "batch dim *sites n n"]
"""U_mu(x): one group element per direction and site."""
Algebra = Complex[Tensor, "batch dim *sites n n"]
"""Anti-Hermitian (traceless for SU(N)) algebra element per link: momenta, forces, scores."""
GaugeMatrices = Complex[Tensor, "batch *sites n n"]
"""Omega(x): one group element per site."""
SiteMatrices = Complex[Tensor, "batch *sites n n"]
"""A matrix per site, e.g. a plaquette field U_{mu nu}(x)."""
ScalarData = Float[Tensor, "batch *sites"]
"""A real scalar field phi(x)."""
PerConfig = Float[Tensor, " batch"]
"""One real number per configuration."""
Time = Float[Tensor, " batch"]
"""Diffusion time, one per configuration."""
Matrices = Complex[Tensor, "*b n n"]
"""Any stack of square complex matrices."""
Coords = Float[Tensor, "*b a"]
"""Real algebra coordinates omega^a, X = i sum_a omega^a T^a."""
Mask = Bool[Tensor, "*b"]
Index = Int[Tensor, "*b"]

__all__ = [
    "Algebra",
    "Coords",
    "GaugeMatrices",
    "Index",
    "Links",
    "Mask",
    "Matrices",
    "PerConfig",
    "ScalarData",
    "SiteMatrices",
    "Time",
]
