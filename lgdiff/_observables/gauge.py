r"""Gauge-invariant observables of link fields, per configuration (docs/conventions.md, Observables).

All functions take a `LinkField` ``[B, D, *L, N, N]`` of U(1) or SU(N) and work for any D >= 2
unless their docstring says otherwise. Conventions: plaquette
``U_{mu nu}(x) = U_mu(x) U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag``; links ``U_mu(x) ~ exp(i A_mu(x))``
with Hermitian ``A``, so ``U_{mu nu}(x) ~ exp(i F^H_{mu nu}(x))`` with Hermitian field strength
``F^H``; the lattice field strength returned by `clover_field_strength` is the anti-Hermitian
``F = i F^H`` (Luscher's convention).
"""

import math

import torch
from jaxtyping import Complex
from torch import Tensor

from .._fields.links import LinkField
from .._geometry.lattice import shift
from .._geometry.paths import plaquette, rectangle
from .._groups.base import trace
from .._groups.u1 import U1
from .._types import PerConfig, SiteMatrices

FieldStrength = Complex[Tensor, "batch dim dim *sites n n"]
"""``F_{mu nu}(x)`` for every ordered pair of directions (antisymmetric, zero on the diagonal)."""
ComplexPerConfig = Complex[Tensor, " batch"]
"""One complex number per configuration."""

_SITE_AXIS = 1  # sites start at axis 1 in a per-direction slice [B, *L, N, N]


def _require_links(name: str, U: object, *, min_dim: int = 2) -> LinkField:
    if not isinstance(U, LinkField):
        raise TypeError(
            f"{name} expects gauge links as a LinkField [B, D, *L, N, N]; got {type(U).__name__}. "
            f"Wrap a tensor as LinkField(data, group, lattice)."
        )
    if U.lattice.dim < min_dim:
        raise ValueError(
            f"{name} needs a lattice with D >= {min_dim} directions; got shape {U.lattice.shape} (D = {U.lattice.dim})"
        )
    return U


def _check_direction(name: str, mu: int, dim: int) -> None:
    if not 0 <= mu < dim:
        raise ValueError(f"{name}: direction must be in 0..{dim - 1} for a D = {dim} lattice; got {mu}")


def _site_mean(x: Tensor) -> Tensor:
    """Mean over every axis but the batch axis."""
    return x.reshape(x.shape[0], -1).mean(1)


def _re_tr(m: Tensor) -> Tensor:
    """``Re tr M / N`` per matrix."""
    return trace(m).real / m.shape[-1]


def plaquette_field(U: LinkField, mu: int, nu: int) -> SiteMatrices:
    r"""The plaquette matrix $U_{\mu\nu}(x) = U_\mu(x) U_\nu(x+\hat\mu) U_\mu(x+\hat\nu)^\dagger U_\nu(x)^\dagger$
    at every site.

    It transforms in the adjoint at x: ``U_{mu nu}(x) -> Omega(x) U_{mu nu}(x) Omega(x)^dag``.

    **Arguments:**
    - `U`: links ``[B, D, *L, N, N]``, D >= 2.
    - `mu`, `nu`: two different directions in ``0..D-1``.

    **Returns:** ``[B, *L, N, N]``.

    >>> from lgdiff import SU, Lattice, LinkField
    >>> U = LinkField.identity(SU(2), Lattice(shape=(3, 3)), batch=1)
    >>> tuple(plaquette_field(U, 0, 1).shape)
    (1, 3, 3, 2, 2)
    """
    U = _require_links("plaquette_field", U)
    for d in (mu, nu):
        _check_direction("plaquette_field", d, U.lattice.dim)
    if mu == nu:
        raise ValueError(f"plaquette_field needs two different directions; got mu = nu = {mu}")
    return plaquette(U.data, mu, nu)


def mean_plaquette(U: LinkField) -> PerConfig:
    r"""Average plaquette $P = \frac{1}{V n_P} \sum_x \sum_{\mu<\nu} \mathrm{Re\,tr}\, U_{\mu\nu}(x) / N$,
    with ``n_P = D(D-1)/2`` planes. The Wilson action is ``S = beta V n_P (1 - P)``.

    **Returns:** ``[B]``, real; 1 on the cold start.

    >>> from lgdiff import SU, Lattice, LinkField
    >>> mean_plaquette(LinkField.identity(SU(3), Lattice(shape=(4, 4)), batch=2)).tolist()
    [1.0, 1.0]
    """
    U = _require_links("mean_plaquette", U)
    planes = U.lattice.planes
    total = sum(_re_tr(plaquette(U.data, mu, nu)) for mu, nu in planes)
    return _site_mean(total) / len(planes)


