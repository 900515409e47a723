"""A compact NCSN++-style U-Net score network for real scalar fields, periodic throughout.

Circular padding in every convolution, average-pool down-sampling and nearest up-sampling, GroupNorm
(per-sample statistics: samples never interact, so per-sample Jacobians are exact), and a time
embedding of ``log s(t)`` added in every residual block (Song et al., ICLR 2021, App. H). No layer
depends on the lattice size: a model trained on L = 8 runs on L = 32, for any L divisible by
``2^(levels - 1)``. The output is ``net(x, t) / s(t)``, so denoising score matching regresses ``-eps``.

**Force base** (phi^4, ``NCSNppConfig(force_kappa=kappa, force_lam=lam, force_c0=c_0)``). The score is parametrised
around its exact ``t -> 0`` limit ``-grad S`` and the network learns only the residual:

    ``s_theta(x, t) = -(1 + s^2 K)^-1 [K x + N(x_bar)] + net(x, t) s / (s^2 + s_0^2)``,
    ``x_bar = (1 + s^2 K)^-1 x``, ``N(y) = grad S(y) - K y``, ``K(p) = c_0 + 2 kappa p_hat^2``,

with ``K`` the quadratic form of the symmetric Hartree Gaussian (`lgdiff._samplers.hartree`), applied by FFT, and
``s_0`` = ``force_gate``. For a Gaussian action ``x K x / 2`` the base is the exact score ``-(K^-1 + s^2)^-1 x`` at
every noise level; for phi^4 it tends to ``-grad S`` as ``s -> 0`` and to ``-x / s^2`` as ``s -> infinity`` (the
non-linear force is taken at the Gaussian posterior mean ``x_bar``, which stays O(1/s) where ``x`` is O(s), so the
cubic term cannot blow up at large noise). Like the Wilson-force residual of the L-CNN it puts the long-distance
modes, which denoising score matching barely weighs, into the model from the start (docs/diffusion-phi4.md).
"""

import math
import typing

import attrs
import torch
from torch import Tensor, nn

from .._geometry.lattice import Lattice
from .._sde.base import AbstractSDE, expand_like
from .._sde.ve import VESDE
from .._sde.vp import VPSDE
from .._types import ScalarData, Time
from .embedding import TimeEmbedding

_SDES: dict[str, type] = {"ve": VESDE, "vp": VPSDE}


def sde_from_dict(d: dict[str, typing.Any]) -> AbstractSDE:
    """Rebuild an SDE from ``{"name": ..., **settings}`` (checkpoint metadata)."""
    name = d.get("name")
    if name == "ve":
        return VESDE(sigma=d["sigma"], t_final=d["T"])
    if name == "vp":
        return VPSDE(beta_min=d["beta_min"], beta_max=d["beta_max"])
    raise ValueError(f"unknown SDE {name!r} in model metadata; expected 've' or 'vp'")


def sde_to_dict(sde: AbstractSDE) -> dict[str, typing.Any]:
    return {"name": sde.name, **sde.settings()}


@typing.final
@attrs.frozen(kw_only=True)
class NCSNppConfig:
    """Architecture of :class:`NCSNpp` (recorded in checkpoints)."""

    dim: int = attrs.field(validator=attrs.validators.in_((1, 2, 3)))
    channels: int = 16
    multipliers: tuple[int, ...] = attrs.field(default=(1, 2), converter=tuple)
    res_blocks: int = 1
    time_features: int = 32
    z2_odd: bool = False  # make the score exactly odd, s(-x) = -s(x), for Z2-symmetric theories
    # phi^4 force base (0: off): the score around its exact t -> 0 limit -grad S (module docstring, "Force base")
    force_kappa: float = 0.0
    force_lam: float = 0.0
    force_c0: float = 0.0
    force_gate: float = 0.1

    def __attrs_post_init__(self) -> None:
        if self.channels < 4 or self.res_blocks < 1 or not self.multipliers or min(self.multipliers) < 1:
            raise ValueError(f"NCSNppConfig needs channels >= 4, res_blocks >= 1, positive multipliers; got {self}")
        numbers = (self.force_kappa, self.force_lam, self.force_c0, self.force_gate)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers):
            raise ValueError(f"NCSNppConfig force_kappa, force_lam, force_c0, force_gate must be finite numbers; got "
                             f"{numbers}")
        if self.force_kappa != 0 and not (self.force_kappa > 0 and self.force_lam >= 0 and self.force_c0 > 0
                                          and self.force_gate > 0):
            raise ValueError(f"the phi^4 force base needs force_kappa > 0, force_lam >= 0 and a Hartree mass "
                             f"force_c0 > 0, force_gate > 0; got kappa={self.force_kappa}, lam={self.force_lam}, "
                             f"c0={self.force_c0}, gate={self.force_gate}")

    @property
    def force(self) -> bool:
        """Whether the score is parametrised around the phi^4 force (``force_kappa > 0``)."""
        return self.force_kappa > 0

    @property
    def levels(self) -> int:
        return len(self.multipliers)

    def to_dict(self) -> dict[str, typing.Any]:
        return {**attrs.asdict(self), "multipliers": list(self.multipliers)}

    @classmethod
    def from_dict(cls, d: dict[str, typing.Any]) -> "NCSNppConfig":
        return cls(**d)


