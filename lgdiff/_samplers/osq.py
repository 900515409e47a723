r"""Optimal stochastic quantisation (OSQ): a data-free learned sampler, the controlled Langevin process of the seed
talk (/work/shared/seeds/000, "Optimal Stochastic Quantization"), and the exact sampler built on it.

**The process.** From a Gaussian prior ``pi`` (white, ``N(0, sigma_0^2)`` per degree of freedom, or a free field
``N(0, K^-1)`` with ``K(p) = 1 / sigma_0^2 + c p_hat^2``; see "The prior" below), a controlled Langevin
equation ``dphi = u(phi, t) dt + g dW`` runs for ``t in [0, T]`` with the physics-driven decomposition
``u = -dS/dphi + v_theta(phi, t)``: ``v = 0`` is plain (finite-time) stochastic quantisation, and the network
learns only the residual drift. Discretised by Euler-Maruyama on ``N`` steps of ``h = T / N``, ``t_k = k h``:

    ``phi_{k+1} = phi_k + h [-grad S(phi_k) + v_theta(phi_k, t_k)] + g sqrt(h) xi_k``,  ``xi_k ~ N(0, 1)``   (F_k)

so the path density is ``Q(phi_0 .. phi_N) = pi(phi_0) prod_k F_k(phi_{k+1} | phi_k)``, a product of Gaussians.

**The talk's objective and what it targets** (``objective="plain"``). With ``R_k`` the uncontrolled kernel (F_k at
``v = 0``: the reference process P_ref, Langevin from ``pi``), ``log F_k / R_k = h |v_k|^2 / (2 g^2) + sqrt(h) v_k.xi_k / g``
exactly, so the discrete objective

    ``L_plain = E_Q[ sum_k h |v_k|^2 / (2 g^2) + S(phi_N) ] = KL(Q || P_ref) + E_Q[S(phi_N)]``

is the discretised ``E[(1/2) int g^-2 |v|^2 dt + S(phi_T)]`` of the talk, without approximation beyond the
Euler-Maruyama path. It equals ``KL(Q || P_ref exp(-S(phi_N)) / Z') - log Z'``, minimised by
``Q* ~ P_ref exp(-S(phi_N))`` (the Doob transform ``v* = g^2 grad log h_t``), whose terminal marginal is
``p_ref,N(phi) exp(-S(phi))``: the target times the reference's own marginal at ``T``, **not** ``exp(-S)``. (With the
physical ``g^2 = 2`` and a long ``T``, ``p_ref,N -> exp(-S)`` and the optimum samples ``exp(-2 S)``.) lgdiff
implements it as written for comparison and reports its bias.

**The corrected objective** (``objective="exact"``, the default). ``p_ref,N`` is unknown, so the reference is
replaced by an extended target on paths whose terminal marginal is ``exp(-S)`` by construction, with backward
kernels that an (annealed) Langevin path can match: the geometric path of densities
``pi_beta ~ pi^(1 - beta) exp(-beta S)``, ``beta_k = k / N`` (``pi_0 = pi``, ``pi_N ~ exp(-S)``), and the
unadjusted Langevin kernel of ``pi_{beta_{k+1}}`` run backwards,
``B_k(phi_k | phi_{k+1}) = N(phi_k; phi_{k+1} + (g^2 h / 2) grad log pi_{beta_{k+1}}(phi_{k+1}), g^2 h)``
(the same variance as F_k; the kernels of annealed importance sampling / Monte Carlo diffusions). The extended
target

    ``Gamma(phi_0 .. phi_N) = exp(-S(phi_N)) / Z prod_k B_k(phi_k | phi_{k+1})``

has terminal marginal exactly ``exp(-S) / Z`` (integrate out ``phi_0``, then ``phi_1``, ...: each B_k is a normalised
density of ``phi_k``, whatever it is). Its log importance weight against Q is (normalisations cancel)

    ``log w = -S(phi_N) - log pi(phi_0) + sum_k [ |xi_k|^2 / 2 - |phi_k - phi_{k+1} - (g^2 h / 2) grad log
    pi_{beta_{k+1}}(phi_{k+1})|^2 / (2 g^2 h) ]``,

and ``L_exact = E_Q[-log w] = KL(Q || Gamma) - log Z >= -log Z``, with equality iff ``Q = Gamma``: its optimum
samples ``exp(-S)`` exactly. Like the talk's objective it needs no density, score or divergence of ``q_t``. With
``g^2 = 2`` the drift that makes Q the forward annealed Langevin process is
``v = (1 - beta) (grad S - phi / sigma_0^2)``; the optimal ``v`` is that plus the finite-time correction. (Measured
on the one-site models, ``T = 1``, 50 steps, untrained ``v = 0``: Kish ESS 19 % (double well) and 12 % (cosine);
the OU reference stationary at ``pi`` gave 9 % and 2.5 %.)

**The prior.** A finite-time Langevin path relaxes the mode of momentum ``p`` at the rate ``~ K_S(p)``, the
curvature of ``S``; near a critical point the long-wavelength modes barely move in ``T ~ 1``, so whatever the prior
puts there reaches ``phi_N`` almost unchanged and the drift would have to learn all of it. The free-field prior
(`OSQProcess.hartree`, `lgdiff._samplers.hartree`) is the best Gaussian approximation of the phi^4 action (the
Gibbs-Bogoliubov variational optimum, i.e. the Hartree gap equation), computed from the couplings alone: still
data-free. Measured at L = 16, lambda = 0.022, T = 1, N = 20, v = 0 (512 paths, `benchmarks/bench_osq_prior.py`):
var(log w) = 42 with the white ``N(0, 1)`` against 1.3 with the Hartree prior at kappa = 0.25 (35 against 1.0 at
kappa = 0.21); with ``h = T / N = 0.025`` the Hartree value is 0.44, and what is left is mostly the Euler-Maruyama
discretisation. The geometric path of the backward kernels uses the same ``pi`` (``grad log pi = -K phi``, a
nearest-neighbour stencil); ``log pi`` needs ``sum_p log K(p)``. Where the broken-phase Hartree solution has the
lower variational bound, the prior is the two-sector mixture ``(N(+v, K^-1) + N(-v, K^-1)) / 2`` (``prior_shift =
v``), whose log density and force are closed forms in the sector logit ``a = v sum_x phi / sigma_0^2``.

**Exactness for any drift.** ``w`` is the importance weight of the path proposal against ``Gamma``, whatever
``v_theta`` is (untrained: plain finite-time Langevin). :class:`OSQPathIMH` accepts fresh paths by independence
Metropolis with it (exact at any volume, the path-space route of the diffusion samplers,
`lgdiff._samplers.independence`); `lgdiff._stats.importance` reweights raw draws with it (self-normalised
importance sampling, effective sample size). :class:`OSQDraws` is the raw sampler, biased by whatever the drift
misses.

**Gradients** (training, `lgdiff._train.osq`): ``"path"`` backpropagates through the whole simulated path
(reparametrised ``E_Q[-log w]``); ``"log-variance"`` simulates without gradients and minimises the batch variance
of ``log w`` at the fixed path points (the log-variance divergence, zero iff ``Q = Gamma`` as well: one batched
network evaluation over all steps, no backpropagation through the path).
"""

