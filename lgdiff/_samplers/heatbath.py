r"""Heatbath and overrelaxation for the Wilson gauge action (U(1) and SU(N)), checkerboard-vectorised.

The local weight of one link follows from ``S = beta sum_P (1 - Re tr U_P / N)`` (docs/conventions.md, Actions):
with the staple sum ``A_mu(x)`` of ``staples(u, mu)`` (``U_mu(x) A_mu(x)`` are the closed plaquettes
through the link), the part of S that depends on ``U = U_mu(x)`` is ``-(beta / N) Re tr(U A)``, so

    P(U) dU  ~  exp((beta / N) Re tr(U A)) dU      (dU: Haar measure).

Updates act from the left, ``U' = R U`` (the left convention), with ``W = U A``:

- SU(2) subgroup (Cabibbo and Marinari, Phys. Lett. B 119 (1982) 387): for the 2x2 block ``w`` of W
  in rows/columns (i, j), only its quaternion part ``v = k V`` (V in SU(2), ``k = sqrt(det v) >= 0``)
  enters ``Re tr(r w) = k Re tr(r V)``. By Haar invariance ``X = r V`` has the weight
  ``exp(alpha X_0)`` with ``Re tr X = 2 X_0`` and ``alpha = 2 beta k / N`` (``= beta k`` for SU(2)), so
  ``X_0 = a0`` has the density ``sqrt(1 - a0^2) exp(alpha a0)`` on [-1, 1] and the rest of X is an
  isotropic 3-vector of length ``sqrt(1 - a0^2)``; then ``r = X V^dagger``. For SU(2) itself this is
  ``U' = X V_A^dagger`` with ``A = k V_A``; for SU(N) the N(N-1)/2 subgroups are updated in turn.
  a0 is drawn by Kennedy and Pendleton (Phys. Lett. B 156 (1985) 393) where alpha is large and by
  Creutz (Phys. Rev. D 21 (1980) 2308) where it is small, each exact by rejection.
- U(1): ``W = w = k e^{i phi}``; the new link ``e^{i theta}`` has ``psi = theta + phi`` von Mises
  distributed, ``P(psi) ~ exp(beta k cos psi)``, drawn by Best and Fisher (Appl. Stat. 28 (1979) 152).
- Negative beta: both 1-D densities are drawn at ``|alpha|`` (``|beta k|``) and mirrored, ``a0 -> -a0``
  (``X -> -X`` up to the isotropic direction) and ``psi -> psi + pi``; the rejection proposals below are
  built for a non-negative parameter.
- Overrelaxation (Creutz, Phys. Rev. D 36 (1987) 515; Brown and Woch, Phys. Rev. Lett. 58 (1987) 2394):
  the reflection ``r = (V^dagger)^2`` in each subgroup, i.e. ``U' = V_A^dagger U^dagger V_A^dagger`` for SU(2)
  and ``theta -> -theta - 2 phi`` for U(1). It is an involution that preserves Haar measure and
  ``Re tr(U A)``, so the action is unchanged exactly (microcanonical, not ergodic on its own).

Checkerboard: the links of one direction mu on sites of one parity (sum of coordinates even or odd)
share no plaquette, so their conditional distributions are independent given all other links and
they are updated simultaneously; this needs even extents in every direction.
"""

import math
import typing
from collections.abc import Callable

import attrs
import torch
from torch import Tensor

from .._actions.wilson import WilsonAction
from .._fields.links import LinkField
from .._geometry.lattice import Lattice
from .._geometry.paths import staples
from .._groups.base import AbstractGroup
from .._groups.u1 import U1
from .base import AbstractKernel, requires

# Kennedy-Pendleton accepts with probability > 0.7 above alpha = 1.7, Creutz's method below it
# (acceptance of both at alpha = 1.7: about 0.71; KP alone falls to 0.04 at alpha = 0.1, Creutz to 0.38 at 10).
_ALPHA_SWITCH = 1.7
# no draw in this module needs anywhere near this many rounds unless its parameters are not finite
_MAX_ROUNDS = 1000


# ---- exact 1-D samplers, vectorised by rejection over the elements still unaccepted ----------------