def wilson_loop(U: LinkField, r: int, t: int) -> PerConfig:
    r"""Planar ``r x t`` Wilson loop, averaged over sites and all ordered planes.

    $$W(r, t) = \frac{1}{V D (D-1)} \sum_x \sum_{\mu \ne \nu} \mathrm{Re\,tr}\, W^{(\mu\nu)}_{r\times t}(x) / N,$$

    where ``W^{(mu nu)}_{r x t}(x)`` is the rectangle with corner ``x``, ``r`` links along ``mu`` and
    ``t`` along ``nu``. Both orientations ``r x t`` and ``t x r`` of every plane count, so
    ``W(r, t) = W(t, r)``, and ``W(1, 1)`` is `mean_plaquette`.

    **Arguments:**
    - `U`: links ``[B, D, *L, N, N]``, D >= 2.
    - `r`, `t`: side lengths, ``1 <= r, t < min(L)`` (longer sides would wind around the torus).

    **Returns:** ``[B]``, real.

    >>> from lgdiff import U1, Lattice, LinkField
    >>> wilson_loop(LinkField.identity(U1(), Lattice(shape=(4, 4)), batch=1), 2, 1).tolist()
    [1.0]
    """
    U = _require_links("wilson_loop", U)
    shortest = min(U.lattice.shape)
    if not (1 <= r < shortest and 1 <= t < shortest):
        raise ValueError(
            f"wilson_loop needs 1 <= r, t < min(L) = {shortest} on L = {U.lattice.shape} so that the loop fits "
            f"in every plane without winding around the torus; got r = {r}, t = {t}"
        )
    dim = U.lattice.dim
    pairs = [(mu, nu) for mu in range(dim) for nu in range(dim) if mu != nu]
    total = sum(_re_tr(rectangle(U.data, mu, nu, r, t)) for mu, nu in pairs)
    return _site_mean(total) / len(pairs)


def polyakov_loop(U: LinkField, mu: int | None = None) -> ComplexPerConfig:
    r"""Polyakov loop along direction ``mu`` (default: the last direction, "time").

    $$P = \frac{1}{V / L_\mu} \sum_{\vec x \perp \mu} \frac{1}{N} \mathrm{tr} \prod_{k=0}^{L_\mu - 1} U_\mu(\vec x + k \hat\mu),$$

    the average over the sites of the hyperplane ``x_mu = 0`` of the traced Wilson line that winds
    once around the torus (ordered product, ``k = 0`` on the left). It is gauge invariant and
    picks up the centre element ``z`` under a centre transformation of the links on one slice.

    **Arguments:**
    - `U`: links ``[B, D, *L, N, N]``, D >= 1.
    - `mu`: the winding direction, ``0 <= mu < D``; ``None`` for ``D - 1``.

    **Returns:** ``[B]``, complex.

    >>> from lgdiff import SU, Lattice, LinkField
    >>> polyakov_loop(LinkField.identity(SU(2), Lattice(shape=(4, 2)), batch=1)).tolist()
    [(1+0j)]
    """
    U = _require_links("polyakov_loop", U, min_dim=1)
    dim = U.lattice.dim
    mu = dim - 1 if mu is None else mu
    _check_direction("polyakov_loop", mu, dim)
    u_mu = U.data[:, mu]
    axis = _SITE_AXIS + mu
    line = u_mu.select(axis, 0)
    for k in range(1, U.lattice.shape[mu]):
        line = line @ u_mu.select(axis, k)
    loop = trace(line) / U.group.n  # [B, *L_perp]
    return loop.reshape(loop.shape[0], -1).mean(1)


def topological_charge_u1_2d(U: LinkField) -> PerConfig:
    r"""Geometric topological charge of 2D U(1): $Q = \frac{1}{2\pi} \sum_x \arg U_{01}(x)$,
    $\arg \in (-\pi, \pi]$.

    Since every link enters two plaquettes with opposite signs, the plaquette angles sum to zero on
    the torus, and Q is an integer (to rounding) on every configuration.

    **Arguments:**
    - `U`: U(1) links on a 2D lattice, ``[B, 2, L0, L1, 1, 1]``.

    **Returns:** ``[B]``, real, integer-valued.

    >>> from lgdiff import U1, Lattice, LinkField
    >>> topological_charge_u1_2d(LinkField.identity(U1(), Lattice(shape=(4, 4)), batch=1)).tolist()
    [0.0]
    """
    U = _require_links("topological_charge_u1_2d", U)
    if not isinstance(U.group, U1) or U.lattice.dim != 2:
        raise ValueError(
            f"topological_charge_u1_2d is defined for U(1) links on a 2D lattice; got {U.group} on "
            f"L = {U.lattice.shape} (D = {U.lattice.dim}). For 4D use topological_charge_clover."
        )
    theta = torch.angle(plaquette(U.data, 0, 1)[..., 0, 0])
    theta = torch.where(theta <= -math.pi, theta + 2 * math.pi, theta)  # the cut: -pi belongs to +pi
    return theta.reshape(theta.shape[0], -1).sum(1) / (2 * math.pi)


