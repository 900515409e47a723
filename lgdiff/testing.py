"""Symmetry and consistency assertions for lattice code, shipped with the library (like e3nn's).

Use them in your own test suites::

    from lgdiff.testing import assert_gauge_invariant
    assert_gauge_invariant(lambda U: action(U), U, omega)

Each raises ``AssertionError`` with the worst violation and where it occurred.
"""

from collections.abc import Callable

import torch
from torch import Tensor

from ._actions.base import AbstractGaugeAction, AbstractScalarAction
from ._fields.links import AlgebraField, GaugeTransform, LinkField
from ._fields.scalar import Field
from ._geometry.lattice import shift

TOLERANCE = {
    torch.float32: 1e-4,
    torch.float64: 1e-10,
    torch.complex64: 1e-4,
    torch.complex128: 1e-10,
}


def _tol(dtype: torch.dtype, atol: float | None) -> float:
    return TOLERANCE[dtype] if atol is None else atol


def _where(err: Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in torch.unravel_index(err.argmax(), err.shape))


def assert_group_member(U: LinkField, *, atol: float | None = None) -> None:
    """Every link is in the group (unitarity, and det = 1 for SU(N)) to ``atol``."""
    __tracebackhide__ = True
    atol = _tol(U.data.dtype, atol)
    err = U.group.membership_error(U.data)
    if not bool(err.amax() <= atol):
        raise AssertionError(
            f"links not in {U.group}: max distance {float(err.amax()):.2e} > {atol:.0e} at [batch, mu, *x] = {_where(err)}"
        )


def assert_links_close(U: LinkField, V: LinkField, *, atol: float | None = None) -> None:
    """``U`` and ``V`` agree by the group distance ``|log(U^dagger V)|`` per link (not element-wise)."""
    __tracebackhide__ = True
    atol = _tol(U.data.dtype, atol)
    x = U.group.log(U.data.mH @ V.data)
    err = x.abs().amax(dim=(-2, -1))
    if not bool(err.amax() <= atol):
        raise AssertionError(f"links differ: max |log(U^dag V)| = {float(err.amax()):.2e} > {atol:.0e} at {_where(err)}")


def assert_gauge_invariant(observable: Callable[[LinkField], Tensor], U: LinkField, omega: GaugeTransform,
                           *, atol: float | None = None, rtol: float | None = None) -> None:
    """``O(Omega . U) = O(U)`` to ``atol + rtol |O(U)|`` (rtol defaults to atol's value)."""
    __tracebackhide__ = True
    atol = _tol(U.data.dtype, atol)
    rtol = atol if rtol is None else rtol
    before = observable(U).detach()
    after = observable(U.gauge_transform(omega)).detach()
    err = (after - before).abs() - rtol * before.abs()
    if not bool(err.amax() <= atol):
        raise AssertionError(
            f"gauge invariance violated on {U!r}: max |O(Omega.U) - O(U)| - rtol|O| = {float(err.amax()):.2e} > "
            f"{atol:.0e} at {_where(err)}"
        )


def assert_gauge_covariant(fn: Callable[[LinkField], AlgebraField | Tensor], U: LinkField, omega: GaugeTransform,
                           *, atol: float | None = None) -> None:
    """Adjoint covariance of per-link outputs: ``s(Omega . U)_mu(x) = Omega(x) s(U)_mu(x) Omega(x)^dagger``.

    ``fn`` maps links to ``[B, D, *L, N, N]`` (an ``AlgebraField`` or a tensor): scores, forces, staple products.
    Bind extra arguments such as the diffusion time with a lambda.
    """
    __tracebackhide__ = True
    atol = _tol(U.data.dtype, atol)

    def raw(out: AlgebraField | Tensor) -> Tensor:
        return out.data if isinstance(out, AlgebraField) else out

    w = omega.data[:, None]
    lhs = raw(fn(U.gauge_transform(omega))).detach()
    rhs = w @ raw(fn(U)).detach() @ w.mH
    err = (lhs - rhs).abs().amax(dim=(-2, -1))
    scale = rhs.abs().amax().clamp_min(1.0)
    if not bool(err.amax() <= atol * scale):
        raise AssertionError(
            f"gauge covariance violated on {U!r}: max |s(Omega.U) - Omega s(U) Omega^dag| = {float(err.amax()):.2e} "
            f"> {atol:.0e} x {float(scale):.2g} at [batch, mu, *x] = {_where(err)}"
        )