def _rejection(propose: Callable[[Tensor, torch.Generator], tuple[Tensor, Tensor]], param: Tensor,
               generator: torch.Generator) -> Tensor:
    """Draw one exact sample per element of ``param`` by rejection.

    ``propose(p, generator)`` returns candidates ``[M, k]`` and an acceptance mask ``[M]`` for
    parameters ``p`` of shape ``[M]``. Only the elements not yet accepted are proposed again: the
    loop runs over rounds (one host synchronisation each, about log(M) / log(1 / rejection) rounds),
    never over elements. Returns ``[*param.shape, k]``.
    """
    flat = param.reshape(-1)
    todo = torch.arange(flat.numel(), device=flat.device)
    out, ok = propose(flat, generator)
    todo = todo[~ok]
    rounds = 1
    while todo.numel():
        if rounds >= _MAX_ROUNDS:
            raise RuntimeError(
                f"rejection sampling did not finish after {_MAX_ROUNDS} rounds for {todo.numel()} elements; "
                f"their parameters are {flat[todo][:5].tolist()} (first five): the links or beta are not finite"
            )
        cand, ok = propose(flat[todo], generator)
        out[todo[ok]] = cand[ok]
        todo = todo[~ok]
        rounds += 1
    return out.reshape(*param.shape, out.shape[-1])


