"""SU(N): general N by matrix_exp, closed-form exponentials for N = 2 and N = 3."""

import math
import typing

import attrs
import torch
from torch import Tensor

from .base import AbstractGroup, trace


def _su_n_generators(n: int) -> Tensor:
    """Generalised Gell-Mann matrices / 2: Hermitian, traceless, tr(T^a T^b) = delta^{ab} / 2."""
    gens = []
    for j in range(n):
        for k in range(j + 1, n):
            sym = torch.zeros((n, n), dtype=torch.complex128)
            sym[j, k] = sym[k, j] = 0.5
            anti = torch.zeros((n, n), dtype=torch.complex128)
            anti[j, k], anti[k, j] = -0.5j, 0.5j
            gens += [sym, anti]
    for l in range(1, n):
        diag = torch.zeros((n, n), dtype=torch.complex128)
        c = 1 / math.sqrt(2 * l * (l + 1))
        for m in range(l):
            diag[m, m] = c
        diag[l, l] = -l * c
        gens.append(diag)
    return torch.stack(gens)


def _exp_su2(x: Tensor) -> Tensor:
    """exp(iH) = cos(h) I + i sin(h)/h H for H Hermitian traceless 2x2, h^2 = tr(H^2)/2."""
    h2 = (-trace(x @ x).real / 2).clamp_min(0)
    small = h2 < 1e-8
    # series below 1e-8 (error ~h^6 / 720); sqrt only of values bounded away from 0, so forward- and reverse-mode
    # derivatives stay finite at x = 0 (exact Jacobians of group flows differentiate through exp at the identity)
    h_safe = torch.where(small, torch.ones_like(h2), h2).sqrt()
    sinc = torch.where(small, 1 - h2 / 6 + h2 * h2 / 120, torch.sin(h_safe) / h_safe)
    cos = torch.where(small, 1 - h2 / 2 + h2 * h2 / 24, torch.cos(h_safe))
    eye = torch.eye(2, dtype=x.dtype, device=x.device)
    return cos[..., None, None] * eye + sinc[..., None, None] * x


def _exp_su3(x: Tensor) -> Tensor:
    r"""exp(iQ) = f0 + f1 Q + f2 Q^2 for Q Hermitian traceless 3x3 (Cayley-Hamilton).

    Coefficients from Morningstar and Peardon, Phys. Rev. D 69 (2004) 054501, eqs. (29)-(34),
    with the c0 -> -c0 symmetry f_j(-c0) = (-1)^j f_j(c0)^*. For small Q (c1 < 0.05) the
    closed form loses digits to cancellation; there the exponential series is summed with the
    Cayley-Hamilton recursion Q^3 = c1 Q + c0, which needs only scalar work.
    """
    q = -1j * x
    q2 = q @ q
    c0 = (q2 * q.mT).sum((-2, -1)).real / 3  # tr(Q^3) / 3 without the matrix product
    c1 = (trace(q2).real / 2).clamp_min(0)
    # closed form, for |c0| (f_j conjugated below where c0 < 0)
    neg = c0 < 0
    c0a = c0.abs()
    c1_safe = torch.where(c1 < 1e-30, torch.ones_like(c1), c1)
    c0_max = 2 * (c1_safe / 3) ** 1.5
    theta = torch.arccos((c0a / c0_max).clamp(-1.0, 1.0))
    u = torch.sqrt(c1_safe / 3) * torch.cos(theta / 3)
    w = torch.sqrt(c1_safe) * torch.sin(theta / 3)
    w_small = w.abs() < 1e-4
    w_safe = torch.where(w_small, torch.ones_like(w), w)
    xi0 = torch.where(w_small, 1 - w * w / 6 * (1 - w * w / 20), torch.sin(w) / w_safe)
    cw = torch.cos(w)
    e2iu = torch.polar(torch.ones_like(u), 2 * u)
    emiu = torch.polar(torch.ones_like(u), -u)
    u2, w2 = u * u, w * w
    h0 = (u2 - w2) * e2iu + emiu * (8 * u2 * cw + 2j * u * (3 * u2 + w2) * xi0)
    h1 = 2 * u * e2iu - emiu * (2 * u * cw - 1j * (3 * u2 - w2) * xi0)
    h2 = e2iu - emiu * (cw + 3j * u * xi0)
    den = 9 * u2 - w2
    f0, f1, f2 = h0 / den, h1 / den, h2 / den
    f0 = torch.where(neg, f0.conj(), f0)
    f1 = torch.where(neg, -f1.conj(), f1)
    f2 = torch.where(neg, f2.conj(), f2)
    # series for small Q: (iQ)^k / k! = i^k (a_k + b_k Q + d_k Q^2) with real a_k, b_k, d_k from Q^3 = c1 Q + c0;
    # summed in real arithmetic, i^k only sorts the terms into the real (k even) and imaginary (k odd) parts
    small = c1 < 0.05
    a, b, d = torch.ones_like(c1), torch.zeros_like(c1), torch.zeros_like(c1)
    re, im = [a, b, d], [b, b, b]
    for k in range(1, 18):
        a, b, d = d * c0 / k, (a + d * c1) / k, b / k
        part, sign = (re, 1 - k % 4) if k % 2 == 0 else (im, 2 - k % 4)  # i^k = +-1 (k even), +-i (k odd)
        part[:] = [torch.add(s, t, alpha=sign) for s, t in zip(part, (a, b, d), strict=True)]
    f0 = torch.where(small, torch.complex(re[0], im[0]), f0)
    f1 = torch.where(small, torch.complex(re[1], im[1]), f1)
    f2 = torch.where(small, torch.complex(re[2], im[2]), f2)
    eye = torch.eye(3, dtype=x.dtype, device=x.device)
    return f0[..., None, None] * eye + f1[..., None, None] * q + f2[..., None, None] * q2


