r"""Exact infinite-volume plaquette of 2D SU(N) lattice gauge theory.

In two dimensions with open boundaries (or in infinite volume) the plaquettes of the Wilson
action ``S = beta sum_P (1 - Re tr U_P / N)`` are independent after gauge fixing, so every
plaquette expectation value is a one-plaquette Haar integral. With ``x = beta / N``,

``z(x) = int_{SU(N)} dU exp(x Re tr U) = sum_{k in Z} det_{i,j=1..N} [ I_{k+i-j}(x) ]``

(the SU(N) form of the Gross-Witten / Bars-Green determinant; the ``k`` sum projects U(N) onto
det U = 1). Then ``<Re tr U_P / N> = d log z / d beta = (1/N) z'(x) / z(x)``; ``z'`` is the sum over
rows ``r`` of the determinants with row ``r`` replaced by its derivative,
``I_n' = (I_{n-1} + I_{n+1}) / 2``.

scipy is needed (``scipy.special.ive``) and is imported inside the function, never at module import.
"""

import math

import numpy as np


def su_n_2d_plaquette(n: int, beta: float) -> float:
    r"""Exact infinite-volume ``<Re tr U_P / N>`` of 2D SU(N), ``S = beta sum_P (1 - Re tr U_P / N)``.

    ``<Re tr U_P / N> = (1/N) d log z / dx`` with ``x = beta / N`` and
    ``z(x) = sum_k det[I_{k+i-j}(x)]`` (module docstring). For SU(2) this is ``I_2(beta) / I_1(beta)``.
    The Bessel functions are exponentially scaled (``ive``; the common factor ``e^{-N x}`` cancels);
    the ``k`` sum runs until its terms fall below ``1e-18`` of the total. The determinants lose
    about ``log10(x^{N(N-1)/2})`` digits to cancellation at large ``x``: reliable to ``~1e-12``
    for ``beta / N`` up to a few tens. Needs scipy (imported inside the function).

    **Arguments:**
    - `n`: N >= 2.
    - `beta`: inverse coupling, ``>= 0``.

    **Returns:** the expectation value as a Python float.

    >>> round(su_n_2d_plaquette(2, 2.0), 12)  # I_2(2) / I_1(2)
    0.433127426722
    """
    from scipy.special import ive

    if n < 2:
        raise ValueError(f"su_n_2d_plaquette: the group is SU(n) with n >= 2; got n={n}. For U(1) use u1_2d_plaquette.")
    if not math.isfinite(beta) or beta < 0:
        raise ValueError(f"su_n_2d_plaquette: beta must be a finite number >= 0; got beta={beta!r}")
    x = beta / n
    offsets = np.subtract.outer(np.arange(n), np.arange(n))  # i - j

    def term(k: int) -> tuple[float, float]:
        m = ive(k + offsets, x)
        dm = (ive(k + offsets - 1, x) + ive(k + offsets + 1, x)) / 2
        z = np.linalg.det(m)
        dz = 0.0
        for row in range(n):
            replaced = m.copy()
            replaced[row] = dm[row]
            dz += np.linalg.det(replaced)
        return float(z), float(dz)

    z, dz = term(0)
    k = 1
    while True:
        zp, dzp = term(k)
        zm, dzm = term(-k)
        z, dz = z + zp + zm, dz + dzp + dzm
        if max(abs(zp), abs(zm), abs(dzp), abs(dzm)) < 1e-18 * abs(z) or k > 10_000:
            break
        k += 1
    return dz / (n * z)
