r"""A prior at ``t = T`` that knows the magnetisation: the start of a path-space proposal for a scalar field near
criticality.

A path-space independence proposal (:class:`lgdiff.PathIMH`) starts from the process's prior ``N(0, s_T^2)`` at
``t = T``, and its log weight carries ``log p_T(x_T) - log prior(x_T)`` (``p_T``: the target convolved with the
forward noise) whatever the score. For every mode but one this is harmless: ``s_T^2`` (97 for the VE SDE with
``sigma = 25``) dwarfs the field's fluctuations. The exception is the zero mode ``zeta = sum_x phi_x / sqrt(V)`` of a
field near or beyond a critical point: its distribution is two peaks at ``+-sqrt(V) <|M|>``, which grow with the volume
(``+-20`` on 32^2 at kappa = 0.27, 2 ``s_T`` apart). The mismatch alone then gives ``var(log w) ~ 1.3`` at L = 32
(``var log cosh(c z)`` with ``c = sqrt(V) <|M|> / s_T = 2.0``), which no training removes.

:class:`MagnetisedPrior` is the forward marginal at ``T`` of a Gaussian mixture that has the right zero mode,

    ``x_0 = +-m + eta``,  ``eta ~ N(0, C)``,  ``x_T = c_T x_0 + s_T xi``,

with ``C`` diagonal in momentum space: ``C(0) = V zero_var`` (``zero_var``: the variance of the site mean ``M`` about
``+-m``) and ``C(p) = 1 / (1 / std^2 + kinetic p_hat^2)`` otherwise (a free field, e.g. the Hartree Gaussian). The
path weight stays exact for any prior that is sampled and weighed consistently, so ``m`` and ``zero_var`` may come
from anywhere fixed before the chain starts: :meth:`lgdiff.PathIMH.with_fitted_prior` estimates them from the
model's own importance-weighted proposals.
"""

import math
import typing

import attrs
import torch
from torch import Tensor

from .._geometry.lattice import Lattice
from .._provenance import AbstractRecorded
from .base import AbstractProcess, AbstractSDE
from .precondition import _non_negative, _positive


@typing.final
@attrs.frozen(kw_only=True)
class MagnetisedPrior(AbstractRecorded):
    """``x_T = scale_mean (+-shift + eta) + scale_noise xi`` (module docstring) on real fields ``[B, *L]``.

    >>> prior = MagnetisedPrior(scale_noise=1.0, shift=0.5, zero_var=0.01, std=1.0, kinetic=0.5)
    >>> x = prior.sample_like(torch.zeros(3, 4, 4, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    >>> tuple(prior.logp(x).shape)
    (3,)
    """

    scale_noise: float = attrs.field(validator=_positive)
    scale_mean: float = attrs.field(default=1.0, validator=_non_negative)
    shift: float = attrs.field(validator=_non_negative)
    zero_var: float = attrs.field(validator=_non_negative)
    std: float = attrs.field(validator=_positive)
    kinetic: float = attrs.field(validator=_non_negative)
    fit_proposals: int = 0
    """Proposals the ``shift`` and ``zero_var`` were estimated from (0: given), recorded with the run."""
    fit_ess: float = 0.0
    """Their effective sample size (self-normalised importance weights)."""

    @classmethod
    def at_T(cls, process: AbstractProcess, *, shift: float, zero_var: float, std: float,
             kinetic: float, **fit: float | int) -> "MagnetisedPrior":
        """The prior of ``process`` at its final time for the data Gaussian ``(shift, zero_var, std, kinetic)``."""
        if not isinstance(process, AbstractSDE):
            raise TypeError(f"a MagnetisedPrior is the prior of a real-field SDE (VESDE, VPSDE); got "
                            f"{type(process).__name__}")
        t = torch.tensor(process.T, dtype=torch.float64)
        return cls(scale_noise=float(process.std(t)), scale_mean=float(process.mean_coeff(t)), shift=shift,
                   zero_var=zero_var, std=std, kinetic=kinetic, **fit)

    @property
    def name(self) -> str:
        return "magnetised"

    def settings(self) -> dict[str, float | int | str]:
        return {"prior": self.name, "prior_shift": self.shift, "prior_zero_var": self.zero_var,
                "prior_std": self.std, "prior_kinetic": self.kinetic, "prior_fit_proposals": self.fit_proposals,
                "prior_fit_ess": self.fit_ess}

    def variances(self, shape: tuple[int, ...], *, device: torch.device | str | None = None) -> Tensor:
        """``Sigma(p) = scale_mean^2 C(p) + scale_noise^2`` on the momenta of a lattice of ``shape`` (float64)."""
        phat2 = Lattice(shape=shape).momentum_squared(device=device).to(torch.float64)
        c = 1.0 / (self.std**-2 + self.kinetic * phat2)
        c.view(-1)[0] = math.prod(shape) * self.zero_var
        return self.scale_mean**2 * c + self.scale_noise**2

    def sample_like(self, x: Tensor, *, generator: torch.Generator) -> Tensor:
        """A fresh draw with the shape, dtype and device of ``x`` (``[B, *L]``)."""
        shape, dims = tuple(x.shape[1:]), tuple(range(1, x.ndim))
        z = torch.randn(x.shape, generator=generator, dtype=torch.float64, device=x.device)
        eta = torch.fft.ifftn(torch.fft.fftn(z, dim=dims) * self.variances(shape, device=x.device).sqrt(), dim=dims)
        sign = torch.rand(x.shape[0], generator=generator, dtype=torch.float64, device=x.device) < 0.5
        mean = self.scale_mean * self.shift * (1.0 - 2.0 * sign.to(torch.float64))
        return (eta.real + mean.reshape(-1, *[1] * len(shape))).to(x.dtype)

    def logp(self, x: Tensor) -> Tensor:
        """The log density ``[B]`` (Lebesgue, float64)."""
        x = x.to(torch.float64)
        shape, dims = tuple(x.shape[1:]), tuple(range(1, x.ndim))
        var = self.variances(shape, device=x.device)
        xh = torch.fft.fftn(x, dim=dims, norm="ortho")
        quad = (xh.abs() ** 2 / var).reshape(x.shape[0], -1)
        zeta, var0 = xh.reshape(x.shape[0], -1)[:, 0].real, var.reshape(-1)[0]
        a = self.scale_mean * self.shift * math.sqrt(math.prod(shape))
        peaks = torch.logaddexp(-0.5 * (zeta - a) ** 2 / var0, -0.5 * (zeta + a) ** 2 / var0) - math.log(2.0)
        return (peaks - 0.5 * quad[:, 1:].sum(1) - 0.5 * var.log().sum()
                - 0.5 * math.prod(shape) * math.log(2 * math.pi))


__all__ = ["MagnetisedPrior"]
