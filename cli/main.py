"""``lgdiff`` command line. Parse, build library objects, call one library function, print."""

import ctypes
import json
import os
import platform
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import click
import torch

import lgdiff
from cli import _memory
from cli._common import _clean, _user_errors
from cli._files import describe_file, load_ensemble
from cli._options import DEVICE, FINITE, POSITIVE, SEED
from cli._progress import progress as _progress
from lgdiff import _dist
from lgdiff._native import status as native_status
from lgdiff._geometry.lattice import Lattice
from lgdiff._io.ensemble import Ensemble, EnsembleError
from lgdiff._run.generate import ALGORITHMS, GenerateConfig
from lgdiff._run.measure import flowed_configurations, measure
from lgdiff._run.shipped import choose_shipped_model
from lgdiff._run.theory import Theory, theory_group
from lgdiff._samplers.osq import GRADIENTS as OSQ_GRADIENTS
from lgdiff._samplers.osq import OBJECTIVES as OSQ_OBJECTIVES
from lgdiff._train.loop import TrainReport

THEORIES = ("phi4", "u1", "su2", "su3")
"""The theories of ``--theory`` (`lgdiff._run.theory`; the toy model is for the library)."""


def _format(result: dict[str, Any]) -> str:
    """A table cell: ``mean(error)   tau_int = t``, and how the error was estimated where it is not the Gamma
    method's, or why it is uncertain (`lgdiff._run.measure`)."""
    mean, error, tau = result.get("mean"), result.get("error"), result.get("tau_int")
    if mean is None:
        return "n/a"
    text = lgdiff._stats.format_value_error(mean, error) if error is not None and error > 0 else f"{mean:.6g}"
    if tau is not None:
        text += f"   tau_int = {tau:.2f}"
    method = result.get("method", "gamma")
    if method == "jackknife":
        text += "   [jackknife over chain means: no Gamma window, tau_int unknown]"
    elif method == "none":
        text += "   [no error: no Gamma window and one chain]"
    elif "warning" in result:
        text += "   [run too short for tau_int]"
    return text


def _command_line(ctx: click.Context, world: int = 1) -> str:
    """The equivalent command line, from the parsed options (provenance: how to regenerate the file); a run of
    ``world`` > 1 processes reads ``torchrun --nproc-per-node W -m cli.main -- ...``."""
    launcher = ["torchrun", "--nproc-per-node", str(world), "-m", "cli.main", "--"] if world > 1 else ["lgdiff"]
    parts = [*launcher, ctx.info_name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if value is None or value is False or param.name == "as_json" or not isinstance(param, click.Option):
            continue
        flag = max(param.opts, key=len)
        parts += [flag] if value is True else [flag, shlex.quote(str(value))]
    return " ".join(parts)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(lgdiff.__version__, prog_name="lgdiff")
def cli() -> None:
    """lgdiff: lattice field theory with diffusion models."""


@cli.command("info")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info_cmd(file: Path | None, as_json: bool) -> None:
    """What FILE is: an ensemble (metadata, counts) or a model file (theory, training point, architecture, steps);
    without FILE, what this installation is."""
    if file is None:
        report: dict[str, Any] = {
            "lgdiff": lgdiff.__version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda_available": torch.cuda.is_available(),
            "native_kernels": native_status(),
            "groups": ["U(1)", "SU(2)", "SU(3)", "SU(N)"],
            "theories": list(THEORIES),
        }
    else:
        with _user_errors():
            report = describe_file(file)
    if as_json:
        click.echo(json.dumps(_clean(report)))
        return
    for key, value in report.items():
        click.echo(f"{key:>18}: {value}")


def _theory(theory: str, dim: int, L: int, kappa: float | None, lam: float | None, beta: float | None) -> Theory:
    if theory_group(theory) is None:
        if kappa is None or lam is None:
            raise click.UsageError("--theory phi4 needs --kappa and --lam")
        if beta is not None:
            raise click.UsageError("--beta is for gauge theories; phi4 takes --kappa and --lam")
        params = {"kappa": kappa, "lam": lam}
    else:
        if beta is None:
            raise click.UsageError(f"--theory {theory} needs --beta")
        if kappa is not None or lam is not None:
            raise click.UsageError(f"--kappa/--lam are for phi4; {theory} takes --beta")
        params = {"beta": beta}
    with _user_errors():
        return Theory(name=theory, lattice=Lattice(shape=(L,) * dim), params=params)


@cli.command("generate")
@click.option("--theory", type=click.Choice(THEORIES), required=True)
@click.option("--dim", type=click.IntRange(1, 4), default=2, show_default=True, help="Number of dimensions D.")
@click.option("--L", "L", type=click.IntRange(min=2), required=True, help="Lattice extent in every direction.")
@click.option("--kappa", type=FINITE, help="phi4 hopping parameter.")
@click.option("--lam", type=FINITE, help="phi4 coupling lambda.")
@click.option("--beta", type=FINITE, help="Gauge coupling beta (u1, su2, su3).")
@click.option("--algorithm", type=click.Choice(ALGORITHMS), default="hmc", show_default=True,
              help="wolff = HMC + Wolff cluster flips; heatbath includes --overrelax sweeps; direct = exact independent draws (2D U(1) only).")
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="Records to keep (each holds every chain).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Ensemble file (.safetensors).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--therm", type=click.IntRange(min=0), default=100, show_default=True, help="Thermalisation updates.")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True, help="Updates between records.")
@click.option("--chains", type=click.IntRange(min=1), default=8, show_default=True, help="Independent chains (batch).")
@click.option("--step-size", type=float, help="HMC step size (default 1/n-steps) or Metropolis proposal width.")
@click.option("--n-steps", type=click.IntRange(min=1), help="HMC steps per trajectory (default 10).")
@click.option("--integrator", type=click.Choice(["leapfrog", "omelyan"]), default="omelyan", show_default=True)
@click.option("--m-eff2", type=float, help="FA-HMC mass m_eff^2 (default from the free lattice mass).")
@click.option("--overrelax", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True)
@click.option("--device", type=DEVICE, default="cpu", show_default=True, help="torch device: cpu, cuda or cuda:N.")
@click.option("--flush-every", type=click.IntRange(min=1), default=1, show_default=True, help="Records per file write.")
@click.option("--blocks", type=click.IntRange(min=1), default=None,
              help="Split the chains into this many independently seeded blocks (default: the number of torchrun "
                   "processes, 1 without torchrun). One process with --blocks K writes the file of K ranks.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write the PNG plots of the ensemble (lgdiff plot) into this directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the measurement as one JSON object.")
