"""``lgdiff sample --theory phi4``: generate with a trained scalar model, raw or exactness-corrected, and write an
ensemble file that ``lgdiff measure`` reads. The model is a diffusion score network (NCSN++, methods `DSM_METHODS`)
or an optimal-stochastic-quantisation drift (methods `OSQ_METHODS`, `lgdiff._samplers.osq`)."""

import typing
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch

from .._fields.scalar import Field
from .._io.ensemble import Ensemble
from .._geometry.lattice import Lattice
from .._io.checkpoint import load_checkpoint
from .._io.files import file_sha256
from .._samplers.base import AbstractKernel
from .._samplers.hartree import hartree_gaussian
from .._samplers.independence import MarginalIMH, PathIMH, RawDraws
from .._samplers.maala import denoise, maala_kernel
from .._samplers.mixture import GlobalLocal
from .._models.files import load_osq, load_score
from .._models.ncsnpp import NCSNpp, NCSNppConfig
from .._samplers.osq import OSQDraws, OSQPathIMH, OSQProcess, zero_drift
from .._sde.base import AbstractSDE
from .._sde.precondition import FreeScalarPreconditioner
from .generate import GenerateConfig
from .sample_gauge import _blocks_or_none, _check_sample
from .split import run_ensemble
from .theory import Theory

DSM_METHODS = ("sde", "ode", "imh", "path", "maala", "mix")
"""Methods that sample with a diffusion score model (model kind ``"ncsnpp"``)."""
OSQ_METHODS = ("osq", "osq-imh")
"""Methods that sample with an optimal-stochastic-quantisation drift (model kind ``"osq"``)."""
METHODS = DSM_METHODS + OSQ_METHODS
DEFAULT_METHOD = "mix"
"""``lgdiff sample --theory phi4`` without ``--method``: the mixture, whose tau_int(|M|) per update is the lowest of
the exact routes at L = 16 and 32 (0.69(5) and 1.47(19), docs/diffusion-phi4.md). The path IMH alone gives as much
or more per CPU-second with a model trained at the run's volume; the mixture's FA-HMC moves keep its chains moving
where the global proposals are not accepted."""
PRECONDITIONED = ("path", "sde", "mix")
"""Methods whose reverse-SDE kernel takes the Hartree preconditioner (on by default)."""
FITTED_PRIOR = ("path", "mix")
"""Methods whose proposals start from a `lgdiff.MagnetisedPrior` fitted to the model (on by default)."""
PRIOR_PROPOSALS = 64
"""Proposals per round (two rounds) of the prior fit: ~1 % of the path sampler's default run at L = 32."""
_KINDS = {"ncsnpp": "a diffusion score network (NCSN++)", "osq": "an optimal-stochastic-quantisation drift",
          "lcnn": "a gauge L-CNN score network"}
"""model kind -> what the errors call it."""


def _model_kind(path: Path, method: str) -> dict[str, Any]:
    """The metadata of the scalar model file ``path``, checked to fit ``method``: a `ValueError` naming the file and
    the methods that fit it otherwise."""
    _, meta = load_checkpoint(path)
    kind = meta.get("kind")
    fits = {"ncsnpp": DSM_METHODS, "osq": OSQ_METHODS}.get(kind)
    what = _KINDS.get(kind, f"a {kind!r} model")
    if fits is None:
        raise ValueError(f"the model {path} holds {what}; a scalar theory samples with an NCSN++ score model "
                         f"(--method {', '.join(DSM_METHODS)}) or an OSQ drift (--method {', '.join(OSQ_METHODS)})")
    if method not in fits:
        raise ValueError(f"the model {path} holds {what}, which --method {method} cannot use: sample it with "
                         f"--method {', '.join(fits)}")
    return meta


