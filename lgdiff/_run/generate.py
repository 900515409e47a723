"""``lgdiff generate``: a classical Markov chain written to an ensemble file, as a validated config object."""

import math
import typing
from collections.abc import Callable
from pathlib import Path

import attrs
import torch

from .._dist import world_size
from .._integrators.schemes import SCHEMES
from .._io.convert import IMPORTED
from .._io.ensemble import Ensemble
from .._samplers.base import AbstractKernel, Composite
from .._samplers.direct import U1Direct
from .._samplers.heatbath import Heatbath
from .._samplers.hmc import HMC, FourierMass, GaugeHMC
from .._samplers.metropolis import Metropolis
from .._samplers.wolff import Wolff
from .split import generate_ensemble, generate_split_ensemble
from .theory import Theory

ALGORITHMS = ("hmc", "fahmc", "metropolis", "wolff", "heatbath", "direct")
_GAUGE_ALGORITHMS = ("hmc", "heatbath", "direct")
"""The algorithms for a theory with a gauge group (`Theory.group`)."""
_SCALAR_ALGORITHMS = ("hmc", "fahmc", "metropolis", "wolff")
"""The algorithms for a scalar theory (no group)."""


def positive_or_unset(instance: object, attribute: attrs.Attribute, value: object) -> None:
    """attrs validator of the run configs: ``None`` (a default chosen later) or a finite number > 0, named as the
    command-line option."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value) or value <= 0):
        raise ValueError(f"--{attribute.name.replace('_', '-')} must be a positive number; got {value!r}")


@typing.final
@attrs.frozen(kw_only=True)
class GenerateConfig:
    """Everything that defines a classical generation run (validated on construction).

    ``n`` records are kept per chain, each holding all ``chains`` configurations, one every ``every``
    updates after ``therm`` thermalisation updates (an update: one HMC trajectory, or one sweep).
    Unset molecular-dynamics settings take defaults that suit the theory (trajectory length 1).

    ``blocks`` K >= 2 splits the chains into K independently seeded blocks of ``chains / K``, which the ranks of a
    ``torchrun`` launch share (`lgdiff._run.split`, docs/distributed.md); K = 1 is the ordinary run with one
    generator seeded with ``seed``.
    """

    theory: Theory
    algorithm: str
    n: int
    chains: int = 1
    therm: int = 100
    every: int = 1
    seed: int = 0
    dtype: str = "float64"
    step_size: float | None = attrs.field(default=None, validator=positive_or_unset)
    n_steps: int | None = attrs.field(default=None, validator=positive_or_unset)
    integrator: str = "omelyan"
    m_eff2: float | None = attrs.field(default=None, validator=positive_or_unset)
    overrelax: int = 1
    blocks: int = 1

    def __attrs_post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algorithm!r}; expected one of {', '.join(ALGORITHMS)}")
        if self.theory.is_gauge and self.algorithm not in _GAUGE_ALGORITHMS:
            raise ValueError(f"--algorithm {self.algorithm} is for scalar phi^4; for {self.theory.name} use hmc or heatbath")
        if self.algorithm == "direct" and (self.theory.name != "u1" or self.theory.lattice.dim != 2):
            raise ValueError(f"--algorithm direct (exact independent draws) exists for 2D U(1) only; got "
                             f"{self.theory.name} in {self.theory.lattice.dim}D: use hmc or heatbath")
        if not self.theory.is_gauge and self.algorithm not in _SCALAR_ALGORITHMS:
            raise ValueError(f"--algorithm {self.algorithm} is for gauge theories; for phi4 use hmc, "
                             f"fahmc, metropolis or wolff")
        if self.algorithm == "wolff" and self.theory.lattice.dim == 0:  # the toy model: no bonds to cluster
            raise ValueError("--algorithm wolff needs the phi4 theory")
        if self.integrator not in SCHEMES:
            raise ValueError(f"unknown integrator {self.integrator!r}; expected one of {', '.join(SCHEMES)}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"--dtype must be float32 or float64; got {self.dtype!r}")
        for name in ("n", "chains", "every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1; got {getattr(self, name)}")
        if self.blocks < 1 or self.chains % self.blocks:
            raise ValueError(f"--chains {self.chains} must be divisible by --blocks {self.blocks} (under torchrun "
                             f"--blocks defaults to the number of processes): every block runs chains/blocks chains "
                             f"with its own seed stream. Choose --chains as a multiple of {max(self.blocks, 1)}")
        if self.therm < 0 or self.overrelax < 0:
            raise ValueError(f"--therm and --overrelax must be >= 0; got {self.therm}, {self.overrelax}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float32 if self.dtype == "float32" else torch.float64

    def kernel(self) -> AbstractKernel:
        """The Markov kernel this configuration asks for, on the theory's action (each kernel checks that it
        takes that action: `Heatbath` a `WilsonAction`, `Wolff` a `Phi4Action`, ...)."""
        action = self.theory.action()
        scheme = SCHEMES[self.integrator]
        n_steps = self.n_steps or 10
        if self.theory.is_gauge:
            if self.algorithm == "heatbath":
                return Heatbath(action=action, n_overrelax=self.overrelax)
            if self.algorithm == "direct":
                return U1Direct(action=action)
            return GaugeHMC(action=action, step_size=self.step_size or 1.0 / n_steps, n_steps=n_steps, scheme=scheme)
        if self.algorithm == "metropolis":
            return Metropolis(action=action, step_size=self.step_size or 1.0)
        kinetic_hmc = HMC(action=action, step_size=self.step_size or 1.0 / n_steps, n_steps=n_steps, scheme=scheme)
        if self.algorithm == "fahmc":
            return attrs.evolve(kinetic_hmc, kinetic=FourierMass(m_eff2=self.m_eff2 or self._default_m_eff2()),
                                step_size=self.step_size or 2.0 / n_steps)
        if self.algorithm == "wolff":
            return Composite((kinetic_hmc, Wolff(action=action)))
        return kinetic_hmc

    def _default_m_eff2(self) -> float:
        # the free lattice mass in continuum normalisation, (1 - 2 lam) / kappa - 2 D, floored: it matches
        # M(k) to the action's quadratic term so that all modes move at similar frequencies
        p = self.theory.params
        m2 = (1 - 2 * p["lam"]) / p["kappa"] - 2 * self.theory.lattice.dim
        return max(m2, 0.1)

    def run(self, out: str | Path, *, device: torch.device | str = "cpu", command: str | None = None,
            progress: Callable[[int], None] | None = None, flush_every: int = 1) -> Ensemble | None:
        """Generate (or resume) the ensemble at ``out``; returns it loaded from the file (``None`` on the ranks
        other than 0 of a multi-process run: rank 0 alone writes). An ensemble imported from NERSC / ILDG
        files is refused: it holds no chain state to continue."""
        if Path(out).is_file() and (algorithm := Ensemble.load(out).metadata.algorithm).startswith(IMPORTED):
            raise ValueError(f"{out} holds configurations imported from files ({algorithm}), not a chain lgdiff "
                             f"generated: there is no generator state (and maybe no beta) to continue from; give "
                             f"another --out")
        kernel = self.kernel()
        dtype = self.torch_dtype

        def initial(generator: torch.Generator) -> typing.Any:
            return self.theory.initial(chains=self.chains // self.blocks, generator=generator, dtype=dtype,
                                       device=device)

        if self.blocks > 1 or world_size() > 1:
            return generate_split_ensemble(out, kernel, initial, blocks=self.blocks, theory=self.theory.name,
                                           params=self.theory.params, seed=self.seed, n=self.n, therm=self.therm,
                                           every=self.every, device=device, flush_every=flush_every,
                                           command=command, progress=progress)
        return generate_ensemble(out, kernel, initial, theory=self.theory.name, params=self.theory.params,
                                 seed=self.seed, n=self.n, therm=self.therm, every=self.every, device=device,
                                 flush_every=flush_every, command=command, progress=progress)

    @property
    def total_updates(self) -> int:
        return self.therm + self.n * self.every