@typing.final
@attrs.frozen
class SU(AbstractGroup):
    """SU(N), N >= 2: special unitary N x N matrices; generalised Gell-Mann generators / 2."""

    N: int = attrs.field(validator=attrs.validators.and_(attrs.validators.instance_of(int), attrs.validators.ge(2)))

    @property
    def n(self) -> int:
        return self.N

    @property
    def n_generators(self) -> int:
        return self.N * self.N - 1

    @property
    def norm(self) -> float:
        return 0.5

    def _generators(self) -> Tensor:
        return _su_n_generators(self.N)

    def exp(self, x: Tensor) -> Tensor:
        """Exact exponential: closed forms for SU(2), SU(3); ``matrix_exp`` otherwise."""
        if self.N == 2:
            return _exp_su2(x)
        if self.N == 3:
            return _exp_su3(x)
        return torch.linalg.matrix_exp(x)

    def log(self, u: Tensor) -> Tensor:
        """Principal log via the eigendecomposition of the unitary U (traceless projection)."""
        lam, v = torch.linalg.eig(u)
        x = v @ torch.diag_embed(1j * torch.angle(lam).to(u.dtype)) @ torch.linalg.inv(v)
        return self.project_algebra(x)

    def project_algebra(self, m: Tensor) -> Tensor:
        a = (m - m.mH) / 2
        tr = trace(a) / self.N
        return a - tr[..., None, None] * torch.eye(self.N, dtype=m.dtype, device=m.device)

    def reunitarize(self, u: Tensor) -> Tensor:
        """Polar projection W V^dagger of the SVD, then divide out det^{1/N}."""
        w, _, vh = torch.linalg.svd(u)
        p = w @ vh
        det = torch.linalg.det(p)
        phase = torch.polar(torch.ones_like(det.real), -torch.angle(det) / self.N)
        return p * phase[..., None, None]

    def random(self, shape: tuple[int, ...], *, generator: torch.Generator, dtype: torch.dtype = torch.complex128,
               device: torch.device | str | None = None) -> Tensor:
        """Haar measure: QR of a complex Ginibre matrix with R's phases divided out (Mezzadri,
        Notices AMS 54 (2007) 592), then ``U det(U)^{-1/N}`` (left-SU(N)-invariant map)."""
        z = torch.randn((*shape, self.N, self.N), generator=generator, dtype=dtype, device=device)
        q, r = torch.linalg.qr(z)
        d = r.diagonal(dim1=-2, dim2=-1)
        q = q * (d / d.abs())[..., None, :]
        det = torch.linalg.det(q)
        phase = torch.polar(torch.ones_like(det.real), -torch.angle(det) / self.N)
        return q * phase[..., None, None]

    def membership_error(self, u: Tensor) -> Tensor:
        eye = torch.eye(self.N, dtype=u.dtype, device=u.device)
        unitarity = (u.mH @ u - eye).abs().amax(dim=(-2, -1))
        return unitarity + (torch.linalg.det(u) - 1).abs()

    def __str__(self) -> str:
        return f"SU({self.N})"