def generate_cmd(theory: str, dim: int, L: int, kappa: float | None, lam: float | None, beta: float | None,
                 algorithm: str, n: int, out: Path, seed: int, therm: int, every: int, chains: int,
                 step_size: float | None, n_steps: int | None, integrator: str, m_eff2: float | None, overrelax: int,
                 dtype: str, device: str, flush_every: int, blocks: int | None, plot_dir: Path | None,
                 as_json: bool) -> None:
    """Generate an ensemble with a classical Markov chain. Rerunning the same command resumes it.

    Under `torchrun --nproc-per-node W -m cli.main generate ...` each rank runs chains/W of the chains and rank 0
    writes the file (docs/distributed.md)."""
    th = _theory(theory, dim, L, kappa, lam, beta)
    _check_plotting(plot_dir)
    with _user_errors(), _dist.process_group(device) as world:
        config = GenerateConfig(theory=th, algorithm=algorithm, n=n, chains=chains, therm=therm, every=every,
                                seed=seed, dtype=dtype, step_size=step_size, n_steps=n_steps, integrator=integrator,
                                m_eff2=m_eff2, overrelax=overrelax, blocks=blocks or world)
        dev = _dist.device_for_rank(device)
        _memory.check_generate_memory(th, algorithm=algorithm, chains=chains // world, dtype=dtype,
                                      flush_every=min(flush_every, n), device=dev)
        command = _command_line(click.get_current_context(), world)
        try:
            with _progress(_remaining_updates(config, out), "generating", unit="updates",
                           status=_written(out)) as update:
                ens = config.run(out, device=dev, command=command, progress=update, flush_every=flush_every)
        except KeyboardInterrupt:
            raise click.ClickException(f"interrupted; {out} keeps every record written so far: rerun the same "
                                       "command to resume") from None
    if ens is not None:  # rank 0
        _report(ens, as_json)
        _plot(ens, plot_dir)


def _written(path: Path) -> Callable[[], str | None]:
    """For progress records: the records of the ensemble at ``path`` that are on disk and their mean acceptance
    (``None`` while there are none)."""
    def status() -> str | None:
        try:
            ens = Ensemble.load(path)
        except (EnsembleError, OSError):
            return None
        if not ens.n_records:
            return None
        return f"{ens.n_records} records written, acceptance {float(ens.acceptance.mean()):.3f}"
    return status


def _remaining_updates(config: GenerateConfig, out: Path) -> int:
    """Updates still to run: all of them for a new file; ``every`` per missing record when ``out`` resumes (the
    thermalisation is done)."""
    try:
        done = Ensemble.load(out).n_records
    except (EnsembleError, OSError):  # a new file (or one the run itself will refuse, with its own message)
        done = 0
    return config.total_updates if done == 0 else max(config.n - done, 0) * config.every


def _report(ens: Ensemble, as_json: bool, flow_time: float = 1.0) -> None:
    flowed = flowed_configurations(ens)  # the Wilson flow of the 4D charge is most of the time: show its progress
    with _progress(flowed, "flowing", unit="configurations") if flowed else nullcontext() as update:
        results = measure(ens, flow_time=flow_time, progress=update)
    _warn_if_drifting(ens)
    if as_json:  # the warnings are in the JSON ("warning" of each observable)
        click.echo(json.dumps(_clean(results)))
        return
    meta = ens.metadata
    click.echo(f"{ens.path if hasattr(ens, 'path') else ''}  {meta.theory} L={tuple(meta.lattice)} "
               f"{meta.algorithm}: {ens.n_records} records x {ens.chains} chains")
    for key, value in results.items():
        click.echo(f"{key:>20}: {_format(_clean(value))}")
    observables_by_warning: dict[str, list[str]] = {}
    for key, value in results.items():
        if "warning" in value:
            observables_by_warning.setdefault(value["warning"], []).append(key)
    for warning, keys in observables_by_warning.items():
        click.echo(f"warning: {', '.join(keys)}: {warning}", err=True)


