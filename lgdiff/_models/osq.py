r"""The residual drift network of optimal stochastic quantisation (`lgdiff._samplers.osq`), physics-informed:

    ``v_theta(phi, t) = a_theta(t) grad S(phi) + b_theta(t) phi + body_theta(phi, t)``

``a`` and ``b`` are two numbers per time from a small time-embedding MLP (zero at initialisation), ``body`` is the
periodic NCSN++ without an SDE (``D >= 1``) or the one-site :class:`lgdiff._models.mlp.SiteMLP` (``D = 0``).
Why the linear head: the drift that turns the controlled Langevin path into the annealed one (the backward
reference of the exact objective) is ``(1 - beta(t)) (grad S - phi / sigma_0^2)`` for ``g^2 = 2``, linear in the
force and the field with time-dependent coefficients, which a network on ``phi`` alone learns slowly (measured on
the one-site cosine model, 1200 Adam steps: an MLP of ``(phi, t)`` did not lower ``KL(Q || Gamma) = 1.13`` at all; the
linear head alone reached 0.19 in 200 steps). The body learns the rest (the Doob correction of finite time, and
with the free-field prior of `lgdiff._samplers.osq.OSQProcess.hartree` the prior's nearest-neighbour part of the
annealed drift, ``-(1 - beta) c (-Laplacian phi)``, which a convolution represents exactly).
Like ``grad S``, both terms are equivariant under the lattice's translations, and odd under ``phi -> -phi`` for a
Z2-symmetric action (the body too with ``z2_odd``).
"""

import typing
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .embedding import TimeEmbedding
from .mlp import MLPConfig, SiteMLP
from .ncsnpp import NCSNpp, NCSNppConfig


def _per_config(c: Tensor, x: Tensor) -> Tensor:
    return c.reshape(-1, *([1] * (x.ndim - 1)))


@typing.final
class OSQDrift(nn.Module):
    r"""``v(x, t, force) = a(t) force + b(t) x + body(x, t)`` (module docstring) for fields ``x [B, *L]`` (``[B]``
    for one site); ``force`` is ``grad S(x)``.

    >>> net = OSQDrift(MLPConfig(width=8), generator=torch.Generator().manual_seed(0))
    >>> x = torch.tensor([0.5, -1.0], dtype=torch.float64)
    >>> net(x, torch.zeros(2, dtype=torch.float64), x).shape
    torch.Size([2])
    """

    def __init__(self, arch: NCSNppConfig | MLPConfig, *, generator: torch.Generator,
                 dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.arch = arch
        self.body: nn.Module = (SiteMLP(arch, generator=generator, dtype=dtype) if isinstance(arch, MLPConfig)
                                else NCSNpp(arch, None, generator=generator, dtype=dtype))
        head = torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
        self.head = TimeEmbedding(16, 32, 2, kind="fourier", scale=1.0, generator=head, dtype=dtype)
        with torch.no_grad():
            self.head.w2.zero_()  # a = b = 0 at initialisation
        self.to(device)

    def forward(self, x: Tensor, t: Tensor, force: Tensor) -> Tensor:
        ab = self.head(t)
        return _per_config(ab[:, 0], x) * force + _per_config(ab[:, 1], x) * x + self.body(x, t)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def network_drift(net: nn.Module, dtype: torch.dtype) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """``v(x, t, force)`` of a drift network in precision ``dtype``, evaluated on states of any precision (returned
    in theirs): the `lgdiff._samplers.osq.Drift` of a network."""

    def drift(x: Tensor, t: Tensor, force: Tensor) -> Tensor:
        return net(x.to(dtype), t.to(dtype), force.to(dtype)).to(x.dtype)

    return drift


__all__ = ["OSQDrift", "network_drift"]
