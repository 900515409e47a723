"""Make the shipped phi^4 score models (lgdiff/models/phi4_*.safetensors) and the ensembles they need.

This is the exact recipe behind the shipped models (2D phi^4, lambda = 0.022); the command line that made
each model is stored in its metadata (``meta["command"]``) and in docs/diffusion-phi4.md.

    OMP_NUM_THREADS=1 python examples/train_phi4_models.py data  --work /tmp/lgdiff-phi4
    OMP_NUM_THREADS=1 python examples/train_phi4_models.py train --work /tmp/lgdiff-phi4 --model k0.21_L32
    OMP_NUM_THREADS=1 python examples/train_phi4_models.py train --work /tmp/lgdiff-phi4 --model k0.27_L16_force
    OMP_NUM_THREADS=1 python examples/train_phi4_models.py train --work /tmp/lgdiff-phi4 --model k0.27_L32_force
    OMP_NUM_THREADS=1 python examples/train_phi4_models.py train --work /tmp/lgdiff-phi4 --model k0.21_L8
    OMP_NUM_THREADS=1 python examples/train_phi4_models.py ship  --work /tmp/lgdiff-phi4  [--model RECIPE]

The near-critical models (kappa = 0.27, ``*_force``, shipped as ``phi4_k0.27_L16`` and ``phi4_k0.27_L32``) are
parametrised around the exact small-noise limit of the score (`NCSNppConfig.force_kappa`; the Gaussian filter's
mass is the symmetric Hartree mass of the training lattice). ``k0.27_L16`` is the earlier model without it, kept
to reproduce the numbers measured with it.

``data`` generates every ensemble with the same library code as ``lgdiff generate`` (the equivalent
command is printed and stored in each file): FA-HMC at kappa = 0.21 (symmetric phase), HMC + Wolff
cluster flips at kappa = 0.27 (near-critical: the cluster update tunnels between the signs of M).
``train`` runs denoising score matching (VE SDE, sigma = 25) on CPU in float32; rerunning resumes from the
checkpoint. ``ship`` strips the optimiser state and raw weights, keeping the EMA weights and the provenance,
and writes lgdiff/models/. Everything is resumable and deterministic given the seeds.

Cost of the default run (one thread of the shared 2-core development CPU, float32): ``train`` took 2255 s for
k0.21_L32 (1200 Adam steps) and 2261 s for k0.27_L16 (2000 steps), the ``train_seconds_wall`` stored in the
shipped models; ``data`` (4 ensembles, 16384 configurations in all) was not timed; ``ship`` takes a second.

``--smoke`` runs the same stages with the same model names at tiny sizes (4^2 and 8^2 lattices, 16
configurations per ensemble, a 4-channel NCSNpp trained for 4 steps): seconds per stage on one core, e.g.

    OMP_NUM_THREADS=1 python examples/train_phi4_models.py ship --smoke

A smoke run works in a fresh temporary directory unless ``--work`` is given, makes whatever its stage needs
(``ship`` trains the models it ships) and ships into ``WORK/models``, never into lgdiff/models.
"""

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import NamedTuple

import attrs
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from lgdiff._actions.phi4 import Phi4Action
from lgdiff._geometry.lattice import Lattice
from lgdiff._io.checkpoint import load_checkpoint, save_checkpoint
from lgdiff._io.ensemble import Ensemble
from lgdiff._models.ncsnpp import NCSNppConfig
from lgdiff._run.generate import GenerateConfig
from lgdiff._run.theory import Theory
from lgdiff._samplers.hartree import hartree_gaussian
from lgdiff._sde.ve import VESDE
from lgdiff._train.dsm import TrainConfig, train_ncsnpp

from _smoke import SMOKE_HELP, ensure_checkpoint, wants_smoke, work_and_dest  # noqa: E402  (examples/_smoke.py)

LAM = 0.022

# name -> (kappa, L, algorithm, chains, n, every, therm, seed): n * chains configurations
ENSEMBLES: dict[str, tuple[float, int, str, int, int, int, int, int]] = {
    "k0.21_L32_train": (0.21, 32, "fahmc", 128, 40, 2, 100, 1),   # 5120 configs, as in the seed
    "k0.21_L32_test": (0.21, 32, "fahmc", 64, 16, 4, 100, 2),     # 1024 independent configs
    "k0.21_L8_train": (0.21, 8, "fahmc", 128, 40, 2, 100, 3),     # volume-transfer model
    "k0.27_L16_train": (0.27, 16, "wolff", 128, 40, 4, 200, 4),   # 5120 configs
    "k0.27_L32_train": (0.27, 32, "wolff", 128, 40, 4, 200, 5),   # 5120 configs
}