import math
import typing
from collections.abc import Callable

import attrs
import torch
from torch import Tensor

from .._actions.base import AbstractScalarAction
from .._fields.scalar import Field
from .._geometry.lattice import Lattice, shift
from .._provenance import AbstractRecorded
from .._sde.base import flat_sq
from .hartree import hartree_gaussian
from .base import AbstractKernel
from .independence import AbstractIMH

Drift = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``v(x [B, *L], t [B], force [B, *L]) -> [B, *L]``: the residual drift (a network, or a closed form), given the
force ``grad S(x)`` that the path computes anyway (`lgdiff._models.osq.OSQDrift` uses it)."""

OBJECTIVES = ("exact", "plain")
GRADIENTS = ("path", "log-variance")


def zero_drift(x: Tensor, t: Tensor, force: Tensor) -> Tensor:
    """``v = 0``: plain finite-time stochastic quantisation (an untrained OSQ sampler)."""
    return torch.zeros_like(x)


def _positive(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"OSQProcess.{attribute.name} must be a finite number > 0; got {value!r}")


@typing.final
@attrs.frozen(kw_only=True)
class OSQProcess(AbstractRecorded):
    """The discretised controlled Langevin process of OSQ (module docstring): ``steps`` Euler-Maruyama steps of
    ``h = T / steps`` with noise ``g`` from the prior ``N(0, prior_std^2)``. ``g = sqrt(2)`` is physical stochastic
    quantisation (stationary at ``exp(-S)``).

    >>> p = OSQProcess(T=1.0, steps=10)
    >>> p.h, p.beta(10)
    (0.1, 1.0)
    """

    T: float = attrs.field(default=1.0, validator=_positive)
    steps: int = attrs.field(default=50)
    g: float = attrs.field(default=math.sqrt(2.0), validator=_positive)
    prior_std: float = attrs.field(default=1.0, validator=_positive)
    prior_kinetic: float = attrs.field(default=0.0)
    prior_shift: float = attrs.field(default=0.0)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"OSQProcess.steps must be an int >= 1; got {self.steps!r}")
        for name in ("prior_kinetic", "prior_shift"):
            c = getattr(self, name)
            if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or c < 0:
                raise ValueError(f"OSQProcess.{name} must be a finite number >= 0; got {c!r}")

    @classmethod
    def hartree(cls, action: AbstractScalarAction, shape: tuple[int, ...], *, T: float = 1.0, steps: int = 50,
                g: float = math.sqrt(2.0), phase: str = "auto") -> "OSQProcess":
        """The process whose prior is the best Gaussian approximation of ``action`` on a lattice of ``shape`` (the
        Hartree free field, `lgdiff._samplers.hartree.hartree_gaussian`; in the broken phase the mixture of the two
        signs): data-free, and close to the target's two-point function, so the long-wavelength modes that a
        finite-time Langevin path cannot relax start near equilibrium."""
        h = hartree_gaussian(action, shape, phase=phase)
        return cls(T=T, steps=steps, g=g, prior_std=h.std, prior_kinetic=h.kinetic, prior_shift=h.shift)

    @property
    def name(self) -> str:
        return "osq"

    def settings(self) -> dict[str, float | int | str]:
        out: dict[str, float | int | str] = {"T": float(self.T), "steps": int(self.steps), "g": float(self.g),
                                             "prior_std": float(self.prior_std)}
        if self.prior_kinetic:
            out["prior_kinetic"] = float(self.prior_kinetic)
        if self.prior_shift:
            out["prior_shift"] = float(self.prior_shift)
        return out

    @classmethod
    def from_settings(cls, settings: dict[str, typing.Any]) -> "OSQProcess":
        return cls(T=float(settings["T"]), steps=int(settings["steps"]), g=float(settings["g"]),
                   prior_std=float(settings["prior_std"]), prior_kinetic=float(settings.get("prior_kinetic", 0.0)),
                   prior_shift=float(settings.get("prior_shift", 0.0)))

    @property
    def h(self) -> float:
        return self.T / self.steps

    def beta(self, k: int) -> float:
        """``beta_k = k / N`` of the geometric path ``pi^(1 - beta) exp(-beta S)`` of the backward kernels."""
        return k / self.steps

    def back_residual(self, x: Tensor, x_next: Tensor, force_next: Tensor, k: int) -> Tensor:
        """``phi_k - mean of B_k(. | phi_{k+1})`` given ``grad S(phi_{k+1})`` (module docstring)."""
        b = self.beta(k + 1)
        grad_log_pi = -b * force_next - (1 - b) * self.prior_force(x_next)
        return x - x_next - (self.g**2 * self.h / 2) * grad_log_pi

    def _inverse_covariance(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str) -> Tensor:
        """``K(p) = 1 / prior_std^2 + prior_kinetic p_hat^2`` on the momenta of a lattice of ``shape``."""
        k = torch.full(shape, 1.0 / self.prior_std**2, dtype=dtype, device=device)
        for mu, n in enumerate(shape):
            p = 2 * math.pi * torch.arange(n, dtype=dtype, device=device) / n
            k = k + self.prior_kinetic * (4 * torch.sin(p / 2) ** 2).reshape([n if i == mu else 1
                                                                             for i in range(len(shape))])
        return k

    def _check_shape(self, sites: tuple[int, ...]) -> None:
        if (self.prior_kinetic or self.prior_shift) and not sites:
            raise ValueError("OSQProcess.prior_kinetic > 0 or prior_shift > 0 needs a lattice with D >= 1 (one site "
                             "has no momenta; use prior_std)")

    def prior(self, shape: tuple[int, ...], *, dtype: torch.dtype, device: torch.device | str,
              generator: torch.Generator) -> Tensor:
        """Draws ``[B, *L]`` of the prior: ``N(0, K^-1)``, white noise coloured in momentum space by
        ``K(p)^(-1/2)`` (``N(0, prior_std^2)`` when ``prior_kinetic = 0``), shifted by ``+-prior_shift`` with a fair
        random sign per configuration when the shift is not zero."""
        self._check_shape(shape[1:])
        z = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        if not self.prior_kinetic:
            x = self.prior_std * z
        else:
            dims = tuple(range(1, len(shape)))
            colour = self._inverse_covariance(shape[1:], dtype, device).rsqrt()
            x = torch.fft.ifftn(torch.fft.fftn(z, dim=dims, norm="ortho") * colour, dim=dims, norm="ortho").real
        if self.prior_shift:
            sign = 2 * torch.randint(0, 2, (shape[0],), generator=generator, device=device).to(dtype) - 1
            x = x + (self.prior_shift * sign).reshape(-1, *([1] * (len(shape) - 1)))
        return x

    def _gaussian_force(self, x: Tensor) -> Tensor:
        """``K x = x / prior_std^2 + prior_kinetic (-Laplacian x)`` (periodic), ``[B, *L]``."""
        out = x / self.prior_std**2
        if self.prior_kinetic:
            lap = 2 * (x.ndim - 1) * x
            for mu in range(x.ndim - 1):
                lap = lap - shift(x, mu, site_axis=1) - shift(x, mu, site_axis=1, steps=-1)
            out = out + self.prior_kinetic * lap
        return out

    def _sector_logit(self, x: Tensor) -> Tensor:
        """``(log N(x; +v, K^-1) - log N(x; -v, K^-1)) / 2 = v (K 1) . x = v sum_x x / prior_std^2``, ``[B]``
        (``K`` of a constant field is ``1 / prior_std^2``)."""
        return (self.prior_shift / self.prior_std**2) * x.reshape(x.shape[0], -1).sum(1)

    def prior_force(self, x: Tensor) -> Tensor:
        """``-grad log pi(x)``, ``[B, *L]``: ``K x``, and with a shift ``K x - tanh(a) v / prior_std^2`` with ``a``
        the sector logit (the two Gaussians' responsibilities)."""
        out = self._gaussian_force(x)
        if self.prior_shift:
            pull = torch.tanh(self._sector_logit(x)) * (self.prior_shift / self.prior_std**2)
            out = out - pull.reshape(-1, *([1] * (x.ndim - 1)))
        return out

    def prior_logp(self, x: Tensor) -> Tensor:
        """``log pi(x)`` per configuration ``[B]`` (float64)."""
        self._check_shape(tuple(x.shape[1:]))
        x64 = x.to(torch.float64)
        n = x[0].numel()
        if not self.prior_kinetic and not self.prior_shift:
            return -flat_sq(x64) / (2 * self.prior_std**2) - n / 2 * math.log(2 * math.pi * self.prior_std**2)
        log_det = self._inverse_covariance(tuple(x.shape[1:]), torch.float64, x.device).log().sum()
        quad = (x64 * self._gaussian_force(x64)).reshape(x.shape[0], -1).sum(1)
        out = -quad / 2 + log_det / 2 - n / 2 * math.log(2 * math.pi)
        if self.prior_shift:  # log((N(x; v) + N(x; -v)) / 2) = log N(x; 0) - v^2 (1 K 1) / 2 + log cosh(a)
            a = self._sector_logit(x64)
            log_cosh = a.abs() + torch.log1p(torch.exp(-2 * a.abs())) - math.log(2)
            out = out - n * self.prior_shift**2 / (2 * self.prior_std**2) + log_cosh
        return out


@typing.final
@attrs.frozen
class OSQPath:
    """One batch of simulated paths: the final fields ``phi_N``, ``log w`` (``objective="exact"``: against Gamma;
    ``"plain"``: ``-(sum h |v|^2 / (2 g^2) + S(phi_N))``, the talk's per-path cost), the talk's running cost
    ``fisher = sum_k h |v_k|^2 / (2 g^2)`` and ``action = S(phi_N)``, all ``[B]``; ``states`` every ``phi_k``
    (``[N + 1, B, *L]``) when asked for."""

    final: Tensor
    log_w: Tensor
    fisher: Tensor
    action: Tensor
    states: Tensor | None = None


def _field(x: Tensor) -> Field:
    return Field(x, Lattice(shape=tuple(x.shape[1:])))


def _times(t: float, x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)


def osq_path(drift: Drift, action: AbstractScalarAction, process: OSQProcess, x0: Tensor, *,
             generator: torch.Generator, keep_states: bool = False,
             callback: Callable[[int, Tensor], None] | None = None) -> OSQPath:
    r"""Simulate ``process`` from the prior draws ``x0 [B, *L]`` with residual drift ``drift`` (module docstring,
    ``F_k``), and weigh each path: ``log_w`` exact against Gamma (float64 unless the path is differentiable, i.e.
    gradients are on; then in ``x0``'s dtype so that it backpropagates). ``callback(k, phi_k)`` after every step."""
    h, g = process.h, process.g
    sq_h = math.sqrt(h)
    acc = torch.float64 if not torch.is_grad_enabled() else x0.dtype
    x = x0
    log_w = -process.prior_logp(x0).to(acc)
    fisher = torch.zeros(x0.shape[0], dtype=acc, device=x0.device)
    states = [x0] if keep_states else None
    force = action.gradient(_field(x)).data
    for k in range(process.steps):
        v = drift(x, _times(k * h, x), force)
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x_new = x + h * (v - force) + (g * sq_h) * z
        force = action.gradient(_field(x_new)).data  # the next step's force, and B_k's
        back = process.back_residual(x, x_new, force, k)
        log_w = log_w + ((flat_sq(z) - flat_sq(back) / (g * g * h)) / 2).to(acc)
        fisher = fisher + (h / (2 * g * g)) * flat_sq(v).to(acc)
        x = x_new
        if states is not None:
            states.append(x)
        if callback is not None:
            callback(k + 1, x)
    s_final = action(_field(x.to(torch.float64) if acc == torch.float64 else x)).to(acc)
    return OSQPath(final=x, log_w=log_w - s_final, fisher=fisher, action=s_final,
                   states=torch.stack(states) if states is not None else None)


def osq_log_weight(drift: Drift, action: AbstractScalarAction, process: OSQProcess, states: Tensor, *,
                   objective: str = "exact") -> Tensor:
    r"""``log w`` of fixed paths ``states [N + 1, B, *L]`` as a function of the drift (differentiable in its
    parameters; the states are taken as given): ``log Gamma - log Q`` for ``objective="exact"``, ``log (P_ref
    exp(-S(phi_N))) - log Q`` for ``"plain"``, up to constants. The drift is evaluated once on all ``N B`` points."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}; got {objective!r}")
    n, b = process.steps, states.shape[1]
    h, g = process.h, process.g
    x, x_next = states[:-1], states[1:]
    t = torch.arange(n, dtype=states.dtype, device=states.device).repeat_interleave(b) * h
    flat = x.reshape(n * b, *states.shape[2:])
    with torch.no_grad():
        forces = action.gradient(_field(states.reshape((n + 1) * b, *states.shape[2:]))).data.reshape(states.shape)
        force = forces[:-1]
    v = drift(flat, t, force.reshape(flat.shape)).reshape(x.shape)
    resid = x_next - x - h * (v - force)  # g sqrt(h) xi_k at the path's own drift
    log_fwd = -flat_sq(resid.reshape(n * b, -1)).reshape(n, b).sum(0) / (2 * g * g * h)
    with torch.no_grad():
        s_final = action(_field(states[-1]))
        if objective == "exact":
            back = torch.stack([process.back_residual(x[k], x_next[k], forces[k + 1], k) for k in range(n)])
            fixed = (-flat_sq(back.reshape(n * b, -1)).reshape(n, b).sum(0) / (2 * g * g * h)
                     - process.prior_logp(states[0]).to(x.dtype))
        else:
            ref = (x_next - x + h * force).reshape(n * b, -1)
            fixed = -flat_sq(ref).reshape(n, b).sum(0) / (2 * g * g * h)
    return fixed - s_final - log_fwd


def osq_loss(drift: Drift, action: AbstractScalarAction, process: OSQProcess, x0: Tensor, *,
             generator: torch.Generator, objective: str = "exact", gradient: str = "path") -> Tensor:
    r"""The OSQ training loss of one batch of prior draws ``x0 [B, *L]`` (module docstring): with ``gradient="path"``
    the mean of ``-log w`` (``"exact"``) or of ``sum h |v|^2 / (2 g^2) + S(phi_N)`` (``"plain"``, the talk's form),
    differentiated through the path; with ``"log-variance"`` the batch variance of ``log w`` at paths simulated
    without gradients. Divide by the number of degrees of freedom per configuration (a loss of order one)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}; got {objective!r}")
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}; got {gradient!r}")
    n = x0[0].numel()
    if gradient == "path":
        path = osq_path(drift, action, process, x0, generator=generator)
        cost = -path.log_w if objective == "exact" else path.fisher + path.action
        return cost.mean() / n
    with torch.no_grad():
        states = osq_path(drift, action, process, x0, generator=generator, keep_states=True).states
    assert states is not None
    log_w = osq_log_weight(drift, action, process, states, objective=objective)
    return log_w.var() / n


