"""The one Metropolis-Hastings accept/reject step of lgdiff, per chain, in log space."""

import math

import torch
from torch import Tensor


def metropolis(log_alpha: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Accept each chain with probability ``min(1, exp(log_alpha))``: returns ``(accepted [B] bool, min(1, e^alpha))``.

    A NaN ratio (an exploding proposal) is a rejection, never a NaN state. One uniform number per chain is drawn from
    ``generator`` whatever the ratios, so the random stream does not depend on the values.
    """
    log_alpha = torch.nan_to_num(log_alpha, nan=-math.inf)
    u = torch.rand(log_alpha.shape, generator=generator, dtype=log_alpha.dtype, device=log_alpha.device)
    return torch.log(u) < log_alpha, torch.exp(torch.clamp(log_alpha, max=0.0))


def select(accepted: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """``new`` where the chain accepted, else ``old`` (``accepted`` is ``[B]``; the tensors are batch first)."""
    return torch.where(accepted.reshape(accepted.shape + (1,) * (new.ndim - 1)), new, old)


__all__ = ["metropolis", "select"]
