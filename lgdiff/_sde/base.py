"""Forward diffusion processes ``dx = f(x, t) dt + g(t) dW`` as objects (PHYSICS.md, Diffusion models)."""

import abc
import math

import torch
from torch import Tensor


def expand_like(t: Tensor, x: Tensor) -> Tensor:
    """Append exactly ``x.ndim - t.ndim`` singleton axes to ``t`` (per-configuration scalars over fields of any D)."""
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


class AbstractSDE(abc.ABC):
    r"""A linear forward SDE ``dx = -h(t) x dt + g(t) dW`` on ``t in [0, T]`` whose marginals are
    Gaussian: ``x_t = a(t) x_0 + s(t) eps`` (the perturbation kernel)."""

    @property
    @abc.abstractmethod
    def T(self) -> float:
        """Final time."""

    @property
    @abc.abstractmethod
    def name(self) -> str: ...

    @abc.abstractmethod
    def settings(self) -> dict[str, float | int | str]: ...

    @abc.abstractmethod
    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """f(x, t), shaped like x (t is ``[B]``)."""

    @abc.abstractmethod
    def diffusion(self, t: Tensor) -> Tensor:
        """g(t), ``[B]``."""

    @abc.abstractmethod
    def mean_coeff(self, t: Tensor) -> Tensor:
        """a(t) in ``x_t = a(t) x_0 + s(t) eps``, ``[B]``."""

    @abc.abstractmethod
    def std(self, t: Tensor) -> Tensor:
        """s(t), ``[B]``."""

    @abc.abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the Gaussian prior at t = T (per component)."""

    def perturb(self, x0: Tensor, t: Tensor, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Sample ``x_t`` from the kernel. Returns ``(x_t, eps)``."""
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        return expand_like(self.mean_coeff(t), x0) * x0 + expand_like(self.std(t), x0) * eps, eps

    def prior_sample(self, shape: tuple[int, ...], *, generator: torch.Generator, dtype: torch.dtype = torch.float64,
                     device: torch.device | str | None = None) -> Tensor:
        return self.prior_std() * torch.randn(shape, generator=generator, dtype=dtype, device=device)

    def prior_logp(self, x: Tensor) -> Tensor:
        """log N(x; 0, prior_std^2) summed over everything but the batch axis, ``[B]``."""
        s2 = self.prior_std() ** 2
        flat = x.reshape(x.shape[0], -1)
        return -0.5 * (flat * flat).sum(1) / s2 - 0.5 * flat.shape[1] * math.log(2 * math.pi * s2)

    def time_grid(self, steps: int, *, like: Tensor, t_min: float = 0.0) -> Tensor:
        """``steps + 1`` times from T down to ``t_min``, on the data's device and real dtype."""
        return torch.linspace(self.T, t_min, steps + 1, dtype=like.real.dtype, device=like.device)
