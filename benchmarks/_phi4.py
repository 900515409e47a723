"""Shared pieces of the phi^4 diffusion benchmarks and examples: loading a shipped model as a float64 score,
and the magnetisation observables with their errors. Not part of the library API."""

import math
import sys
import time
import typing
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

if typing.TYPE_CHECKING:
    from lgdiff._actions.base import AbstractScalarAction
    from lgdiff._geometry.lattice import Lattice
    from lgdiff._samplers.base import AbstractKernel
    from lgdiff._samplers.osq import OSQProcess

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from lgdiff._stats import gamma_method, gamma_method_derived, jackknife  # noqa: E402
MODELS = ROOT / "lgdiff" / "models"
LAM = 0.022


def load_score(path: str | Path, device: str = "cpu") -> tuple[Callable[[Tensor, Tensor], Tensor], torch.nn.Module, dict]:
    """``(score64, net, meta)``: the EMA network of a model file, wrapped so that samplers run in float64 (the
    actions and path weights are sums over V sites and hundreds of steps) while the network runs in its
    own dtype (float32)."""
    from lgdiff._train.dsm import load_ncsnpp

    net, meta = load_ncsnpp(path, device=device)
    dtype = next(net.parameters()).dtype

    @torch.no_grad()
    def score(x: Tensor, t: Tensor) -> Tensor:
        return net(x.to(dtype), t.to(dtype)).to(x.dtype)

    return score, net, meta


