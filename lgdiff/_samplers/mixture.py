r"""Global diffusion proposals mixed with local moves, exactly.

A path-space independence sampler (:class:`lgdiff.PathIMH`) proposes whole configurations at once, but its chains
stick wherever the model is poor; local kernels (FA-HMC, Metropolis, heatbath) move every configuration a little at a
low cost but decorrelate long-distance modes slowly. :class:`GlobalLocal` alternates them so each does what it is good
at. The obstacle is the weight: a path-space sampler weighs a configuration *together with its generating path*, and a
local move leaves the configuration with no path. So each global step first draws a fresh auxiliary path for the
current configuration from the auxiliary (forward) kernels of the path-space extended target
(:meth:`PathIMH.reweigh`), then proposes.

**Exactness.** On the extended space of (configuration ``x_0``, path ``omega``) with target
``Gamma(x_0, omega) = exp(-S(x_0)) / Z prod_k F_k(omega_k | x_0, omega_{<k})`` (its ``x_0`` marginal is exactly
``exp(-S) / Z``, :mod:`lgdiff._samplers.independence`) one step is the composition of

1. ``local_steps`` updates of the local kernel on ``x_0`` (they leave ``exp(-S)`` invariant, and the path is
   discarded: an update of ``x_0`` under the marginal);
2. a Gibbs update of the path: ``omega ~ prod_k F_k(. | x_0)``, the conditional of ``Gamma`` given ``x_0``;
3. one independence Metropolis step on ``(x_0, omega)`` with the model's path proposal and the weight ``w =
   Gamma / Q``.

Each leaves ``Gamma`` invariant, whatever the model. The cost of a step is ``local_steps`` local updates plus two
passes of the model over the path (one for the weight, one for the proposal). ``local_steps = 0`` is path-space
independence Metropolis with the current weight redrawn at every step (exact too; the chain forgets a lucky path).
"""

import typing

import attrs
import torch
from torch import Tensor

from .._fields.links import LinkField
from .._fields.scalar import Field
from .accept import metropolis, select
from .base import AbstractKernel, requires
from .independence import PathIMH


@typing.final
@attrs.frozen(kw_only=True)
class GlobalLocal(AbstractKernel):
    """``local_steps`` updates of ``local``, then one global path-space independence proposal of ``global_``
    (module docstring). The acceptance it reports is the global proposals'.

    >>> from lgdiff import HMC, VESDE, Field, Lattice, Phi4Action
    >>> action = Phi4Action(kappa=0.2, lam=0.02)
    >>> zero = lambda x, t: torch.zeros_like(x)
    >>> kernel = GlobalLocal(global_=PathIMH(score=zero, process=VESDE(), action=action, steps=4),
    ...                      local=HMC(action=action, step_size=0.2, n_steps=5), local_steps=2)
    >>> g = torch.Generator().manual_seed(0)
    >>> phi = Field.randn(Lattice(shape=(4, 4)), batch=3, generator=g, dtype=torch.float64)
    >>> phi, acc = kernel.step(phi, generator=g)
    >>> tuple(acc.shape)
    (3,)
    """

    global_: PathIMH = attrs.field(validator=requires(PathIMH, "the global proposals re-weigh the current "
                                                                 "configuration with a fresh path"))
    local: AbstractKernel = attrs.field(validator=requires(AbstractKernel, "the local updates"))
    local_steps: int = 1

    def __attrs_post_init__(self) -> None:
        if isinstance(self.local_steps, bool) or not isinstance(self.local_steps, int) or self.local_steps < 0:
            raise ValueError(f"GlobalLocal.local_steps must be an integer >= 0; got {self.local_steps!r}")
        if type(self.local).init is not AbstractKernel.init:
            raise ValueError(f"GlobalLocal's local kernel must carry nothing beyond the configuration; "
                             f"{self.local.name} does (an independence sampler cannot be the local move)")

    @property
    def name(self) -> str:
        return f"{self.global_.name}+{self.local.name}"

    def settings(self) -> dict[str, float | int | str]:
        out: dict[str, float | int | str] = {"local_steps": self.local_steps}
        out.update({f"global.{k}": v for k, v in self.global_.settings().items()})
        out.update({f"local.{k}": v for k, v in self.local.settings().items()})
        return out

    def step(self, state: Field | LinkField, *, generator: torch.Generator) -> tuple[Field | LinkField, Tensor]:
        for _ in range(self.local_steps):
            state, _ = self.local.step(state, generator=generator)
        log_w = self.global_.reweigh(state, generator=generator)
        new, log_w_new = self.global_.propose(state, generator=generator)
        accepted, _ = metropolis(log_w_new - log_w, generator)
        return state.with_data(select(accepted, new.data, state.data)), accepted.to(torch.float64)
