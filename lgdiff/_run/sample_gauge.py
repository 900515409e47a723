"""``lgdiff sample --theory su3|u1``: generate link configurations with a trained L-CNN score, raw (``sde``) or
exact (``heatbath``, ``maala``, ``resample``, ``path``, ``imh``), and write an ensemble file that ``lgdiff measure``
reads.

The shipped models (`default_model`) are ``lgdiff/models/su3_b5.0_L4.safetensors`` (4D SU(3), trained at
beta = 5.0 on 4^4) and ``lgdiff/models/u1_b1.0_L16.safetensors`` (2D U(1), beta = 1.0, 16^2); see
docs/gauge-diffusion.md for how they were trained and what they reach.
"""

import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch

from .._actions.wilson import WilsonAction
from .._fields.links import LinkField
from .._geometry.lattice import Lattice
from .._io.checkpoint import load_checkpoint
from .._io.ensemble import Ensemble
from .._dist import world_size
from .._io.files import file_sha256
from .._samplers.base import AbstractKernel, Composite, StepSizeAdaptation
from .._samplers.heatbath import Heatbath
from .._samplers.independence import MarginalIMH, PathIMH, RawDraws
from .._samplers.maala import TARGET_ACCEPTANCE, denoise, maala_kernel, wilson_score
from .._samplers.resample import DiffusionResample
from .._samplers.reverse import Corrector
from .._groups.u1 import U1
from .._sde.precondition import FreeU1Preconditioner
from .._sde.score import ConditionedScore
from .._models.files import load_score
from .._models.lcnn import LCNN
from .._sde.group import GroupVE
from .shipped import choose_shipped_model
from .generate import positive_or_unset
from .split import run_ensemble
from .theory import Theory

METHODS = ("heatbath", "maala", "sde", "path", "imh", "resample")
CHAIN_METHODS = ("heatbath", "maala", "resample")
"""The methods that run a Markov chain from the model's denoised start."""
DRIFTS = ("force", "score")
"""MAALA's Langevin drift: the exact ``t -> 0`` score ``-beta grad S`` (``force``) or the model at ``t_L`` (``score``)."""
CHAIN_DEFAULTS = {"force": (2000, 20), "score": (40, 5)}
"""drift -> the default (``therm``, ``every``) in score evaluations: a Langevin step with the force costs about a
fifth of one with the L-CNN and takes ~50x larger steps in 4D SU(3) (docs/gauge-diffusion.md), so its default chain
is longer."""
PRECONDITIONED = ("resample", "path", "sde")
"""The methods whose reverse kernel takes a preconditioner (U(1): on by default for ``resample``)."""
RESAMPLE_DEFAULTS = (20, 1)
"""(``therm``, ``every``) of ``method = "resample"`` in updates (one update: a resampling move and ``local_sweeps``
heatbath sweeps): the denoised start is already near equilibrium, and every update moves every link."""
HEATBATH_DEFAULTS = (50, 4)
"""(``therm``, ``every``) of ``method = "heatbath"`` in updates (one heatbath + one overrelaxation sweep). With 16-32
chains from the shipped SU(3) model's denoised start, the mean plaquette is within 0.5 % of equilibrium after 6
updates at beta = 5.0 (4^4 and 6^4) and after ~22 at beta = 5.5 on 6^4 (a hot start: 7 and ~22;
docs/gauge-diffusion.md): 50 leaves a factor of two. tau_int(P) is 1.7-2.5 updates at beta = 5.0 and 4.9 at
beta = 5.5 on 6^4; a record's measurement (the Wilson flow of ``lgdiff measure``) costs ~13 updates on 6^4, so
records 4 updates apart are nearly independent for a small part of the run's cost."""
LOCAL_DEFAULTS = {"resample": RESAMPLE_DEFAULTS, "heatbath": HEATBATH_DEFAULTS}
"""method -> (``therm``, ``every``) in updates, for the chains whose updates are not MAALA proposals."""
LEAPFROG_DEFAULTS = {"force": 10, "score": 1}
"""drift -> the default leapfrog steps per proposal: with the exact force, 10 steps (HMC, trajectory ~1) decorrelate
the 4D SU(3) plaquette ~7x faster per force evaluation than the one-step Langevin move (tau_int 6 trajectories of 10
steps against ~460 steps, docs/gauge-diffusion.md); the learned score's error grows along a trajectory, so it
keeps MAALA's one-step move."""


