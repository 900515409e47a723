"""Exact reference values for validating samplers and models (closed forms and quadrature).

The quadratures need scipy (the ``test`` extra), imported inside the functions that use it, never at
import time, so ``import lgdiff`` works without it.
"""

from .diffusion import FreeFieldScore as FreeFieldScore
from .diffusion import diffused_cumulants as diffused_cumulants
from .diffusion import free_field_cumulants as free_field_cumulants
from .diffusion import free_field_reverse_kappa_2 as free_field_reverse_kappa_2
from .scalar import free_field_propagator as free_field_propagator
from .scalar import toy_moments as toy_moments
from .sun_2d import su_n_2d_plaquette as su_n_2d_plaquette
from .u1_2d import u1_2d_plaquette as u1_2d_plaquette
from .u1_2d import u1_2d_topological_susceptibility as u1_2d_topological_susceptibility
from .u1_2d import u1_2d_wilson_loop as u1_2d_wilson_loop

__all__ = [
    "FreeFieldScore",
    "diffused_cumulants",
    "free_field_cumulants",
    "free_field_propagator",
    "free_field_reverse_kappa_2",
    "su_n_2d_plaquette",
    "toy_moments",
    "u1_2d_plaquette",
    "u1_2d_topological_susceptibility",
    "u1_2d_wilson_loop",
]
