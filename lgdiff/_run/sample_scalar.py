"""``lgdiff sample --theory phi4``: generate with a trained scalar score network, raw or exactness-corrected,
and write an ensemble file that ``lgdiff measure`` reads."""

import typing
from collections.abc import Callable
from pathlib import Path

import attrs
import torch
from torch import Tensor

from .._fields.scalar import Field
from .._io.ensemble import Ensemble, EnsembleError, EnsembleMetadata, EnsembleWriter
from .._samplers.diffusion import MCResult, maala, marginal_imh, path_imh, probability_flow, reverse_sde
from .._train.dsm import load_ncsnpp
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

    def __attrs_post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {', '.join(METHODS)}")
        if self.theory.name != "phi4":
            raise ValueError(f"ScalarSampleConfig is for phi4; got theory {self.theory.name}")
        if min(self.n, self.chains, self.steps) < 1:
            raise ValueError(f"--n, --chains and --steps must be >= 1; got {self.n}, {self.chains}, {self.steps}")

    def settings(self, model_meta: dict[str, typing.Any]) -> dict[str, float | int | str]:
        out: dict[str, float | int | str] = {"steps": self.steps, "model": str(self.model),
                                             "model_step": int(model_meta.get("step", 0))}
        if self.method == "maala":
            out |= {"t_langevin": self.t_langevin, "langevin_step": self.langevin_step}
        return out

    def run(self, out: str | Path, *, device: torch.device | str = "cpu", command: str | None = None,
            progress: Callable[[int], None] | None = None) -> Ensemble:
        out = Path(out)
        if out.exists():
            raise EnsembleError(f"{out} exists; sampling runs do not append: choose another --out or delete it")
        net, meta = load_ncsnpp(self.model, device=device)
        if net.config.dim != self.theory.lattice.dim:
            raise ValueError(f"the model {self.model} is for D = {net.config.dim}; the lattice has D = "
                             f"{self.theory.lattice.dim}")
        dtype = next(net.parameters()).dtype
        lattice, sde, action = self.theory.lattice, net.sde, self.theory.action()
        generator = torch.Generator(device=device).manual_seed(self.seed)

        @torch.no_grad()
        def score(x: Tensor, t: Tensor) -> Tensor:
            return net(x, t)

        def grad_score(x: Tensor, t: Tensor) -> Tensor:  # forward-mode AD for exact log-determinants
            return net(x, t)

        samples: list[Tensor] = []
        acceptance: list[Tensor] = []
        shape = (self.chains, *lattice.shape)
        if self.method in ("sde", "ode"):
            for _ in range(self.n):
                x_T = sde.prior_sample(shape, generator=generator, dtype=dtype, device=device)
                if self.method == "sde":
                    x0 = reverse_sde(score, sde, x_T, steps=self.steps, generator=generator)
                else:
                    x0 = probability_flow(score, sde, x_T, steps=self.steps, divergence="none")[0]
                samples.append(x0)
                acceptance.append(torch.ones(self.chains, dtype=torch.float64))
                if progress is not None:
                    progress(1)
        else:
            common = dict(chains=self.chains, n=self.n, steps=self.steps, generator=generator, dtype=dtype,
                          device=device)
            res: MCResult
            if self.method == "path":
                res = path_imh(score, sde, action, lattice, **common)
            elif self.method == "imh":
                res = marginal_imh(grad_score, sde, action, lattice, **common)
            else:
                res = maala(score, sde, action, lattice, t_langevin=self.t_langevin, step_size=self.langevin_step,
                            **common)
            samples, acceptance = list(res.samples), list(res.acceptance)
            if progress is not None:
                progress(self.n)
        metadata = EnsembleMetadata(kind="scalar", theory="phi4", group=None, lattice=lattice.shape,
                                    params=self.theory.params, algorithm=f"dm-{self.method}",
                                    settings=self.settings(meta), seed=self.seed, chains=self.chains,
                                    dtype=str(dtype).removeprefix("torch."), command=command)
        with EnsembleWriter.open(out, metadata, flush_every=max(1, len(samples))) as writer:
            for i, (x, a) in enumerate(zip(samples, acceptance)):
                writer.append(Field(x, lattice), i, a.to(torch.float64), generator.get_state())
        return Ensemble.load(out)
