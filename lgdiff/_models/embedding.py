"""Time embeddings for score networks: Fourier features of a per-configuration scalar, then an MLP.

Any score network (the L-CNN for links, a U-Net / NCSN++ for scalars) conditions on the diffusion
time through one of these. What scalar is embedded is the caller's choice: the time ``t`` itself
(``t in [0, T]``) or ``log s(t)`` as in NCSN++ (Song et al., ICLR 2021, App. H.1).

- `GaussianFourierFeatures`: ``[sin(2 pi f_k t), cos(2 pi f_k t)]`` with fixed random
  frequencies ``f_k ~ N(0, scale^2)`` (Tancik et al., NeurIPS 2020), stored as a buffer so that
  checkpoints carry them.
- `SinusoidalFeatures`: the deterministic transformer/DDPM embedding
  ``[sin(scale t w_k), cos(scale t w_k)]``, ``w_k = max_period^(-k / (dim/2))``.
- `TimeEmbedding`: features followed by a two-layer SiLU MLP, ``[B] -> [B, out]``.

Weights are initialised from an explicit ``torch.Generator`` (no global RNG).
"""

import math
import typing
import torch
from jaxtyping import Float
from torch import Tensor, nn

from .._types import Time

TimeFeatures = Float[Tensor, "batch features"]
"""One feature vector per configuration."""

def _check_even(name: str, dim: object) -> None:
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 2 or dim % 2:
        raise ValueError(f"{name} needs an even number of features >= 2 (sin and cos pairs); got dim={dim!r}")


def _check_time(name: str, t: Tensor) -> None:
    if t.ndim != 1 or not t.is_floating_point():
        raise ValueError(
            f"{name} expects one real time per configuration, shape [B]; got {t.dtype} {tuple(t.shape)}. "
            f"For a single time use torch.full((B,), t)."
        )


@typing.final
class GaussianFourierFeatures(nn.Module):
    r"""Random Fourier features ``[sin(2 pi f t), cos(2 pi f t)]``, ``f_k ~ N(0, scale^2)``, fixed.

    **Arguments:**
    - `dim`: number of features (even); ``dim / 2`` frequencies.
    - `scale`: standard deviation of the frequencies (cycles per unit of the input scalar).
    - `generator`: draws the frequencies (a buffer: saved in ``state_dict``, not trained).
    - `dtype`: real dtype of the buffer and of the output.

    **Returns** (``forward``): ``[B, dim]``, first the sines then the cosines.

    >>> emb = GaussianFourierFeatures(4, scale=1.0, generator=torch.Generator().manual_seed(0))
    >>> emb(torch.zeros(3, dtype=torch.float64))[:, 2:]
    tensor([[1., 1.],
            [1., 1.],
            [1., 1.]], dtype=torch.float64)
    """

    frequencies: Tensor

    def __init__(self, dim: int, *, scale: float = 16.0, generator: torch.Generator,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        _check_even("GaussianFourierFeatures", dim)
        if not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"GaussianFourierFeatures needs a finite scale > 0; got scale={scale!r}")
        freq = scale * torch.randn((dim // 2,), generator=generator, dtype=dtype, device=generator.device)
        self.register_buffer("frequencies", freq)

    def forward(self, t: Time) -> TimeFeatures:
        _check_time("GaussianFourierFeatures", t)
        phase = 2 * math.pi * t.to(self.frequencies.dtype)[:, None] * self.frequencies
        return torch.cat([torch.sin(phase), torch.cos(phase)], dim=1)


@typing.final
class SinusoidalFeatures(nn.Module):
    r"""Deterministic sinusoidal features ``[sin(scale t w_k), cos(scale t w_k)]``.

    ``w_k = max_period^(-k / h)``, ``k = 0..h-1``, ``h = dim / 2`` (Vaswani et al. 2017; Ho et al. 2020).
    ``scale = 1000`` maps ``t in [0, 1]`` onto DDPM's integer step range.

    **Returns** (``forward``): ``[B, dim]``, first the sines then the cosines, in ``t``'s dtype.

    >>> SinusoidalFeatures(2, scale=1.0)(torch.tensor([0.5], dtype=torch.float64))
    tensor([[0.4794, 0.8776]], dtype=torch.float64)
    """

    def __init__(self, dim: int, *, max_period: float = 10000.0, scale: float = 1000.0) -> None:
        super().__init__()
        _check_even("SinusoidalFeatures", dim)
        if not (math.isfinite(max_period) and max_period > 1):
            raise ValueError(f"SinusoidalFeatures needs a finite max_period > 1; got max_period={max_period!r}")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"SinusoidalFeatures needs a finite scale > 0; got scale={scale!r}")
        self.dim = dim
        self.max_period = float(max_period)
        self.scale = float(scale)

    def forward(self, t: Time) -> TimeFeatures:
        _check_time("SinusoidalFeatures", t)
        half = self.dim // 2
        k = torch.arange(half, dtype=t.dtype, device=t.device)
        w = torch.exp(-math.log(self.max_period) * k / half)
        phase = self.scale * t[:, None] * w
        return torch.cat([torch.sin(phase), torch.cos(phase)], dim=1)


@typing.final
class TimeEmbedding(nn.Module):
    r"""Fourier features of the time, then ``Linear -> SiLU -> Linear``: ``[B] -> [B, out]``.

    **Arguments:**
    - `features`: number of Fourier features (even).
    - `width`: hidden width of the MLP.
    - `out`: output width (e.g. one scale per channel and block of a score network).
    - `kind`: ``"fourier"`` (Gaussian random frequencies with std `scale`) or ``"sinusoidal"``
      (deterministic, `scale` multiplies ``t``).
    - `generator`: initialises the weights (normal, std ``1/sqrt(fan_in)``) and the Fourier frequencies.
    - `dtype`: real dtype of all weights.

    >>> emb = TimeEmbedding(8, 16, 5, generator=torch.Generator().manual_seed(0))
    >>> emb(torch.tensor([0.1, 0.9], dtype=torch.float64)).shape
    torch.Size([2, 5])
    """

    def __init__(self, features: int, width: int, out: int, *, kind: str = "fourier", scale: float = 16.0,
                 generator: torch.Generator, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        for name, value in (("width", width), ("out", out)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TimeEmbedding needs {name} >= 1; got {name}={value!r}")
        if kind == "fourier":
            self.features: nn.Module = GaussianFourierFeatures(features, scale=scale, generator=generator, dtype=dtype)
        elif kind == "sinusoidal":
            self.features = SinusoidalFeatures(features, scale=scale)
        else:
            raise ValueError(f"TimeEmbedding kind must be 'fourier' or 'sinusoidal'; got kind={kind!r}")

        def normal(*shape: int) -> nn.Parameter:
            w = torch.randn(shape, generator=generator, dtype=dtype, device=generator.device)
            return nn.Parameter(w / math.sqrt(shape[-1]))

        self.w1 = normal(width, features)
        self.b1 = nn.Parameter(torch.zeros(width, dtype=dtype, device=generator.device))
        self.w2 = normal(out, width)
        self.b2 = nn.Parameter(torch.zeros(out, dtype=dtype, device=generator.device))

    def forward(self, t: Time) -> TimeFeatures:
        h = self.features(t.to(self.w1.dtype))
        h = nn.functional.silu(nn.functional.linear(h, self.w1, self.b1))
        return nn.functional.linear(h, self.w2, self.b2)