def _warn_if_drifting(ens: Ensemble) -> None:
    """On stderr: a warning when the plaquette of a link ensemble still drifts between the first and second half
    of its records (`lgdiff.equilibration_drift`; needs >= 4 chains and >= 4 records)."""
    from lgdiff import equilibration_drift, mean_plaquette
    from lgdiff._stats.equilibration import MIN_CHAINS

    if ens.metadata.kind != "links" or ens.chains < MIN_CHAINS or ens.n_records < 4:
        return
    check = equilibration_drift(ens.series(mean_plaquette))
    if check.drifting():
        click.echo(f"warning: the plaquette drifts from {check.first:.5f} (first half of the records) to "
                   f"{check.second:.5f} (second half), {check.z:+.1f} sigma over {check.chains} chains: the chains "
                   f"are not equilibrated and the errors above are not trustworthy; rerun with a longer --therm",
                   err=True)


def _check_plotting(plot_dir: Path | None) -> None:
    from cli.plot import check_plotting

    check_plotting(plot_dir)


def _plot(ens: Ensemble, plot_dir: Path | None) -> None:
    """``--plot DIR``: the plots of ``lgdiff plot``, file names on stderr (stdout keeps the measurement)."""
    if plot_dir is not None:
        from cli.plot import write_plots

        with _user_errors():
            write_plots(ens, plot_dir, err=True)


@cli.command("measure")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--flow-time", type=float, default=1.0, show_default=True, help="Wilson-flow time for the 4D topological charge.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: key -> {mean, error, tau_int, method[, warning]}.")
def measure_cmd(file: Path, flow_time: float, as_json: bool) -> None:
    """Every observable that fits the theory of FILE, as mean, error and tau_int (in records)."""
    with _user_errors():
        ens = load_ensemble(file)
        _report(ens, as_json, flow_time)


@cli.command("train")
@click.option("--objective", type=click.Choice(["dsm", "osq"]), default="dsm", show_default=True,
              help="dsm: denoising score matching on the ensemble --data; osq: optimal stochastic quantisation, a "
                   "drift for --theory phi4 trained without data (then sample with --method osq or osq-imh).")
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), help="Training ensemble (--objective dsm).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Model file (.safetensors).")
@click.option("--steps", type=click.IntRange(min=1), help="Optimiser steps (default 2000).")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), help="Passes over the data (instead of --steps).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--sde", "sde_name", type=click.Choice(["ve", "vp"]), default=None,
              help="Forward SDE of --objective dsm: ve (default) or vp (gauge links: ve only, the group process of "
                   "docs/conventions.md).")
@click.option("--channels", type=click.IntRange(min=1), help="Network width (default 16 for NCSN++, 8 for the L-CNN).")
@click.option("--blocks", "lcnn_blocks", type=click.IntRange(min=1), default=None,
              help="L-CNN blocks (gauge links only; default 2).")
@click.option("--force-residual", is_flag=True, default=False,
              help="Parametrise the score around its exact t -> 0 limit, so the network learns only the residual: "
                   "gauge links, the Wilson force -beta grad S of the ensemble's beta; phi4, -grad S through the "
                   "Gaussian filter (1 + s^2 K)^-1 of the Hartree approximation (docs/diffusion-phi4.md).")
@click.option("--force-filter", type=click.IntRange(min=1), default=None,
              help="With --force-residual: pass the force through the gauge-covariant Gaussian filter "
                   "(1 + s^2 gamma c_0 H)^-1 (H the plaquettes' Gauss-Newton Hessian, gamma learned) with this many "
                   "conjugate-gradient steps, e.g. 5 (SU(3): docs/gauge-diffusion.md).")
@click.option("--z2/--no-z2", default=True, show_default=True,
              help="phi4: phi -> -phi augmentation (dsm) or an odd drift network (osq).")
@click.option("--theory", type=click.Choice(THEORIES), help="--objective osq: the theory (phi4).")
@click.option("--dim", type=click.IntRange(1, 3), help="--objective osq: number of dimensions D (default 2).")
@click.option("--L", "L", type=click.IntRange(min=2), help="--objective osq: lattice extent in every direction.")
@click.option("--kappa", type=FINITE, help="--objective osq: phi4 hopping parameter.")
@click.option("--lam", type=FINITE, help="--objective osq: phi4 coupling lambda.")
@click.option("--horizon", type=POSITIVE, help="--objective osq: time T of the controlled Langevin process "
                                               "(default 1.0).")
@click.option("--path-steps", type=click.IntRange(min=1),
              help="--objective osq: Euler-Maruyama steps N of a path (default 50).")
@click.option("--noise", type=POSITIVE, help="--objective osq: noise strength g (default sqrt(2), stochastic "
                                             "quantisation).")
@click.option("--osq-prior", type=click.Choice(["hartree", "white"]),
              help="--objective osq: the path's Gaussian prior: hartree (default; the best Gaussian approximation of "
                   "the action, a free field with the Hartree mass, in the broken phase the mixture of both signs) "
                   "or white (N(0, prior-std^2) per site).")
@click.option("--prior-std", type=POSITIVE, help="--objective osq --osq-prior white: width of the white prior "
                                                 "(default 1.0).")
