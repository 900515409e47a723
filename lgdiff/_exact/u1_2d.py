r"""Exact finite-volume results of 2D U(1) lattice gauge theory on a periodic torus.

Action ``S = beta sum_P (1 - cos theta_P)`` on an ``L0 x L1`` torus with ``V = L0 L1`` plaquettes
(docs/conventions.md, Actions). Derivation (the standard character expansion):

- Gauge-fix a maximal tree. The ``V`` plaquette angles become independent variables except for
  one constraint: every link enters two plaquettes with opposite orientation, so
  ``prod_P U_P = 1``, i.e. ``sum_P theta_P = 0 (mod 2 pi)``. The two Polyakov-loop (holonomy)
  angles left over do not enter the action and integrate to a constant.
- Write the periodic delta function as ``delta(x) = (1 / 2 pi) sum_n e^{-i n x}``. The integral
  factorises plaquette by plaquette, each factor ``(1/2pi) int dphi e^{beta cos phi - i n phi} = I_n(beta)``:

  ``Z = sum_{n in Z} I_n(beta)^V``  (up to a constant).

Every expectation value of plaquette variables follows by replacing the factor of the plaquettes
involved by the corresponding Fourier coefficient. All Bessel functions are evaluated as the ratios
``r_n = I_n(beta) / I_0(beta)`` (from the exponentially scaled ``scipy.special.ive``), so that the
``n = 0`` term is 1 and nothing overflows or underflows harmfully at large ``beta`` or ``V``; the sum
over ``n`` is cut where ``r_n < 1e-30`` (``|n| ~ sqrt(140 beta) + 20``).

scipy is needed (``pip install scipy``, part of the ``test`` extra) and is imported inside the
functions, never at module import.
"""

import math

import numpy as np

from ._checks import check_beta, check_torus_2d


def _bessel_ratios(beta: float) -> tuple[np.ndarray, int]:
    """``r_n = I_n(beta) / I_0(beta)`` for ``n = -n_max-1 .. n_max+1``; index ``n + n_max + 1``."""
    from scipy.special import ive

    n_max = 20 + int(math.sqrt(140.0 * beta))
    n = np.arange(-n_max - 1, n_max + 2)
    r = ive(n, beta) / ive(0, beta)
    return r, n_max


def u1_2d_plaquette(beta: float, shape: tuple[int, int]) -> float:
    r"""Exact ``<cos theta_P>`` of 2D U(1) on a periodic ``L0 x L1`` torus (finite volume).

    ``<cos theta_P> = (1/V) d log Z / d beta = sum_n I_n^{V-1} I_n' / sum_n I_n^V``, with
    ``Z = sum_n I_n(beta)^V`` (module docstring) and ``I_n' = (I_{n-1} + I_{n+1}) / 2``.
    In infinite volume only ``n = 0`` survives: ``I_1(beta) / I_0(beta)``. On a ``1 x 1`` torus
    ``U_P = 1`` identically and the formula gives 1.

    Needs scipy (imported inside the function).

    **Arguments:**
    - `beta`: inverse coupling, ``>= 0``.
    - `shape`: ``(L0, L1)``, positive.

    **Returns:** the expectation value as a Python float.

    >>> round(u1_2d_plaquette(1.0, (64, 64)), 12)  # I_1(1) / I_0(1)
    0.446389965897
    """
    check_beta(beta, where="u1_2d_plaquette")
    V = check_torus_2d(shape, where="u1_2d_plaquette")
    r, n_max = _bessel_ratios(beta)
    mid = slice(1, -1)
    r_n, r_minus, r_plus = r[mid], r[:-2], r[2:]
    numerator = np.sum(np.power(r_n, V - 1) * (r_minus + r_plus) / 2)
    return float(numerator / np.sum(np.power(r_n, V)))


def u1_2d_wilson_loop(beta: float, shape: tuple[int, int], r: int, t: int) -> float:
    r"""Exact ``<Re W_{r x t}>`` of 2D U(1) on a periodic ``L0 x L1`` torus (finite volume).

    ``W_{r x t}`` is the rectangular loop with ``r`` steps along direction 0 and ``t`` along
    direction 1 (lgdiff ``rectangle(u, 0, 1, r, t)``). For an abelian field it equals the product
    of the ``A = r t`` plaquettes it encloses (Stokes), so in the character sum those ``A``
    plaquettes carry ``(1/2pi) int dphi e^{beta cos phi + i phi - i n phi} = I_{n-1}(beta)``
    instead of ``I_n``:

    ``<W> = sum_n I_n^{V-A} I_{n-1}^A / sum_n I_n^V``,

    and ``W*`` gives ``I_{n+1}``; the two sums are equal (``n -> -n``, ``I_{-n} = I_n``), so
    ``<Re W> = sum_n I_n^{V-A} (I_{n-1}^A + I_{n+1}^A) / 2 / sum_n I_n^V`` (evaluated symmetrised).
    Limits: infinite volume ``(I_1/I_0)^A``; ``A = V`` gives 1 (the product of all plaquettes is 1).
    Needs ``1 <= r <= L0`` and ``1 <= t <= L1`` (a loop longer than the torus would enclose
    plaquettes more than once). Needs scipy (imported inside the function).

    **Returns:** the expectation value as a Python float.

    >>> round(u1_2d_wilson_loop(1.0, (64, 64), 2, 1), 12)  # (I_1(1) / I_0(1))^2
    0.199264001653
    """
    check_beta(beta, where="u1_2d_wilson_loop")
    V = check_torus_2d(shape, where="u1_2d_wilson_loop")
    if not (1 <= r <= shape[0] and 1 <= t <= shape[1]):
        raise ValueError(
            f"u1_2d_wilson_loop: the loop must fit on the torus, 1 <= r <= L0 and 1 <= t <= L1; "
            f"got r={r}, t={t} on shape={shape}. Use a larger torus or a smaller loop."
        )
    A = r * t
    ratios, _ = _bessel_ratios(beta)
    r_n, r_minus, r_plus = ratios[1:-1], ratios[:-2], ratios[2:]
    numerator = np.sum(np.power(r_n, V - A) * (np.power(r_minus, A) + np.power(r_plus, A)) / 2)
    return float(numerator / np.sum(np.power(r_n, V)))


