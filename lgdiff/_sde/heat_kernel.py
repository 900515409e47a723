r"""Heat kernels of Brownian motion on U(1) and SU(N): the exact transition densities of the
group-preserving diffusion (docs/conventions.md, Diffusion models, gauge part).

Brownian motion on the group is the limit of small left steps ``U <- exp(i sqrt(dtau) sum_a T^a z^a) U``
with the generators of docs/conventions.md (``tr T^a T^b = delta^{ab}/2`` for SU(N), ``T = 1`` for U(1)).
Its generator is ``Delta / 2`` with the Laplacian ``Delta = sum_a nabla^a nabla^a`` built from the left
Lie derivatives ``nabla^a f(U) = d/de f(exp(i e T^a) U)``, so its density after time ``tau``, started
at the identity, is the heat kernel ``K_tau(U)``: a class function with ``d K / d tau = Delta K / 2``,
normalised against the Haar measure (``int dU K_tau(U) = 1``), ``K_0 = delta``. The character
expansion (``Delta chi_R = -C_2(R) chi_R``) reads

``K_tau(U) = sum_R d_R exp(-C_2(R) tau / 2) chi_R(U)``;

U(1): ``K = sum_n exp(-n^2 tau / 2) e^{i n theta}`` (the wrapped Gaussian of variance ``tau``);
SU(2): ``K = sum_{j = 0, 1/2, ..} (2j + 1) exp(-j(j+1) tau / 2) sin((2j+1) theta) / sin(theta)`` for
eigenvalues ``e^{+- i theta}``. For small ``tau`` the Poisson-resummed "sum over images" converges
instead (H = diag(theta) with ``sum_k theta_k = 0``, ``theta_ij = theta_i - theta_j``, dimension ``d``):

``K_tau = C_N tau^{-d/2} e^{|rho|^2 tau / 2} sum_{n in Z^N, sum n = 0}
prod_{i<j} (theta_ij + 2 pi n_ij) / (2 sin(theta_ij / 2)) exp(-sum_k (theta_k + 2 pi n_k)^2 / tau)``

with ``|rho|^2 = N (N^2 - 1) / 24`` and ``C_N = vol(SU(N)) (2 pi)^{-d/2}`` in the metric in which the
``i T^a`` are orthonormal (``vol(SU(2)) = 16 pi^2``). The U(1) and SU(2) kernels switch between the two
(complete) forms at ``tau = TAU_SPLIT`` (images below, characters above), which keeps each far from its
cancellation regime: both are exact to float precision everywhere, including ``theta = 0, pi``. SU(N >= 3)
uses characters for ``tau >= 1`` and only the leading image below (see :class:`SUNHeatKernel`).

The score of the kernel is its Lie derivative ``nabla^a log K_tau(U)``, returned as the algebra
element ``i sum_a (nabla^a log K) T^a`` (the convention of ``AlgebraField`` scores). For a class
function the Lie derivative is radial: it points along the projection of U onto the algebra.
"""

import abc
import functools
import itertools
import math
import typing

import attrs
import torch
from jaxtyping import Complex, Float
from torch import Tensor

from .._groups.base import AbstractGroup, real_dtype, trace
from .._groups.sun import SU
from .._groups.u1 import U1
from .._types import Matrices

TAU_SPLIT = 2.0
"""Below this diffusion time the kernels use the sum over images, above it the character sum."""

# Truncations, each far below float64 resolution for the regime where it is used (tau <= or >= TAU_SPLIT):
_N_IMAGES = 2          # images per side; the next ones are below e^-61 (U(1), k = +-3) and e^-197 (SU(2))
_N_CHARACTERS_U1 = 8   # Fourier modes: exp(-9^2 TAU_SPLIT / 2) = e^-81
_N_CHARACTERS_SU2 = 16  # 2j + 1 = 1..16: exp(-(17^2 - 1) TAU_SPLIT / 8) = e^-72, against K(pi) >= 8.8e-3
_SUN_TAU_SPLIT = 1.0   # SU(N >= 3): images (leading term) below, characters above
_SUN_CASIMIR_CUT = 130.0  # characters with C_2(R) _SUN_TAU_SPLIT / 2 <= 65
_SUN_CHUNK = 256       # highest weights per batched Jacobi-Trudi evaluation (bounds memory)
_SAMPLE_GRID = 4097    # inverse-CDF grid points per configuration for SU(2) sampling


