"""Make the shipped gauge score models (lgdiff/models/{su3_b5.0_L4,u1_b1.0_L16,u1_b7.0_L16}.safetensors) and the
ensembles they need, and run the validations reported in docs/gauge-diffusion.md.

This is the exact recipe behind the shipped models; the command line that trained each model is stored in its
metadata (``meta["command"]``) and in docs/gauge-diffusion.md.

    OMP_NUM_THREADS=1 python examples/train_gauge_models.py data  --work /tmp/lgdiff-gauge
    OMP_NUM_THREADS=1 python examples/train_gauge_models.py train --work /tmp/lgdiff-gauge --model su3_b5.0_L4
    OMP_NUM_THREADS=1 python examples/train_gauge_models.py train --work /tmp/lgdiff-gauge --model u1_b1.0_L16
    OMP_NUM_THREADS=1 python examples/train_gauge_models.py train --work /tmp/lgdiff-gauge --model u1_b7.0_L16
    OMP_NUM_THREADS=1 python examples/train_gauge_models.py ship  --work /tmp/lgdiff-gauge
    OMP_NUM_THREADS=1 python examples/train_gauge_models.py validate --work /tmp/lgdiff-gauge --check su3
    OMP_NUM_THREADS=1 python examples/train_gauge_models.py validate --work /tmp/lgdiff-gauge --check u1
    OMP_NUM_THREADS=1 python examples/train_gauge_models.py validate --work /tmp/lgdiff-gauge --check su3 \
        --corrector 30 --therm 1500      # the model's annealed-Langevin start, a shorter chain

``data`` generates the training ensembles with the heatbath, or (U(1) at beta = 7) with the exact direct sampler
(the same library code as ``lgdiff generate``; the equivalent command is printed and stored in each file). ``train`` runs denoising score matching on the group
(GroupVE, sigma = 25) for a small L-CNN on CPU in float32; rerunning resumes from the checkpoint. ``ship``
keeps the EMA weights and the provenance and writes lgdiff/models/. ``validate`` samples with
``GaugeSampleConfig`` and compares with heatbath reference ensembles (su3) or the exact 2D U(1) values (u1).
Everything is resumable and deterministic given the seeds.

Cost of the default run (wall time on the shared 2-core development CPU, OMP_NUM_THREADS=1, docs/gauge-diffusion.md):
``data`` about 27 minutes (455 s for the SU(3) 4^4 training set, 14 s for U(1) 16^2, 1141 s for the SU(3) 6^4
reference, 5 s for the U(1) beta = 7 draws), ``train`` 507 s (su3_b5.0_L4), 232 s (u1_b1.0_L16) and about an hour
(u1_b7.0_L16, 40000 steps), ``ship`` a second, ``validate --check su3``
70-80 s of sampling (after the reference ensemble), ``validate --check u1`` about 4 minutes (12 runs of 5-60 s).

``--smoke`` runs the same stages with the same model names at tiny sizes (SU(3) on 2^4 and 4^4, U(1) on 4^2, a few
configurations, a 2-channel L-CNN trained for 3 steps, MAALA with 2 chains; validate u1 at one beta and one L):
seconds per stage on one core, e.g.

    OMP_NUM_THREADS=1 python examples/train_gauge_models.py validate --check su3 --smoke

A smoke run works in a fresh temporary directory unless ``--work`` is given, makes whatever its stage needs
(``ship`` trains the models it ships, ``validate`` samples with the models it trains and ships into
``WORK/models``, not with the models in lgdiff/models) and never writes into lgdiff/models.
"""

import argparse
import json
import math
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import attrs
import torch

from lgdiff import SU, U1, LinkField
from lgdiff._exact import u1_2d_topological_susceptibility, u1_2d_wilson_loop
from lgdiff._geometry.lattice import Lattice
from lgdiff._io.checkpoint import load_checkpoint, save_checkpoint
from lgdiff._io.ensemble import Ensemble
from lgdiff._models.lcnn import LCNNConfig
from lgdiff._observables.gauge import mean_plaquette, polyakov_loop, topological_charge_u1_2d, wilson_loop
from lgdiff._run.generate import GenerateConfig
from lgdiff._run.sample_gauge import DRIFTS, GaugeSampleConfig
from lgdiff._run.theory import Theory
from lgdiff._sde.group import GroupVE
from lgdiff._stats import gamma_method
from lgdiff._train.gauge import GaugeTrainConfig, train_lcnn