# model -> (training ensemble, architecture, training settings)
MODELS: dict[str, tuple[str, NCSNppConfig, TrainConfig]] = {
    "k0.21_L32": ("k0.21_L32_train", NCSNppConfig(dim=2, channels=16, multipliers=(1, 2, 2)),
                  TrainConfig(steps=1200, batch_size=32, lr=2e-3, ema=0.995, seed=0, checkpoint_every=100)),
    "k0.27_L16": ("k0.27_L16_train", NCSNppConfig(dim=2, channels=16, multipliers=(1, 2, 2)),
                  TrainConfig(steps=2000, batch_size=64, lr=2e-3, ema=0.995, seed=0, checkpoint_every=100)),
    "k0.21_L8": ("k0.21_L8_train", NCSNppConfig(dim=2, channels=16, multipliers=(1, 2, 2)),
                 TrainConfig(steps=1500, batch_size=64, lr=2e-3, ema=0.995, seed=0, checkpoint_every=100)),
}
# the near-critical model around its exact t -> 0 limit (NCSNppConfig.force_*, docs/diffusion-phi4.md): the Gaussian
# filter's mass is the symmetric Hartree c_0 of the training lattice
_C0_K027_L16 = hartree_gaussian(Phi4Action(kappa=0.27, lam=LAM), (16, 16), phase="symmetric").std ** -2
MODELS["k0.27_L16_force"] = (
    "k0.27_L16_train",
    NCSNppConfig(dim=2, channels=16, multipliers=(1, 2, 2), force_kappa=0.27, force_lam=LAM, force_c0=_C0_K027_L16),
    TrainConfig(steps=6000, batch_size=64, lr=2e-3, ema=0.995, seed=0, checkpoint_every=100))
_C0_K027_L32 = hartree_gaussian(Phi4Action(kappa=0.27, lam=LAM), (32, 32), phase="symmetric").std ** -2
MODELS["k0.27_L32_force"] = (
    "k0.27_L32_train",
    NCSNppConfig(dim=2, channels=16, multipliers=(1, 2, 2), force_kappa=0.27, force_lam=LAM, force_c0=_C0_K027_L32),
    TrainConfig(steps=16000, batch_size=32, lr=2e-3, ema=0.995, seed=0, checkpoint_every=100))
# recipe -> shipped file name (lgdiff/models/<name>.safetensors); "k0.27_L16", the unbased model shipped before
# the force base, stays here to reproduce the numbers measured with it (docs/diffusion-phi4.md)
SHIPPED = {"k0.21_L32": "phi4_k0.21_L32", "k0.27_L16_force": "phi4_k0.27_L16", "k0.27_L32_force": "phi4_k0.27_L32"}

# --smoke: the same names at tiny sizes (seconds on one core); NCSNpp with 2 levels needs even L
SMOKE_ENSEMBLES: dict[str, tuple[float, int, str, int, int, int, int, int]] = {
    "k0.21_L32_train": (0.21, 8, "fahmc", 4, 4, 1, 5, 1),
    "k0.21_L32_test": (0.21, 8, "fahmc", 4, 4, 1, 5, 2),
    "k0.21_L8_train": (0.21, 4, "fahmc", 4, 4, 1, 5, 3),
    "k0.27_L16_train": (0.27, 8, "wolff", 4, 4, 1, 5, 4),
    "k0.27_L32_train": (0.27, 8, "wolff", 4, 4, 1, 5, 5),
}
SMOKE_MODELS: dict[str, tuple[str, NCSNppConfig, TrainConfig]] = {
    model: (data, attrs.evolve(arch, channels=4, multipliers=(1, 2), time_features=8),
            TrainConfig(steps=4, batch_size=4, lr=2e-3, ema=0.995, seed=0, checkpoint_every=2))
    for model, (data, arch, _) in MODELS.items()
}


class Recipe(NamedTuple):
    """The ensembles and models of a run: the shipped recipe, or its ``--smoke`` miniature."""

    ensembles: dict[str, tuple[float, int, str, int, int, int, int, int]]
    models: dict[str, tuple[str, NCSNppConfig, TrainConfig]]


FULL, SMOKE = Recipe(ENSEMBLES, MODELS), Recipe(SMOKE_ENSEMBLES, SMOKE_MODELS)


def generate_command(recipe: Recipe, name: str) -> str:
    kappa, L, algorithm, chains, n, every, therm, seed = recipe.ensembles[name]
    return (f"lgdiff generate --theory phi4 --L {L} --kappa {kappa} --lam {LAM} --algorithm {algorithm} "
            f"--chains {chains} --n {n} --every {every} --therm {therm} --seed {seed} --out {name}.safetensors")


