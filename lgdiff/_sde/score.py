r"""The one score interface of lgdiff's diffusion layer, and physics conditioning as an object.

A score is anything that maps a state and one time per configuration to the score of the noised distribution at
that state, as a tangent vector of the state's type:

- real fields: ``score(x [B, *L], t [B]) -> Tensor [B, *L]`` (``grad_x log p_t(x)``);
- link fields: ``score(U: LinkField, t [B]) -> AlgebraField`` (``i sum_a s^a T^a`` per link, the left Lie
  derivatives ``nabla^a log p_t(U)``).

Networks loaded from model files (:func:`lgdiff.load_model`), exact scores in tests and the ``t -> 0`` force
(:func:`lgdiff.wilson_score`) all satisfy :class:`Score`.
"""

import math
import typing

import attrs
from torch import Tensor


@typing.runtime_checkable
class Score(typing.Protocol):
    """``(state, t [B]) -> tangent``: a real field for scalar fields, an ``AlgebraField`` for links."""

    def __call__(self, state: typing.Any, t: Tensor, /) -> typing.Any: ...


def _positive_ratio(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a finite number > 0; got {value!r}")


@typing.final
@attrs.frozen
class ConditionedScore:
    r"""A score trained at coupling ``beta_0`` used at ``beta``: ``r s(x, t)`` with ``r = beta / beta_0``
    (the physics-conditioned score; for an action linear in ``beta`` the ``t -> 0`` score scales exactly so).

    Build it with :meth:`at` from the couplings; the ratio is then part of the score object instead of an argument
    threaded through every sampler.

    >>> import torch
    >>> s = ConditionedScore.at(lambda x, t: -x, beta=6.0, beta_0=2.0)
    >>> float(s(torch.ones(1, 2), torch.zeros(1))[0, 0]), s.ratio
    (-3.0, 3.0)
    """

    score: Score
    ratio: float = attrs.field(converter=float, validator=_positive_ratio)

    @classmethod
    def at(cls, score: Score, *, beta: float, beta_0: float) -> "ConditionedScore":
        """``score`` trained at ``beta_0``, conditioned to ``beta``."""
        if not (math.isfinite(beta_0) and beta_0 > 0):
            raise ValueError(f"the model's training coupling beta_0 must be a finite number > 0; got {beta_0!r}")
        if not (math.isfinite(beta) and beta > 0):
            raise ValueError(f"beta must be a finite number > 0 to condition a score; got {beta!r}")
        return cls(score, beta / beta_0)

    def __call__(self, state: typing.Any, t: Tensor, /) -> typing.Any:
        out = self.score(state, t)
        return out if self.ratio == 1.0 else out * self.ratio


__all__ = ["ConditionedScore", "Score"]