from _smoke import SMOKE_HELP, ensure_checkpoint, wants_smoke, work_and_dest  # examples/_smoke.py

# name -> (theory, D, L, beta, chains, n, every, therm, seed): n * chains heatbath configurations, or exact
# independent draws for the names in DIRECT
ENSEMBLES: dict[str, tuple[str, int, int, float, int, int, int, int, int]] = {
    "su3_b5.0_L4_train": ("su3", 4, 4, 5.0, 64, 8, 10, 200, 1),     # 512 configurations
    "u1_b1.0_L16_train": ("u1", 2, 16, 1.0, 64, 16, 10, 100, 2),    # 1024 configurations
    "su3_b5.5_L6_ref": ("su3", 4, 6, 5.5, 16, 40, 5, 200, 3),       # validation reference (not for training)
    "u1_b7.0_L16_train": ("u1", 2, 16, 7.0, 64, 64, 1, 0, 7),       # 4096 exact draws (no frozen topology)
}
DIRECT = frozenset({"u1_b7.0_L16_train"})
"""Ensembles drawn by the exact direct sampler of 2D U(1) (``lgdiff generate --algorithm direct``)."""

# model -> (training ensemble, architecture, training settings)
MODELS: dict[str, tuple[str, LCNNConfig, GaugeTrainConfig]] = {
    "su3_b5.0_L4": ("su3_b5.0_L4_train", LCNNConfig(group=SU(3), dim=4, channels=8, blocks=1, dtype="float32"),
                    GaugeTrainConfig(steps=1500, batch_size=16, lr=3e-3, ema=0.995, seed=0, checkpoint_every=50,
                                     t_focus=0.5)),
    "u1_b1.0_L16": ("u1_b1.0_L16_train", LCNNConfig(group=U1(), dim=2, channels=8, blocks=2, dtype="float32"),
                    GaugeTrainConfig(steps=3000, batch_size=32, lr=3e-3, ema=0.995, target="heat_kernel", seed=0,
                                     checkpoint_every=100, t_focus=0.5)),
    # the score around its exact t -> 0 limit (the Wilson force at beta = 7) plus a learned residual (issue #17)
    "u1_b7.0_L16": ("u1_b7.0_L16_train", LCNNConfig(group=U1(), dim=2, channels=16, blocks=3, rectangles=True,
                                                    dtype="float32", force_beta=7.0),
                    GaugeTrainConfig(steps=40000, batch_size=32, lr=2e-3, ema=0.999, target="heat_kernel", seed=0,
                                     checkpoint_every=500, t_focus=0.5)),
}

# --smoke: the same names at tiny sizes (seconds on one core); the heatbath needs even L
SMOKE_ENSEMBLES: dict[str, tuple[str, int, int, float, int, int, int, int, int]] = {
    "su3_b5.0_L4_train": ("su3", 4, 2, 5.0, 2, 2, 1, 2, 1),
    "u1_b1.0_L16_train": ("u1", 2, 4, 1.0, 2, 2, 1, 2, 2),
    "su3_b5.5_L6_ref": ("su3", 4, 4, 5.5, 2, 2, 1, 2, 3),  # W(2,2) needs L >= 3
    "u1_b7.0_L16_train": ("u1", 2, 4, 7.0, 2, 2, 1, 0, 7),
}
SMOKE_MODELS: dict[str, tuple[str, LCNNConfig, GaugeTrainConfig]] = {
    model: (data, attrs.evolve(arch, channels=2, blocks=1, time_features=4),
            attrs.evolve(config, steps=3, batch_size=2, checkpoint_every=3))
    for model, (data, arch, config) in MODELS.items()
}


class Recipe(NamedTuple):
    """The ensembles, models and validation runs: the shipped recipe, or its ``--smoke`` miniature."""

    ensembles: dict[str, tuple[str, int, int, float, int, int, int, int, int]]
    models: dict[str, tuple[str, LCNNConfig, GaugeTrainConfig]]
    su3_settings: dict[str, Any]  # GaugeSampleConfig fields of the su3 validation (L, beta: the reference's)
    u1_betas: tuple[float, ...]
    u1_sizes: tuple[int, ...]
    u1_settings: dict[str, Any]