class AbstractHeatKernel(abc.ABC):
    r"""The heat kernel ``K_tau(U)`` of Brownian motion on a group (module docstring), as a class function
    against the normalised Haar measure. ``tau`` broadcasts against the batch shape of ``U``."""

    @property
    @abc.abstractmethod
    def group(self) -> AbstractGroup:
        """The group."""

    @property
    @abc.abstractmethod
    def can_sample(self) -> bool:
        """Whether :meth:`sample` draws exact samples for this group."""

    @abc.abstractmethod
    def log_density(self, U: Matrices, tau: Tensor) -> Float[Tensor, "*b"]:
        """``log K_tau(U)`` per matrix, ``U [*b, n, n]``, ``tau`` broadcastable to ``*b``."""

    @abc.abstractmethod
    def score(self, U: Matrices, tau: Tensor) -> Complex[Tensor, "*b n n"]:
        """``i sum_a (nabla^a log K_tau)(U) T^a`` per matrix: the exact score of the kernel (left Lie derivative)."""

    @abc.abstractmethod
    def sample(self, tau: Float[Tensor, " batch"], shape: tuple[int, ...], *, generator: torch.Generator,
               dtype: torch.dtype = torch.complex128) -> Complex[Tensor, "batch *s n n"]:
        """Exact samples of ``K_tau`` (Brownian motion from the identity after time ``tau``):
        ``[B, *shape, n, n]``, configuration ``b`` at time ``tau[b]``. Raises where ``can_sample`` is False."""

    def _tau(self, U: Tensor, tau: Tensor) -> Tensor:
        if not isinstance(tau, Tensor):
            raise TypeError(f"heat kernel of {self.group}: tau must be a real tensor; got {type(tau).__name__}")
        try:
            return torch.broadcast_to(tau.to(real_dtype(U.dtype)), U.shape[:-2])
        except RuntimeError:
            raise ValueError(
                f"heat kernel of {self.group}: tau of shape {tuple(tau.shape)} does not broadcast against the "
                f"matrices' batch shape {tuple(U.shape[:-2])}; reshape tau (e.g. with expand_like)"
            ) from None

    def __repr__(self) -> str:
        return f"HeatKernel({self.group})"


def heat_kernel(group: AbstractGroup) -> AbstractHeatKernel:
    """The heat kernel of ``group``: U(1), SU(2) (closed forms, exact sampling) or SU(N >= 3).

    >>> from lgdiff import SU
    >>> k = heat_kernel(SU(2))
    >>> U = SU(2).identity((1,))
    >>> round(float(k.log_density(U, torch.tensor(0.5))), 6)   # log(e^{tau/8} sqrt(8 pi/tau) 2/tau) at tau = 1/2
    3.407454
    >>> float(k.score(U, torch.tensor(0.5)).abs().max())       # a class function is stationary at 1
    0.0
    """
    if isinstance(group, U1):
        return U1HeatKernel()
    if isinstance(group, SU):
        return SU2HeatKernel() if group.N == 2 else SUNHeatKernel(group.N)
    raise TypeError(f"no heat kernel for {group!r}; expected U1() or SU(N)")


# ---- U(1) ---------------------------------------------------------------------------------------

