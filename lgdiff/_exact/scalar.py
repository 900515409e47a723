r"""Exact results for scalar theories: toy-model moments and the free lattice propagator.

scipy is needed for ``toy_moments`` (``scipy.integrate.quad``) and is imported inside it, never at
module import.
"""

import math

import torch

from .._geometry.lattice import Lattice


def toy_moments(m2: float, g: float) -> tuple[float, float]:
    r"""``(<phi^2>, <phi^4>)`` of the one-variable toy model ``S = m2 phi^2 / 2 + g phi^4 / 24``.

    ``<phi^k> = int phi^k e^{-S} dphi / int e^{-S} dphi`` (docs/conventions.md, Actions: single well
    ``m2 = +1``, double well ``m2 = -1``, ``g = 0.4``), by adaptive quadrature over ``[0, phi_max]``
    (the integrands are even) with a breakpoint at the well minimum
    ``phi_0 = sqrt(-6 m2 / g)``, the weight taken relative to ``S(phi_0)`` so nothing overflows, and
    ``phi_max`` where ``S - S(phi_0) > 800``. Relative accuracy ~1e-12. The two moments obey the
    Schwinger-Dyson identity ``m2 <phi^2> + (g/6) <phi^4> = 1``. Needs scipy (imported inside).

    **Arguments:**
    - `m2`: mass term (any sign if ``g > 0``; ``> 0`` if ``g = 0``).
    - `g`: quartic coupling, ``>= 0``.

    **Returns:** ``(<phi^2>, <phi^4>)`` as Python floats.

    >>> [round(v, 12) for v in toy_moments(1.0, 0.0)]  # Gaussian: 1/m2, 3/m2^2
    [1.0, 3.0]
    """
    from scipy.integrate import quad

    if not (math.isfinite(m2) and math.isfinite(g)) or g < 0 or (g == 0 and m2 <= 0):
        raise ValueError(
            f"toy_moments: e^(-S) with S = m2 phi^2/2 + g phi^4/24 must be normalisable: need finite "
            f"g > 0, or g = 0 and m2 > 0; got m2={m2!r}, g={g!r}"
        )

    def action(phi: float) -> float:
        return m2 * phi * phi / 2 + g * phi**4 / 24

    phi_0 = math.sqrt(-6 * m2 / g) if m2 < 0 else 0.0
    s_0 = action(phi_0)
    phi_max = max(1.0, 2 * phi_0)
    while action(phi_max) - s_0 < 800.0:
        phi_max *= 2
    points = [phi_0] if phi_0 > 0 else None

    def moment(k: int) -> float:
        return quad(
            lambda phi: phi**k * math.exp(s_0 - action(phi)), 0.0, phi_max, points=points, epsabs=0.0, epsrel=1e-13, limit=400
        )[0]

    z = moment(0)
    return moment(2) / z, moment(4) / z


def free_field_propagator(shape: tuple[int, ...], kappa: float) -> torch.Tensor:
    r"""Exact momentum-space propagator of the free (``lambda = 0``) lattice scalar field.

    For ``S = sum_x [-2 kappa sum_mu phi(x) phi(x+mu) + phi(x)^2] = (1/2) phi^T K phi``
    (docs/conventions.md phi^4 action at ``lambda = 0``), ``K`` is diagonal in momentum space and

    ``G(k) = <|phi~(k)|^2> / V = 1 / (2 - 4 kappa sum_mu cos k_mu)``,

    with ``phi~(k) = sum_x e^{-i k x} phi(x)`` (``torch.fft.fftn``) and ``k_mu = 2 pi n_mu / L_mu``.
    Valid for every ``L_mu >= 1``. Stability needs ``K > 0`` at every momentum:
    ``kappa < 1/(2D)`` (``k = 0``), and ``kappa > -1/(2D)`` when some ``L_mu`` is even.

    **Arguments:**
    - `shape`: lattice sizes ``(L_0, ..., L_{D-1})``, D = 0..4 (D = 0: ``S = phi^2``, ``G = 1/2``).
    - `kappa`: hopping parameter.

    **Returns:** ``G(k)`` as a float64 CPU tensor ``[*L]`` in ``torch.fft`` ordering.

    >>> free_field_propagator((4,), 0.2)[0].item()  # 1 / (2 - 0.8)
    0.8333333333333334
    """
    lattice = Lattice(shape=shape)
    if not math.isfinite(kappa):
        raise ValueError(f"free_field_propagator: kappa must be a finite number; got {kappa!r}")
    if lattice.dim == 0:
        return torch.tensor(0.5, dtype=torch.float64)
    p = lattice.momenta(dtype=torch.float64)
    K = 2 - 4 * kappa * torch.cos(p).sum(0)
    if bool((K <= 0).any()):
        D = lattice.dim
        raise ValueError(
            f"free_field_propagator: the free action is unstable for kappa={kappa} on shape={shape}: "
            f"2 - 4 kappa sum_mu cos k_mu must be positive at every momentum, which needs kappa < 1/(2D) "
            f"= {1 / (2 * D):g} (and kappa > -1/(2D) when some L_mu is even). Choose a smaller |kappa|."
        )
    return 1 / K