@click.option("--osq-objective", type=click.Choice(OSQ_OBJECTIVES),
              help="--objective osq: exact (default; E[-log w] against the annealed path, its optimum samples "
                   "exp(-S)) or plain (the talk's E[int |v|^2 / 2 g^2 + S], biased).")
@click.option("--gradient", type=click.Choice(OSQ_GRADIENTS),
              help="--objective osq: path (default; backpropagate through the path) or log-variance.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]),
              help="--objective osq: the network's precision (default float32).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--device", type=DEVICE, default="cpu", show_default=True)
def train_cmd(objective: str, data: Path | None, out: Path, steps: int | None, epochs: float | None, batch_size: int,
              lr: float, sde_name: str | None, channels: int | None, lcnn_blocks: int | None, force_residual: bool,
              force_filter: int | None,
              z2: bool, theory: str | None, dim: int | None, L: int | None, kappa: float | None, lam: float | None,
              horizon: float | None, path_steps: int | None, noise: float | None, osq_prior: str | None,
              prior_std: float | None, osq_objective: str | None, gradient: str | None, dtype: str | None, seed: int,
              device: str) -> None:
    """Train a model; rerunning resumes from --out.

    --objective dsm (default): a score network on an ensemble (denoising score matching). phi4 ensembles train a
    periodic NCSN++ (VE or VP SDE); u1/su2/su3 ensembles train a gauge-equivariant L-CNN on the group (U(1) and
    SU(2) with the exact heat-kernel target, SU(N) with the Gaussian one), usable with `lgdiff sample --model`.

    --objective osq: optimal stochastic quantisation, without data: the residual drift of a controlled Langevin
    process (a linear head plus a periodic NCSN++) for --theory phi4 on L^D at --kappa, --lam, usable with
    `lgdiff sample --theory phi4 --method osq|osq-imh --model`."""
    osq = {"theory": theory, "dim": dim, "L": L, "kappa": kappa, "lam": lam, "horizon": horizon,
           "path_steps": path_steps, "noise": noise, "osq_prior": osq_prior, "prior_std": prior_std,
           "osq_objective": osq_objective,
           "gradient": gradient, "dtype": dtype}
    dsm = {"data": data, "epochs": epochs, "sde": sde_name, "blocks": lcnn_blocks,
           "force_residual": True if force_residual else None, "force_filter": force_filter}
    if force_filter and not force_residual:
        raise click.UsageError("--force-filter filters the Wilson force of --force-residual; add --force-residual")
    if objective == "osq":
        if (given := [name for name, value in dsm.items() if value is not None]):
            raise click.UsageError(f"{_flags(given)} {'is' if len(given) == 1 else 'are'} for --objective dsm; "
                                   f"--objective osq trains without data")
        _train_osq_cmd(out, steps=steps, batch_size=batch_size, lr=lr, channels=channels, z2=z2, seed=seed,
                       device=device, **osq)
        return
    if (given := [name for name, value in osq.items() if value is not None]):
        raise click.UsageError(f"{_flags(given)} {'is' if len(given) == 1 else 'are'} for --objective osq; "
                               f"--objective dsm trains on the theory and lattice of --data")
    if data is None:
        raise click.UsageError("--objective dsm needs --data ENSEMBLE (or train without data: --objective osq)")
    sde_name, lcnn_blocks = sde_name or "ve", lcnn_blocks or 2
    if steps is not None and epochs is not None:
        raise click.UsageError("give --steps or --epochs, not both")
    with _user_errors(), _dist.process_group(device) as world:
        from lgdiff._train.loop import first_non_finite

        ens = Ensemble.load(data)
        field = ens.configs(device=_dist.device_for_rank(device))
        if (bad := first_non_finite(field.data)) is not None:  # configs are time major: t * chains + c
            raise ValueError(f"{data}: record {bad // ens.chains}, chain {bad % ens.chains} is not finite (nan or "
                             f"inf); a model cannot be trained on it: drop that record or regenerate the ensemble")
        n_configs = field.data.shape[0]
        n_steps = steps if steps is not None else max(1, round((epochs or 0) * n_configs / batch_size)) if epochs else 2000
        beta = ens.metadata.params.get("beta")
        if ens.metadata.kind != "scalar" and not isinstance(beta, (int, float)):
            raise ValueError(f"{data} does not record beta (imported without --beta): a gauge model is trained at "
                             f"a known coupling; import the files again with --beta")
        provenance = {"theory": ens.metadata.theory, "params": ens.metadata.params,
                      "lattice": list(ens.metadata.lattice), "data": str(data),
                      "data_metadata": json.loads(ens.metadata.to_json()),
                      "command": _command_line(click.get_current_context(), world)}
        with _progress(n_steps, "training") as update:
            if ens.metadata.kind == "scalar":
                if force_filter:
                    raise ValueError("--force-filter is for gauge ensembles (u1, su2, su3): it filters the Wilson "
                                     "force of an L-CNN score (phi4's --force-residual has its own Gaussian filter)")
                force = _phi4_force(ens.metadata.theory, ens.metadata.params, tuple(ens.metadata.lattice),
                                    sde_name) if force_residual else {}
                report = _train_scalar(field.data, out, n_steps, batch_size, lr, sde_name, channels or 16, z2, seed,
                                       device, provenance, update, force=force)
            else:
                if sde_name != "ve":
                    raise ValueError(f"--sde {sde_name}: gauge links diffuse with the group VE process only; "
                                     "drop --sde or use --sde ve")
                provenance["beta"] = float(beta)
                report = _train_gauge(field, out, n_steps, batch_size, lr, channels or 8, lcnn_blocks, seed, device,
                                      provenance, update, force_beta=float(beta) if force_residual else 0.0,
                                      force_filter=force_filter or 0)
        main = _dist.is_main()
    if not main:  # rank 0 reports
        return
    _train_report(out, report)


