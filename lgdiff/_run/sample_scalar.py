"""``lgdiff sample --theory phi4``: generate with a trained scalar score network, raw or exactness-corrected,
and write an ensemble file that ``lgdiff measure`` reads."""

import typing
from collections.abc import Callable
from pathlib import Path

import attrs
import torch

from .._fields.scalar import Field
from .._io.ensemble import Ensemble
from .._io.files import file_sha256
from .._samplers.base import AbstractKernel
from .._samplers.independence import MarginalIMH, PathIMH, RawDraws
from .._samplers.maala import denoise, maala_kernel
from .._models.files import load_score
from .._models.ncsnpp import NCSNpp
from .._sde.base import AbstractSDE
from .sample_gauge import _blocks_or_none, _check_sample
from .split import run_ensemble
from .theory import Theory

METHODS = ("sde", "ode", "imh", "path", "maala")


@typing.final
@attrs.frozen(kw_only=True)
class ScalarSampleConfig:
    """A sampling run with a trained NCSN++ model.

    ``method``: ``sde`` (reverse SDE, raw), ``ode`` (probability flow, raw), ``imh`` (exact route 1: PF-ODE
    proposals with exact log-determinants; small volumes), ``path`` (exact route 2: path-space independence
    Metropolis, any volume), ``maala`` (exact route 3). Raw methods record ``n`` batches of ``chains``
    independent samples; exact methods run ``chains`` Markov chains for ``n`` steps each.
    """

    theory: Theory
    model: Path
    method: str = "path"
    n: int = 16
    chains: int = 16
    steps: int = 100
    seed: int = 0
    t_langevin: float = 0.02
    langevin_step: float = 0.05
    therm: int = 0
    blocks: int = 1

    def __attrs_post_init__(self) -> None:
        _check_sample(self.method, METHODS, "for a scalar field", self.chains, self.blocks)
        if self.theory.is_gauge or self.theory.lattice.dim == 0:  # a scalar field on a lattice: not toy (D = 0)
            raise ValueError(f"ScalarSampleConfig is for phi4; got theory {self.theory.name}")
        if min(self.n, self.chains, self.steps) < 1:
            raise ValueError(f"--n, --chains and --steps must be >= 1; got {self.n}, {self.chains}, {self.steps}")

    def run(self, out: str | Path, *, device: torch.device | str = "cpu", command: str | None = None,
            progress: Callable[[int], None] | None = None, flush_every: int | None = None) -> Ensemble | None:
        """Sample into ``out``, or continue it after a kill, bit for bit (:func:`lgdiff.generate_ensemble`).

        Raw methods record ``n`` batches of ``chains`` independent samples; exact methods run ``chains`` Markov
        chains for ``n`` steps each (MAALA after ``therm`` steps)."""
        model = load_score(self.model, device=device)
        net, meta, score, sde = model.network, model.metadata, model.score, model.process
        if not isinstance(net, NCSNpp) or not isinstance(sde, AbstractSDE):
            raise ValueError(f"the model {self.model} is a gauge L-CNN; a scalar theory needs an NCSN++ model")
        if net.config.dim != self.theory.lattice.dim:
            raise ValueError(f"the model {self.model} is for D = {net.config.dim}; the lattice has D = "
                             f"{self.theory.lattice.dim}")
        dtype = model.dtype
        lattice, action = self.theory.lattice, self.theory.action()
        settings: dict[str, float | int | str] = {"model": str(self.model), "model_sha256": file_sha256(self.model),
                                                  "model_step": int(meta.get("step", 0))}
        kernel: AbstractKernel
        start: Callable[[torch.Generator], Field] | None = None
        if self.method in ("sde", "ode"):
            kernel = RawDraws(score=score, process=sde, steps=self.steps, method=self.method,
                              t_min=0.0 if self.method == "sde" else 1e-3)
        elif self.method == "path":
            kernel = PathIMH(score=score, process=sde, action=action, steps=self.steps, t_min=0.0)
        elif self.method == "imh":
            kernel = MarginalIMH(score=score, process=sde, action=action, steps=self.steps)
        else:
            kernel = maala_kernel(action, score, t_langevin=self.t_langevin, step_size=self.langevin_step)

            def start(generator: torch.Generator) -> Field:
                return denoise(score, sde, zeros(generator), steps=self.steps, generator=generator,
                               t_min=self.t_langevin)

        def zeros(generator: torch.Generator) -> Field:
            return Field.zeros(lattice, batch=self.chains // self.blocks, dtype=dtype, device=device)

        return run_ensemble(out, kernel, start or zeros, blocks=_blocks_or_none(self.blocks), theory=self.theory.name,
                            params=self.theory.params, seed=self.seed, n=self.n,
                            therm=self.therm if self.method == "maala" else 0, device=device,
                            flush_every=flush_every or max(1, self.n // 4), command=command, progress=progress,
                            settings=settings)
