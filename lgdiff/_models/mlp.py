"""A small MLP of ``(x, t)`` for one-site (D = 0) fields, where the convolutional NCSN++ has nothing to convolve: the
residual drift of optimal stochastic quantisation for the toy models (`lgdiff._samplers.osq`)."""

import math
import typing

import attrs
import torch
from jaxtyping import Float
from torch import Tensor, nn

from .embedding import TimeEmbedding


@typing.final
@attrs.frozen(kw_only=True)
class MLPConfig:
    """Architecture of :class:`SiteMLP` (recorded in model files)."""

    width: int = 64
    depth: int = 3
    time_features: int = 16
    z2_odd: bool = False  # make the output exactly odd in x, f(-x, t) = -f(x, t)

    def __attrs_post_init__(self) -> None:
        if self.width < 1 or self.depth < 1 or self.time_features < 2 or self.time_features % 2:
            raise ValueError(f"MLPConfig needs width >= 1, depth >= 1 and an even time_features >= 2; got {self}")

    def to_dict(self) -> dict[str, typing.Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, typing.Any]) -> "MLPConfig":
        return cls(**d)


@typing.final
class SiteMLP(nn.Module):
    r"""``f(x, t)`` for one-site fields ``x [B]``: ``depth`` SiLU layers of ``width`` on ``(x, time embedding)``.

    >>> net = SiteMLP(MLPConfig(width=8, z2_odd=True), generator=torch.Generator().manual_seed(0))
    >>> x, t = torch.tensor([0.5, -0.5], dtype=torch.float64), torch.tensor([0.1, 0.1], dtype=torch.float64)
    >>> bool(torch.allclose(net(x, t)[0], -net(x, t)[1]))
    True
    """

    def __init__(self, config: MLPConfig, *, generator: torch.Generator, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.embed = TimeEmbedding(config.time_features, w, w, kind="fourier", scale=1.0, generator=generator,
                                   dtype=dtype)
        layers: list[nn.Module] = []
        c = w + 1
        for _ in range(config.depth):
            layers += [nn.Linear(c, w, dtype=dtype), nn.SiLU()]
            c = w
        layers.append(nn.Linear(c, 1, dtype=dtype))
        self.mlp = nn.Sequential(*layers)
        g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
        with torch.no_grad():
            for name, p in self.mlp.named_parameters():
                if p.ndim > 1:
                    p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) / math.sqrt(p.shape[1]))
                else:
                    p.zero_()
        self.to(device)

    def _net(self, x: Tensor, t: Tensor) -> Tensor:
        return self.mlp(torch.cat([x[:, None], self.embed(t)], dim=1))[:, 0]

    def forward(self, x: Float[Tensor, " batch"], t: Float[Tensor, " batch"]) -> Float[Tensor, " batch"]:
        if x.ndim != 1:
            raise ValueError(f"SiteMLP acts on one-site fields [B]; got shape {tuple(x.shape)}")
        out = self._net(x, t)
        return (out - self._net(-x, t)) / 2 if self.config.z2_odd else out

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


__all__ = ["MLPConfig", "SiteMLP"]