def grad_score(net: torch.nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    """A float64 score that forward-mode AD can differentiate (for exact log-determinants)."""
    dtype = next(net.parameters()).dtype
    return lambda x, t: net(x.to(dtype), t.to(dtype)).to(x.dtype)


def magnetisation_table(M: np.ndarray, volume: int, *, n_bins: int | None = None) -> dict[str, tuple[float, float]]:
    """``<M>, <|M|>, chi_2 = V(<M^2> - <M>^2), chi_2' = V(<M^2> - <|M|>^2), U_L`` with jackknife errors;
    ``M`` is ``[n]`` (independent) or ``[n, chains]`` (Markov chains: binned jackknife with ``n_bins``)."""
    M = np.asarray(M, dtype=np.float64)
    absM = np.abs(M)
    out = {
        "<M>": jackknife(lambda a: a, M, n_bins=n_bins),
        "<|M|>": jackknife(lambda a: a, absM, n_bins=n_bins),
        "chi_2": jackknife(lambda a, b: volume * (b - a * a), M, M**2, n_bins=n_bins),
        "chi_2'": jackknife(lambda a, b: volume * (b - a * a), absM, M**2, n_bins=n_bins),
        "U_L": jackknife(lambda b, c: 1 - c / (3 * b * b), M**2, M**4, n_bins=n_bins),
    }
    return {k: (float(v.mean), float(v.error)) for k, v in out.items()}


def gamma_table(M: np.ndarray, volume: int) -> dict[str, tuple[float, float]]:
    """``<|M|>, chi_2' = V(<M^2> - <|M|>^2), U_L`` of Markov chains ``M [n, chains]`` with Gamma-method errors (the
    autocorrelation of each, chains as replicas: right where the chains are longer than a few tau_int but bins are
    not); ``(value, nan)`` where no window fits (chains too short for their tau_int)."""
    M = np.asarray(M, dtype=np.float64)
    absM = np.abs(M)
    jobs = {"<|M|>": (lambda a: a, absM), "chi_2'": (lambda a, b: volume * (b - a * a), absM, M**2),
            "U_L": (lambda b, c: 1 - c / (3 * b * b), M**2, M**4)}
    out = {}
    for name, (fn, *series) in jobs.items():
        try:
            g = gamma_method_derived(fn, *series)
            out[name] = (g.mean, g.error)
        except ValueError:
            out[name] = (float(fn(*(float(a.mean()) for a in series))), math.nan)
    return out


def fmt(value: float, error: float) -> str:
    from lgdiff._stats import format_value_error

    return format_value_error(value, error) if error > 0 and math.isfinite(error) else f"{value:.4g}"


def tau_int(series: np.ndarray) -> tuple[float, float, float]:
    """``(tau_int, its error, N_eff)`` by the Gamma method; NaNs if no window fits (chain too short)."""
    try:
        g = gamma_method(series)
    except ValueError:
        return math.nan, math.nan, math.nan
    return g.tau_int, g.tau_int_error, g.n_eff


def r_squared(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Coefficient of determination of the least-squares line y = a + b x, and the slope b."""
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    return float(1 - resid.var() / y.var()), float(b)


class CpuTimer:
    """Process CPU seconds (all threads) and wall seconds of a block."""

    def __enter__(self) -> "CpuTimer":
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = time.process_time() - self.cpu0
        self.wall = time.perf_counter() - self.wall0


def osq_draws(drift: Callable[[Tensor, Tensor, Tensor], Tensor], action: "AbstractScalarAction",
              process: "OSQProcess", lattice: "Lattice", *, n: int, batch: int,
              generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(phi_N [n, *L], log w [n])``: ``n`` independent raw OSQ draws (float64 paths, ``batch`` at a time) with
    their exact path weights against Gamma (`lgdiff._samplers.osq`)."""
    from lgdiff._samplers.osq import osq_path

    finals, log_ws = [], []
    for start in range(0, n, batch):
        x0 = process.prior((min(batch, n - start), *lattice.shape), dtype=torch.float64, device="cpu",
                           generator=generator)
        with torch.no_grad():
            path = osq_path(drift, action, process, x0, generator=generator)
        finals.append(path.final)
        log_ws.append(path.log_w)
    return torch.cat(finals), torch.cat(log_ws)


def chain_row(kernel: "AbstractKernel", lattice: "Lattice", *, chains: int, n: int, therm: int,
              generator: torch.Generator) -> dict:
    """Run ``chains`` Markov chains of ``kernel`` (``therm`` + ``n`` updates; an independence sampler starts from
    its first proposal) and return the row of the OSQ tables: acceptance, tau_int of |M| (Gamma method, chains as
    replicas), N_eff, CPU seconds of the whole run and `magnetisation_table` (binned jackknife)."""
    from lgdiff._fields.scalar import Field
    from lgdiff._observables.scalar import magnetization
    from lgdiff._samplers.maala import sample_chain

    initial = Field.randn(lattice, batch=chains, generator=generator, dtype=torch.float64)
    with CpuTimer() as tm:
        res = sample_chain(kernel, initial, n=n, therm=therm, generator=generator)
    M = magnetization(Field(res.samples.reshape(n * chains, *lattice.shape), lattice)).reshape(n, chains).numpy()
    tau, dtau, n_eff = tau_int(np.abs(M))
    return {"n": int(M.size), "acceptance": float(res.acceptance.mean()), "tau_int": tau, "tau_int_error": dtau,
            "n_eff": n_eff, "cpu_s": tm.cpu, "n_eff_per_cpu_s": n_eff / tm.cpu if tm.cpu > 0 else math.nan,
            **magnetisation_table(M, lattice.volume, n_bins=min(20, n)), "gamma": gamma_table(M, lattice.volume)}


def hmc_wolff(action: "AbstractScalarAction") -> "AbstractKernel":
    """The reference algorithm of the phi^4 benchmarks: one unit-length Omelyan HMC trajectory of 10 steps, then
    one Wolff cluster update (as ``bench_phi4_tau.py``'s ``hmc+wolff`` row)."""
    from lgdiff._integrators.schemes import SCHEMES
    from lgdiff._samplers.base import Composite
    from lgdiff._samplers.hmc import HMC
    from lgdiff._samplers.wolff import Wolff

    return Composite((HMC(action=action, step_size=0.1, n_steps=10, scheme=SCHEMES["omelyan"]), Wolff(action)))