# validation chains of one-step (Langevin) MAALA, long enough for the exact-force drift to equilibrate
# (docs/gauge-diffusion.md); the score drift takes ~50x smaller steps and does not equilibrate in them
FULL = Recipe(ENSEMBLES, MODELS, {"n": 40, "chains": 16, "therm": 4000, "every": 25, "leapfrog": 1},
              (1.0, 3.0, 5.0, 7.0), (8, 16, 32), {"n": 100, "chains": 16, "every": 20, "therm": 2000, "leapfrog": 1})
SMOKE = Recipe(SMOKE_ENSEMBLES, SMOKE_MODELS, {"n": 2, "chains": 2, "steps": 4, "therm": 2, "every": 1}, (1.0,), (4,),
               {"n": 4, "chains": 2, "steps": 4, "therm": 2, "every": 1})


def _algorithm(name: str) -> str:
    return "direct" if name in DIRECT else "heatbath"


def generate_command(recipe: Recipe, name: str) -> str:
    theory, dim, L, beta, chains, n, every, therm, seed = recipe.ensembles[name]
    return (f"lgdiff generate --theory {theory} --dim {dim} --L {L} --beta {beta} --algorithm {_algorithm(name)} "
            f"--chains {chains} --n {n} --every {every} --therm {therm} --seed {seed} --out {name}.safetensors")


def make_ensemble(recipe: Recipe, work: Path, name: str) -> Ensemble:
    theory, dim, L, beta, chains, n, every, therm, seed = recipe.ensembles[name]
    th = Theory(name=theory, lattice=Lattice(shape=(L,) * dim), params={"beta": beta})
    config = GenerateConfig(theory=th, algorithm=_algorithm(name), n=n, chains=chains, every=every, therm=therm,
                            seed=seed)
    t0 = time.perf_counter()
    ens = config.run(work / f"{name}.safetensors", command=generate_command(recipe, name), flush_every=4)
    print(f"{name}: {ens.n_records} x {ens.chains} configurations, {time.perf_counter() - t0:.1f} s", flush=True)
    return ens