def _conv(dim: int, c_in: int, c_out: int, k: int, dtype: torch.dtype) -> nn.Module:
    cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dim]
    return cls(c_in, c_out, k, padding=k // 2, padding_mode="circular", dtype=dtype)


def _groups(c: int) -> int:
    return math.gcd(c, 4)


class _ResBlock(nn.Module):
    def __init__(self, dim: int, c_in: int, c_out: int, t_width: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in, dtype=dtype)
        self.conv1 = _conv(dim, c_in, c_out, 3, dtype)
        self.temb = nn.Linear(t_width, c_out, dtype=dtype)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out, dtype=dtype)
        self.conv2 = _conv(dim, c_out, c_out, 3, dtype)
        self.skip = _conv(dim, c_in, c_out, 1, dtype) if c_in != c_out else nn.Identity()

    def forward(self, h: Tensor, temb: Tensor) -> Tensor:
        out = self.conv1(nn.functional.silu(self.norm1(h)))
        out = out + expand_like(self.temb(temb), out)
        out = self.conv2(nn.functional.silu(self.norm2(out)))
        return (self.skip(h) + out) / math.sqrt(2)


@typing.final
class NCSNpp(nn.Module):
    r"""U-Net score ``s_theta(x, t) = net(x, log s(t)) / s(t)`` for fields ``[B, *L]`` (D = 1, 2, 3).

    **Arguments:** `config` (architecture), `sde` (for ``s(t)``; ``None``: a plain field of ``(x, t)``,
    ``net(x, t)``, as the residual drift of optimal stochastic quantisation, `lgdiff._samplers.osq`),
    `generator` (initial weights), `dtype`, `device`.

    >>> net = NCSNpp(NCSNppConfig(dim=2, channels=8), VESDE(), generator=torch.Generator().manual_seed(0))
    >>> net(torch.zeros(3, 8, 8, dtype=torch.float64), torch.full((3,), 0.5, dtype=torch.float64)).shape
    torch.Size([3, 8, 8])
    """

    def __init__(self, config: NCSNppConfig, sde: AbstractSDE | None, *, generator: torch.Generator,
                 dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.config, self.sde = config, sde
        d, c0 = config.dim, config.channels
        t_width = 4 * c0
        self.embed = TimeEmbedding(config.time_features, t_width, t_width, kind="fourier", scale=1.0,
                                   generator=torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator))),
                                   dtype=dtype)
        self.conv_in = _conv(d, 1, c0, 3, dtype)
        widths = [c0 * m for m in config.multipliers]
        self.down = nn.ModuleList()
        skips = [c0]
        c = c0
        for level, w in enumerate(widths):
            for _ in range(config.res_blocks):
                self.down.append(_ResBlock(d, c, w, t_width, dtype))
                c = w
                skips.append(c)
        self.mid = _ResBlock(d, c, c, t_width, dtype)
        self.up = nn.ModuleList()
        for level, w in reversed(list(enumerate(widths))):
            for _ in range(self._up_blocks(level)):
                self.up.append(_ResBlock(d, c + skips.pop(), w, t_width, dtype))
                c = w
        self.norm_out = nn.GroupNorm(_groups(c), c, dtype=dtype)
        self.conv_out = _conv(d, c, 1, 3, dtype)
        self._pool = {1: nn.functional.avg_pool1d, 2: nn.functional.avg_pool2d, 3: nn.functional.avg_pool3d}[d]
        self._init(generator)
        self.to(device)

    def _init(self, generator: torch.Generator) -> None:
        g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
        for name, p in self.named_parameters():
            if name.startswith("embed."):
                continue
            with torch.no_grad():
                if p.ndim > 1:
                    fan_in = p[0].numel()
                    p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) / math.sqrt(fan_in))
                elif name.endswith("weight"):  # GroupNorm gains
                    p.fill_(1.0)
                else:
                    p.zero_()
            if name.startswith("conv_out"):
                with torch.no_grad():
                    p.mul_(0.1)

    def _up_blocks(self, level: int) -> int:
        # one up block per down block; the top level has one more, which consumes conv_in's skip
        return self.config.res_blocks + (1 if level == 0 else 0)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _check(self, x: Tensor) -> None:
        d, factor = self.config.dim, 2 ** (self.config.levels - 1)
        if x.ndim != d + 1 or any(L % factor for L in x.shape[1:]):
            raise ValueError(
                f"NCSNpp for D = {d} with {self.config.levels} levels expects fields [B, *L] with every L divisible "
                f"by {factor}; got shape {tuple(x.shape)}"
            )

    def _net(self, x: Tensor, t: Tensor) -> Tensor:
        temb = self.embed(t if self.sde is None else torch.log(self.sde.std(t)))
        h = self.conv_in(x[:, None])
        hs = [h]
        i = 0
        for level in range(self.config.levels):
            for _ in range(self.config.res_blocks):
                h = self.down[i](h, temb)
                i += 1
                hs.append(h)
            if level < self.config.levels - 1:
                h = self._pool(h, 2)  # the skips keep the pre-pooling resolution
        h = self.mid(h, temb)
        i = 0
        for level in reversed(range(self.config.levels)):
            for _ in range(self._up_blocks(level)):
                skip = hs.pop()
                if skip.shape[2:] != h.shape[2:]:
                    h = nn.functional.interpolate(h, size=skip.shape[2:], mode="nearest")
                h = self.up[i](torch.cat([h, skip], dim=1), temb)
                i += 1
        return self.conv_out(nn.functional.silu(self.norm_out(h)))[:, 0]

    def forward(self, x: ScalarData, t: Time) -> ScalarData:
        """The score ``grad_x log p_t(x)`` (without an SDE: the field ``net(x, t)``), shaped like ``x``."""
        self._check(x)
        out = self._net(x, t)
        if self.config.z2_odd:
            out = (out - self._net(-x, t)) / 2
        if self.sde is None:
            return out
        s = expand_like(self.sde.std(t), out)
        if not self.config.force:
            return out / s
        return self.force_base(x, s) + out * (s / (s * s + self.config.force_gate ** 2))

    def force_base(self, x: Tensor, s: Tensor) -> Tensor:
        """``-(1 + s^2 K)^-1 [K x + N((1 + s^2 K)^-1 x)]`` with ``N = grad S - K`` (module docstring, "Force base")."""
        cfg = self.config
        dims = tuple(range(1, x.ndim))
        phat2 = Lattice(shape=tuple(x.shape[1:])).momentum_squared(dtype=x.dtype, device=x.device)
        kernel = cfg.force_c0 + 2 * cfg.force_kappa * phat2
        kernel = kernel[..., : x.shape[-1] // 2 + 1]  # the real FFT's half of the last axis (p_hat^2 is even)
        damp = 1 / (1 + (s * s) * kernel)

        def filtered(y: Tensor) -> Tensor:
            return torch.fft.irfftn(torch.fft.rfftn(y, dim=dims) * damp, s=x.shape[1:], dim=dims)

        smooth = filtered(x)
        # N(y) = grad S(y) - K y, with grad S = 2 (1 - 2 lam) y + 4 lam y^3 - 2 kappa sum_mu (y_{x+mu} + y_{x-mu})
        # and K y = c0 y + 2 kappa (2 D y - sum_mu (y_{x+mu} + y_{x-mu})): the hopping terms cancel
        nonlinear = (2 * (1 - 2 * cfg.force_lam) - cfg.force_c0 - 4 * cfg.force_kappa * len(dims)) * smooth \
            + 4 * cfg.force_lam * smooth ** 3
        linear = torch.fft.irfftn(torch.fft.rfftn(x, dim=dims) * (kernel * damp), s=x.shape[1:], dim=dims)
        return -(linear + filtered(nonlinear))

