"""The abstract compact matrix Lie group behind U(1) and SU(N)."""

import abc
import functools

import torch
from torch import Tensor


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for complex64, float64 for complex128 (identity on real dtypes)."""
    return torch.empty((), dtype=dtype).real.dtype


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """complex64 for float32, complex128 for float64 (identity on complex dtypes)."""
    if dtype.is_complex:
        return dtype
    return {torch.float32: torch.complex64, torch.float64: torch.complex128}[dtype]


def dagger(m: Tensor) -> Tensor:
    """Conjugate transpose of the last two axes."""
    return m.mH


def trace(m: Tensor) -> Tensor:
    """Trace of the last two axes."""
    return m.diagonal(dim1=-2, dim2=-1).sum(-1)


class AbstractGroup(abc.ABC):
    r"""A compact matrix Lie group G in U(n), represented by ``n x n`` complex matrices.

    Conventions (docs/conventions.md, Groups): generators ``T^a`` are Hermitian with
    ``tr(T^a T^b) = norm * delta^{ab}`` (``norm = 1/2`` for SU(N), 1 for U(1));
    algebra elements are anti-Hermitian, ``X = i sum_a omega^a T^a``; updates act from the left,
    ``U' = exp(X) U``.
    """

    @property
    @abc.abstractmethod
    def n(self) -> int:
        """Matrix size."""

    @property
    @abc.abstractmethod
    def n_generators(self) -> int:
        """Dimension of the algebra (number of generators)."""

    @property
    @abc.abstractmethod
    def norm(self) -> float:
        """``tr(T^a T^a)`` (no sum): 1/2 for SU(N), 1 for U(1)."""

    @abc.abstractmethod
    def _generators(self) -> Tensor:
        """The generators as complex128 ``[n_generators, n, n]`` on the CPU."""

    @abc.abstractmethod
    def project_algebra(self, m: Tensor) -> Tensor:
        """Anti-Hermitian (traceless for SU(N)) part of any ``[..., n, n]`` matrix."""

    @abc.abstractmethod
    def reunitarize(self, u: Tensor) -> Tensor:
        """The nearest group element to a near-group matrix ``[..., n, n]``."""

    @abc.abstractmethod
    def random(self, shape: tuple[int, ...], *, generator: torch.Generator, dtype: torch.dtype = torch.complex128,
               device: torch.device | str | None = None) -> Tensor:
        """Haar-random elements ``[*shape, n, n]``."""

    @abc.abstractmethod
    def membership_error(self, u: Tensor) -> Tensor:
        """Per-matrix distance from the group, ``[...]`` real (0 for members)."""

    @abc.abstractmethod
    def log(self, u: Tensor) -> Tensor:
        """Principal logarithm: the algebra element X with exp(X) = U, ``[..., n, n]``."""

    def exp(self, x: Tensor) -> Tensor:
        """Exponential of algebra elements ``[..., n, n]`` (exact). Groups may use closed forms."""
        return torch.linalg.matrix_exp(x)

    def generators(self, *, dtype: torch.dtype = torch.complex128, device: torch.device | str | None = None) -> Tensor:
        """Hermitian generators ``T^a`` as ``[n_generators, n, n]``."""
        dev = torch.device("cpu") if device is None else torch.device(device)
        return _generators_on(self, dtype, dev)

    def identity(self, shape: tuple[int, ...], *, dtype: torch.dtype = torch.complex128,
                 device: torch.device | str | None = None) -> Tensor:
        """Identity elements ``[*shape, n, n]``."""
        eye = torch.eye(self.n, dtype=dtype, device=device)
        return eye.expand(*shape, self.n, self.n).clone()

    def to_coords(self, x: Tensor) -> Tensor:
        """Real coordinates ``omega^a`` of algebra elements: ``[..., n, n] -> [..., n_generators]``.

        ``omega^a = Im tr(T^a X) / norm`` inverts ``X = i sum_a omega^a T^a``.
        """
        t = self.generators(dtype=x.dtype, device=x.device)
        # tr(T^a X) = sum_ij T^a_ji X_ij
        return torch.einsum("aji,...ij->...a", t, x).imag / self.norm

    def from_coords(self, omega: Tensor) -> Tensor:
        """Algebra elements ``X = i sum_a omega^a T^a`` from real ``[..., n_generators]``."""
        t = self.generators(dtype=complex_dtype(omega.dtype), device=omega.device)
        return 1j * torch.einsum("...a,aij->...ij", omega.to(t.dtype), t)

    def random_algebra(self, shape: tuple[int, ...], *, generator: torch.Generator,
                       dtype: torch.dtype = torch.complex128, device: torch.device | str | None = None) -> Tensor:
        """Gaussian algebra elements ``i sum_a eta^a T^a``, eta ~ N(0, 1), ``[*shape, n, n]``."""
        eta = torch.randn((*shape, self.n_generators), generator=generator, dtype=real_dtype(dtype), device=device)
        return self.from_coords(eta)

    def lie_inner(self, x: Tensor, y: Tensor) -> Tensor:
        """``sum_a omega_x^a omega_y^a = -Re tr(X Y) / norm``, per matrix ``[...]``."""
        return -trace(x @ y).real / self.norm

    def is_member(self, u: Tensor, *, atol: float | None = None) -> Tensor:
        """Per-matrix membership test with tolerance (default by dtype)."""
        if atol is None:
            atol = 1e-4 if u.dtype == torch.complex64 else 1e-10
        return self.membership_error(u) <= atol

    def __repr__(self) -> str:
        return str(self)


@functools.lru_cache(maxsize=64)
def _generators_on(group: AbstractGroup, dtype: torch.dtype, device: torch.device) -> Tensor:
    # cached per (group, dtype, device): the hot paths call to_coords every step
    return group._generators().to(dtype=dtype, device=device)