def _charge_integrals(beta: float, n: int) -> tuple[float, float]:
    """``(A_n, B_n) e^{-beta}`` with ``A_n = (1/2pi) int phi'^2 e^{beta cos phi} cos(n phi)``,
    ``B_n = (1/2pi) int phi' e^{beta cos phi} sin(n phi)``, ``phi' = phi / 2pi``, over (-pi, pi]."""
    from scipy.integrate import quad

    def weight(phi: float) -> float:
        return math.exp(beta * (math.cos(phi) - 1.0)) * phi / (2 * math.pi)

    def weight2(phi: float) -> float:
        return weight(phi) * phi / (2 * math.pi)

    opts = {"epsabs": 1e-15, "epsrel": 1e-12, "limit": 400}
    # Both integrands are even in phi: integrate over [0, pi] and divide by pi instead of 2 pi.
    if n == 0:
        return quad(weight2, 0.0, math.pi, **opts)[0] / math.pi, 0.0
    a_n = quad(weight2, 0.0, math.pi, weight="cos", wvar=n, **opts)[0] / math.pi
    b_n = quad(weight, 0.0, math.pi, weight="sin", wvar=n, **opts)[0] / math.pi
    return a_n, b_n


def u1_2d_topological_susceptibility(beta: float, shape: tuple[int, int]) -> float:
    r"""Exact ``chi_t = <Q^2> / V`` of 2D U(1) on a periodic ``L0 x L1`` torus (finite volume).

    Geometric charge ``Q = (1 / 2pi) sum_P phi_P``, ``phi_P = arg U_P in (-pi, pi]`` (docs/conventions.md,
    Observables), an integer because ``sum_P phi_P = 0 (mod 2 pi)``.

    Derivation. With a theta term, ``Z(theta) = int prod_P dphi_P e^{beta sum cos phi_P + i theta Q}
    delta_{2pi}(sum_P phi_P)``; as in the module docstring this factorises,
    ``Z(theta) = sum_n c_n(theta)^V``, ``c_n(theta) = (1/2pi) int_{-pi}^{pi} dphi
    e^{beta cos phi + i theta phi / 2pi - i n phi}`` (real; ``c_n(0) = I_n``). ``Z`` is even in
    theta, so ``<Q^2> = -Z''(0) / Z(0)``, and with ``c_n'(0) = B_n``, ``c_n''(0) = -A_n``,

    ``A_n = (1/2pi) int dphi (phi/2pi)^2 e^{beta cos phi} cos(n phi)``,
    ``B_n = (1/2pi) int dphi (phi/2pi) e^{beta cos phi} sin(n phi)``:

    ``chi_t = sum_n [ I_n^{V-1} A_n - (V - 1) I_n^{V-2} B_n^2 ] / sum_n I_n^V``.

    ``A_n`` and ``B_n`` are computed by adaptive quadrature (``scipy.integrate.quad``, QAWO for the
    oscillating factor). Infinite volume: ``chi_t = int phi^2 e^{beta cos phi} /
    (4 pi^2 int e^{beta cos phi})``. For ``V <= 2``, ``|sum_P phi_P| < 2 pi`` almost surely, so
    ``Q = 0`` and ``chi_t = 0`` exactly (returned directly: the sums then converge only like
    ``1/n^2``). The two sums cancel where ``Q`` is suppressed (small ``V``, large ``beta``): the absolute
    accuracy is ~1e-16 of the infinite-volume value (e.g. ``7.675121e-11`` at ``beta = 6`` on ``1 x 3``,
    relative error 1e-8). Needs scipy (imported inside the function).

    **Returns:** ``chi_t`` as a Python float.

    >>> round(u1_2d_topological_susceptibility(1.0, (2, 1)), 12)
    0.0
    """
    check_beta(beta, where="u1_2d_topological_susceptibility")
    V = check_torus_2d(shape, where="u1_2d_topological_susceptibility")
    if V <= 2:
        return 0.0
    from scipy.special import ive

    ratios, n_max = _bessel_ratios(beta)
    r_n = ratios[1:-1]  # n = -n_max .. n_max
    scale = ive(0, beta)
    numerator = 0.0
    for n in range(0, n_max + 1):
        r = r_n[n + n_max]
        if V * r ** (V - 2) < 1e-25:  # r_n decreases with |n|: the rest is negligible
            break
        a_n, b_n = _charge_integrals(beta, n)
        a_n, b_n = a_n / scale, b_n / scale
        term = r ** (V - 1) * a_n - (V - 1) * r ** (V - 2) * b_n * b_n
        numerator += term if n == 0 else 2 * term  # A_{-n} = A_n, B_{-n}^2 = B_n^2
    return float(numerator / np.sum(np.power(r_n, V)))