@typing.final
@attrs.frozen
class U1HeatKernel(AbstractHeatKernel):
    r"""``K_tau(theta) = sum_n exp(-n^2 tau / 2) e^{i n theta}
    = sqrt(2 pi / tau) sum_k exp(-(theta + 2 pi k)^2 / (2 tau))``
    (the wrapped Gaussian of variance ``tau``, against ``d theta / 2 pi``)."""

    @property
    def group(self) -> AbstractGroup:
        return U1()

    @property
    def can_sample(self) -> bool:
        return True

    def log_density_angle(self, theta: Tensor, tau: Tensor) -> Tensor:
        """``log K_tau(theta)`` for angles ``theta`` (any real shape broadcasting with ``tau``)."""
        return self._angle(theta, tau)[0]

    def dlog_angle(self, theta: Tensor, tau: Tensor) -> Tensor:
        """``d/dtheta log K_tau(theta)``."""
        return self._angle(theta, tau)[1]

    def _angle(self, theta: Tensor, tau: Tensor) -> tuple[Tensor, Tensor]:
        theta, tau = torch.broadcast_tensors(theta, tau.to(theta.dtype))
        theta = theta - 2 * math.pi * torch.round(theta / (2 * math.pi))  # exact for theta in [-pi, pi]
        # images: log-sum-exp over k, exact to e^-(2 pi k_max - pi)^2 / (2 tau) for tau <= TAU_SPLIT
        ti = tau.clamp(max=TAU_SPLIT)
        k = torch.arange(-_N_IMAGES, _N_IMAGES + 1, dtype=theta.dtype, device=theta.device)
        y = theta[..., None] + 2 * math.pi * k
        logt = -y * y / (2 * ti[..., None])
        log_img = 0.5 * torch.log(2 * math.pi / ti) + torch.logsumexp(logt, -1)
        d_img = (torch.softmax(logt, -1) * (-y / ti[..., None])).sum(-1)
        # characters (Fourier): 1 + 2 sum_n e^{-n^2 tau/2} cos(n theta) >= 1 - 2 sum_n e^{-n^2} = 0.23 for tau >= 2
        tc = tau.clamp(min=TAU_SPLIT)
        n = torch.arange(1, _N_CHARACTERS_U1 + 1, dtype=theta.dtype, device=theta.device)
        w = torch.exp(-n * n * tc[..., None] / 2)
        nt = n * theta[..., None]
        kc = 1 + 2 * (w * torch.cos(nt)).sum(-1)
        dk = -2 * (w * n * torch.sin(nt)).sum(-1)
        use_img = tau < TAU_SPLIT
        return torch.where(use_img, log_img, torch.log(kc)), torch.where(use_img, d_img, dk / kc)

    def log_density(self, U: Matrices, tau: Tensor) -> Float[Tensor, "*b"]:
        tau = self._tau(U, tau)
        return self.log_density_angle(torch.angle(U[..., 0, 0]), tau)

    def score(self, U: Matrices, tau: Tensor) -> Complex[Tensor, "*b n n"]:
        tau = self._tau(U, tau)
        d = self.dlog_angle(torch.angle(U[..., 0, 0]), tau)
        return (1j * d.to(U.dtype))[..., None, None]

    def sample(self, tau: Float[Tensor, " batch"], shape: tuple[int, ...], *, generator: torch.Generator,
               dtype: torch.dtype = torch.complex128) -> Complex[Tensor, "batch *s n n"]:
        z = torch.randn((tau.shape[0], *shape, 1, 1), generator=generator, dtype=real_dtype(dtype), device=tau.device)
        theta = tau.to(z.dtype).sqrt().reshape(-1, *([1] * (z.ndim - 1))) * z
        return torch.polar(torch.ones_like(theta), theta)


# ---- SU(2) --------------------------------------------------------------------------------------

def _psi_over_sin(psi: Tensor) -> Tensor:
    """psi / sin(psi), stable at 0 (psi in [0, pi/2])."""
    return 1 / torch.sinc(psi / math.pi)


def _r(psi: Tensor) -> Tensor:
    """(1 - psi cot psi) / psi^2 = (1/psi) d/dpsi log(psi / sin psi), stable at 0."""
    small = psi < 0.05
    p2 = psi * psi
    series = 1 / 3 + p2 / 45 + 2 * p2 * p2 / 945 + p2 * p2 * p2 / 4725
    s = torch.where(small, torch.ones_like(psi), psi)
    direct = (torch.sin(s) - s * torch.cos(s)) / (s * s * torch.sin(s))
    return torch.where(small, series, direct)


