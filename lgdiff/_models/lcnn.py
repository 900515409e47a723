r"""Lattice gauge-equivariant CNN (L-CNN) score network for link fields.

Favoni, Ipp, Müller, Schuh, "Lattice gauge equivariant convolutional neural networks",
PRL 128 (2022) 032003 (arXiv:2012.12901). docs/conventions.md, "Score networks".

The network works on *W objects*: site-local matrices that transform in the adjoint at x,
``W(x) -> Omega(x) W(x) Omega(x)^dagger``: channel stacks, mathematically ``[B, C, *L, N, N]``, stored
channel-first and matrix-index-first as ``[C, N, N, B, *L]`` inside the network (see "matrix-index-first stacks" below).

- **Input**: the plaquettes ``U_{mu nu}(x)`` for every ordered pair ``mu != nu`` (both orientations:
  ``U_{nu mu} = U_{mu nu}^dagger``), optionally the 2x1 rectangles (2 along mu, 1 along nu) for every ordered
  pair and their daggers. The identity is added as a channel inside every bilinear layer, so bilinear layers
  contain linear and constant terms.
- **L-Conv**: ``W'_i(x) = sum_{j, mu, k=-K..K} w_{i j mu k} U_{x -> x+k mu} W_j(x + k mu) U_{x -> x+k mu}^dagger``
  with straight Wilson lines; ``k = 0`` carries one weight (no direction). The transports are computed by
  repeated one-step shifts, Horner style: ``sum_k T^k V_k = T(V_1 + T(V_2 + ...))`` with
  ``T X(x) = U_mu(x) X(x + mu) U_mu(x)^dagger``.
- **L-Bilin**: ``W''_i(x) = sum_{j, k} a_{ijk} W_j(x) W'_k(x)``, both stacks extended by the identity.
- **Time**: ``TimeEmbedding(t)`` gives per-channel real factors ``1 + gamma_{b, i}(t)`` (gauge invariant)
  that multiply the channels after each bilinear layer and before the read-out.
- **L-Act**: ``W_i -> 2 sigmoid(alpha_i Re tr W_i / N + beta_i Im tr W_i / N + c_i) W_i`` (smooth gate on
  gauge-invariant traces).
- **Read-out** per link, from the last hidden stack and the input loops ``Z``:
  ``s_mu(x) = P_alg( sum_i c_{mu i} Z_i(x) + U_mu(x) [sum_i d_{mu i} Z_i(x + mu)] U_mu(x)^dagger )``.
  Both terms transform as ``s_mu(x) -> Omega(x) s_mu(x) Omega(x)^dagger``; the second makes the score
  depend on the link ``U_mu(x)`` itself. One L-Conv layer with ``kernel_size = 3`` already spans the
  Wilson force ``P_alg(U_mu(x) A_mu(x))`` (upper staples are plaquettes at x, lower staples are plaquettes
  at ``x - nu`` transported back), so the exact score at ``t -> 0`` is within reach.

**Scaling**: the output is *not* divided by ``s(t)``; the network knows only ``t``. A caller who wants the
usual parametrisation ``s_theta(U, t) = LCNN(U, t) / s(t)`` applies it (it owns the SDE).

Weights are real (float32 or float64) and act on complex matrices of the matching precision; no layer
depends on the lattice size, so a model built for 4^4 runs on 6^4.
"""

import math
import typing
from collections.abc import Mapping

import attrs
import torch
from torch import Tensor, nn

from .._fields.links import AlgebraField, LinkField
from .._groups.base import AbstractGroup, complex_dtype
from .._groups.names import group_from_name
from .._types import Algebra, Links, Time
from .._geometry.paths import projected_closed_staples
from .covfilter import covariant_filter
from .embedding import TimeEmbedding

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _positive(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"LCNNConfig.{attribute.name} must be an int >= 1; got {value!r}")


def _check_group(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, AbstractGroup):
        raise TypeError(f"LCNNConfig.group must be a group such as U1() or SU(3); got {value!r}")


