"""The diffusion models shipped with lgdiff (``lgdiff/models``) and the choice of one for a run.

``lgdiff sample`` without ``--model`` takes, for every theory, the shipped model of that theory nearest to the
requested couplings (`choose_shipped_model`); it says which, and warns when the couplings or the lattice are far
from the model's training point. A model far from its training point still gives exact results with the exact
samplers (MAALA, path, imh), which only accept less; the raw samplers (sde, ode) are then biased.
How the models were trained and what they reach: docs/diffusion-phi4.md, docs/gauge-diffusion.md.
"""

import importlib.resources
import math
import typing
from collections.abc import Mapping
from pathlib import Path

import attrs

FAR_COUPLING = 0.15
"""A coupling more than 15% (relative) from the model's training value is far from it. The documented runs stay
inside: SU(3) at beta = 5.5 with the beta_0 = 5.0 model (+10%), phi^4 at the training kappa."""
FAR_EXTENT = 2.0
"""A lattice extent more than 2x larger or smaller than the training lattice's is far from it."""


def _format_params(params: Mapping[str, float]) -> str:
    return ", ".join(f"{k} = {v:g}" for k, v in params.items())


@typing.final
@attrs.frozen(kw_only=True)
class ShippedModel:
    """One shipped model file, ``lgdiff/models/<name>.safetensors``, and its training point: the theory, the
    couplings and the lattice of its training ensemble (also recorded in the file's metadata)."""

    name: str
    theory: str
    params: dict[str, float]
    lattice: tuple[int, ...]

    @property
    def path(self) -> Path:
        """The installed file; `ValueError` if this installation lacks it."""
        path = Path(str(importlib.resources.files("lgdiff") / "models" / f"{self.name}.safetensors"))
        if not path.is_file():
            raise ValueError(f"the shipped model {path} is missing from this installation; reinstall lgdiff or pass "
                             f"--model")
        return path

    def describe(self) -> str:
        """``"phi4_k0.21_L32 (trained at kappa = 0.21, lam = 0.022 on 32x32)"``."""
        return f"{self.name} (trained at {_format_params(self.params)} on {'x'.join(map(str, self.lattice))})"


SHIPPED_MODELS = (
    ShippedModel(name="phi4_k0.21_L32", theory="phi4", params={"kappa": 0.21, "lam": 0.022}, lattice=(32, 32)),
    ShippedModel(name="phi4_k0.27_L16", theory="phi4", params={"kappa": 0.27, "lam": 0.022}, lattice=(16, 16)),
    ShippedModel(name="phi4_k0.27_L32", theory="phi4", params={"kappa": 0.27, "lam": 0.022}, lattice=(32, 32)),
    ShippedModel(name="u1_b1.0_L16", theory="u1", params={"beta": 1.0}, lattice=(16, 16)),
    ShippedModel(name="u1_b7.0_L16", theory="u1", params={"beta": 7.0}, lattice=(16, 16)),
    ShippedModel(name="su3_b5.0_L4", theory="su3", params={"beta": 5.0}, lattice=(4, 4, 4, 4)),
)
"""Every model in ``lgdiff/models``: phi^4 NCSN++ models in the symmetric phase (kappa = 0.21) and near the
transition (kappa = 0.27, trained on 16^2 and on 32^2, with the force base), L-CNN gauge models for 2D U(1) (at beta = 1, and at beta = 7 with the force residual,
trained on exact draws) and 4D SU(3)."""


@typing.final
@attrs.frozen(kw_only=True)
class ModelChoice:
    """`choose_shipped_model`'s answer: the model, the couplings of the run (the requested ones, the model's for
    those not requested) and warning lines (empty when the run is near the training point)."""

    model: ShippedModel
    params: dict[str, float]
    warnings: tuple[str, ...]

    @property
    def path(self) -> Path:
        return self.model.path


def _relative(value: float, reference: float) -> float:
    return abs(value - reference) / abs(reference)


def choose_shipped_model(theory: str, *, params: Mapping[str, float] | None = None, L: int | None = None,
                         dim: int | None = None) -> ModelChoice:
    """The shipped model for ``theory`` nearest to the couplings ``params`` (the sum of the relative differences of
    the given couplings; ties: the training lattice nearest to ``L`` in ratio, then the first in `SHIPPED_MODELS`),
    among those in ``dim`` dimensions if given.

    Warns when a coupling is more than `FAR_COUPLING` from the model's or the extent ``L`` is more than
    `FAR_EXTENT` times larger or smaller than the training lattice's. Raises `ValueError` (with the command that
    trains a model) where no model is shipped for the theory and dimension.

    >>> choice = choose_shipped_model("phi4", params={"kappa": 0.26, "lam": 0.022}, L=16)
    >>> choice.model.name, choice.warnings
    ('phi4_k0.27_L16', ())
    """
    candidates = [m for m in SHIPPED_MODELS if m.theory == theory and (dim is None or len(m.lattice) == dim)]
    if not candidates:
        where = f" in D = {dim}" if dim is not None else ""
        shipped = ", ".join(f"{m.theory} (D = {len(m.lattice)})" for m in SHIPPED_MODELS)
        raise ValueError(f"no shipped diffusion model for theory {theory!r}{where}; shipped: {shipped}. Train one "
                         f"with `lgdiff train --data ENSEMBLE --out MODEL` and pass it with --model")
    given = {k: float(v) for k, v in (params or {}).items()}

    def distance(model: ShippedModel) -> float:
        return sum((_relative(v, model.params[k]) for k, v in given.items() if k in model.params), 0.0)

    def extent(model: ShippedModel) -> float:  # among models at the same couplings, the nearest training lattice
        return 0.0 if L is None else abs(math.log(L / model.lattice[0]))

    model = min(candidates, key=lambda m: (distance(m), extent(m)))
    run_params = {**model.params, **given}
    far = [f"{k} = {v:g}" for k, v in run_params.items() if k in model.params
           and _relative(v, model.params[k]) > FAR_COUPLING]
    if L is not None and not 1 / FAR_EXTENT <= L / model.lattice[0] <= FAR_EXTENT:
        far.append(f"L = {L}")
    warnings = []
    if far:
        warnings.append(f"the run ({', '.join(far)}) is far from the training point of the shipped model "
                        f"{model.describe()}: the exact samplers stay exact but may accept less and decorrelate "
                        f"slower, raw sde/ode samples are biased; train a model nearer the run for better results")
    return ModelChoice(model=model, params=run_params, warnings=tuple(warnings))


__all__ = ["FAR_COUPLING", "FAR_EXTENT", "SHIPPED_MODELS", "ModelChoice", "ShippedModel", "choose_shipped_model"]