def _clover_leaves(u: Tensor, mu: int, nu: int) -> Tensor:
    r"""``Q_{mu nu}(x)``: the four plaquettes in the (mu, nu) plane that start and end at x, all
    counter-clockwise, as the plaquettes at ``x, x-mu, x-nu, x-mu-nu`` transported back to x."""
    u_mu, u_nu = u[:, mu], u[:, nu]
    p = plaquette(u, mu, nu)
    # the path from the plaquette's corner y to x, and the plaquette conjugated by it, evaluated at y
    from_x_minus_mu = u_mu.mH @ p @ u_mu
    from_x_minus_nu = u_nu.mH @ p @ u_nu
    w = u_nu @ shift(u_mu, nu, site_axis=_SITE_AXIS)  # y -> y+nu -> y+nu+mu = x for y = x-mu-nu
    from_x_minus_mu_nu = w.mH @ p @ w
    return (p
            + shift(from_x_minus_mu, mu, site_axis=_SITE_AXIS, steps=-1)
            + shift(from_x_minus_nu, nu, site_axis=_SITE_AXIS, steps=-1)
            + shift(shift(from_x_minus_mu_nu, mu, site_axis=_SITE_AXIS, steps=-1), nu, site_axis=_SITE_AXIS, steps=-1))


def clover_field_strength(U: LinkField) -> FieldStrength:
    r"""Clover field strength $F_{\mu\nu}(x)$, anti-Hermitian and (for SU(N)) traceless.

    $$F_{\mu\nu}(x) = \frac{1}{4} P_{\mathrm{alg}}\big(Q_{\mu\nu}(x)\big) = \frac{1}{8}\big(Q_{\mu\nu}(x) - Q_{\nu\mu}(x)\big) - \text{trace},$$

    where ``Q_{mu nu}(x)`` is the sum of the four plaquettes of the (mu, nu) plane that start and end
    at x (the clover leaves; ``Q_{nu mu} = Q_{mu nu}^dag``) and ``P_alg`` the projection to the
    algebra (traceless anti-Hermitian part; ``i Im`` for U(1)). This is the symmetric (clover)
    definition of Luscher's ``G_{mu nu}`` (JHEP 08 (2010) 071), projected to the algebra, with
    ``F = i F^H + O(a^2)`` for the Hermitian continuum field strength ``F^H``. It transforms in the
    adjoint at x: ``F(Omega.U)(x) = Omega(x) F(U)(x) Omega(x)^dag``.

    **Arguments:**
    - `U`: links ``[B, D, *L, N, N]``, D >= 2.

    **Returns:** ``[B, D, D, *L, N, N]``, antisymmetric in ``(mu, nu)``, zero on the diagonal.

    >>> from lgdiff import SU, Lattice, LinkField
    >>> F = clover_field_strength(LinkField.identity(SU(2), Lattice(shape=(3, 3, 3)), batch=1))
    >>> tuple(F.shape), float(F.abs().max())
    ((1, 3, 3, 3, 3, 3, 2, 2), 0.0)
    """
    U = _require_links("clover_field_strength", U)
    dim, group = U.lattice.dim, U.group
    f = U.data.new_zeros((U.data.shape[0], dim, dim, *U.data.shape[2:]))
    for mu, nu in U.lattice.planes:
        f_munu = group.project_algebra(_clover_leaves(U.data, mu, nu)) / 4
        f[:, mu, nu] = f_munu
        f[:, nu, mu] = -f_munu
    return f


def _tr_product(f: Tensor, g: Tensor) -> Tensor:
    """``Re tr(F G)`` per site without forming the product: ``sum_ij F_ij G_ji``."""
    return (f * g.transpose(-2, -1)).sum((-2, -1)).real