def _check_dim(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= 4:
        raise ValueError(
            f"LCNNConfig.dim must be 2, 3 or 4 (the L-CNN is built from plaquettes, which need two directions); "
            f"got dim={value!r}"
        )


def _check_kernel(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or value % 2 == 0:
        raise ValueError(
            f"LCNNConfig.kernel_size must be odd and >= 1 (offsets k = -K..K, kernel_size = 2K + 1); got {value!r}"
        )


def _check_even(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 2 or value % 2:
        raise ValueError(f"LCNNConfig.{attribute.name} must be even and >= 2 (sin/cos pairs); got {value!r}")


def _check_scale(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"LCNNConfig.{attribute.name} must be a finite float > 0; got {value!r}")


def _check_force_beta(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"LCNNConfig.force_beta must be a finite float >= 0 (0: no force term); got {value!r}")


def _float(x: object) -> object:
    return float(x) if isinstance(x, int) and not isinstance(x, bool) else x


def _check_force_filter(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"LCNNConfig.force_filter must be an int >= 0 (conjugate-gradient steps; 0: off); got {value!r}")
    if value > 0 and not instance.force_beta > 0:  # type: ignore[attr-defined]
        raise ValueError("LCNNConfig.force_filter filters the Wilson force: it needs force_beta > 0")


def _check_dtype(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value not in _DTYPES:
        raise ValueError(
            f"LCNNConfig.dtype must be 'float32' or 'float64' (the real dtype of the weights); got {value!r}"
        )


@typing.final
@attrs.frozen(kw_only=True)
class LCNNConfig:
    """Architecture of an `LCNN`, recorded in checkpoints (``to_dict`` / ``from_dict``).

    **Fields:**
    - `group`: gauge group, e.g. ``SU(3)``; `dim`: number of directions D (2..4).
    - `channels`: hidden W channels; `blocks`: number of L-Conv + L-Bilin + L-Act blocks.
    - `kernel_size`: ``2K + 1``, the L-Conv reach ``k = -K..K`` along each direction.
    - `time_features`: number of Fourier features (and MLP width) of the time embedding;
      `time_scale`: std of the Gaussian Fourier frequencies (in cycles per unit of t).
    - `rectangles`: add the 2x1 loops to the plaquettes as inputs.
    - `force_beta`: ``beta_0 > 0`` parametrises the score around its exact ``t -> 0`` limit, the Wilson force
      ``F = -beta_0 grad S`` of the training ensemble (the class docstring of `LCNN`); 0 (the default) is the plain
      network.
    - `force_gate`: the noise level ``s_0`` below which the learned residual is switched off (with `force_beta`).
    - `force_filter`: ``K > 0`` replaces the force's scalar damping ``1 / (1 + lambda s^2)`` by the gauge-covariant
      Gaussian filter ``(1 + s^2 gamma c_0 H)^{-1}`` (`lgdiff._models.covfilter`, ``K`` conjugate-gradient steps,
      ``gamma`` learned, ``c_0 = beta_0 norm / N`` the linearised action's stiffness); 0 (the default) is off.
    - `dtype`: real dtype of the weights, ``"float32"`` (complex64 links) or ``"float64"`` (complex128).

    >>> from lgdiff import SU
    >>> cfg = LCNNConfig(group=SU(3), dim=4)
    >>> LCNNConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    group: AbstractGroup = attrs.field(validator=_check_group)
    dim: int = attrs.field(validator=_check_dim)
    channels: int = attrs.field(default=8, validator=_positive)
    blocks: int = attrs.field(default=2, validator=_positive)
    kernel_size: int = attrs.field(default=3, validator=_check_kernel)
    time_features: int = attrs.field(default=16, validator=_check_even)
    time_scale: float = attrs.field(default=4.0, converter=lambda x: float(x) if isinstance(x, int) else x,
                                    validator=_check_scale)
    rectangles: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    dtype: str = attrs.field(default="float64", validator=_check_dtype)
    force_beta: float = attrs.field(default=0.0, converter=_float, validator=_check_force_beta)
    force_gate: float = attrs.field(default=0.1, converter=_float, validator=_check_scale)
    force_filter: int = attrs.field(default=0, validator=_check_force_filter)

    @property
    def torch_dtype(self) -> torch.dtype:
        """The weights' real dtype."""
        return _DTYPES[self.dtype]

    @property
    def n_loops(self) -> int:
        """Input W channels: ``D(D-1)`` oriented plaquettes, plus ``2 D(D-1)`` oriented 2x1 rectangles."""
        pairs = self.dim * (self.dim - 1)
        return pairs * (3 if self.rectangles else 1)

    def to_dict(self) -> dict[str, str | int | float | bool]:
        """Plain JSON-able values (the group as its name, e.g. ``"SU(3)"``)."""
        out: dict[str, str | int | float | bool] = {}
        for field in attrs.fields(LCNNConfig):
            value = getattr(self, field.name)
            out[field.name] = str(value) if field.name == "group" else value
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> "LCNNConfig":
        """Inverse of `to_dict`; unknown keys are an error."""
        names = {f.name for f in attrs.fields(LCNNConfig)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"LCNNConfig.from_dict got unknown keys {unknown}; expected a subset of {sorted(names)}")
        if "group" not in d or not isinstance(d["group"], str):
            raise ValueError(f"LCNNConfig.from_dict needs the group's name, e.g. 'SU(3)'; got {d.get('group')!r}")
        kwargs = dict(d)
        kwargs["group"] = group_from_name(d["group"])
        return cls(**kwargs)


# ---- matrix-index-first stacks ---------------------------------------------------------------------
# Internally a stack of C matrix fields is stored channel-first and matrix-index-first, [C, N, N, B, *L]:
# - each matrix entry is one contiguous array over batch and sites, so an N x N product is N broadcast
#   multiply-adds over whole arrays (as in lgdiff/_geometry/paths.py) instead of one tiny GEMM per site; a
#   batched complex 3x3 `@` pays per-matrix overhead on the CPU (a transport measured 1.5x (complex128) to 3x
#   (complex64) slower that way); for N = 1 (U(1)) a product is a single multiply;
# - channel mixing by real weights is ONE real GEMM [O, C] @ [C, everything else] on the (re, im) view, in the
#   forward and in the backward, without copies.
# Matrix entries are taken with unbind, not slicing: the backward of unbind is one stack, while the backward of
# each slice allocates and zero-fills a gradient as large as its input (that was most of the backward time).
# The helpers are @typing.no_type_check: the test suite's jaxtyping import hook would add ~50 us to each call.

_SITE = 4  # sites start at axis 4 in a stack [C, N, N, B, *L]


@typing.no_type_check
def _to_soa(u: Tensor) -> Tensor:
    """Links ``[B, D, *L, N, N] -> [D, N, N, B, *L]``, contiguous."""
    n = u.shape[-1]
    entries = [e for row in u.movedim(1, 0).unbind(-2) for e in row.unbind(-1)]  # each [D, B, *L]
    return torch.stack(entries, dim=1).reshape(u.shape[1], n, n, u.shape[0], *u.shape[2:-2])


@typing.no_type_check
def _to_aos(s: Tensor) -> Tensor:
    """``[D, N, N, B, *L] -> [B, D, *L, N, N]``, contiguous (inverse of ``_to_soa``)."""
    rows = s.movedim(0, 3).unbind(0)  # each [N, B, D, *L]
    return torch.stack([torch.stack(row.unbind(0), dim=-1) for row in rows], dim=-2)


@typing.no_type_check
def _roll(s: Tensor, mu: int, steps: int = 1) -> Tensor:
    """``g(x) = s(x + steps mu)`` on a stack ``[C, N, N, B, *L]`` (``lattice.shift``'s convention)."""
    return torch.roll(s, shifts=-steps, dims=_SITE + mu)


@typing.no_type_check
def _mm(a: Tensor, b: Tensor) -> Tensor:
    """``A B``: ``C_ij = sum_k A_ik B_kj``, broadcasting over channels (a link stack has C = 1)."""
    a_cols, b_rows = a.unbind(2), b.unbind(1)
    c = a_cols[0][:, :, None] * b_rows[0][:, None]
    for k in range(1, len(a_cols)):
        c = c.addcmul_(a_cols[k][:, :, None], b_rows[k][:, None])
    return c


@typing.no_type_check
def _mm_dag(a: Tensor, b_conj: Tensor) -> Tensor:
    """``A B^dagger`` from a materialised ``conj(B)``: ``C_ij = sum_k A_ik conj(B_jk)``."""
    a_cols, b_cols = a.unbind(2), b_conj.unbind(2)
    c = a_cols[0][:, :, None] * b_cols[0][:, None]
    for k in range(1, len(a_cols)):
        c = c.addcmul_(a_cols[k][:, :, None], b_cols[k][:, None])
    return c


@typing.no_type_check
def _dag_mm(a_conj: Tensor, b: Tensor) -> Tensor:
    """``A^dagger B`` from a materialised ``conj(A)``: ``C_ij = sum_k conj(A_ki) B_kj``."""
    a_rows, b_rows = a_conj.unbind(1), b.unbind(1)
    c = a_rows[0][:, :, None] * b_rows[0][:, None]
    for k in range(1, len(a_rows)):
        c = c.addcmul_(a_rows[k][:, :, None], b_rows[k][:, None])
    return c


@typing.no_type_check
def _dagger(s: Tensor) -> Tensor:
    """``W^dagger`` of a stack, materialised."""
    return s.transpose(1, 2).conj_physical()


@typing.no_type_check
def _identity(like: Tensor) -> Tensor:
    """The identity as one channel ``[1, N, N, B, *L]`` (broadcast view)."""
    n = like.shape[1]
    eye = torch.eye(n, dtype=like.dtype, device=like.device).reshape(1, n, n, *([1] * (like.ndim - 3)))
    return eye.expand(1, n, n, *like.shape[3:])


@typing.no_type_check
def _mix(weight: Tensor, s: Tensor) -> Tensor:
    """Real channel mixing ``out_o = sum_i weight_{o i} W_i``: ``[O, I]`` real on ``[I, N, N, B, *L]`` complex,
    one real GEMM on the interleaved (re, im) view."""
    flat = torch.view_as_real(s.contiguous()).reshape(s.shape[0], -1)
    return torch.view_as_complex((weight @ flat).reshape(weight.shape[0], *s.shape[1:], 2))


@typing.no_type_check
def _transport_forward(x: Tensor, u_mu: Tensor, uc_mu: Tensor, mu: int) -> Tensor:
    """``U_mu(x) X(x + mu) U_mu(x)^dagger`` for a stack ``x``; ``u_mu`` and ``uc_mu = conj(u_mu)`` are
    ``[1, N, N, B, *L]``."""
    return _mm_dag(_mm(u_mu, _roll(x, mu)), uc_mu)


@typing.no_type_check
def _transport_backward(x: Tensor, u_mu: Tensor, uc_mu: Tensor, mu: int) -> Tensor:
    """``U_mu(x - mu)^dagger X(x - mu) U_mu(x - mu)``: the transport from ``x - mu`` to ``x``."""
    return _roll(_mm(_dag_mm(uc_mu, x), u_mu), mu, steps=-1)


@typing.no_type_check
def _loops(us: list[Tensor], rectangles: bool) -> Tensor:
    """Input W objects ``[C_loops, N, N, B, *L]`` from the links ``us[mu] = U_mu`` ``[1, N, N, B, *L]``:
    for each plane mu < nu the plaquette ``U_{mu nu}`` and ``U_{nu mu} = U_{mu nu}^dagger``; then, if asked,
    for each ordered pair mu != nu the 2x1 loop (2 along mu, 1 along nu) and its dagger, as
    ``lgdiff._geometry.paths.rectangle(u, mu, nu, 2, 1)``."""
    dim = len(us)
    ws = []
    for mu in range(dim):
        for nu in range(mu + 1, dim):
            # U_mu(x) U_nu(x+mu) [U_nu(x) U_mu(x+nu)]^dagger
            p = _mm_dag(_mm(us[mu], _roll(us[nu], mu)), _mm(us[nu], _roll(us[mu], nu)).conj_physical())
            ws += [p, _dagger(p)]
    if rectangles:
        lines = [_mm(us[mu], _roll(us[mu], mu)) for mu in range(dim)]  # U_mu(x) U_mu(x + mu)
        for mu in range(dim):
            for nu in range(dim):
                if mu != nu:
                    # line_mu(x) U_nu(x + 2 mu) [U_nu(x) line_mu(x + nu)]^dagger
                    top = _mm(lines[mu], _roll(us[nu], mu, steps=2))
                    r = _mm_dag(top, _mm(us[nu], _roll(lines[mu], nu)).conj_physical())
                    ws += [r, _dagger(r)]
    return torch.cat(ws, dim=0)


@typing.no_type_check
def _per_channel(v: Tensor, w: Tensor) -> Tensor:
    """Broadcast real factors ``[B, C]`` over a stack ``[C, N, N, B, *L]``."""
    return v.T.reshape(v.shape[1], 1, 1, v.shape[0], *([1] * (w.ndim - 4)))


def _normal(generator: torch.Generator, dtype: torch.dtype, std: float, *shape: int) -> nn.Parameter:
    return nn.Parameter(std * torch.randn(shape, generator=generator, dtype=dtype, device=generator.device))


@typing.final
class _LConv(nn.Module):
    """Parallel-transport convolution (see the module docstring); weights ``[C_out, C_in, 1 + 2 K D]``."""

    def __init__(self, c_in: int, c_out: int, dim: int, radius: int, generator: torch.Generator,
                 dtype: torch.dtype) -> None:
        super().__init__()
        self.dim, self.radius, self.c_out = dim, radius, c_out
        taps = 1 + 2 * radius * dim  # k = 0, then per mu: k = +1..+K, then k = -1..-K
        self.weight = _normal(generator, dtype, 1 / math.sqrt(c_in * taps), c_out, c_in, taps)

    @typing.no_type_check
    def forward(self, w: Tensor, us: list[Tensor], ucs: list[Tensor]) -> Tensor:
        taps = self.weight.shape[-1]
        # mix channels first (weights are linear, transports act channel by channel): V_{p,o} = sum_i w_{o i p} W_i
        v = _mix(self.weight.permute(2, 0, 1).reshape(taps * self.c_out, -1), w)
        v = v.reshape(taps, self.c_out, *w.shape[1:]).unbind(0)
        out = v[0]
        p = 1
        for mu in range(self.dim):
            for transport in (_transport_forward, _transport_backward):
                acc = v[p + self.radius - 1]
                for k in range(self.radius - 2, -1, -1):  # Horner: T(V_1 + T(V_2 + ... T(V_K)))
                    acc = v[p + k] + transport(acc, us[mu], ucs[mu], mu)
                out = out + transport(acc, us[mu], ucs[mu], mu)
                p += self.radius
        return out


@typing.final
class _LBilin(nn.Module):
    """``W''_i = sum_{jk} a_{ijk} W_j W'_k`` with both stacks extended by the identity."""

    def __init__(self, c_a: int, c_b: int, c_out: int, generator: torch.Generator, dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = _normal(generator, dtype, 1 / math.sqrt((c_a + 1) * (c_b + 1)), c_out, c_a + 1, c_b + 1)

    @typing.no_type_check
    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        a1 = torch.cat([a, _identity(a)], dim=0)
        b1 = torch.cat([b, _identity(b)], dim=0)
        c_out, cb = self.weight.shape[0], b1.shape[0]
        # Y_{ik} = sum_j a_{ijk} W_j (one real GEMM), then sum_k Y_ik W'_k entry by entry:
        # out[r, c] = sum_{k, m} Y_ik[r, m] W'_k[m, c], N (C_b + 1) multiply-adds over whole arrays
        y = _mix(self.weight.permute(2, 0, 1).reshape(cb * c_out, -1), a1).reshape(cb, c_out, *a.shape[1:])
        out = None
        for y_k, b_k in zip(y.unbind(0), b1.unbind(0), strict=True):  # y_k [O, N, N, B, *L], b_k [N, N, B, *L]
            for y_km, b_km in zip(y_k.unbind(2), b_k.unbind(0), strict=True):
                term = (y_km[:, :, None], b_km[None, None])
                out = term[0] * term[1] if out is None else out.addcmul_(*term)
        return out


@typing.final
class _LAct(nn.Module):
    """``W_i -> 2 sigmoid(alpha_i Re tr W_i / N + beta_i Im tr W_i / N + c_i) W_i``."""

    def __init__(self, channels: int, generator: torch.Generator, dtype: torch.dtype) -> None:
        super().__init__()
        self.alpha = _normal(generator, dtype, 1.0, channels)
        self.beta = _normal(generator, dtype, 1.0, channels)
        self.bias = nn.Parameter(torch.zeros(channels, dtype=dtype, device=generator.device))

    @typing.no_type_check
    def forward(self, w: Tensor) -> Tensor:
        tr = w.diagonal(dim1=1, dim2=2).sum(-1) / w.shape[1]  # [C, B, *L], gauge invariant
        shape = (-1,) + (1,) * (tr.ndim - 1)
        z = self.alpha.reshape(shape) * tr.real + self.beta.reshape(shape) * tr.imag + self.bias.reshape(shape)
        return w * (2 * torch.sigmoid(z))[:, None, None]


@typing.final
class LCNN(nn.Module):
    r"""Gauge-equivariant score network for links: ``(U, t) -> s(U, t)``, one algebra element per link.

    Equivariance: ``s(Omega . U, t)_mu(x) = Omega(x) s(U, t)_mu(x) Omega(x)^dagger`` exactly (up to rounding),
    and ``s`` commutes with lattice translations. Architecture and conventions: module docstring. The output
    is not divided by ``s(t)`` (the caller owns the SDE).

    **Arguments:**
    - `config`: the architecture (`LCNNConfig`).
    - `generator`: initialises every weight (normal, fan-in scaled) and the time-embedding frequencies.

    >>> from lgdiff import SU, Lattice, LinkField
    >>> g = torch.Generator().manual_seed(0)
    >>> model = LCNN.from_config(LCNNConfig(group=SU(2), dim=2, channels=4), generator=g)
    >>> U = LinkField.random(SU(2), Lattice(shape=(4, 4)), batch=3, generator=g)
    >>> s = model(U, torch.full((3,), 0.5, dtype=torch.float64))
    >>> s.data.shape
    torch.Size([3, 2, 4, 4, 2, 2])
    """

    def __init__(self, config: LCNNConfig, *, generator: torch.Generator) -> None:
        super().__init__()
        if not isinstance(config, LCNNConfig):
            raise TypeError(f"LCNN needs an LCNNConfig; got {type(config).__name__}")
        self._config = config
        dtype, c, dim = config.torch_dtype, config.channels, config.dim
        radius = (config.kernel_size - 1) // 2
        self.convs = nn.ModuleList()
        self.bilins = nn.ModuleList()
        self.acts = nn.ModuleList()
        c_in = config.n_loops
        for _ in range(config.blocks):
            self.convs.append(_LConv(c_in, c, dim, radius, generator, dtype))
            self.bilins.append(_LBilin(c_in, c, c, generator, dtype))
            self.acts.append(_LAct(c, generator, dtype))
            c_in = c
        self.time = TimeEmbedding(config.time_features, config.time_features, (config.blocks + 1) * c,
                                  kind="fourier", scale=config.time_scale, generator=generator, dtype=dtype)
        c_z = c + config.n_loops
        self.readout_local = _normal(generator, dtype, 1 / math.sqrt(2 * c_z), dim, c_z)
        self.readout_link = _normal(generator, dtype, 1 / math.sqrt(2 * c_z), dim, c_z)
        if config.force_filter > 0:  # softplus(l) = gamma = 0.2 initially (docs/gauge-diffusion.md, the SU(3) filter)
            self.filter_scale = nn.Parameter(torch.tensor(0.2 + math.log(-math.expm1(-0.2)), dtype=dtype))
        elif config.force_beta > 0:  # softplus(l) = 2 beta_0 initially
            init = 2 * config.force_beta
            self.force_scale = nn.Parameter(torch.tensor(init + math.log(-math.expm1(-init)), dtype=dtype))

    @classmethod
    def from_config(cls, config: LCNNConfig, *, generator: torch.Generator) -> "LCNN":
        """Build a freshly initialised network (load a checkpoint with ``load_state_dict`` afterwards)."""
        return cls(config, generator=generator)

    @property
    def config(self) -> LCNNConfig:
        """The architecture, with `dtype` following the weights (after ``model.to(torch.float32)``)."""
        names = {v: k for k, v in _DTYPES.items()}
        real = self.readout_local.dtype
        return attrs.evolve(self._config, dtype=names.get(real, str(real)))

    def n_parameters(self) -> int:
        """Number of trainable real parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, U: LinkField, t: Time) -> AlgebraField:
        """The score per link, ``[B, D, *L, N, N]`` in the algebra. ``t``: ``[B]`` diffusion times."""
        if U.group != self._config.group:
            raise ValueError(
                f"LCNN was built for {self._config.group} but got links of {U.group}; "
                f"build it with LCNNConfig(group={U.group}, dim={U.lattice.dim}, ...)"
            )
        return AlgebraField(self.score_raw(U.data, t), U.group, U.lattice)

    def score_raw(self, u: Links, t: Time) -> Algebra:
        """`forward` on raw link tensors ``u [B, D, *L, N, N]`` (hot loops): returns ``[B, D, *L, N, N]``."""
        self._check_raw(u, t)
        cfg = self._config
        b, dim = u.shape[0], u.shape[1]
        real = self.readout_local.dtype
        scales = 1 + self.time(t.to(real)).reshape(b, cfg.blocks + 1, cfg.channels)
        soa = _to_soa(u)  # [D, N, N, B, *L]
        us = [x[None].contiguous() for x in soa.unbind(0)]
        ucs = [x.conj_physical() for x in us]
        loops = _loops(us, cfg.rectangles)
        w = loops
        for i, (conv, bilin, act) in enumerate(zip(self.convs, self.bilins, self.acts, strict=True)):
            w = bilin(w, conv(w, us, ucs))
            w = act(w * _per_channel(scales[:, i], w))
        w = w * _per_channel(scales[:, -1], w)
        z = torch.cat([w, loops], dim=0)
        local = _mix(self.readout_local, z)  # [D, N, N, B, *L]: channel mu is the link direction
        linked = _mix(self.readout_link, z)
        moved = torch.cat([_transport_forward(x[None], us[mu], ucs[mu], mu) for mu, x in enumerate(linked.unbind(0))])
        out = cfg.group.project_algebra(_to_aos(local + moved))
        if cfg.force_beta > 0:
            out = self._force_residual(u, t.to(real), out)
        return out

    def _force_residual(self, u: Tensor, tau: Tensor, net: Tensor) -> Tensor:
        """``s F / (1 + lambda s^2) + N s^2 / (s^2 + s_0^2)``, or with `LCNNConfig.force_filter`
        ``s (1 + s^2 gamma c_0 H)^{-1} F + N s^2 / (s^2 + s_0^2)`` (the class docstring)."""
        cfg = self._config
        s2 = torch.exp(8 * tau).reshape(-1, *([1] * (net.ndim - 1)))
        c0 = cfg.force_beta * cfg.group.norm / cfg.group.n
        force = projected_closed_staples(u, traceless=cfg.group.n_generators == cfg.group.n ** 2 - 1, scale=-c0)
        gated = net * (s2 / (s2 + cfg.force_gate ** 2))
        if cfg.force_filter > 0:
            k = s2.reshape(-1) * (nn.functional.softplus(self.filter_scale) * c0)
            return covariant_filter(u, force, k, steps=cfg.force_filter) * s2.sqrt() + gated
        lam = nn.functional.softplus(self.force_scale)
        return force * (s2.sqrt() / (1 + lam * s2)) + gated

    def _check_raw(self, u: Tensor, t: Tensor) -> None:
        cfg = self._config
        n = cfg.group.n
        if u.ndim != 4 + cfg.dim or u.shape[1] != cfg.dim or u.shape[-2:] != (n, n):
            raise ValueError(
                f"LCNN for {cfg.group} in D={cfg.dim} expects links [B, {cfg.dim}, *L ({cfg.dim} sizes), {n}, {n}]; "
                f"got shape {tuple(u.shape)}"
            )
        want = complex_dtype(self.readout_local.dtype)
        if u.dtype != want:
            raise ValueError(
                f"LCNN weights are {self.readout_local.dtype}, so links must be {want}; got {u.dtype}. "
                f"Convert the links (U.to(dtype={want})) or the model (model.to({u.real.dtype}))."
            )
        if t.shape != (u.shape[0],):
            raise ValueError(
                f"LCNN expects one time per configuration, t of shape [{u.shape[0]}]; got {tuple(t.shape)}. "
                f"For a common time use torch.full((B,), t)."
            )
