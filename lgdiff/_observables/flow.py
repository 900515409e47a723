r"""The Wilson (gradient) flow of link fields: Luscher's smoothing for topology and scale setting."""

import math
from collections.abc import Callable

import torch

from .._actions.wilson import WilsonAction
from .._fields.links import LinkField

# t must be a whole number of steps of size eps, to this relative tolerance (rounding in t / eps)
_STEP_TOLERANCE = 1e-9

FLOW_CHUNK_BYTES = 2 << 20
"""On the CPU `wilson_flow` integrates this many bytes of links at a time (at least one configuration): the RK3
step's working set (links, three forces, exponentials: about 15 times the links) then stays in the caches. Measured
on SU(3) 4^4, one core of a Zen 3 with 32 MB L3 (complex128, 147 kB per configuration; `benchmarks/bench_flow.py`):
40-42 ms per configuration to t = 1 (eps = 0.05) in chunks of 8 to 32 configurations (1.2 to 4.7 MB), 46 ms in
chunks of 64 (9.4 MB), 88 ms in one batch of 400 (59 MB), 100 ms one at a time (per-operation overhead);
docs/performance.md."""


def _flow_action(U: LinkField) -> WilsonAction:
    r"""The Wilson action whose force is minus the flow generator in Luscher's normalisation.

    Luscher's flow is ``dV/dt = -g0^2 {d_{x,mu} S_W(V)} V`` with
    ``S_W = (1/g0^2) sum_{oriented p} Re tr(1 - U(p)) = beta sum_P (1 - Re tr U_P / N)``, ``beta = 2N / g0^2``.
    His Lie derivative uses anti-Hermitian generators ``T_L = i T`` with ``tr T_L T_L = -1/2``, so
    ``d_{x,mu} S_W = i T^a nabla^a S_W``: the lgdiff force (left convention). The flow generator is
    therefore ``-g0^2 F_{S_W} = -F`` of the Wilson action at ``beta g0^2``. With ``beta = 2N / g0^2``
    (SU(N)) this is ``beta = 2N``, and the force ``(beta norm / N) P_alg(V A)`` becomes
    ``P_alg(V A)`` (A the staple sum). The same choice ``beta = N / norm`` gives ``beta = 1`` for U(1)
    (``beta = 1/g0^2`` there), hence ``Z = -P_alg(V A)`` for every group: the linearised flow is the
    heat equation ``dA_mu/dt = Laplacian A_mu + ...`` with unit diffusion constant, so a plane wave
    decays as ``exp(-p_hat^2 t)`` (``p_hat^2 = sum 4 sin^2(p/2)``) and the smoothing radius is ``sqrt(8t)``.
    """
    group = U.group
    return WilsonAction(beta=group.n / group.norm, group=group)


