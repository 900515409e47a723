"""Exact reference values for validating samplers and models (closed forms and quadrature).

Every function here needs scipy (the ``test`` extra); scipy is imported inside the functions,
never at import time, so ``import lgdiff`` works without it.
"""

from .scalar import free_field_propagator as free_field_propagator
from .scalar import toy_moments as toy_moments
from .sun_2d import su_n_2d_plaquette as su_n_2d_plaquette
from .u1_2d import u1_2d_plaquette as u1_2d_plaquette
from .u1_2d import u1_2d_topological_susceptibility as u1_2d_topological_susceptibility
from .u1_2d import u1_2d_wilson_loop as u1_2d_wilson_loop

__all__ = [
    "free_field_propagator",
    "su_n_2d_plaquette",
    "toy_moments",
    "u1_2d_plaquette",
    "u1_2d_topological_susceptibility",
    "u1_2d_wilson_loop",
]