def _flags(names: list[str]) -> str:
    """``--a, --b-c`` of the parameter names ``a``, ``b_c``."""
    return ", ".join("--" + name.replace("_", "-") for name in names)


def _train_report(out: Path, report: TrainReport) -> None:
    tail = report.losses[-min(50, len(report.losses)):]
    click.echo(f"{out}: {report.steps_done} steps, final loss {sum(tail) / len(tail):.4f} (mean of last {len(tail)}), "
               f"{report.seconds:.1f} s")


def _train_osq_cmd(out: Path, *, steps: int | None, batch_size: int, lr: float, channels: int | None, z2: bool,
                   seed: int, device: str, theory: str | None, dim: int | None, L: int | None, kappa: float | None,
                   lam: float | None, horizon: float | None, path_steps: int | None, noise: float | None,
                   osq_prior: str | None, prior_std: float | None, osq_objective: str | None, gradient: str | None,
                   dtype: str | None) -> None:
    """``lgdiff train --objective osq``: an `lgdiff._train.osq.train_osq` run for phi4 on ``L^dim``."""
    import math

    from lgdiff._models.ncsnpp import NCSNppConfig
    from lgdiff._samplers.osq import OSQProcess
    from lgdiff._train.osq import OSQTrainConfig, train_osq

    if theory is None or L is None:
        raise click.UsageError("--objective osq needs --theory phi4, --L, --kappa and --lam")
    if theory_group(theory) is not None:
        raise click.UsageError(f"--objective osq for gauge links is not built: OSQ trains scalar fields (--theory "
                               f"phi4); train {theory} with --objective dsm --data ENSEMBLE")
    th = _theory(theory, dim or 2, L, kappa, lam, None)
    with _user_errors():
        arch = NCSNppConfig(dim=th.lattice.dim, channels=channels or 16, z2_odd=z2)
    factor = 2 ** (arch.levels - 1)
    if L % factor:
        raise click.UsageError(f"--L {L}: the NCSN++ drift has {arch.levels} levels and needs an L divisible by "
                               f"{factor}")
    n_steps = steps or 2000
    if prior_std is not None and osq_prior != "white":
        raise click.UsageError("--prior-std is the width of the white prior: give --osq-prior white with it (the "
                               "default prior, hartree, takes its widths from the action)")
    with _user_errors(), _dist.process_group(device) as world:
        T, n_path, g = horizon or 1.0, path_steps or 50, noise or math.sqrt(2.0)
        process = (OSQProcess(T=T, steps=n_path, g=g, prior_std=prior_std or 1.0) if osq_prior == "white"
                   else OSQProcess.hartree(th.action(), th.lattice.shape, T=T, steps=n_path, g=g))
        config = OSQTrainConfig(steps=n_steps, batch_size=batch_size, lr=lr, seed=seed,
                                objective=osq_objective or "exact", gradient=gradient or "path")
        provenance = {"theory": th.name, "params": th.params, "lattice": list(th.lattice.shape),
                      "command": _command_line(click.get_current_context(), world)}
        with _progress(n_steps, "training") as update:
            report = train_osq(th.action(), th.lattice.shape, out, config=config, arch=arch, process=process,
                               provenance=provenance, device=_dist.device_for_rank(device),
                               dtype=getattr(torch, dtype or "float32"), progress=lambda step, loss: update(1))
    _train_report(out, report)


def _phi4_force(theory: str, params: dict[str, Any], lattice: tuple[int, ...], sde_name: str) -> dict[str, float]:
    """The NCSN++ force-base settings of a phi4 ensemble: its kappa and lambda, and the symmetric Hartree mass c_0
    of its lattice (`lgdiff._samplers.hartree`)."""
    from lgdiff._actions.phi4 import Phi4Action
    from lgdiff._samplers.hartree import hartree_gaussian

    if theory != "phi4" or not all(isinstance(params.get(k), (int, float)) for k in ("kappa", "lam")):
        raise ValueError(f"--force-residual for scalar fields needs a phi4 ensemble with kappa and lam; this one is "
                         f"{theory!r} with {params}")
    if sde_name != "ve":
        raise ValueError(f"--force-residual parametrises the VE score around -grad S; drop --sde {sde_name}")
    kappa, lam = float(params["kappa"]), float(params["lam"])
    gauss = hartree_gaussian(Phi4Action(kappa=kappa, lam=lam), lattice, phase="symmetric")
    return {"force_kappa": kappa, "force_lam": lam, "force_c0": gauss.std ** -2}