def train(recipe: Recipe, work: Path, model: str, argv: list[str]) -> None:
    data_name, arch, config = recipe.models[model]
    ens = make_ensemble(recipe, work, data_name)
    links = ens.configs()  # [records * chains, D, *L, N, N]
    meta = ens.metadata
    command = "OMP_NUM_THREADS=1 python examples/train_gauge_models.py " + " ".join(shlex.quote(a) for a in argv)
    provenance = {"theory": meta.theory, "beta": float(meta.params["beta"]), "L": meta.lattice[0],
                  "data": f"{data_name}.safetensors ({links.batch} configurations)",
                  "data_metadata": json.loads(meta.to_json()), "data_command": generate_command(recipe, data_name),
                  "command": command, "train_hardware": "2-core shared CPU, OMP_NUM_THREADS=1, float32"}
    t0 = time.perf_counter()
    log_every = max(1, config.steps // 30)

    def progress(step: int, loss: float) -> None:
        if step % log_every == 0:
            print(f"  step {step:5d}  loss {loss:.4f}  {time.perf_counter() - t0:7.1f} s", flush=True)

    report = train_lcnn(links, work / f"{model}.ckpt.safetensors", config=config, arch=arch, process=GroupVE(),
                        provenance=provenance, progress=progress)
    tail = report.losses[-100:]
    print(f"{model}: {report.steps_done} steps, {report.seconds:.1f} s this run; mean loss of the last {len(tail)} "
          f"steps {sum(tail) / max(1, len(tail)):.4f}", flush=True)


def ship(work: Path, model: str, dest: Path) -> Path:
    tensors, meta = load_checkpoint(work / f"{model}.ckpt.safetensors")
    out = dest / f"{model}.safetensors"
    save_checkpoint(out, {k: v for k, v in tensors.items() if k.startswith("ema.")}, meta)
    print(f"{out}: {out.stat().st_size / 1024:.0f} KiB, {meta['step']} steps, {meta['train_seconds']:.0f} s",
          flush=True)
    return out


def _sample(work: Path, name: str, theory: str, L: int, beta: float, *, model: Path | None,
            **settings: object) -> tuple[Ensemble, float]:
    """Sample with ``model`` (None: the shipped one) unless ``work/name.safetensors`` exists."""
    out = work / f"{name}.safetensors"
    t0 = time.perf_counter()
    if not out.exists():
        GaugeSampleConfig.from_model(theory, L, beta=beta, model=model, **settings).run(out)
    seconds = time.perf_counter() - t0
    ens = Ensemble.load(out)
    print(f"{name}: {ens.n_records} x {ens.chains}, settings {ens.metadata.settings}, {seconds:.0f} s", flush=True)
    return ens, seconds


def _aligned(fn: Callable[[LinkField], torch.Tensor]) -> Callable[[LinkField], torch.Tensor]:
    """``fn`` on a fresh copy of the links: complex128 tensors read from safetensors files can be 8-byte aligned,
    and torch's complex128 batched matmul (polyakov_loop) crashes on them (torch 2.13, CPU)."""
    return lambda U: fn(U.with_data(U.data.clone()))


def _estimate(series: torch.Tensor) -> dict[str, float]:
    """``[T, C]`` series: the mean, the Gamma-method error and tau_int (in records) over all chains, and the error
    from the spread of the C chain means (chains independent; no autocorrelation assumption)."""
    x = series.to(torch.float64).numpy()
    means = x.mean(0)
    out = {"mean": float(x.mean()), "err_chains": float(means.std(ddof=1) / math.sqrt(len(means)))}
    try:
        est = gamma_method(x)
        out |= {"err_gamma": est.error, "tau_int": est.tau_int}
    except ValueError:  # chains too short for the automatic window
        out |= {"err_gamma": math.nan, "tau_int": math.nan}
    out["error"] = max(out["err_chains"], out["err_gamma"]) if math.isfinite(out["err_gamma"]) else out["err_chains"]
    return out


def _z(difference: float, error: float) -> float:
    """``difference / error`` in units of the error; NaN for a zero error (a chain that never moved, e.g. in a
    smoke run with an untrained model)."""
    return difference / error if error > 0 else math.nan


SU3_OBSERVABLES: dict[str, Callable[[LinkField], torch.Tensor]] = {
    "plaquette": mean_plaquette,
    "W(1,1)": lambda U: wilson_loop(U, 1, 1),
    "W(1,2)": lambda U: wilson_loop(U, 1, 2),
    "W(2,2)": lambda U: wilson_loop(U, 2, 2),
    "Re P": lambda U: polyakov_loop(U).real,
    "|P|": lambda U: polyakov_loop(U).abs(),
}


def validate_su3(recipe: Recipe, work: Path, model: Path | None, drift: str, corrector: int = 0,
                 therm: int | None = None) -> None:
    ref_ens = make_ensemble(recipe, work, "su3_b5.5_L6_ref")
    _, _, L, beta, *_ = recipe.ensembles["su3_b5.5_L6_ref"]
    settings = {**recipe.su3_settings, **({} if therm is None else {"therm": therm})}
    suffix = f"_pc{corrector}" if corrector else ""
    ens, seconds = _sample(work, f"su3_L{L}_b{beta}_maala_{drift}{suffix}", "su3", L, beta, model=model, drift=drift,
                           corrector=corrector, **settings)
    for key, fn in SU3_OBSERVABLES.items():
        a, b = _estimate(ens.series(_aligned(fn))), _estimate(ref_ens.series(_aligned(fn)))
        z = _z(a["mean"] - b["mean"], math.hypot(a["error"], b["error"]))
        print(f"  {key:9s} maala {a['mean']:.5f}({a['error']:.5f}) [chains {a['err_chains']:.5f}, gamma "
              f"{a['err_gamma']:.5f}, tau {a['tau_int']:.1f}]  heatbath {b['mean']:.5f}({b['error']:.5f}) "
              f"[tau {b['tau_int']:.1f}]  z = {z:+.2f}", flush=True)
    acc = _estimate(ens.acceptance)
    print(f"  acceptance {acc['mean']:.3f}({acc['error']:.3f}); wall time {seconds:.0f} s", flush=True)


def validate_u1(recipe: Recipe, work: Path, model: Path | None, drift: str, corrector: int = 0,
                therm: int | None = None) -> None:
    for beta in recipe.u1_betas:
        for L in recipe.u1_sizes:
            name = f"u1_L{L}_b{beta}_maala_{drift}"
            settings = {**recipe.u1_settings, **({} if therm is None else {"therm": therm})}
            ens, seconds = _sample(work, name + (f"_pc{corrector}" if corrector else ""), "u1", L, beta, model=model,
                                   drift=drift, corrector=corrector, **settings)
            lines = []
            for r in range(1, min(4, L // 2 - 1) + 1):
                est = _estimate(ens.series(lambda U, r=r: wilson_loop(U, r, r)))
                exact = u1_2d_wilson_loop(beta, (L, L), r, r)
                lines.append(f"W({r},{r}) {est['mean']:.5f}({est['error']:.5f}) exact {exact:.5f} "
                             f"z = {_z(est['mean'] - exact, est['error']):+.2f}")
            est = _estimate(ens.series(topological_charge_u1_2d) ** 2 / (L * L))
            exact = u1_2d_topological_susceptibility(beta, (L, L))
            lines.append(f"chi_t {est['mean']:.5f}({est['error']:.5f}) exact {exact:.5f} "
                         f"z = {_z(est['mean'] - exact, est['error']):+.2f}")
            acc = float(ens.acceptance.mean())
            print(f"{name}: acceptance {acc:.3f}, {seconds:.0f} s\n  " + "\n  ".join(lines), flush=True)


THEORY_MODEL = {"su3": "su3_b5.0_L4", "u1": "u1_b1.0_L16"}
"""--check -> the model it validates."""


def _ship_all(recipe: Recipe, work: Path, dest: Path, argv: list[str], *, smoke: bool,
              parser: argparse.ArgumentParser) -> None:
    for model in recipe.models:
        ensure_checkpoint(parser, work, model, smoke=smoke,
                          train=lambda model=model: train(recipe, work, model, [*argv, "--model", model]))
        ship(work, model, dest)


def main(argv: list[str]) -> None:
    smoke = wants_smoke(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("data", "train", "ship", "validate"))
    parser.add_argument("--work", type=Path, help="work directory (default /tmp/lgdiff-gauge; --smoke: a fresh "
                                                  "temporary directory)")
    parser.add_argument("--model", choices=tuple(MODELS))
    parser.add_argument("--check", choices=tuple(THEORY_MODEL))
    parser.add_argument("--drift", choices=DRIFTS, default="force", help="MAALA's Langevin drift (validate)")
    parser.add_argument("--corrector", type=int, default=0, help="annealed-Langevin corrector steps of the denoiser "
                                                                 "(validate)")
    parser.add_argument("--therm", type=int, help="MAALA's thermalisation steps (validate; default: the recipe's)")
    parser.add_argument("--dest", type=Path, help="where ship writes (default lgdiff/models; --smoke: WORK/models, "
                                                  "and only under WORK)")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    recipe = SMOKE if smoke else FULL
    torch.set_num_threads(1)
    work, dest = work_and_dest(parser, args.work, args.dest, smoke=smoke, default_work=Path("/tmp/lgdiff-gauge"))
    work.mkdir(parents=True, exist_ok=True)
    if args.stage == "data":
        for name in recipe.ensembles:
            make_ensemble(recipe, work, name)
    elif args.stage == "train":
        if args.model is None:
            parser.error("train needs --model")
        train(recipe, work, args.model, argv)
    elif args.stage == "ship":
        _ship_all(recipe, work, dest, argv, smoke=smoke, parser=parser)
    else:
        if args.check is None:
            parser.error("validate needs --check")
        model = None  # the shipped model; a smoke run validates the models it made itself
        if smoke:
            model = dest / f"{THEORY_MODEL[args.check]}.safetensors"
            if not model.exists():
                _ship_all(recipe, work, dest, argv, smoke=smoke, parser=parser)
        validate = validate_su3 if args.check == "su3" else validate_u1
        validate(recipe, work, model, args.drift, args.corrector, args.therm)


if __name__ == "__main__":
    main(sys.argv[1:])