def topological_charge_clover(U: LinkField) -> PerConfig:
    r"""Clover topological charge of a 4D configuration (use after smoothing, e.g. `wilson_flow`).

    $$Q = -\frac{1}{32\pi^2} \sum_x \epsilon_{\mu\nu\rho\sigma} \mathrm{tr}\big(F_{\mu\nu}(x) F_{\rho\sigma}(x)\big)
        = -\frac{1}{4\pi^2} \sum_x \mathrm{tr}\big(F_{01}F_{23} - F_{02}F_{13} + F_{03}F_{12}\big)$$

    with the anti-Hermitian `clover_field_strength` ``F`` and ``epsilon_{0123} = +1``. The minus sign
    converts to the Hermitian field strength ``F^H = -i F``, for which this is the continuum
    ``Q = (1/32 pi^2) int eps tr(F^H F^H) = (g^2/32 pi^2) int F^a F~^a`` (``tr T^a T^b = delta^{ab}/2``),
    as in Luscher, JHEP 08 (2010) 071. Orientation check: the abelian configuration with flux
    ``2 pi q1`` through the (0, 1) planes and ``2 pi q2`` through the (2, 3) planes, embedded in
    SU(N) as ``diag(e^{i theta}, e^{-i theta}, 1, ...)``, has ``Q -> 2 q1 q2`` (``q1 q2`` for U(1),
    whose generator is normalised to ``tr T T = 1``). Gauge invariant; odd under a reflection. With the
    clover `energy_density` ``E`` it obeys the lattice Bogomolny bound ``V E >= 8 pi^2 |Q|`` exactly
    (pointwise, by Cauchy-Schwarz), with equality for self-dual fields.

    **Arguments:**
    - `U`: links ``[B, 4, *L, N, N]`` of U(1) or SU(N).

    **Returns:** ``[B]``, real (an integer only for smooth configurations).

    >>> from lgdiff import SU, Lattice, LinkField
    >>> topological_charge_clover(LinkField.identity(SU(3), Lattice(shape=(3, 3, 3, 3)), batch=1)).tolist()
    [0.0]
    """
    U = _require_links("topological_charge_clover", U)
    if U.lattice.dim != 4:
        raise ValueError(
            f"topological_charge_clover needs a 4D lattice (epsilon_{{mu nu rho sigma}}); got L = {U.lattice.shape} "
            f"(D = {U.lattice.dim}). For 2D U(1) use topological_charge_u1_2d."
        )
    f = clover_field_strength(U)
    # -(tr F01 F23 - tr F02 F13 + tr F03 F12), ordered so that a zero field gives +0.0
    minus_density = (_tr_product(f[:, 0, 2], f[:, 1, 3])
                     - _tr_product(f[:, 0, 1], f[:, 2, 3])
                     - _tr_product(f[:, 0, 3], f[:, 1, 2]))
    return minus_density.reshape(minus_density.shape[0], -1).sum(1) / (4 * math.pi**2)


def energy_density(U: LinkField) -> PerConfig:
    r"""Clover action density, averaged over sites (Luscher's convention):

    $$E = \frac{1}{V} \sum_x \Big(-\frac{1}{2} \sum_{\mu,\nu} \mathrm{tr}\, F_{\mu\nu}(x) F_{\mu\nu}(x)\Big)
        = \frac{1}{V} \sum_x \sum_{\mu<\nu} \mathrm{tr}\, F^H_{\mu\nu}(x)^2 \;\ge 0,$$

    with the anti-Hermitian `clover_field_strength` ``F`` (``= (1/4) F^a F^a`` summed over all
    ``mu, nu``, for ``tr T^a T^b = delta^{ab}/2``). ``t^2 <E(t)>`` along the `wilson_flow` sets the scale
    ``t_0`` (``t_0^2 <E(t_0)> = 0.3`` for SU(3)).

    **Arguments:**
    - `U`: links ``[B, D, *L, N, N]``, D >= 2.

    **Returns:** ``[B]``, real, 0 on the cold start.

    >>> from lgdiff import U1, Lattice, LinkField
    >>> energy_density(LinkField.identity(U1(), Lattice(shape=(4, 4)), batch=1)).tolist()
    [0.0]
    """
    U = _require_links("energy_density", U)
    f = clover_field_strength(U)
    # -tr(F F) = sum_ij |F_ij|^2 for anti-Hermitian F: sum the squared moduli over mu < nu
    upper = torch.stack([f[:, mu, nu] for mu, nu in U.lattice.planes], dim=1)
    return _site_mean(upper.abs().square().sum((-2, -1)).sum(1))