def _train_scalar(x: Any, out: Path, n_steps: int, batch_size: int, lr: float, sde_name: str, channels: int, z2: bool,
                  seed: int, device: str, provenance: dict[str, Any], update: Callable[[int], None], *,
                  force: dict[str, float]) -> Any:
    from lgdiff._models.ncsnpp import NCSNppConfig
    from lgdiff._sde.ve import VESDE
    from lgdiff._sde.vp import VPSDE
    from lgdiff._train.dsm import TrainConfig, train_ncsnpp

    config = TrainConfig(steps=n_steps, batch_size=batch_size, lr=lr, z2_augment=z2, seed=seed)
    arch = NCSNppConfig(dim=x.ndim - 1, channels=channels, **force)
    sde = VESDE() if sde_name == "ve" else VPSDE()
    return train_ncsnpp(x, out, config=config, arch=arch, sde=sde, provenance=provenance, device=device,
                        progress=lambda step, loss: update(1))


def _train_gauge(links: Any, out: Path, n_steps: int, batch_size: int, lr: float, channels: int, blocks: int,
                 seed: int, device: str, provenance: dict[str, Any], update: Callable[[int], None], *,
                 force_beta: float = 0.0, force_filter: int = 0) -> Any:
    from lgdiff._models.lcnn import LCNNConfig
    from lgdiff._sde.group import GroupVE
    from lgdiff._sde.heat_kernel import heat_kernel
    from lgdiff._train.gauge import GaugeTrainConfig, train_lcnn

    # the exact heat-kernel target needs exact draws of the Brownian kernel (U(1), SU(2)); else the Gaussian one
    target = "heat_kernel" if heat_kernel(links.group).can_sample else "gaussian"
    config = GaugeTrainConfig(steps=n_steps, batch_size=batch_size, lr=lr, seed=seed, target=target, t_focus=0.5)
    arch = LCNNConfig(group=links.group, dim=links.lattice.dim, channels=channels, blocks=blocks, dtype="float32",
                      force_beta=force_beta, force_filter=force_filter)
    return train_lcnn(links, out, config=config, arch=arch, process=GroupVE(), provenance=provenance, device=device,
                      progress=lambda step, loss: update(1))


@cli.command("sample")
@click.option("--theory", type=click.Choice(THEORIES), required=True)
@click.option("--dim", type=click.IntRange(1, 4), help="Dimensions (default: the model's).")
@click.option("--L", "L", type=click.IntRange(min=2), required=True)
@click.option("--kappa", type=FINITE, help="phi4 hopping parameter.")
@click.option("--lam", type=FINITE, help="phi4 coupling lambda.")
@click.option("--beta", type=POSITIVE, help="Gauge coupling (default: the model's).")
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path),
              help="Model file (default: the shipped model nearest to the couplings).")
@click.option("--method", type=click.Choice(["sde", "ode", "imh", "path", "maala", "heatbath", "mix", "resample",
                                           "osq", "osq-imh"]),
              default=None,
              help="Raw (sde, ode) or exact (imh, path, maala; phi4: mix, one FA-HMC trajectory then one path "
                   "proposal per update; gauge: heatbath, heatbath + overrelaxation sweeps from the model's denoised "
                   "start; resample, noise to --t-max and denoise with "
                   "the model, accepted exactly, then --local-sweeps heatbath sweeps) sampling with a diffusion "
                   "model; phi4 with an OSQ "
                   "model (lgdiff train --objective osq) or without one (v = 0 from the Hartree prior): raw (osq) or "
                   "exact (osq-imh). Default mix for phi4; gauge: heatbath with an SU(N) model on an even L, resample "
                   "with a U(1) force-residual model (the shipped beta = 7 one), maala otherwise.")
@click.option("--n", "n", type=click.IntRange(min=1), default=16, show_default=True, help="Records (per chain).")
@click.option("--chains", type=click.IntRange(min=1), default=16, show_default=True,
              help="Independent chains (gauge: the model's default unless given).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Reverse-SDE/ODE steps (default 100; gauge: the sampler's default); osq, osq-imh: steps of a "
                   "path (default: the model's; without a model 20).")
@click.option("--drift", type=click.Choice(["force", "score"]), default=None,
              help="Gauge MAALA's Langevin drift: the exact t -> 0 score -beta grad S (force, default) or the model "
                   "at t_L (score). Both are exact; the force takes far larger steps.")
@click.option("--corrector", type=click.IntRange(min=0), default=None,
              help="Gauge: annealed-Langevin corrector steps after each reverse-SDE step (default 0).")
@click.option("--leapfrog", type=click.IntRange(min=1), default=None,
              help="Gauge MAALA: leapfrog steps per proposal (1 is the Langevin move; K > 1 with the force drift "
                   "is HMC; default 10 with the force drift, 1 with score).")
@click.option("--therm", type=click.IntRange(min=0), default=None,
              help="Gauge chains: unrecorded updates (MAALA: default 2000 / leapfrog with the force drift, 40 with "
                   "score; heatbath 50; resample 20).")
@click.option("--every", type=click.IntRange(min=1), default=None,
              help="Gauge chains: updates between records (MAALA: default 20 / leapfrog with the force drift, 5 with "
                   "score; heatbath 4; resample 1).")