@typing.final
@attrs.frozen(kw_only=True)
class ScalarSampleConfig:
    """A sampling run with a trained NCSN++ score model or OSQ drift.

    ``method``: ``sde`` (reverse SDE, raw), ``ode`` (probability flow, raw), ``imh`` (exact route 1: PF-ODE
    proposals with exact log-determinants; small volumes), ``path`` (exact route 2: path-space independence
    Metropolis, any volume), ``maala`` (exact route 3), ``mix`` (exact: one FA-HMC trajectory, then one ``path``
    proposal against the current configuration re-weighed with a fresh path, `lgdiff.GlobalLocal`), with a score
    model; ``osq`` (raw OSQ paths,
    `lgdiff.OSQDraws`) and ``osq-imh`` (exact: independence Metropolis over OSQ paths, `lgdiff.OSQPathIMH`) with an
    OSQ model (`from_osq_model`), or with ``model=None`` and no network (``v = 0``: finite-time Langevin from the
    Hartree prior of the action, `OSQProcess.hartree`, T = 0.5: data-free and training-free, docs/osq.md). Raw
    methods record ``n`` batches of ``chains`` independent samples; exact methods run ``chains`` Markov chains for
    ``n`` steps each. ``steps``: reverse-SDE/ODE steps; for the OSQ methods the Euler-Maruyama steps of a path,
    ``None`` for the model's own (without a model: 20; the path weight is exact for any). ``precondition``
    (``path``, ``sde``, ``mix``; default on): reverse steps exact for the Hartree Gaussian. ``fit_prior`` (``path``,
    ``mix``; default on): the proposals start from a `lgdiff.MagnetisedPrior` fitted to the model before the chains
    start (`lgdiff.PathIMH.with_fitted_prior`, `PRIOR_PROPOSALS` proposals per round, from a generator seeded by
    ``seed``; recorded in the file's settings).
    """

    theory: Theory
    model: Path | None
    method: str = DEFAULT_METHOD
    n: int = 16
    chains: int = 16
    steps: int | None = 100
    seed: int = 0
    t_langevin: float = 0.02
    langevin_step: float = 0.05
    therm: int = 0
    blocks: int = 1
    precondition: bool | None = None
    fit_prior: bool | None = None

    def __attrs_post_init__(self) -> None:
        _check_sample(self.method, METHODS, "for a scalar field", self.chains, self.blocks)
        if self.precondition and self.method not in PRECONDITIONED:
            raise ValueError(f"--precondition is for phi4 with --method {', '.join(PRECONDITIONED)} (the reverse "
                             f"SDE's kernel); --method {self.method} has none")
        if self.fit_prior and self.method not in FITTED_PRIOR:
            raise ValueError(f"--fit-prior is for phi4 with --method {' or '.join(FITTED_PRIOR)} (where the proposals "
                             f"start from a prior); --method {self.method} has none")
        if self.theory.is_gauge or self.theory.lattice.dim == 0:  # a scalar field on a lattice: not toy (D = 0)
            raise ValueError(f"ScalarSampleConfig is for phi4; got theory {self.theory.name}")
        if self.steps is None and self.method not in OSQ_METHODS:
            raise ValueError(f"--method {self.method} needs --steps (reverse-SDE/ODE steps)")
        if self.model is None and self.method not in OSQ_METHODS:
            raise ValueError(f"--method {self.method} needs a score model (--model); only --method "
                             f"{' and '.join(OSQ_METHODS)} run without one (v = 0 from the Hartree prior)")
        if min(self.n, self.chains, 1 if self.steps is None else self.steps) < 1:
            raise ValueError(f"--n, --chains and --steps must be >= 1; got {self.n}, {self.chains}, {self.steps}")

    @classmethod
    def from_osq_model(cls, model: str | Path, L: int, *, kappa: float | None = None, lam: float | None = None,
                       dim: int | None = None, **settings: Any) -> "ScalarSampleConfig":
        """The run of an OSQ model file on ``L^D`` (D: the model's) at its training couplings (its metadata
        ``params``), ``kappa``/``lam`` overriding them (exact at any couplings: the path weight uses the sampled
        action); ``settings`` are the other fields (``method`` one of `OSQ_METHODS`, default ``osq-imh``)."""
        path = Path(model)
        settings = {"method": "osq-imh", "steps": None, **settings}
        meta = _model_kind(path, settings["method"])
        theory, params, lattice = meta.get("theory"), dict(meta.get("params") or {}), meta.get("lattice") or []
        if theory != "phi4":
            raise ValueError(f"the model {path} was trained for theory {theory!r}; lgdiff sample --theory phi4 takes "
                             f"phi4 models (train one with lgdiff train --objective osq --theory phi4)")
        if dim is not None and dim != len(lattice):
            raise ValueError(f"the model {path} is for D = {len(lattice)}; got --dim {dim}")
        params |= {k: v for k, v in (("kappa", kappa), ("lam", lam)) if v is not None}
        th = Theory(name="phi4", lattice=Lattice(shape=(L,) * len(lattice)), params=params)
        return cls(theory=th, model=path, **settings)

    def run(self, out: str | Path, *, device: torch.device | str = "cpu", command: str | None = None,
            progress: Callable[[int], None] | None = None, flush_every: int | None = None) -> Ensemble | None:
        """Sample into ``out``, or continue it after a kill, bit for bit (:func:`lgdiff.generate_ensemble`).

        Raw methods record ``n`` batches of ``chains`` independent samples; exact methods run ``chains`` Markov
        chains for ``n`` steps each (MAALA after ``therm`` steps)."""
        settings: dict[str, float | int | str]
        if self.model is None:
            settings = {"model": "none", "drift": "v = 0"}
        else:
            meta = _model_kind(self.model, self.method)
            settings = {"model": str(self.model), "model_sha256": file_sha256(self.model),
                        "model_step": int(meta.get("step", 0))}
        start: Callable[[torch.Generator], Field] | None = None
        if self.method in PRECONDITIONED:
            pre = self.preconditioner
            settings |= {"preconditioner": "none"} if pre is None else pre.settings()
        if self.method in OSQ_METHODS:
            kernel, dtype = self._osq_kernel(device)
            if self.model is None:  # the process is the whole sampler: record it
                settings |= {f"osq_{k}": v for k, v in kernel.process.settings().items()}  # type: ignore[union-attr]
        else:
            kernel, dtype, start = self._dsm_kernel(device)
        lattice = self.theory.lattice

        def zeros(generator: torch.Generator) -> Field:
            return Field.zeros(lattice, batch=self.chains // self.blocks, dtype=dtype, device=device)

        return run_ensemble(out, kernel, start or zeros, blocks=_blocks_or_none(self.blocks), theory=self.theory.name,
                            params=self.theory.params, seed=self.seed, n=self.n,
                            therm=self.therm if self.method == "maala" else 0, device=device,
                            flush_every=flush_every or max(1, self.n // 4), command=command, progress=progress,
                            settings=settings)

    def _osq_kernel(self, device: torch.device | str) -> tuple[AbstractKernel, torch.dtype]:
        """The OSQ kernel of the model file (without one: ``v = 0`` from the Hartree prior) and the chains' dtype
        (float64: the path and its weight are float64)."""
        kind = OSQPathIMH if self.method == "osq-imh" else OSQDraws
        if self.model is None:
            action = self.theory.action()
            process = OSQProcess.hartree(action, self.theory.lattice.shape, T=0.5, steps=self.steps or 20)
            return kind(drift=zero_drift, process=process, action=action), torch.float64
        model = load_osq(self.model, device=device)
        arch, lattice = model.network.arch, self.theory.lattice
        if not isinstance(arch, NCSNppConfig) or arch.dim != lattice.dim:
            model_dim = arch.dim if isinstance(arch, NCSNppConfig) else 0
            raise ValueError(f"the model {self.model} is for D = {model_dim}; the lattice has D = {lattice.dim}")
        factor = 2 ** (arch.levels - 1)
        if any(extent % factor for extent in lattice.shape):
            raise ValueError(f"--L {lattice.shape[0]}: the model {self.model}'s NCSN++ has {arch.levels} levels and "
                             f"needs an L divisible by {factor}")
        process = model.process if self.steps is None else attrs.evolve(model.process, steps=self.steps)
        return kind(drift=model.drift, process=process, action=self.theory.action()), torch.float64

    @property
    def preconditioner(self) -> FreeScalarPreconditioner | None:
        """The reverse kernel of ``path``, ``sde`` and ``mix``: preconditioned by the Hartree Gaussian of the action on
        the sampled lattice (`lgdiff.FreeScalarPreconditioner`, `lgdiff._samplers.hartree`) unless ``precondition``
        is False; ``None`` for the other methods. Measured in docs/diffusion-phi4.md: it narrows the path weights of
        every model tried (var(log w) 43 -> 19 for the unbased L = 16 model, 41 -> 0.62 for the force-based one, 100
        steps at L = 16)."""
        if self.method not in PRECONDITIONED or self.precondition is False:
            return None
        return self._hartree()

    def _hartree(self) -> FreeScalarPreconditioner:
        """The Hartree Gaussian of the action on the sampled lattice: the preconditioner, and the non-zero modes of
        the fitted prior."""
        gauss = hartree_gaussian(self.theory.action(), self.theory.lattice.shape)
        return FreeScalarPreconditioner(std=gauss.std, kinetic=gauss.kinetic)

    def _dsm_kernel(self, device: torch.device | str
                    ) -> tuple[AbstractKernel, torch.dtype, Callable[[torch.Generator], Field] | None]:
        """The kernel of a score model, the chains' dtype and, for MAALA, the denoised start."""
        assert self.steps is not None  # checked at construction
        steps = self.steps
        model = load_score(self.model, device=device)
        net, score, sde = model.network, model.score, model.process
        assert isinstance(net, NCSNpp) and isinstance(sde, AbstractSDE)  # kind "ncsnpp", checked by _model_kind
        if net.config.dim != self.theory.lattice.dim:
            raise ValueError(f"the model {self.model} is for D = {net.config.dim}; the lattice has D = "
                             f"{self.theory.lattice.dim}")
        dtype = model.dtype
        lattice, action = self.theory.lattice, self.theory.action()
        kernel: AbstractKernel
        start: Callable[[torch.Generator], Field] | None = None
        if self.method in ("sde", "ode"):
            pre = self.preconditioner
            kernel = RawDraws(score=score, process=sde, steps=steps, method=self.method,
                              t_min=0.0 if self.method == "sde" and pre is None else 1e-3, preconditioner=pre)
        elif self.method in ("path", "mix"):
            pre = self.preconditioner
            path = PathIMH(score=score, process=sde, action=action, steps=steps, t_min=0.0 if pre is None else 1e-3,
                           preconditioner=pre)
            if self.fit_prior is not False:
                like = Field.zeros(lattice, batch=self.chains // self.blocks, dtype=dtype, device=device)
                fit = torch.Generator(device=device).manual_seed(zlib.crc32(f"lgdiff prior {self.seed}".encode()))
                path = path.with_fitted_prior(like, generator=fit, proposals=PRIOR_PROPOSALS,
                                              gaussian=pre or self._hartree())
            kernel = path
            if self.method == "mix":
                fahmc = GenerateConfig(theory=self.theory, algorithm="fahmc", n=1).kernel()
                kernel = GlobalLocal(global_=path, local=fahmc, local_steps=1)
        elif self.method == "imh":
            kernel = MarginalIMH(score=score, process=sde, action=action, steps=steps)
        else:
            kernel = maala_kernel(action, score, t_langevin=self.t_langevin, step_size=self.langevin_step)

            def start(generator: torch.Generator) -> Field:
                like = Field.zeros(lattice, batch=self.chains // self.blocks, dtype=dtype, device=device)
                return denoise(score, sde, like, steps=steps, generator=generator, t_min=self.t_langevin)

        return kernel, dtype, start