def assert_translation_equivariant(fn: Callable[[Field], Tensor] | Callable[[LinkField], Tensor],
                                   field: Field | LinkField, shifts: tuple[int, ...],
                                   *, atol: float | None = None) -> None:
    """A site-local map commutes with lattice translations: ``f(T_a phi) = T_a f(phi)``.

    ``fn`` returns ``[B, *L, ...]`` for scalar fields and ``[B, D, *L, ...]`` or ``[B, *L]`` for links;
    ``shifts`` gives the translation per direction (``T_a phi(x) = phi(x + a)``).
    """
    __tracebackhide__ = True
    dim = field.lattice.dim
    if len(shifts) != dim:
        raise ValueError(f"need one shift per direction ({dim}); got {shifts}")
    atol = _tol(field.data.dtype, atol)

    def translate(t: Tensor, site_axis: int) -> Tensor:
        for mu, s in enumerate(shifts):
            if s:
                t = shift(t, mu, site_axis=site_axis, steps=s)
        return t

    if isinstance(field, LinkField):
        moved = field.with_data(translate(field.data, 2))
        out_moved, out = fn(moved).detach(), fn(field).detach()
        site_axis = 2 if out.ndim >= 2 + dim and tuple(out.shape[2:2 + dim]) == field.lattice.shape and out.shape[1] == dim else 1
    else:
        moved = field.with_data(translate(field.data, 1))
        out_moved, out = fn(moved).detach(), fn(field).detach()
        site_axis = 1
    err = (out_moved - translate(out, site_axis)).abs()
    scale = out.abs().amax().clamp_min(1.0)
    if not bool(err.amax() <= atol * scale):
        raise AssertionError(
            f"translation equivariance violated for shift {shifts}: max error {float(err.amax()):.2e} > "
            f"{atol:.0e} x {float(scale):.2g} at {_where(err)}"
        )


def assert_force_is_gradient(action: AbstractScalarAction | AbstractGaugeAction, field: Field | LinkField, *,
                             generator: torch.Generator, rtol: float | None = None) -> None:
    """The analytic force equals the autodiff directional derivative along a random direction.

    Scalars: ``dS(phi + e v)/de = sum_x v(x) dS/dphi(x)``. Links: ``dS(exp(e X) U)/de =
    sum_{x,mu,a} X^a F^a`` for a random algebra direction X on every link (so every generator
    is exercised), with ``exp`` by ``torch.linalg.matrix_exp``.
    """
    __tracebackhide__ = True
    real = field.data.real.dtype
    rtol = (1e-8 if real == torch.float64 else 2e-3) if rtol is None else rtol
    batch = field.batch
    eps = torch.zeros((batch,), dtype=real, device=field.data.device, requires_grad=True)
    if isinstance(field, LinkField):
        if not isinstance(action, AbstractGaugeAction):
            raise TypeError(f"a gauge action is needed for links; got {type(action).__name__}")
        x = AlgebraField.randn(field.group, field.lattice, batch=batch, generator=generator,
                               dtype=field.data.dtype, device=field.data.device)
        e = eps.reshape(batch, *([1] * (x.data.ndim - 1)))
        moved = field.with_data(torch.linalg.matrix_exp(e * x.data) @ field.data)
        predicted = field.group.lie_inner(action.force(field).data, x.data).reshape(batch, -1).sum(1)
    else:
        if not isinstance(action, AbstractScalarAction):
            raise TypeError(f"a scalar action is needed for a scalar field; got {type(action).__name__}")
        v = torch.randn(field.data.shape, generator=generator, dtype=real, device=field.data.device)
        moved = field.with_data(field.data + eps.reshape(batch, *([1] * (v.ndim - 1))) * v)
        predicted = (action.gradient(field).data * v).reshape(batch, -1).sum(1)
    (exact,) = torch.autograd.grad(action(moved).sum(), eps)
    rel = (exact - predicted.detach()).abs() / exact.abs().clamp_min(torch.finfo(real).tiny)
    worst = int(rel.argmax())
    if not bool(rel.amax() <= rtol):
        raise AssertionError(
            f"force of {type(action).__name__} disagrees with autodiff in configuration {worst}: "
            f"dS/de = {float(exact[worst]):.12g}, <F, X> = {float(predicted[worst]):.12g}, "
            f"relative error {float(rel[worst]):.2e} > {rtol:.0e}"
        )