def _draw(kernel: "OSQPathIMH | OSQDraws", like: Field, generator: torch.Generator) -> OSQPath:
    x0 = kernel.process.prior(tuple(like.data.shape), dtype=torch.float64, device=like.data.device,
                              generator=generator)
    with torch.no_grad():
        return osq_path(kernel.drift, kernel.action, kernel.process, x0, generator=generator)


@typing.final
@attrs.frozen(kw_only=True)
class OSQPathIMH(AbstractIMH):
    r"""Exact OSQ: path-space independence Metropolis over fresh OSQ paths with the weight ``w`` against Gamma
    (module docstring). Exact at any volume for any ``drift``; the acceptance measures the drift.

    >>> from lgdiff import ToyAction
    >>> kernel = OSQPathIMH(drift=zero_drift, process=OSQProcess(T=1.0, steps=20), action=ToyAction(m2=1.0, g=0.4))
    >>> g = torch.Generator().manual_seed(0)
    >>> state = kernel.init(Field.zeros(Lattice(shape=()), batch=4), generator=g)
    >>> state, acc = kernel.step(state, generator=g)
    >>> tuple(state.log_w.shape), tuple(acc.shape)
    ((4,), (4,))
    """

    drift: Drift
    process: OSQProcess
    action: AbstractScalarAction

    @property
    def name(self) -> str:
        return "osq-imh"

    def settings(self) -> dict[str, float | int | str]:
        return self.process.settings()

    def propose(self, like: Field, *, generator: torch.Generator) -> tuple[Field, Tensor]:  # type: ignore[override]
        path = _draw(self, like, generator)
        return like.with_data(path.final.to(like.data.dtype)), path.log_w


@typing.final
@attrs.frozen(kw_only=True)
class OSQDraws(AbstractKernel[Field]):
    """The raw OSQ sampler as a kernel: every step replaces each chain by the end of a fresh OSQ path, accepted
    always. **Not exact** (module docstring); written as a kernel so that it runs through the resumable run loop."""

    drift: Drift
    process: OSQProcess
    action: AbstractScalarAction

    @property
    def name(self) -> str:
        return "osq"

    def settings(self) -> dict[str, float | int | str]:
        return self.process.settings()

    def step(self, state: Field, *, generator: torch.Generator) -> tuple[Field, Tensor]:
        path = _draw(self, state, generator)
        return (state.with_data(path.final.to(state.data.dtype)),
                torch.ones(state.data.shape[0], dtype=torch.float64, device=state.data.device))


__all__ = ["GRADIENTS", "OBJECTIVES", "Drift", "OSQDraws", "OSQPath", "OSQPathIMH", "OSQProcess", "osq_log_weight",
           "osq_loss", "osq_path", "zero_drift"]