def flow_chunk(U: LinkField) -> int:
    """Configurations that `wilson_flow` integrates at a time by default: on the CPU about `FLOW_CHUNK_BYTES` of
    links (at least one configuration); on other devices the whole batch (they want large batches; unmeasured)."""
    if U.data.device.type != "cpu":
        return max(U.batch, 1)
    per_config = math.prod(U.data.shape[1:]) * U.data.element_size()
    return max(1, FLOW_CHUNK_BYTES // per_config)


def _rk3_step(action: WilsonAction, W0: LinkField, eps: float) -> LinkField:
    """One step of Luscher's third-order Runge-Kutta (Williamson 2N-storage) scheme, Z_i = eps Z(W_i).

    The third exponent ``3/4 Z2 - 8/9 Z1 + 17/36 Z0`` is formed as ``3/4 Z2 - X1`` from the second one,
    ``X1 = 8/9 Z1 - 17/36 Z0`` (one linear combination fewer)."""
    exp = W0.group.exp
    Z0 = action.force(W0).data * -eps
    W1 = W0.with_data(exp(Z0 / 4) @ W0.data)
    X1 = action.force(W1).data * (-eps * 8 / 9) - Z0 * (17 / 36)
    W2 = W1.with_data(exp(X1) @ W1.data)
    X2 = action.force(W2).data * (-eps * 3 / 4) - X1
    return W2.with_data(exp(X2) @ W2.data)


def wilson_flow(U: LinkField, *, t: float, eps: float, chunk: int | None = None,
                progress: Callable[[int], None] | None = None) -> LinkField:
    r"""Integrate the Wilson gradient flow to flow time ``t`` with Luscher's RK3 scheme.

    The flow $\dot V_\mu(x) = Z(V)_\mu(x)\, V_\mu(x)$, $V|_{t=0} = U$, with
    $Z(V) = -g_0^2\, \partial_{x,\mu} S_W(V) = -P_{\mathrm{alg}}\big(V_\mu(x) A_\mu(x)\big)$ (``A`` the staple sum)
    is the negative force of ``WilsonAction(beta=N / norm)``, i.e. ``beta = 2N`` for SU(N) and 1 for
    U(1) (derivation in `_flow_action`): Luscher's normalisation, flow time in units of ``a^2``. Each step
    of size ``eps`` (Luscher, JHEP 08 (2010) 071, the 3-stage Williamson scheme):

    $$W_1 = e^{Z_0/4} W_0,\quad W_2 = e^{\frac{8}{9} Z_1 - \frac{17}{36} Z_0} W_1,\quad
      V(t+\epsilon) = e^{\frac{3}{4} Z_2 - \frac{8}{9} Z_1 + \frac{17}{36} Z_0} W_2,$$

    with $Z_i = \epsilon Z(W_i)$ and $W_0 = V(t)$; the global error is $O(\epsilon^3)$. The flow is gauge
    covariant and lowers the Wilson action monotonically; flowing to ``t1`` and then for ``t2`` more
    equals flowing to ``t1 + t2`` with the same ``eps``, so a flow-time series (e.g. ``t^2 E(t)``,
    `energy_density`) is built by chaining calls.

    **Arguments:**
    - `U`: links ``[B, D, *L, N, N]`` of U(1) or SU(N), D >= 2.
    - `t`: flow time, ``t >= 0``, a whole multiple of `eps`.
    - `eps`: step size, ``eps > 0`` (0.01 to 0.02 is standard for SU(3)).
    - `chunk`: configurations integrated at a time (default `flow_chunk`: a few MB of links on the CPU, which
      keeps the working set in the caches; the whole batch on other devices). Each configuration flows on its own,
      so the result does not depend on it.
    - `progress`: called with the number of configurations done after each chunk (for progress bars).

    **Returns:** the flowed links ``V(t)``.

    >>> from lgdiff import SU, Lattice, LinkField
    >>> U = LinkField.identity(SU(2), Lattice(shape=(4, 4)), batch=1)
    >>> bool((wilson_flow(U, t=0.1, eps=0.05).data == U.data).all())  # the cold start is a fixed point
    True
    """
    if not isinstance(U, LinkField):
        raise TypeError(f"wilson_flow expects gauge links as a LinkField [B, D, *L, N, N]; got {type(U).__name__}")
    if U.lattice.dim < 2:
        raise ValueError(
            f"wilson_flow needs a lattice with D >= 2 directions (plaquettes); got shape {U.lattice.shape} (D = {U.lattice.dim})"
        )
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"wilson_flow needs a positive finite step size eps; got eps = {eps}")
    if not (math.isfinite(t) and t >= 0):
        raise ValueError(f"wilson_flow needs a finite flow time t >= 0; got t = {t}")
    steps = round(t / eps)
    if abs(steps * eps - t) > _STEP_TOLERANCE * max(t, eps):
        raise ValueError(
            f"wilson_flow integrates with a fixed step: t must be a whole multiple of eps; got t = {t}, eps = {eps} "
            f"(t / eps = {t / eps:.6g}). Use eps = t / {max(steps, 1)} = {t / max(steps, 1):.6g}."
        )
    if chunk is not None and chunk < 1:
        raise ValueError(f"wilson_flow needs chunk >= 1 configurations; got chunk = {chunk}")
    if steps == 0:
        if progress is not None:
            progress(U.batch)
        return U
    action = _flow_action(U)
    chunk = chunk or flow_chunk(U)
    parts = []
    for start in range(0, U.batch, chunk):
        V = U.with_data(U.data[start:start + chunk])
        for _ in range(steps):
            V = _rk3_step(action, V, eps)
        parts.append(V.data)
        if progress is not None:
            progress(V.batch)
    return U.with_data(parts[0] if len(parts) == 1 else torch.cat(parts))