def make_ensemble(recipe: Recipe, work: Path, name: str) -> Ensemble:
    kappa, L, algorithm, chains, n, every, therm, seed = recipe.ensembles[name]
    theory = Theory(name="phi4", lattice=Lattice(shape=(L, L)), params={"kappa": kappa, "lam": LAM})
    config = GenerateConfig(theory=theory, algorithm=algorithm, n=n, chains=chains, every=every, therm=therm,
                            seed=seed)
    t0 = time.perf_counter()
    ens = config.run(work / f"{name}.safetensors", command=generate_command(recipe, name), flush_every=n)
    print(f"{name}: {ens.n_records} x {ens.chains} configurations, {time.perf_counter() - t0:.1f} s", flush=True)
    return ens


def train(recipe: Recipe, work: Path, model: str, argv: list[str]) -> None:
    data_name, arch, config = recipe.models[model]
    ens = make_ensemble(recipe, work, data_name)
    data = ens.configs().data.reshape(-1, *ens.metadata.lattice)
    command = "OMP_NUM_THREADS=1 python examples/train_phi4_models.py " + " ".join(shlex.quote(a) for a in argv)
    provenance = {"theory": "phi4", "params": ens.metadata.params, "lattice": list(ens.metadata.lattice),
                  "data": f"{data_name}.safetensors ({data.shape[0]} configurations)",
                  "data_metadata": json.loads(ens.metadata.to_json()), "data_command": generate_command(recipe, data_name),
                  "command": command}
    t0 = time.perf_counter()
    log_every = max(1, config.steps // 40)

    def progress(step: int, loss: float) -> None:
        if step % log_every == 0:
            print(f"  step {step:5d}  loss {loss:.4f}  {time.perf_counter() - t0:7.1f} s", flush=True)

    report = train_ncsnpp(data, work / f"{model}.ckpt.safetensors", config=config, arch=arch, sde=VESDE(),
                          provenance=provenance, progress=progress)
    tail = report.losses[-100:]
    print(f"{model}: {report.steps_done} steps in {report.seconds:.1f} s this run; mean loss of last {len(tail)} "
          f"steps {sum(tail) / max(1, len(tail)):.4f}", flush=True)
    # the wall time of this run is recorded next to the checkpoint (the checkpoint itself sums resumed runs)
    (work / f"{model}.time.json").write_text(json.dumps({"seconds": report.seconds, "steps": report.steps_done}))


def ship(work: Path, model: str, dest: Path, name: str) -> Path:
    tensors, meta = load_checkpoint(work / f"{model}.ckpt.safetensors")
    timing = work / f"{model}.time.json"
    if timing.exists():
        meta["train_seconds_wall"] = json.loads(timing.read_text())["seconds"]
        meta["train_hardware"] = "one thread (OMP_NUM_THREADS=1) of a shared 2-core CPU, float32"
    if "train_cpu_seconds" in meta:  # summed over resumed runs by the training loop
        meta["train_seconds_wall"] = meta["train_seconds"]
        meta["train_seconds_cpu"] = meta["train_cpu_seconds"]
    out = dest / f"{name}.safetensors"
    save_checkpoint(out, {k: v for k, v in tensors.items() if k.startswith("ema.")}, meta)
    print(f"{out}: {out.stat().st_size / 1024:.0f} KiB", flush=True)
    return out


def main(argv: list[str]) -> None:
    smoke = wants_smoke(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("data", "train", "ship"))
    parser.add_argument("--work", type=Path, help="work directory (default /tmp/lgdiff-phi4; --smoke: a fresh "
                                                  "temporary directory)")
    parser.add_argument("--model", choices=tuple(MODELS))
    parser.add_argument("--dest", type=Path, help="where ship writes (default lgdiff/models; --smoke: WORK/models, "
                                                  "and only under WORK)")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    recipe = SMOKE if smoke else FULL
    torch.set_num_threads(1)
    work, dest = work_and_dest(parser, args.work, args.dest, smoke=smoke, default_work=Path("/tmp/lgdiff-phi4"))
    work.mkdir(parents=True, exist_ok=True)
    if args.stage == "data":
        for name in recipe.ensembles:
            make_ensemble(recipe, work, name)
    elif args.stage == "train":
        if args.model is None:
            parser.error("train needs --model")
        train(recipe, work, args.model, argv)
    else:
        if args.model is not None and args.model not in SHIPPED:
            parser.error(f"ship --model {args.model}: not a shipped recipe ({', '.join(SHIPPED)})")
        for model in [args.model] if args.model else list(SHIPPED):
            ensure_checkpoint(parser, work, model, smoke=smoke,
                              train=lambda model=model: train(recipe, work, model, [*argv, "--model", model]))
            ship(work, model, dest, SHIPPED[model])


if __name__ == "__main__":
    main(sys.argv[1:])