def _propose_su2_a0(alpha: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Candidates ``(a0, sqrt(1 - a0^2))`` for the density ``sqrt(1 - a0^2) exp(alpha a0)`` on [-1, 1].

    Kennedy-Pendleton for ``alpha > _ALPHA_SWITCH``: ``delta = 1 - a0 = 2 lambda^2`` with
    ``2 alpha lambda^2 = -(ln r1 + cos^2(2 pi r2) ln r3) ~ Gamma(3/2)``, i.e. density
    ``sqrt(delta) exp(-alpha delta)``, accepted with probability ``sqrt(1 - delta / 2)`` (zero for delta > 2).
    Creutz otherwise: ``a0 ~ exp(alpha a0)`` on [-1, 1] by inversion, accepted with ``sqrt(1 - a0^2)``.
    """
    r = torch.rand((4, *alpha.shape), generator=generator, dtype=alpha.dtype, device=alpha.device)
    use_kp = alpha > _ALPHA_SWITCH
    # Kennedy-Pendleton; 1 - r is in (0, 1], so the logarithms are finite
    a_kp = torch.where(use_kp, alpha, torch.ones_like(alpha))
    lam2 = -(torch.log1p(-r[0]) + torch.cos(2 * math.pi * r[1]) ** 2 * torch.log1p(-r[2])) / (2 * a_kp)
    delta_kp = 2 * lam2
    ok_kp = r[3] ** 2 <= 1 - lam2
    # Creutz: a0 = 1 + ln(1 - u (1 - e^{-2 alpha})) / alpha, u in [0, 1), so a0 in (-1, 1]
    a_cr = alpha.clamp_min(torch.finfo(alpha.dtype).tiny ** 0.5)
    delta_cr = -torch.log1p(r[0] * torch.expm1(-2 * a_cr)) / a_cr
    delta = torch.where(use_kp, delta_kp, delta_cr).clamp(0.0, 2.0)
    s2 = delta * (2 - delta)  # 1 - a0^2, without cancellation near a0 = +-1
    ok = torch.where(use_kp, ok_kp, r[3] ** 2 <= s2)
    return torch.stack([1 - delta, s2.sqrt()], dim=-1), ok


def _propose_von_mises(kappa: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Candidates ``(cos psi, sin psi)`` for ``P(psi) ~ exp(kappa cos psi)`` (Best-Fisher, wrapped Cauchy envelope).

    With ``rho = 2 kappa / (tau + sqrt(2 tau))``, ``tau = 1 + sqrt(1 + 4 kappa^2)`` (Best-Fisher's
    ``(tau - sqrt(2 tau)) / (2 kappa)`` without its cancellation at small kappa), ``s = (1 + rho^2) / (2 rho)``,
    ``z = cos(pi u1)``: ``cos psi = f = (1 + s z) / (s + z)``, ``c = kappa (s - f)``; accept if
    ``c (2 - c) > u2`` or ``ln(c / u2) + 1 - c >= 0``. The differences ``s - f = (s^2 - 1) / (s + z)`` and
    ``sin psi = +-sqrt(s^2 - 1) sin(pi u1) / (s + z)`` are written without cancellation.
    """
    kappa = kappa.clamp_min(torch.finfo(kappa.dtype).tiny ** 0.5)
    u = torch.rand((3, *kappa.shape), generator=generator, dtype=kappa.dtype, device=kappa.device)
    tau = 1 + torch.sqrt(1 + 4 * kappa * kappa)
    rho = 2 * kappa / (tau + torch.sqrt(2 * tau))
    s = (1 + rho * rho) / (2 * rho)
    root = (1 - rho * rho) / (2 * rho)  # sqrt(s^2 - 1)
    z = torch.cos(math.pi * u[0])
    f = (1 + s * z) / (s + z)
    c = kappa * root * (root / (s + z))  # root^2 alone overflows float32 at the smallest kappa
    u2 = 1 - u[1]  # (0, 1]
    ok = (c * (2 - c) > u2) | (torch.log(c / u2) + 1 - c >= 0)
    sign = torch.where(u[2] < 0.5, -torch.ones_like(f), torch.ones_like(f))
    sin = sign * root * torch.sin(math.pi * u[0]) / (s + z)
    return torch.stack([f, sin], dim=-1), ok


def _su2_a0(alpha: Tensor, generator: torch.Generator) -> Tensor:
    """``(a0, sqrt(1 - a0^2))`` ``[..., 2]`` for any real ``alpha``: the density at ``alpha < 0`` is the one
    at ``|alpha|`` mirrored, ``a0 -> -a0`` (the proposals are built for ``alpha >= 0``)."""
    a = _rejection(_propose_su2_a0, alpha.abs(), generator)
    return torch.stack([torch.where(alpha < 0, -a[..., 0], a[..., 0]), a[..., 1]], dim=-1)


def _von_mises(kappa: Tensor, generator: torch.Generator) -> Tensor:
    """``(cos psi, sin psi)`` ``[..., 2]`` for any real ``kappa``: ``exp(kappa cos psi)`` at ``kappa < 0`` is
    the density at ``|kappa|`` shifted by pi, ``(cos, sin) -> -(cos, sin)``."""
    cs = _rejection(_propose_von_mises, kappa.abs(), generator)
    return torch.where((kappa < 0)[..., None], -cs, cs)


def sample_su2_a0(alpha: Tensor, *, generator: torch.Generator) -> Tensor:
    r"""Exact samples of ``a0`` with density ``~ sqrt(1 - a0^2) exp(alpha a0)`` on [-1, 1], one per element.

    The SU(2) heatbath distribution of ``a0 = Re tr X / 2`` for ``P(X) ~ exp(alpha Re tr X / 2)``.
    ``alpha`` real of either sign (negative at beta < 0), any shape; returns the same shape and dtype.
    Its mean is ``I_2(alpha) / I_1(alpha)``.
    """
    return _su2_a0(alpha, generator)[..., 0]


def sample_von_mises(kappa: Tensor, *, generator: torch.Generator) -> Tensor:
    r"""Exact samples of ``psi`` in (-pi, pi] with density ``~ exp(kappa cos psi)``, one per element.

    ``kappa`` real of either sign, any shape; returns the same shape and dtype.
    ``<cos psi> = I_1(kappa) / I_0(kappa)``.
    """
    cs = _von_mises(kappa, generator)
    return torch.atan2(cs[..., 1], cs[..., 0])


# ---- SU(2) quaternions [[p, q], [-q^*, p^*]] ---------------------------------------------------------

def _quaternion_part(w: Tensor, i: int, j: int) -> tuple[Tensor, Tensor]:
    """``(p, q)`` of the quaternion part v of the 2x2 block of ``w`` in rows/columns (i, j):
    ``Re tr(r w_ij) = Re tr(r v)`` for every r in SU(2)."""
    a, b, c, d = w[..., i, i], w[..., i, j], w[..., j, i], w[..., j, j]
    return (a + d.conj()) / 2, (b - c.conj()) / 2


def _normalised(p: Tensor, q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(p / k, q / k, k)`` with ``k = sqrt(|p|^2 + |q|^2)``; the identity where k vanishes."""
    k = torch.sqrt(p.real**2 + p.imag**2 + q.real**2 + q.imag**2)
    small = k <= torch.finfo(k.dtype).tiny ** 0.5
    k_safe = torch.where(small, torch.ones_like(k), k)
    p = torch.where(small, torch.ones_like(p), p / k_safe)
    q = torch.where(small, torch.zeros_like(q), q / k_safe)
    return p, q, k


def _left_multiply_block(m: Tensor, p: Tensor, q: Tensor, i: int, j: int) -> Tensor:
    """``R m`` with R the SU(2) element ``[[p, q], [-q^*, p^*]]`` embedded in rows/columns (i, j)."""
    row_i, row_j = m[..., i, :], m[..., j, :]
    p, q = p[..., None], q[..., None]
    out = m.clone()
    out[..., i, :] = p * row_i + q * row_j
    out[..., j, :] = -q.conj() * row_i + p.conj() * row_j
    return out


def _su2_heatbath_element(alpha: Tensor, p: Tensor, q: Tensor, generator: torch.Generator, *,
                          mirrored: bool = False) -> tuple[Tensor, Tensor]:
    """``r = X V^dagger`` with X from the heatbath at ``alpha >= 0`` (at ``-alpha`` if ``mirrored``) and
    ``V = [[p, q], [-q^*, p^*]]``."""
    a = _rejection(_propose_su2_a0, alpha, generator)
    a0, s = (-a[..., 0] if mirrored else a[..., 0]), a[..., 1]
    # isotropic direction of length s = sqrt(1 - a0^2): uniform cos(theta) and azimuth
    u = torch.rand((2, *alpha.shape), generator=generator, dtype=alpha.dtype, device=alpha.device)
    cos_t = 2 * u[0] - 1
    sin_t = torch.sqrt((1 - cos_t) * (1 + cos_t))
    phi = 2 * math.pi * u[1]
    a1, a2, a3 = s * sin_t * torch.cos(phi), s * sin_t * torch.sin(phi), s * cos_t
    xp, xq, _ = _normalised(torch.complex(a0, a3), torch.complex(a2, a1))  # X = a0 + i a.sigma
    # (p1, q1)(p2, q2) = (p1 p2 - q1 q2^*, p1 q2 + q1 p2^*), with V^dagger = (p^*, -q)
    return xp * p.conj() + xq * q.conj(), -xp * q + xq * p


def _su2_overrelax_element(p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    """``r = (V^dagger)^2`` for ``V = [[p, q], [-q^*, p^*]]`` in SU(2)."""
    return p.conj() ** 2 - q * q.conj(), -2 * q * p.real


# ---- link updates given the staples ------------------------------------------------------------------

def _unit_row(r: Tensor) -> Tensor:
    return r / torch.sqrt((r.real**2 + r.imag**2).sum(-1, keepdim=True))  # faster than complex vector_norm


def _reunitarize(u: Tensor, group: AbstractGroup) -> Tensor:
    """Back onto the group after the products of updates: exact closed forms for N <= 3."""
    n = group.n
    if n == 1:
        return u / u.abs()
    if n == 2:
        p, q, _ = _normalised(*_quaternion_part(u, 0, 1))
        return torch.stack([torch.stack([p, q], -1), torch.stack([-q.conj(), p.conj()], -1)], -2)
    if n == 3:
        # Gram-Schmidt on the rows; the third row conj(r0 x r1) makes det = 1
        r0 = _unit_row(u[..., 0, :])
        r1 = u[..., 1, :]
        r1 = _unit_row(r1 - (r0.conj() * r1).sum(-1, keepdim=True) * r0)
        r2 = torch.linalg.cross(r0, r1, dim=-1).conj()
        return torch.stack([r0, r1, r2], dim=-2)
    return group.reunitarize(u)


def heatbath_links(u: Tensor, a: Tensor, beta: float, group: AbstractGroup, *, generator: torch.Generator) -> Tensor:
    r"""One heatbath update of independent links ``u`` given their staple sums ``a`` (both ``[..., N, N]``).

    Samples ``P(U) ~ exp((beta / N) Re tr(U A))`` exactly for U(1) and SU(2); for SU(N), N > 2, one
    Cabibbo-Marinari pass over the N(N-1)/2 SU(2) subgroups, which leaves that distribution invariant.
    Any real ``beta``: at ``beta < 0`` the one-dimensional draws are mirrored (module docstring).
    """
    n = group.n
    w = u @ a
    if isinstance(group, U1):
        w0 = w[..., 0, 0]
        k = w0.abs()
        cs = _rejection(_propose_von_mises, abs(beta) * k, generator)
        if beta < 0:
            cs = -cs
        x = torch.complex(cs[..., 0], cs[..., 1])
        v = torch.where(k > 0, w0 / torch.where(k > 0, k, torch.ones_like(k)), torch.ones_like(w0))
        return _reunitarize((x * v.conj())[..., None, None] * u, group)
    for i in range(n):
        for j in range(i + 1, n):
            p, q, k = _normalised(*_quaternion_part(w, i, j))
            rp, rq = _su2_heatbath_element(2 * abs(beta) * k / n, p, q, generator, mirrored=beta < 0)
            u = _left_multiply_block(u, rp, rq, i, j)
            if n > 2:
                w = _left_multiply_block(w, rp, rq, i, j)
    return _reunitarize(u, group)


def overrelax_links(u: Tensor, a: Tensor, group: AbstractGroup) -> Tensor:
    r"""One overrelaxation update of independent links ``u`` given their staple sums ``a`` (``[..., N, N]``).

    Keeps ``Re tr(U A)`` (so the action) unchanged: ``U -> (V^dagger)^2 U`` in each SU(2) subgroup, with
    V the normalised quaternion part of ``U A`` there; ``theta -> -theta - 2 phi_A`` for U(1).
    """
    n = group.n
    w = u @ a
    if isinstance(group, U1):
        w0 = w[..., 0, 0]
        k = w0.abs()
        v = torch.where(k > 0, w0 / torch.where(k > 0, k, torch.ones_like(k)), torch.ones_like(w0))
        return _reunitarize((v.conj() ** 2)[..., None, None] * u, group)
    for i in range(n):
        for j in range(i + 1, n):
            p, q, _ = _normalised(*_quaternion_part(w, i, j))
            rp, rq = _su2_overrelax_element(p, q)
            u = _left_multiply_block(u, rp, rq, i, j)
            if n > 2:
                w = _left_multiply_block(w, rp, rq, i, j)
    return _reunitarize(u, group)


# ---- sweeps ------------------------------------------------------------------------------------------

def _check_even(lattice: Lattice, who: str) -> None:
    if lattice.dim < 2 or any(size % 2 for size in lattice.shape):
        raise ValueError(
            f"{who} updates links on a checkerboard and needs D >= 2 and an even extent in every direction; "
            f"got a lattice of shape {lattice.shape}. Use even sizes L_mu, e.g. Lattice(shape=(8, 8))."
        )


def _parity_indices(lattice: Lattice, device: torch.device) -> tuple[Tensor, Tensor]:
    """Flat site indices of the even and of the odd sites (sum of coordinates even / odd), ``[V / 2]`` each."""
    coords = torch.meshgrid(*[torch.arange(s, device=device) for s in lattice.shape], indexing="ij")
    parity = (sum(coords) % 2).reshape(-1)
    order = torch.argsort(parity, stable=True)  # the V/2 even sites first: no host synchronisation
    half = lattice.volume // 2
    return order[:half], order[half:]


def _sweep(U: LinkField, update: Callable[[Tensor, Tensor], Tensor]) -> LinkField:
    """Update every link once: per direction, the even then the odd sites, each half at once."""
    lattice = U.lattice
    u = U.data
    batch, n = u.shape[0], U.group.n
    halves = _parity_indices(lattice, u.device)
    for mu in lattice.directions:
        for sites in halves:
            a = staples(u, mu).reshape(batch, -1, n, n).index_select(1, sites)
            u_mu = u[:, mu].reshape(batch, -1, n, n)
            new = update(u_mu.index_select(1, sites), a)
            u_mu = u_mu.index_copy(1, sites, new).reshape(u[:, mu].shape)
            u = torch.cat([u[:, :mu], u_mu[:, None], u[:, mu + 1:]], dim=1)
    return U.with_data(u)


def _check_links(action: WilsonAction, U: LinkField, who: str) -> None:
    if U.group != action.group:
        raise ValueError(
            f"{who} with WilsonAction(group={action.group}) got links of {U.group}; build the kernel with "
            f"WilsonAction(beta={action.beta}, group={U.group})."
        )
    _check_even(U.lattice, who)


def heatbath_sweep(U: LinkField, action: WilsonAction, *, generator: torch.Generator) -> LinkField:
    """One checkerboard heatbath sweep over all links (no overrelaxation)."""
    _check_links(action, U, "heatbath")
    return _sweep(U, lambda u, a: heatbath_links(u, a, action.beta, action.group, generator=generator))


def overrelaxation_sweep(U: LinkField, action: WilsonAction) -> LinkField:
    """One checkerboard overrelaxation sweep over all links (deterministic; the action is unchanged)."""
    _check_links(action, U, "overrelaxation")
    return _sweep(U, lambda u, a: overrelax_links(u, a, action.group))


def _check_n_overrelax(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"Heatbath n_overrelax must be an int >= 0 (overrelaxation sweeps per heatbath sweep); got {value!r}")


_check_action = requires(WilsonAction, "e.g. WilsonAction(beta=2.0, group=SU(2))")


# ---- kernels -----------------------------------------------------------------------------------------

@typing.final
@attrs.frozen
class Heatbath(AbstractKernel[LinkField]):
    r"""Heatbath plus overrelaxation for the Wilson action: one step is one checkerboard heatbath sweep
    over every link followed by ``n_overrelax`` overrelaxation sweeps.

    U(1): exact von Mises heatbath. SU(2): Kennedy-Pendleton / Creutz heatbath. SU(N): Cabibbo-Marinari
    over the N(N-1)/2 SU(2) subgroups. Rejection-free: the acceptance is reported as ones. Needs even
    lattice extents (checkerboard). See the module docstring for the formulas.

    >>> from lgdiff import SU, Lattice, LinkField, WilsonAction
    >>> g = torch.Generator().manual_seed(0)
    >>> U = LinkField.identity(SU(2), Lattice(shape=(4, 4)), batch=3)
    >>> U, acc = Heatbath(WilsonAction(beta=2.0, group=SU(2))).step(U, generator=g)
    >>> acc.tolist()
    [1.0, 1.0, 1.0]
    """

    action: WilsonAction = attrs.field(validator=_check_action)
    n_overrelax: int = attrs.field(default=1, validator=_check_n_overrelax)

    @property
    def name(self) -> str:
        return "heatbath"

    def settings(self) -> dict[str, float | int | str]:
        return {"beta": self.action.beta, "group": str(self.action.group), "n_overrelax": self.n_overrelax}

    def step(self, state: LinkField, *, generator: torch.Generator) -> tuple[LinkField, Tensor]:
        U = heatbath_sweep(state, self.action, generator=generator)
        for _ in range(self.n_overrelax):
            U = overrelaxation_sweep(U, self.action)
        return U, torch.ones(U.batch, dtype=U.data.real.dtype, device=U.data.device)


@typing.final
@attrs.frozen
class Overrelaxation(AbstractKernel[LinkField]):
    r"""Overrelaxation alone: one checkerboard sweep of ``U -> (V^dagger)^2 U`` per SU(2) subgroup
    (``theta -> -theta - 2 phi_A`` for U(1)). Deterministic and action-preserving, hence not ergodic:
    combine it with a heatbath (``Heatbath(action, n_overrelax=...)``) for sampling."""

    action: WilsonAction = attrs.field(validator=_check_action)

    @property
    def name(self) -> str:
        return "overrelaxation"

    def settings(self) -> dict[str, float | int | str]:
        return {"beta": self.action.beta, "group": str(self.action.group)}

    def step(self, state: LinkField, *, generator: torch.Generator) -> tuple[LinkField, Tensor]:
        U = overrelaxation_sweep(state, self.action)
        return U, torch.ones(U.batch, dtype=U.data.real.dtype, device=U.data.device)