def default_model(theory: str) -> Path:
    """The shipped model for ``theory`` (``"su3"`` or ``"u1"``; the table: `lgdiff._run.shipped.SHIPPED_MODELS`)."""
    return choose_shipped_model(theory).path


def default_method(model: str | Path, L: int) -> str:
    """The default sampler of a gauge model on ``L^D``: ``resample`` for a U(1) model with a force residual (its score
    is right at small t, where the resampling move is decided: ``force_beta > 0``); ``heatbath`` for an SU(N) model
    on an even ``L`` (from the denoised start, the cheapest exact chain measured: 14-20x fewer CPU-seconds per
    effective configuration than HMC at 6^4, docs/gauge-diffusion.md); ``maala`` otherwise (a plain L-CNN's
    resampling moves are almost never accepted: 0 of 128 at beta = 1 with the shipped ``u1_b1.0_L16``; the
    checkerboard heatbath needs an even ``L``)."""
    config = model_metadata(model).get("config", {})
    group = str(config.get("group", ""))
    if group == "U(1)" and float(config.get("force_beta") or 0.0) > 0:
        return "resample"
    return "heatbath" if group.startswith("SU(") and L % 2 == 0 else "maala"


def model_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a gauge model file (``theory``, ``beta``, ``lattice``, ``config``, ``command``, ...)."""
    _, meta = load_checkpoint(path)
    if meta.get("kind") != "lcnn":
        raise ValueError(f"{path} holds a {meta.get('kind')!r} model, not a gauge L-CNN (kind 'lcnn')")
    return meta


@typing.final
@attrs.frozen(kw_only=True)
class GaugeSampleConfig:
    """A sampling run with a trained L-CNN gauge model.

    ``method``: ``maala`` (exact: reverse SDE to ``t_langevin``, then Metropolis-adjusted Langevin steps with the
    exact Wilson action at the theory's beta; ``therm`` steps, then ``n`` records one every ``every`` steps, per
    chain) or ``sde`` (raw reverse SDE to the model's smallest training time; ``n`` batches of ``chains``
    independent samples). ``steps``: reverse-SDE steps (geometric grid). ``drift``: the Langevin drift of MAALA,
    ``force`` (the exact ``t -> 0`` limit of the score, ``-r beta_0 grad S = -beta grad S``, see
    :func:`lgdiff.wilson_score`) or ``score`` (the model at ``t_langevin``); both are exact,
    the force takes far larger steps. ``therm`` and ``every`` default by drift (``CHAIN_DEFAULTS``).
    ``corrector``: annealed-Langevin corrector steps (of size ``s(t)^2``) after each reverse-SDE step of the
    denoiser (:func:`lgdiff.reverse_sde` with a :class:`lgdiff.Corrector`). ``leapfrog``: leapfrog steps per MAALA proposal
    (:func:`lgdiff.maala_kernel`; 1 is MAALA's Langevin move, K > 1 with the force drift is
    hybrid Monte Carlo; default ``LEAPFROG_DEFAULTS[drift]``); the default ``therm`` and ``every`` are divided by it
    (the same number of score evaluations).
    ``langevin_step``: the Langevin step ``e``; ``None`` adapts it during ``therm`` towards acceptance 0.6,
    starting from ``0.1 n^(-1/3)`` (``n`` the real degrees of freedom per configuration), and then freezes it.
    ``beta_scale``: ``r`` of the physics-conditioned score ``r s_theta``; ``None`` takes ``beta / beta_0``.
    ``heatbath`` (exact): from the denoised start, every update is one heatbath sweep and one overrelaxation sweep
    with the exact Wilson action (:class:`lgdiff.Heatbath`; even L); the model only starts the chains. ``therm`` and
    ``every`` default to ``HEATBATH_DEFAULTS``.
    ``resample`` (exact): from the denoised start, every update is one :class:`lgdiff.DiffusionResample` move (noise
    the configuration to ``t_max``, denoise it with the model in ``steps`` uniform steps, accept exactly; its
    acceptance is the one recorded) followed by ``local_sweeps`` heatbath + overrelaxation sweeps
    (:class:`lgdiff.Heatbath`, even L); ``therm`` and ``every`` default to ``RESAMPLE_DEFAULTS``.
    """

    theory: Theory
    model: Path = attrs.field(converter=Path)
    method: str = "maala"
    n: int = 16
    chains: int = 8
    steps: int = 40
    seed: int = 0
    t_langevin: float = attrs.field(default=0.01, validator=positive_or_unset)
    langevin_step: float | None = attrs.field(default=None, validator=positive_or_unset)
    therm: int | None = None
    every: int | None = None
    drift: str = "force"
    corrector: int = 0
    leapfrog: int | None = None
    beta_scale: float | None = attrs.field(default=None, validator=positive_or_unset)
    t_max: float = attrs.field(default=0.15, validator=positive_or_unset)
    local_sweeps: int = 1
    blocks: int = 1
    precondition: bool | None = None

    def __attrs_post_init__(self) -> None:
        _check_sample(self.method, METHODS, "for a gauge theory", self.chains, self.blocks)
        if not self.theory.is_gauge:
            raise ValueError(f"GaugeSampleConfig is for gauge theories (u1, su2, su3); got theory {self.theory.name}")
        if self.drift not in DRIFTS:
            raise ValueError(f"unknown drift {self.drift!r}; expected one of {', '.join(DRIFTS)} (force: the exact "
                             f"t -> 0 score -beta grad S; score: the model at t_langevin)")
        for name in ("n", "chains", "steps", "every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1; got {value}")
        if self.leapfrog is not None and self.leapfrog < 1:
            raise ValueError(f"--leapfrog must be >= 1; got {self.leapfrog}")
        if self.corrector < 0:
            raise ValueError(f"--corrector must be >= 0; got {self.corrector}")
        if self.therm is not None and self.therm < 0:
            raise ValueError(f"--therm must be >= 0; got {self.therm}")
        if self.local_sweeps < 0:
            raise ValueError(f"--local-sweeps must be >= 0; got {self.local_sweeps}")
        if self.t_max >= 1.0:
            raise ValueError(f"--t-max must be below the diffusion's final time T = 1; got {self.t_max}")
        if self.method == "heatbath" and any(extent % 2 for extent in self.theory.lattice.shape):
            raise ValueError(f"--method heatbath needs even extents (checkerboard sweeps); got L = "
                             f"{self.theory.lattice.shape}: use --method maala")
        if self.precondition and (self.method not in PRECONDITIONED or self.theory.group != U1()):
            raise ValueError(f"--precondition is for U(1) with --method {', '.join(PRECONDITIONED)} (the reverse kernel "
                             f"exact for the Gaussian limit of the U(1) Wilson action); got {self.theory.name} with "
                             f"--method {self.method}")

    @property
    def preconditioner(self) -> FreeU1Preconditioner | None:
        """The reverse kernel's preconditioner: the Gaussian limit of the U(1) Wilson action at the mean-field beta
        (:meth:`lgdiff.FreeU1Preconditioner.mean_field`) for U(1) with ``resample`` unless ``precondition`` is
        False, and with ``path`` or ``sde`` if ``precondition`` is True; ``None`` otherwise. (Default only where it
        measured better: at beta = 7 the resampling acceptance rises from 0.11 to 0.51; the beta = 1 model's
        path-space weights spread more with it, var(log w) 16 -> 103 over 64 proposals of 40 steps.)"""
        if self.method not in PRECONDITIONED or self.theory.group != U1():
            return None
        if self.precondition is False or (self.precondition is None and self.method != "resample"):
            return None
        return FreeU1Preconditioner.mean_field(self.theory.beta)

    @property
    def chain(self) -> tuple[int, int]:
        """(``therm``, ``every``) of the chain: the given values, else ``LOCAL_DEFAULTS[method]`` in updates, or for
        MAALA ``CHAIN_DEFAULTS[drift]`` divided by ``leapfrog`` in proposals (rounded up; at least 1 between records)."""
        if self.method in LOCAL_DEFAULTS:
            therm, every = LOCAL_DEFAULTS[self.method]
        else:
            therm, every = CHAIN_DEFAULTS[self.drift]
            therm, every = -(-therm // self.proposal_steps), max(1, every // self.proposal_steps)
        return (therm if self.therm is None else self.therm, every if self.every is None else self.every)

    @property
    def proposal_steps(self) -> int:
        """Leapfrog steps per MAALA proposal: ``leapfrog``, else ``LEAPFROG_DEFAULTS[drift]``."""
        return LEAPFROG_DEFAULTS[self.drift] if self.leapfrog is None else self.leapfrog

    @classmethod
    def from_model(cls, theory: str, L: int, *, beta: float | None = None, model: str | Path | None = None,
                   **settings: Any) -> "GaugeSampleConfig":
        """The run for ``theory`` on ``L^D`` (D from the model) at ``beta`` (default: the model's beta_0), with the
        shipped model unless ``model`` is given; ``settings`` are the other fields."""
        path = default_model(theory) if model is None else Path(model)
        meta = model_metadata(path)
        dim = len(meta["lattice"])
        params = {"beta": meta["beta"] if beta is None else beta}
        th = Theory(name=theory, lattice=Lattice(shape=(L,) * dim), params=params)
        return cls(theory=th, model=path, **settings)

    @property
    def work_units(self) -> int:
        """Units of ``progress`` of the run: one per MAALA proposal or per raw generation, after one for the denoised
        start (size a progress bar with this)."""
        if self.method not in CHAIN_METHODS:
            return self.n
        therm, every = self.chain
        return 1 + therm + self.n * every

    def run(self, out: str | Path, *, device: torch.device | str = "cpu", command: str | None = None,
            progress: Callable[[int], None] | None = None, flush_every: int | None = None) -> Ensemble | None:
        """Sample into ``out``, or continue it: a run killed at any point and rerun with the same settings continues
        bit for bit (the one resumable ensemble run, :func:`lgdiff._run.split.run_ensemble`), on one process or with
        ``blocks`` independently seeded blocks over the ranks of a torchrun launch. Returns the ensemble (``None``
        on ranks other than 0)."""
        model = load_score(self.model, device=device)
        net, process, meta = model.network, model.process, model.metadata
        if not isinstance(net, LCNN) or not isinstance(process, GroupVE):
            raise ValueError(f"the model {self.model} is a scalar NCSN++; a gauge theory needs an L-CNN model")
        group, lattice = self.theory.group, self.theory.lattice
        if net.config.group != group or net.config.dim != lattice.dim:
            raise ValueError(f"the model {self.model} is for {net.config.group} in D = {net.config.dim}; the theory "
                             f"{self.theory.name} on L = {lattice.shape} needs {group} in D = {lattice.dim}")
        assert group is not None  # internal: a gauge theory, checked in __attrs_post_init__
        beta, beta_0, action = self.theory.beta, float(meta["beta"]), self.theory.action()
        r = beta / beta_0 if self.beta_scale is None else self.beta_scale
        score = ConditionedScore(model.score, r)
        settings: dict[str, float | int | str] = {
            "model": str(self.model), "model_sha256": file_sha256(self.model), "model_step": int(meta.get("step", 0)),
            "beta_0": beta_0, "beta_scale": r, "denoise_steps": self.steps, "spacing": "geometric",
            "corrector": self.corrector, "drift": self.drift}
        corrector = Corrector(steps=self.corrector) if self.corrector else None
        if self.method in PRECONDITIONED:
            pre = self.preconditioner
            settings |= {"preconditioner": "none"} if pre is None else pre.settings()
        if self.method not in CHAIN_METHODS:
            t_min = float(meta.get("train", {}).get("t_min", 1e-3))
            common = dict(score=score, process=process, steps=self.steps, t_min=t_min, spacing="geometric",
                          preconditioner=self.preconditioner)
            kernel: AbstractKernel
            if self.method == "sde":
                kernel = RawDraws(method="sde", **common)
            elif self.method == "path":
                kernel = PathIMH(action=action, **common)
            else:
                kernel = MarginalIMH(action=action, **common)
            if corrector is not None:
                raise ValueError(f"--corrector applies to MAALA's denoised start; --method {self.method} takes none")
            therm, every, adapt = 0, 1, None

            def initial(generator: torch.Generator) -> LinkField:
                return LinkField.identity(group, lattice, batch=self.chains // self.blocks, device=device)
        else:
            if self.method == "resample":
                t_min = float(meta.get("train", {}).get("t_min", 1e-3))
                move = DiffusionResample(score=score, process=process, action=action, steps=self.steps,
                                         t_max=self.t_max, t_min=t_min, spacing="uniform",
                                         preconditioner=self.preconditioner)
                kernel = Composite((move, *[Heatbath(action=action)] * self.local_sweeps))
                adapt = None
                therm, every = self.chain
                settings |= {"t_max": self.t_max, "t_min": t_min, "resample_spacing": "uniform",
                             "local_sweeps": self.local_sweeps, "therm": therm, "every": every}
            elif self.method == "heatbath":
                kernel, adapt = Heatbath(action=action), None
                therm, every = self.chain
                settings |= {"t_langevin": self.t_langevin, "therm": therm, "every": every}
            else:
                # the adaptation starts from 0.1 n^(-1/3) (n: real degrees of freedom per chain; MALA's scaling)
                n_dof = lattice.dim * lattice.volume * group.n_generators
                step = 0.1 * n_dof ** (-1 / 3) if self.langevin_step is None else self.langevin_step
                adapt = StepSizeAdaptation(target=TARGET_ACCEPTANCE) if self.langevin_step is None else None
                therm, every = self.chain
                # the force drift is the t -> 0 limit of the model's score at beta_0, scaled by r like the score
                drift = score if self.drift == "score" else ConditionedScore(
                    wilson_score(WilsonAction(beta=beta_0, group=group)), r)
                kernel = maala_kernel(action, drift, t_langevin=self.t_langevin, step_size=step,
                                      leapfrog=self.proposal_steps, drift_label=self.drift)
                settings |= {"t_langevin": self.t_langevin, "adapted": int(adapt is not None), "therm": therm,
                             "every": every, "leapfrog": self.proposal_steps}

            def initial(generator: torch.Generator) -> LinkField:
                like = LinkField.identity(group, lattice, batch=self.chains // self.blocks, device=device)
                start = denoise(score, process, like, steps=self.steps, generator=generator, t_min=self.t_langevin,
                                spacing="geometric", corrector=corrector)
                if progress is not None:
                    progress(1)
                return start

        return run_ensemble(out, kernel, initial, blocks=_blocks_or_none(self.blocks), theory=self.theory.name,
                            params=self.theory.params, seed=self.seed, n=self.n, therm=therm, every=every,
                            device=device, flush_every=flush_every or max(1, self.n // 4), command=command,
                            progress=progress, adapt=adapt, settings=settings)


def _check_sample(method: str, methods: tuple[str, ...], kind: str, chains: int, blocks: int) -> None:
    """What every sampling run checks: its method, and chains that split into ``blocks`` equal blocks."""
    if method not in methods:
        raise ValueError(f"unknown method {method!r} {kind}; expected one of {', '.join(methods)}")
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1 or chains % blocks:
        raise ValueError(f"--chains {chains} must be divisible by --blocks {blocks} (under torchrun --blocks defaults "
                         f"to the number of processes): every block runs chains/blocks chains with its own seed stream")


def _blocks_or_none(blocks: int) -> int | None:
    """The ordinary single-generator run for one block on one process; the block run otherwise."""
    return None if blocks == 1 and world_size() == 1 else blocks


__all__ = ["CHAIN_DEFAULTS", "CHAIN_METHODS", "DRIFTS", "HEATBATH_DEFAULTS", "LEAPFROG_DEFAULTS", "LOCAL_DEFAULTS",
           "GaugeSampleConfig", "default_method", "METHODS", "PRECONDITIONED", "RESAMPLE_DEFAULTS", "default_model", "model_metadata"]
