"""Make the shipped gauge score models (lgdiff/models/{su3_b5.0_L4,u1_b1.0_L16}.safetensors) and the ensembles
they need, and run the validations reported in docs/gauge-diffusion.md.

This is the exact recipe behind the shipped models; the command line that trained each model is stored in its
metadata (``meta["command"]``) and in docs/gauge-diffusion.md.

    OMP_NUM_THREADS=1 python examples/train_gauge_models.py data  --work /tmp/lgdiff-gauge
    OMP_NUM_THREADS=1 python examples/train_gauge_models.py train --work /tmp/lgdiff-gauge --model su3_b5.0_L4
    OMP_NUM_THREADS=1 python examples/train_gauge_models.py train --work /tmp/lgdiff-gauge --model u1_b1.0_L16
    OMP_NUM_THREADS=1 python examples/train_gauge_models.py ship  --work /tmp/lgdiff-gauge
    OMP_NUM_THREADS=1 python examples/train_gauge_models.py validate --work /tmp/lgdiff-gauge --check su3
    OMP_NUM_THREADS=1 python examples/train_gauge_models.py validate --work /tmp/lgdiff-gauge --check u1

``data`` generates the training ensembles with the heatbath (the same library code as ``lgdiff generate``; the
equivalent command is printed and stored in each file). ``train`` runs denoising score matching on the group
(GroupVE, sigma = 25) for a small L-CNN on CPU in float32; rerunning resumes from the checkpoint. ``ship``
keeps the EMA weights and the provenance and writes lgdiff/models/. ``validate`` samples with
``GaugeSampleConfig`` and compares with heatbath reference ensembles (su3) or the exact 2D U(1) values (u1).
Everything is resumable and deterministic given the seeds.
"""

import argparse
import json
import math
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lgdiff import SU, U1, LinkField
from lgdiff._exact import u1_2d_topological_susceptibility, u1_2d_wilson_loop
from lgdiff._geometry.lattice import Lattice
from lgdiff._io.checkpoint import load_checkpoint, save_checkpoint
from lgdiff._io.ensemble import Ensemble
from lgdiff._models.lcnn import LCNNConfig
from lgdiff._observables.gauge import mean_plaquette, polyakov_loop, topological_charge_u1_2d, wilson_loop
from lgdiff._run.generate import GenerateConfig
from lgdiff._run.sample_gauge import GaugeSampleConfig
from lgdiff._run.theory import Theory
from lgdiff._sde.group import GroupVE
from lgdiff._stats import gamma_method
from lgdiff._train.gauge import GaugeTrainConfig, train_lcnn

# name -> (theory, D, L, beta, chains, n, every, therm, seed): n * chains heatbath configurations
ENSEMBLES: dict[str, tuple[str, int, int, float, int, int, int, int, int]] = {
    "su3_b5.0_L4_train": ("su3", 4, 4, 5.0, 64, 8, 10, 200, 1),     # 512 configurations
    "u1_b1.0_L16_train": ("u1", 2, 16, 1.0, 64, 16, 10, 100, 2),    # 1024 configurations
    "su3_b5.5_L6_ref": ("su3", 4, 6, 5.5, 16, 40, 5, 200, 3),       # validation reference (not for training)
}

# model -> (training ensemble, architecture, training settings)
MODELS: dict[str, tuple[str, LCNNConfig, GaugeTrainConfig]] = {
    "su3_b5.0_L4": ("su3_b5.0_L4_train", LCNNConfig(group=SU(3), dim=4, channels=8, blocks=1, dtype="float32"),
                    GaugeTrainConfig(steps=1500, batch_size=16, lr=3e-3, ema=0.995, seed=0, checkpoint_every=50,
                                     t_focus=0.5)),
    "u1_b1.0_L16": ("u1_b1.0_L16_train", LCNNConfig(group=U1(), dim=2, channels=8, blocks=2, dtype="float32"),
                    GaugeTrainConfig(steps=3000, batch_size=32, lr=3e-3, ema=0.995, target="heat_kernel", seed=0,
                                     checkpoint_every=100, t_focus=0.5)),
}


def generate_command(name: str) -> str:
    theory, dim, L, beta, chains, n, every, therm, seed = ENSEMBLES[name]
    return (f"lgdiff generate --theory {theory} --dim {dim} --L {L} --beta {beta} --algorithm heatbath "
            f"--chains {chains} --n {n} --every {every} --therm {therm} --seed {seed} --out {name}.safetensors")


def make_ensemble(work: Path, name: str) -> Ensemble:
    theory, dim, L, beta, chains, n, every, therm, seed = ENSEMBLES[name]
    th = Theory(name=theory, lattice=Lattice(shape=(L,) * dim), params={"beta": beta})
    config = GenerateConfig(theory=th, algorithm="heatbath", n=n, chains=chains, every=every, therm=therm, seed=seed)
    t0 = time.perf_counter()
    ens = config.run(work / f"{name}.safetensors", command=generate_command(name), flush_every=4)
    print(f"{name}: {ens.n_records} x {ens.chains} configurations, {time.perf_counter() - t0:.1f} s", flush=True)
    return ens