@click.option("--t-max", "t_max", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Gauge --method resample: the diffusion time each move noises up to (default 0.15).")
@click.option("--local-sweeps", type=click.IntRange(min=0), default=None,
              help="Gauge --method resample: heatbath + overrelaxation sweeps after each move (default 1).")
@click.option("--precondition/--no-precondition", default=None,
              help="Reverse steps exact for a Gaussian limit of the action. U(1) --method resample, path, sde: the "
                   "Wilson action at the mean-field beta (default: on for resample, off for path and sde); phi4 "
                   "--method path, sde, mix: the Hartree Gaussian (default on).")
@click.option("--fit-prior/--no-fit-prior", default=None,
              help="phi4 --method path, mix: start the proposals from a prior with the two magnetisation peaks, "
                   "fitted to the model before the chains start (default on; recorded in the file).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Ensemble file to write; rerunning the same command continues it.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--device", type=DEVICE, default="cpu", show_default=True)
@click.option("--blocks", type=click.IntRange(min=1), default=None,
              help="Split the chains into this many independently seeded blocks (default: the number of torchrun "
                   "processes, 1 without torchrun). One process with --blocks K writes the file of K ranks.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write the PNG plots of the ensemble (lgdiff plot) into this directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the measurement as one JSON object.")
def sample_cmd(theory: str, dim: int | None, L: int, kappa: float | None, lam: float | None, beta: float | None,
               model: Path | None, method: str | None, n: int, chains: int, steps: int | None, drift: str | None,
               corrector: int | None, leapfrog: int | None, therm: int | None, every: int | None,
               t_max: float | None, local_sweeps: int | None, precondition: bool | None, fit_prior: bool | None,
               out: Path | None,
               seed: int, device: str,
               blocks: int | None, plot_dir: Path | None, as_json: bool) -> None:
    """Sample with a trained diffusion model and measure the result.

    Without --model, the shipped model of the theory nearest to the requested couplings (phi4: kappa = 0.21 on
    32^2 or 0.27 on 16^2 and 32^2; u1: beta = 1 or 7 on 16^2; su3: beta = 5.0 on 4^4), named on stderr, with a warning where
    the run is far from its training point. Gauge theories sample exactly by default: SU(N) on an even L with
    heatbath + overrelaxation from the model's denoised start, U(1) with a force-residual model (the shipped
    beta = 7 one) with diffusion resampling, others with MAALA; e.g. `lgdiff sample --theory su3 --L 6` (beta
    defaults to the model's beta_0 = 5.0; --beta rescales the score by beta/beta_0). phi4 needs --kappa and --lam and defaults to the mixture of FA-HMC and path-space proposals; with an
    OSQ model (--method osq or osq-imh) the couplings default to the model's; without --model these methods run
    with no network (v = 0) from the Hartree prior of --kappa, --lam (T = 0.5, --steps path steps, default 20).
    """
    from lgdiff._run.sample_gauge import GaugeSampleConfig, default_method
    from lgdiff._run.sample_scalar import DEFAULT_METHOD, OSQ_METHODS, ScalarSampleConfig

    out = out or Path(f"lgdiff-sample-{theory}-L{L}-seed{seed}.safetensors")
    _check_plotting(plot_dir)
    scalar = theory_group(theory) is None
    if scalar or method in ("sde", "path", "imh"):
        for name, value in (("drift", drift), ("therm", therm), ("every", every), ("leapfrog", leapfrog)):
            if value is not None:
                raise click.UsageError(f"--{name} is for gauge sampling with --method maala")
    if method not in ("resample", None) or (method is None and scalar):
        _refuse_resample_options(t_max, local_sweeps)
    elif method == "resample" and (drift is not None or leapfrog is not None):
        raise click.UsageError("--drift and --leapfrog are for gauge sampling with --method maala")
    if precondition is not None and scalar and method not in (None, "path", "sde", "mix"):
        raise click.UsageError("--precondition/--no-precondition is for phi4 with --method path, sde or mix (on by "
                               "default), and U(1) with --method resample, path or sde")
    if fit_prior is not None and (not scalar or method not in (None, "path", "mix")):
        raise click.UsageError("--fit-prior/--no-fit-prior is for phi4 with --method path or mix (on by default)")
    if scalar and method in ("resample", "heatbath"):
        raise click.UsageError(f"--method {method} is for gauge theories (u1, su2, su3); phi4 samples with mix, path, "
                               "imh, sde, ode, maala, osq or osq-imh")
    if scalar and corrector is not None:
        raise click.UsageError("--corrector is for gauge sampling")
    if scalar and method in OSQ_METHODS:
        if model is None and (kappa is None or lam is None):
            raise click.UsageError(f"--method {method} without --model (v = 0 from the Hartree prior) needs --kappa "
                                   f"and --lam; or give an OSQ model (lgdiff train --objective osq)")
        if beta is not None:
            raise click.UsageError("--beta is for gauge theories; phi4 takes --kappa and --lam")
    if not scalar:
        if kappa is not None or lam is not None:
            raise click.UsageError(f"--kappa/--lam are for phi4; {theory} takes --beta")
        if method not in (None, "heatbath", "maala", "sde", "path", "imh", "resample"):  # phi4 only
            raise click.UsageError(f"--method {method} is for phi4; gauge theories sample with heatbath, maala, "
                                   f"resample, path, imh or sde")
    with _user_errors(), _dist.process_group(device) as world:
        dev = _dist.device_for_rank(device)
        config: ScalarSampleConfig | GaugeSampleConfig
        if scalar:
            given: dict[str, Any] = {"n": n, "chains": chains, "seed": seed, "blocks": blocks or world}
            if steps is not None:
                given["steps"] = steps
            if method in OSQ_METHODS and model is None:  # no network: v = 0 from the Hartree prior
                config = ScalarSampleConfig(theory=_theory(theory, dim or 2, L, kappa, lam, beta), model=None,
                                            method=method, **{"steps": None, **given})
            elif method in OSQ_METHODS:
                config = ScalarSampleConfig.from_osq_model(model, L, kappa=kappa, lam=lam, dim=dim, method=method,
                                                           **given)
            else:
                th = _theory(theory, dim or 2, L, kappa, lam, beta)
                model = model or _shipped_model(theory, th.params, L, dim)
                given |= {k: v for k, v in (("precondition", precondition), ("fit_prior", fit_prior)) if v is not None}
                config = ScalarSampleConfig(theory=th, model=model, method=method or DEFAULT_METHOD, **given)
            total, unit = n, "records"
        else:
            model = model or _shipped_model(theory, {} if beta is None else {"beta": beta}, L, dim)
            method = method or default_method(model, L)
            if method != "resample":
                _refuse_resample_options(t_max, local_sweeps)
            if method in ("resample", "heatbath") and (drift is not None or leapfrog is not None):
                raise click.UsageError("--drift and --leapfrog are for gauge sampling with --method maala")
            if precondition is not None and method not in ("resample", "path", "sde"):
                raise click.UsageError("--precondition/--no-precondition is for U(1) with --method resample, path or "
                                       "sde")
            settings: dict[str, object] = {"method": method, "n": n, "chains": chains, "seed": seed,
                                           "blocks": blocks or world}
            if steps is not None:
                settings["steps"] = steps
            if not ctx_given("chains"):
                settings.pop("chains")
            settings |= {k: v for k, v in (("drift", drift), ("therm", therm), ("every", every),
                                           ("corrector", corrector), ("leapfrog", leapfrog), ("t_max", t_max),
                                           ("local_sweeps", local_sweeps), ("precondition", precondition))
                         if v is not None}
            config = GaugeSampleConfig.from_model(theory, L, beta=beta, model=model, **settings)
            if dim is not None and dim != config.theory.lattice.dim:
                raise ValueError(f"the model is for D = {config.theory.lattice.dim}; got --dim {dim}")
            total, unit = config.work_units, "updates"
        _memory.check_sample_memory(config.theory, chains=config.chains // world, device=dev)
        command = _command_line(click.get_current_context(), world)
        try:
            with _progress(total, "sampling", unit=unit, status=_written(out)) as update:
                ens = config.run(out, device=dev, command=command, progress=update)
        except KeyboardInterrupt:
            raise click.ClickException(f"interrupted; {out} keeps every record written so far: rerun the same "
                                       "command to resume") from None
    if ens is not None:  # rank 0
        _report(ens, as_json)
        _plot(ens, plot_dir)


def _refuse_resample_options(t_max: float | None, local_sweeps: int | None) -> None:
    for name, value in (("t-max", t_max), ("local-sweeps", local_sweeps)):
        if value is not None:
            raise click.UsageError(f"--{name} is for gauge sampling with --method resample")


def _shipped_model(theory: str, params: dict[str, float], L: int, dim: int | None) -> Path:
    """The shipped model for the run (`lgdiff._run.shipped`), named on stderr with its warnings."""
    choice = choose_shipped_model(theory, params=params, L=L, dim=dim)
    click.echo(f"model: shipped {choice.model.describe()}; --model MODEL takes another", err=True)
    for warning in choice.warnings:
        click.echo(f"warning: {warning}", err=True)
    return choice.path


def ctx_given(name: str) -> bool:
    """Whether option ``name`` was given on the command line (not its default)."""
    ctx = click.get_current_context()
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


from cli.convert import convert_cmd  # noqa: E402  (registered after cli is defined)

cli.add_command(convert_cmd)
from cli.compare import compare_cmd  # noqa: E402  (after cli and the helpers it uses are defined)
from cli.plot import plot_cmd  # noqa: E402

cli.add_command(compare_cmd)
cli.add_command(plot_cmd)


def _tune_memory() -> None:
    """Make large tensors cheap to allocate again and again, for this process (the command line is lgdiff's own).

    torch's CPU allocator does not cache: every tensor above glibc's mmap threshold (128 KB, adaptive) is mapped
    fresh and unmapped when freed, and the kernel zero-fills its 4 KB pages again at the next allocation. In an HMC
    trajectory of 8 x 6^4 SU(3) configurations that was a third of the CPU time (system time, 320 000 page faults in
    5 trajectories), and at 16^4 a quarter of a force evaluation (docs/performance.md). So glibc keeps freed memory
    (mmap threshold 32 MB, its maximum, and trim threshold 1 GB), and torch backs tensors of 2 MB and more with
    transparent huge pages (``THP_MEM_ALLOC_ENABLE=1``, 512x fewer faults; read by torch at its first large
    allocation). Library users can set ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` and
    ``THP_MEM_ALLOC_ENABLE`` in the environment for the same effect. An explicit ``THP_MEM_ALLOC_ENABLE`` is kept;
    outside glibc nothing else changes.
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc (e.g. musl): keep its defaults
        pass


def main() -> None:
    _tune_memory()
    cli()


if __name__ == "__main__":
    main()