def _pair_terms(c: float, psi: Tensor, tau: Tensor, r: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""For an image pair at +-c around the base point, with ``z = 4 c psi / tau``:
    ``log B~`` with ``B~ = (4c^2/tau) sh/z - ch`` (``sh = 1 - e^{-2z}``, ``ch = 1 + e^{-2z}``), the
    pair's contribution ``W = (psi / sin psi) exp(-2 (c - psi)^2 / tau) B~``, and
    ``(1/psi) d log W / d psi = r(psi) - 4/tau + (16 c^2/tau^2) ((4c^2/tau) q(z) - sh/z) / B~`` (``r = _r(psi)``)
    with ``q(z) = (z ch - sh) / z^3``. Every piece is stable at ``psi -> 0`` (``z -> 0``)."""
    z = 4 * c * psi / tau
    zs = torch.where(z > 0, z, torch.ones_like(z))
    e2 = torch.exp(-2 * z)
    sh_z = torch.where(z > 0, -torch.expm1(-2 * zs) / zs, torch.full_like(z, 2.0))
    ch = 1 + e2
    z2 = z * z
    q_series = 2 * torch.exp(-z) * (1 / 3 + z2 / 30 + z2 * z2 / 840 + z2 * z2 * z2 / 45360)
    zq = torch.where(z > 0.1, z, torch.ones_like(z))
    q_direct = (zq * (1 + torch.exp(-2 * zq)) + torch.expm1(-2 * zq)) / (zq * zq * zq)
    q = torch.where(z > 0.1, q_direct, q_series)
    a = 4 * c * c / tau
    b = a * sh_z - ch
    d = r - 4 / tau + (4 * a / tau) * (a * q - sh_z) / b
    return torch.log(b), d, -2 * (c - psi) ** 2 / tau


@typing.final
@attrs.frozen
class SU2HeatKernel(AbstractHeatKernel):
    r"""SU(2) heat kernel, a function of the eigen-angle ``theta in [0, pi]`` (eigenvalues ``e^{+-i theta}``).

    Characters (``tau >= TAU_SPLIT``): ``K = sum_{m>=1} m e^{-(m^2-1) tau/8} U_{m-1}(cos theta)`` with the
    Chebyshev polynomials ``U_{m-1}(cos theta) = sin(m theta)/sin theta`` (polynomials in ``cos theta``,
    hence exact at ``theta = 0, pi``). Images (``tau < TAU_SPLIT``):
    ``K = e^{tau/8} sqrt(8 pi/tau) (2/tau) sum_n (theta + 2 pi n) e^{-2 (theta + 2 pi n)^2/tau} / sin theta``,
    summed in pairs around ``theta = 0`` (for ``theta <= pi/2``) or ``theta = pi`` so that the 0/0 at either
    end cancels analytically, and in log space (the kernel at ``theta ~ pi`` is ``~e^{-2 pi^2/tau}``).
    The score is ``(d log K / d theta) / (4 sin theta) (U - U^dagger)/2``, with the ratio evaluated stably.
    """

    @property
    def group(self) -> AbstractGroup:
        return SU(2)

    @property
    def can_sample(self) -> bool:
        return True

    def log_density_angle(self, theta: Tensor, tau: Tensor) -> Tensor:
        """``log K_tau`` at eigen-angle ``theta in [0, pi]``."""
        theta, tau = torch.broadcast_tensors(theta, tau.to(theta.dtype))
        return self._log_and_ratio(torch.cos(theta), torch.sin(theta).abs(), tau)[0]

    def dlog_angle(self, theta: Tensor, tau: Tensor) -> Tensor:
        """``d/dtheta log K_tau`` at eigen-angle ``theta in [0, pi]``."""
        theta, tau = torch.broadcast_tensors(theta, tau.to(theta.dtype))
        return self._log_and_ratio(torch.cos(theta), torch.sin(theta).abs(), tau)[1] * torch.sin(theta)

    def _log_and_ratio(self, cos: Tensor, sin: Tensor, tau: Tensor) -> tuple[Tensor, Tensor]:
        """``(log K, (d log K / d theta) / sin theta)`` from ``cos theta``, ``sin theta >= 0``."""
        # -- images, tau < TAU_SPLIT; psi = distance to the nearer of theta = 0, pi (computed directly: pi - theta
        # would lose 1e-16 / psi relative accuracy near -1)
        ti = tau.clamp(max=TAU_SPLIT)
        near_pi = cos < 0
        psi = torch.atan2(sin, cos.abs())
        # around 0: main term (psi/sin psi) e^{-2 psi^2/tau} minus the pairs at c = 2 pi k
        r = _r(psi)
        log_pos = torch.log(_psi_over_sin(psi))
        main_log = log_pos - 2 * psi * psi / ti
        main_d = r - 4 / ti
        ratio_sum = torch.zeros_like(psi)
        ratio_d = torch.zeros_like(psi)
        for k in range(1, _N_IMAGES + 1):
            c = 2 * math.pi * k
            log_b, d, _ = _pair_terms(c, psi, ti, r)
            ratio = torch.exp(-2 * c * (c - 2 * psi) / ti + log_b)
            ratio_sum = ratio_sum + ratio
            ratio_d = ratio_d + ratio * d
        log_s0 = main_log + torch.log1p(-ratio_sum)
        d_s0 = (main_d - ratio_d) / (1 - ratio_sum)
        # around pi: all pairs at c = (2k + 1) pi are positive
        logs, ds = [], []
        for k in range(_N_IMAGES):
            c = (2 * k + 1) * math.pi
            log_b, d, gauss = _pair_terms(c, psi, ti, r)
            logs.append(log_pos + gauss + log_b)
            ds.append(d)
        lw = torch.stack(logs, -1)
        log_spi = torch.logsumexp(lw, -1)
        d_spi = (torch.softmax(lw, -1) * torch.stack(ds, -1)).sum(-1)
        log_s = torch.where(near_pi, log_spi, log_s0)
        # (1/sin theta) d/dtheta = +-(psi/sin psi) (1/psi) d/dpsi
        ratio_img = torch.where(near_pi, -d_spi, d_s0) * torch.exp(log_pos)
        log_a = ti / 8 + 0.5 * torch.log(8 * math.pi / ti) + torch.log(2 / ti)
        log_img = log_a + log_s
        # -- characters, tau >= TAU_SPLIT: K = sum_m c_m U_{m-1}(x), x = cos theta, by Clenshaw's recurrence
        # b_m = c_m + 2x b_{m+1} - b_{m+2} (K = b_1) and its x-derivative d_m = 2 b_{m+1} + 2x d_{m+1} - d_{m+2}
        tc = tau.clamp(min=TAU_SPLIT)
        m = torch.arange(1, _N_CHARACTERS_SU2 + 1, dtype=cos.dtype, device=cos.device)
        coef = (m * torch.exp(-(m * m - 1) * tc[..., None] / 8)).unbind(-1)
        x2 = 2 * cos
        b1, b2 = torch.zeros_like(cos), torch.zeros_like(cos)
        d1, d2 = torch.zeros_like(cos), torch.zeros_like(cos)
        for c_m in reversed(coef):
            b1, b2, d1, d2 = torch.addcmul(c_m - b2, x2, b1), b1, torch.addcmul(2 * b1 - d2, x2, d1), d1
        k_sum, dk_sum = b1, d1
        # dK/dtheta = -sin theta dK/dx
        use_img = tau < TAU_SPLIT
        log_k = torch.where(use_img, log_img, torch.log(k_sum))
        ratio_k = torch.where(use_img, ratio_img, -dk_sum / k_sum)
        return log_k, ratio_k

    @staticmethod
    def _cos_sin(U: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        p = (U - U.mH) / 2  # traceless for SU(2): i sin(theta) n.sigma
        cos = trace(U).real / 2
        sin = (trace(p.mH @ p).real / 2).clamp_min(0).sqrt()
        return cos, sin, p

    def log_density(self, U: Matrices, tau: Tensor) -> Float[Tensor, "*b"]:
        tau = self._tau(U, tau)
        cos, sin, _ = self._cos_sin(U)
        return self._log_and_ratio(cos, sin, tau)[0]

    def score(self, U: Matrices, tau: Tensor) -> Complex[Tensor, "*b n n"]:
        # nabla^a theta = n^a / 2 and coords((U - U^dag)/2) = 2 sin(theta) n^a
        tau = self._tau(U, tau)
        cos, sin, p = self._cos_sin(U)
        ratio = self._log_and_ratio(cos, sin, tau)[1]
        return (ratio / 4).to(U.dtype)[..., None, None] * p

    def sample(self, tau: Float[Tensor, " batch"], shape: tuple[int, ...], *, generator: torch.Generator,
               dtype: torch.dtype = torch.complex128) -> Complex[Tensor, "batch *s n n"]:
        """Eigen-angle by inverse CDF of ``K_tau(theta) (2/pi) sin^2 theta`` on a per-configuration grid of
        ``[0, min(pi, 6 sqrt(tau))]`` (4097 points; the CDF is interpolated linearly), axis uniform on S^2."""
        rdt = real_dtype(dtype)
        batch, dev = tau.shape[0], tau.device
        tau = tau.to(torch.float64)  # the grid and its CDF in float64 whatever the output precision
        m = math.prod(shape)
        theta_max = torch.clamp(6 * tau.sqrt(), max=math.pi)
        grid = theta_max[:, None] * torch.linspace(0, 1, _SAMPLE_GRID, dtype=torch.float64, device=dev)
        logp = self.log_density_angle(grid, tau[:, None]) + 2 * torch.log(torch.sin(grid).abs())
        p = torch.exp(logp - logp.amax(-1, keepdim=True))
        h = grid[:, 1:] - grid[:, :-1]
        cdf = torch.cat([torch.zeros_like(p[:, :1]), torch.cumsum(h * (p[:, 1:] + p[:, :-1]) / 2, -1)], -1)
        cdf = cdf / cdf[:, -1:]
        u = torch.rand((batch, m), generator=generator, dtype=rdt, device=dev).to(torch.float64)
        idx = torch.searchsorted(cdf, u).clamp(1, _SAMPLE_GRID - 1)
        c0, c1 = cdf.gather(1, idx - 1), cdf.gather(1, idx)
        g0, g1 = grid.gather(1, idx - 1), grid.gather(1, idx)
        frac = ((u - c0) / torch.where(c1 > c0, c1 - c0, torch.ones_like(c0))).clamp(0, 1)
        theta = (g0 + frac * (g1 - g0)).to(rdt)
        axis = torch.randn((batch, m, 3), generator=generator, dtype=rdt, device=dev)
        axis = axis / axis.norm(dim=-1, keepdim=True)
        group = self.group
        u_mat = group.exp(group.from_coords(2 * theta[..., None] * axis))
        return u_mat.to(dtype).reshape(batch, *shape, 2, 2)


# ---- SU(N), N >= 3 ------------------------------------------------------------------------------

def _log_x_over_2sin_half(x: Tensor) -> Tensor:
    """``log(x / (2 sin(x/2)))``, by its Taylor series for ``|x| < 0.1`` so that its autograd derivative is
    accurate at ``x -> 0`` (``torch.sinc``'s backward loses ``1e-16 / x^2`` relative)."""
    small = x.abs() < 0.1
    x2 = x * x
    series = x2 / 24 + x2 * x2 / 2880 + x2 * x2 * x2 / 181440 + x2 * x2 * x2 * x2 / 9676800
    xs = torch.where(small, torch.ones_like(x), x)
    return torch.where(small, series, torch.log(xs / (2 * torch.sin(xs / 2))))


@functools.lru_cache(maxsize=16)
def _sun_weights(n: int, casimir_cut: float) -> tuple[Tensor, Tensor, Tensor, int]:
    """Highest weights ``lambda_1 >= .. >= lambda_{N-1} >= 0`` with ``C_2 <= casimir_cut``:
    ``(dims [R], C_2 [R], Jacobi-Trudi indices [R, N-1, N-1] into h_0..h_kmax plus a zero slot, kmax)``."""
    lam_max = 1
    while _casimir(n, (lam_max,) + (0,) * (n - 1)) <= casimir_cut:
        lam_max += 1
    weights = []
    for lam in itertools.combinations_with_replacement(range(lam_max, -1, -1), n - 1):
        full = (*lam, 0)
        if _casimir(n, full) <= casimir_cut:
            weights.append(full)
    kmax = lam_max + n
    dims, cas, idx = [], [], []
    for lam in weights:
        l_shift = [lam[i] + n - 1 - i for i in range(n)]
        d = 1.0
        for i in range(n):
            for j in range(i + 1, n):
                d *= (l_shift[i] - l_shift[j]) / (j - i)
        dims.append(d)
        cas.append(_casimir(n, lam))
        rows = []
        for i in range(n - 1):
            row = []
            for j in range(n - 1):
                k = lam[i] - i + j
                row.append(k if k >= 0 else kmax + 1)  # slot kmax + 1 holds h = 0
            rows.append(row)
        idx.append(rows)
    return (torch.tensor(dims, dtype=torch.float64), torch.tensor(cas, dtype=torch.float64),
            torch.tensor(idx, dtype=torch.long), kmax)


def _casimir(n: int, lam: tuple[int, ...]) -> float:
    """Quadratic Casimir with ``tr T^a T^b = delta/2``: ``(sum l_i^2 - |l|^2/N + sum l_i (N + 1 - 2i)) / 2``."""
    tot = sum(lam)
    return 0.5 * (sum(x * x for x in lam) - tot * tot / n + sum(x * (n + 1 - 2 * (i + 1)) for i, x in enumerate(lam)))


def _sun_volume_log(n: int) -> float:
    """log vol(SU(N)) in the metric where the ``i T^a`` are orthonormal (Macdonald's formula, rescaled)."""
    d = n * n - 1
    return (d / 2 * math.log(2) + 0.5 * math.log(n) + (n * n + n - 2) / 2 * math.log(2 * math.pi)
            - sum(math.lgamma(k + 1) for k in range(1, n)))


@typing.final
@attrs.frozen
class SUNHeatKernel(AbstractHeatKernel):
    r"""SU(N) heat kernel for N >= 3 (also valid for N = 2, where :class:`SU2HeatKernel` is preferred).

    ``tau >= 1``: the character sum over highest weights with ``C_2 <= 130``, each
    character a Schur polynomial by the Jacobi-Trudi determinant of complete symmetric polynomials
    ``h_k``, computed from the power sums ``tr U^k`` by Newton's identities: polynomial in U, exact at
    degenerate eigenvalues; the score is its Lie derivative by automatic differentiation.

    ``tau < 1``: the leading (``n = 0``) term of the sum over images in the eigen-angles of the
    minimal-norm representative ``theta`` (``sum theta = 0``); the neglected images are smaller by
    ``~exp(-4 pi (2 pi - max |theta_ij|) / tau)``: ``< e^-39`` for ``max |theta_ij| < pi`` at ``tau = 1``
    and negligible near the identity, but O(1) near the cut locus ``|theta_i - theta_j| -> 2 pi`` (e.g. the
    non-trivial centre elements), where K itself is ``~exp(-O(1)/tau)`` (``e^-26`` at the centre for
    ``tau = 1``): the density is accurate in L^1 (normalisation 1 to ``4e-8`` at ``tau -> 1``), its log
    only where K is not exponentially small. The characters at ``tau >= 1`` lose up to ~6 digits to
    cancellation at the cut locus (SU(3)); more for larger N. Everything is evaluated in float64 (and
    cast back), because the character sums cancel. The score there is
    ``(i/2)(M - tr M / N)`` with ``M = V diag(d log K / d theta_k) V^{-1}`` from the eigenvectors V.
    """

    N: int = attrs.field(validator=attrs.validators.and_(attrs.validators.instance_of(int), attrs.validators.ge(2)))

    @property
    def group(self) -> AbstractGroup:
        return SU(self.N)

    @property
    def can_sample(self) -> bool:
        return False

    # -- images (small tau)
    def _angles(self, U: Tensor) -> tuple[Tensor, Tensor]:
        lam, v = torch.linalg.eig(U)
        theta = torch.angle(lam)
        # shift the |m| largest (m > 0) or smallest (m < 0) angles by -+2 pi so that sum theta = 0 (minimal norm)
        m = torch.round(theta.sum(-1) / (2 * math.pi))
        rank = torch.argsort(torch.argsort(theta, dim=-1, descending=True), dim=-1).to(theta.dtype)
        down = (rank < m[..., None]) & (m[..., None] > 0)
        up = (rank >= self.N + m[..., None]) & (m[..., None] < 0)
        theta = theta - 2 * math.pi * down.to(theta.dtype) + 2 * math.pi * up.to(theta.dtype)
        return theta, v

    def _log_images(self, theta: Tensor, tau: Tensor) -> Tensor:
        n = self.N
        d = n * n - 1
        i, j = torch.triu_indices(n, n, 1, device=theta.device)
        tij = theta[..., i] - theta[..., j]
        log_vander = _log_x_over_2sin_half(tij).sum(-1)  # log prod theta_ij / (2 sin(theta_ij / 2))
        rho2 = n * (n * n - 1) / 24
        log_c = _sun_volume_log(n) - d / 2 * math.log(2 * math.pi)
        return log_c - d / 2 * torch.log(tau) + rho2 * tau / 2 + log_vander - (theta * theta).sum(-1) / tau

    # -- characters (large tau)
    def _log_characters(self, U: Tensor, tau: Tensor) -> Tensor:
        dims, cas, idx, kmax = _sun_weights(self.N, _SUN_CASIMIR_CUT)
        rdt = real_dtype(U.dtype)
        dims, cas, idx = dims.to(U.device, rdt), cas.to(U.device, rdt), idx.to(U.device)
        powers, p = [], U
        for _ in range(kmax):
            powers.append(trace(p))
            p = p @ U
        h = [torch.ones_like(powers[0])]
        for k in range(1, kmax + 1):
            h.append(sum(powers[i - 1] * h[k - i] for i in range(1, k + 1)) / k)
        h.append(torch.zeros_like(powers[0]))
        h_t = torch.stack(h, -1)                                  # [*b, kmax + 2]
        k_val = torch.zeros_like(tau)
        for start in range(0, dims.shape[0], _SUN_CHUNK):
            sl = slice(start, start + _SUN_CHUNK)
            chi = torch.linalg.det(h_t[..., idx[sl]]).real        # [*b, R_chunk]: Jacobi-Trudi
            k_val = k_val + (dims[sl] * torch.exp(-cas[sl] * tau[..., None] / 2) * chi).sum(-1)
        return torch.log(k_val)

    def log_density(self, U: Matrices, tau: Tensor) -> Float[Tensor, "*b"]:
        out_dtype = real_dtype(U.dtype)
        tau = self._tau(U, tau).to(torch.float64)  # the character sums cancel: always evaluated in float64
        U = U.to(torch.complex128)
        theta, _ = self._angles(U)
        log_img = self._log_images(theta, tau.clamp(max=_SUN_TAU_SPLIT))
        log_chr = self._log_characters(U, tau.clamp(min=_SUN_TAU_SPLIT))
        return torch.where(tau < _SUN_TAU_SPLIT, log_img, log_chr).to(out_dtype)

    def score(self, U: Matrices, tau: Tensor) -> Complex[Tensor, "*b n n"]:
        out_dtype = U.dtype
        tau = self._tau(U, tau).to(torch.float64)
        U = U.to(torch.complex128)
        n = self.N
        eye = torch.eye(n, dtype=U.dtype, device=U.device)
        # images: Lie derivative of a class function through its eigen-angles, d theta_k = (V^-1 T^a V)_kk
        theta, v = self._angles(U)
        ti = tau.clamp(max=_SUN_TAU_SPLIT)
        g = torch.func.grad(lambda th: self._log_images(th, ti).sum())(theta)
        m = v @ torch.diag_embed(g.to(U.dtype)) @ torch.linalg.inv(v)
        s_img = 0.5j * (m - (trace(m) / n)[..., None, None] * eye)
        # characters: G = d log K / d U (torch's conjugate convention), nabla^a = Re tr(i T^a U G^dagger)
        tc = tau.clamp(min=_SUN_TAU_SPLIT)
        grad_u = torch.func.grad(lambda u: self._log_characters(u, tc).sum())(U)
        s_chr = -0.5 * SU(n).project_algebra(U @ grad_u.mH)
        s = torch.where((tau < _SUN_TAU_SPLIT)[..., None, None], s_img, s_chr)
        return SU(n).project_algebra(s).to(out_dtype)

    def sample(self, tau: Float[Tensor, " batch"], shape: tuple[int, ...], *, generator: torch.Generator,
               dtype: torch.dtype = torch.complex128) -> Complex[Tensor, "batch *s n n"]:
        raise ValueError(
            f"exact heat-kernel sampling is implemented for U(1) and SU(2); got {self.group}. Use the Gaussian "
            f"perturbation (GroupVE.perturb) or simulate Brownian motion with small exponential steps."
        )