def train(work: Path, model: str, argv: list[str]) -> None:
    data_name, arch, config = MODELS[model]
    ens = make_ensemble(work, data_name)
    links = ens.configs()  # [records * chains, D, *L, N, N]
    meta = ens.metadata
    command = "OMP_NUM_THREADS=1 python examples/train_gauge_models.py " + " ".join(shlex.quote(a) for a in argv)
    provenance = {"theory": meta.theory, "beta": float(meta.params["beta"]), "L": meta.lattice[0],
                  "data": f"{data_name}.safetensors ({links.batch} configurations)",
                  "data_metadata": json.loads(meta.to_json()), "data_command": generate_command(data_name),
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


def _sample(work: Path, name: str, theory: str, L: int, beta: float, **settings: object) -> tuple[Ensemble, float]:
    out = work / f"{name}.safetensors"
    t0 = time.perf_counter()
    if not out.exists():
        GaugeSampleConfig.from_model(theory, L, beta=beta, **settings).run(out)
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


SU3_OBSERVABLES: dict[str, Callable[[LinkField], torch.Tensor]] = {
    "plaquette": mean_plaquette,
    "W(1,1)": lambda U: wilson_loop(U, 1, 1),
    "W(1,2)": lambda U: wilson_loop(U, 1, 2),
    "W(2,2)": lambda U: wilson_loop(U, 2, 2),
    "Re P": lambda U: polyakov_loop(U).real,
    "|P|": lambda U: polyakov_loop(U).abs(),
}


def validate_su3(work: Path) -> None:
    ref_ens = make_ensemble(work, "su3_b5.5_L6_ref")
    ens, seconds = _sample(work, "su3_L6_b5.5_maala", "su3", 6, 5.5)
    for key, fn in SU3_OBSERVABLES.items():
        a, b = _estimate(ens.series(_aligned(fn))), _estimate(ref_ens.series(_aligned(fn)))
        z = (a["mean"] - b["mean"]) / math.hypot(a["error"], b["error"])
        print(f"  {key:9s} maala {a['mean']:.5f}({a['error']:.5f}) [chains {a['err_chains']:.5f}, gamma "
              f"{a['err_gamma']:.5f}, tau {a['tau_int']:.1f}]  heatbath {b['mean']:.5f}({b['error']:.5f}) "
              f"[tau {b['tau_int']:.1f}]  z = {z:+.2f}", flush=True)
    acc = _estimate(ens.acceptance)
    print(f"  acceptance {acc['mean']:.3f}({acc['error']:.3f}); wall time {seconds:.0f} s", flush=True)


def validate_u1(work: Path) -> None:
    for beta in (1.0, 3.0, 5.0, 7.0):
        for L in (8, 16, 32):
            name = f"u1_L{L}_b{beta}_maala"
            ens, seconds = _sample(work, name, "u1", L, beta, n=100, chains=16, every=5, therm=100)
            lines = []
            for r in range(1, min(4, L // 2 - 1) + 1):
                est = _estimate(ens.series(lambda U, r=r: wilson_loop(U, r, r)))
                exact = u1_2d_wilson_loop(beta, (L, L), r, r)
                lines.append(f"W({r},{r}) {est['mean']:.5f}({est['error']:.5f}) exact {exact:.5f} "
                             f"z = {(est['mean'] - exact) / est['error']:+.2f}")
            est = _estimate(ens.series(topological_charge_u1_2d) ** 2 / (L * L))
            exact = u1_2d_topological_susceptibility(beta, (L, L))
            lines.append(f"chi_t {est['mean']:.5f}({est['error']:.5f}) exact {exact:.5f} "
                         f"z = {(est['mean'] - exact) / est['error']:+.2f}")
            acc = float(ens.acceptance.mean())
            print(f"{name}: acceptance {acc:.3f}, {seconds:.0f} s\n  " + "\n  ".join(lines), flush=True)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("data", "train", "ship", "validate"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/lgdiff-gauge"))
    parser.add_argument("--model", choices=tuple(MODELS))
    parser.add_argument("--check", choices=("su3", "u1"))
    parser.add_argument("--dest", type=Path, default=Path(__file__).resolve().parents[1] / "lgdiff" / "models")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.stage == "data":
        for name in ENSEMBLES:
            make_ensemble(args.work, name)
    elif args.stage == "train":
        if args.model is None:
            parser.error("train needs --model")
        train(args.work, args.model, argv)
    elif args.stage == "ship":
        for model in MODELS:
            ship(args.work, model, args.dest)
    else:
        if args.check is None:
            parser.error("validate needs --check")
        validate_su3(args.work) if args.check == "su3" else validate_u1(args.work)


if __name__ == "__main__":
    main(sys.argv[1:])
