"""Optimal stochastic quantisation against the data-trained diffusion model and HMC, in one run at one lattice.

2D phi^4 at lambda = 0.022 (default L = 16, kappa = 0.21). For each exact algorithm, on the same lattice, in the
same process: acceptance, <|M|> and U_L (binned jackknife), tau_int of |M| by Wolff's Gamma method (chains as
replicas) and N_eff = N / (2 tau_int), the process CPU seconds of the sampling and effective samples per
CPU-second, plus, for the learned samplers, the Kish ESS fraction of their path weights (OSQ) and what training
cost:

- ``osq-imh``: the exact OSQ sampler, `lgdiff._samplers.osq.OSQPathIMH` with the drift of ``--osq-model`` (trained
  by ``examples/osq_phi4.py``; no training data). Training cost: the model file's steps and ``train_seconds``.
- ``osq-v0``: the same exact sampler with the same process (prior, T, N) and no network, ``v = 0``: finite-time
  Langevin from the prior; no training at all. What the training adds is the difference between the two rows.
- ``dm-path``: the data-trained diffusion model's path-space independence Metropolis (`lgdiff.PathIMH`, the exact
  route that works at any volume), with ``--dm-model`` (default the shipped ``phi4_k0.21_L32``: NCSN++ is fully
  convolutional, so the L = 32 network runs at L = 16 too; its acceptance says how well it transfers). Training
  cost: the model file's wall seconds plus the generation of its training data, which the model file records as
  a command only: the CPU seconds of ``--data-probe`` trajectories of that command's algorithm, lattice and chains
  are measured here and scaled to the command's trajectories (therm + n * every).
- ``hmc`` and ``hmc+wolff``: unit-length Omelyan HMC trajectories of 10 steps (+ one Wolff cluster), no training.

tau_int is counted in updates (one HMC trajectory, one OSQ path, one reverse-SDE generation).

    OMP_NUM_THREADS=1 python benchmarks/bench_osq.py --osq-model /work/osq_models/hartree/osq_k0.21_L16_h.safetensors
    OMP_NUM_THREADS=1 python benchmarks/bench_osq.py --quick      # smoke run: an untrained OSQ drift at L = 8
"""

import argparse
import json
import math
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _phi4 import LAM, MODELS, CpuTimer, chain_row, fmt, hmc_wolff, load_score  # noqa: E402

from lgdiff._actions.phi4 import Phi4Action  # noqa: E402
from lgdiff._fields.scalar import Field  # noqa: E402
from lgdiff._geometry.lattice import Lattice  # noqa: E402
from lgdiff._integrators.schemes import SCHEMES  # noqa: E402
from lgdiff._io.checkpoint import CheckpointError  # noqa: E402
from lgdiff._models.files import load_osq  # noqa: E402
from lgdiff._models.ncsnpp import NCSNppConfig  # noqa: E402
from lgdiff._samplers.hmc import HMC, FourierMass  # noqa: E402
from lgdiff._samplers.independence import PathIMH  # noqa: E402
from lgdiff._samplers.osq import OSQPathIMH, OSQProcess, zero_drift  # noqa: E402
from lgdiff._train.osq import OSQTrainConfig, train_osq  # noqa: E402


def data_generation_cost(meta: dict, probe: int, generator: torch.Generator) -> dict:
    """CPU seconds of the diffusion model's training data (module docstring): ``probe`` trajectories of the data
    command's FA-HMC / HMC at its lattice and chains, timed, times the command's therm + n * every."""
    data = meta.get("data_metadata")
    if not isinstance(data, dict) or data.get("theory") != "phi4" or data.get("algorithm") not in ("fahmc", "hmc"):
        raise SystemExit(f"error: --dm-model records no phi4 HMC/FA-HMC training data (data_metadata); its data "
                         f"generation cost cannot be measured")
    words = shlex.split(data["command"])
    n = int(words[words.index("--n") + 1])
    s, params = data["settings"], data["params"]
    trajectories = int(s["run.therm"]) + n * int(s["run.every"])
    action = Phi4Action(kappa=float(params["kappa"]), lam=float(params["lam"]))
    kinetic = {"kinetic": FourierMass(m_eff2=float(s["m_eff2"]))} if data["algorithm"] == "fahmc" else {}
    kernel = HMC(action=action, step_size=float(s["step_size"]), n_steps=int(s["n_steps"]),
                 scheme=SCHEMES[s["integrator"]], **kinetic)
    phi = Field.randn(Lattice(shape=tuple(data["lattice"])), batch=int(data["chains"]), generator=generator)
    with CpuTimer() as tm:
        for _ in range(probe):
            phi, _ = kernel.step(phi, generator=generator)
    per = tm.cpu / probe
    return {"algorithm": data["algorithm"], "lattice": data["lattice"], "chains": data["chains"],
            "trajectories": trajectories, "cpu_s_per_trajectory": per, "cpu_s": per * trajectories}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--L", type=int, default=16)
    p.add_argument("--kappa", type=float, default=0.21)
    p.add_argument("--osq-model", type=Path, help="OSQ model file for this kappa and L (examples/osq_phi4.py)")
    p.add_argument("--dm-model", type=Path, default=MODELS / "phi4_k0.21_L32.safetensors")
    p.add_argument("--chains", type=int, default=8, help="chains of every algorithm")
    p.add_argument("--n", type=int, default=250, help="proposals per chain of the OSQ and DM samplers")
    p.add_argument("--dm-steps", type=int, default=100, help="reverse-SDE steps of the DM proposals")
    p.add_argument("--hmc-n", type=int, default=2000, help="HMC updates per chain (after --therm)")
    p.add_argument("--therm", type=int, default=200)
    p.add_argument("--data-probe", type=int, default=3, help="timed trajectories of the DM's data generation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: L = 8, an untrained OSQ drift, few updates")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        args.L, args.chains, args.n, args.dm_steps, args.hmc_n, args.therm, args.data_probe = 8, 2, 10, 10, 40, 10, 1
    action = Phi4Action(kappa=args.kappa, lam=LAM)
    lattice = Lattice(shape=(args.L, args.L))
    g = torch.Generator().manual_seed(args.seed)
    if args.osq_model is None:
        if not args.quick:
            p.error("--osq-model is required (train one with examples/osq_phi4.py); --quick trains a 2-step one")
        args.osq_model = Path(tempfile.mkdtemp(prefix="lgdiff-bench-osq-")) / "osq.safetensors"
        train_osq(action, lattice.shape, args.osq_model, config=OSQTrainConfig(steps=2, batch_size=4),
                  arch=NCSNppConfig(dim=2, channels=4, z2_odd=True),
                  process=OSQProcess.hartree(action, lattice.shape, T=0.5, steps=4),
                  provenance={"theory": "phi4", "command": "bench_osq.py --quick"})
    for option, path in (("--osq-model", args.osq_model), ("--dm-model", args.dm_model)):
        if not path.is_file():
            p.error(f"{option} {path} does not exist")
    try:
        osq = load_osq(args.osq_model)
        score, net, dm_meta = load_score(args.dm_model)
    except CheckpointError as e:
        p.error(str(e))
    if osq.metadata["action"] != {"class": "Phi4Action", "kappa": args.kappa, "lam": LAM}:
        p.error(f"--osq-model {args.osq_model} was trained for {osq.metadata['action']}, not kappa = {args.kappa}")
    rows: dict[str, dict] = {}

    def record(name: str, row: dict, training: dict) -> None:
        rows[name] = {**row, "training": training}
        tau = fmt(row["tau_int"], row["tau_int_error"])
        print(f"  {name:10s} done: acc {row['acceptance']:.3f}, tau_int(|M|) {tau}, {row['cpu_s']:.0f} CPU s",
              flush=True)

    om = osq.metadata
    kernel = OSQPathIMH(drift=osq.drift, process=osq.process, action=action)
    record("osq-imh", chain_row(kernel, lattice, chains=args.chains, n=args.n, therm=0, generator=g),
           {"steps": om["step"], "batch_size": om["train"]["batch_size"], "wall_s": om["train_seconds"],
            "data_cpu_s": 0.0, "lattice": om["lattice"], "note": f"no data; {om['osq']}"})
    v0 = OSQPathIMH(drift=zero_drift, process=osq.process, action=action)
    record("osq-v0", chain_row(v0, lattice, chains=args.chains, n=args.n, therm=0, generator=g),
           {"steps": 0, "wall_s": 0.0, "data_cpu_s": 0.0, "note": f"no network, no training; {om['osq']}"})
    dm = PathIMH(score=score, process=net.sde, action=action, steps=args.dm_steps, t_min=0.0)
    cost = data_generation_cost(dm_meta, args.data_probe, g)
    record("dm-path", chain_row(dm, lattice, chains=args.chains, n=args.n, therm=0, generator=g),
           {"steps": dm_meta["step"], "batch_size": dm_meta["train"]["batch_size"],
            "wall_s": dm_meta.get("train_seconds_wall", dm_meta.get("train_seconds", math.nan)),
            "data_cpu_s": cost["cpu_s"], "lattice": dm_meta["lattice"], "data": cost,
            "note": f"{dm_meta['params']}, {args.dm_steps} SDE steps"})
    hmc = HMC(action=action, step_size=0.1, n_steps=10, scheme=SCHEMES["omelyan"])
    for name, k in (("hmc", hmc), ("hmc+wolff", hmc_wolff(action))):
        record(name, chain_row(k, lattice, chains=args.chains, n=args.hmc_n, therm=args.therm, generator=g),
               {"steps": 0, "wall_s": 0.0, "data_cpu_s": 0.0, "note": "no training"})

    print(f"\n2D phi^4, L = {args.L}, kappa = {args.kappa}, lambda = {LAM}; {args.chains} chains each; tau_int of |M| "
          f"in updates (Gamma method)")
    print(f"{'algorithm':10s} {'acc':>6} {'<|M|>':>11} {'U_L':>10} {'tau_int':>11} {'N_eff':>7} {'N_eff/n':>8} "
          f"{'CPU s':>6} {'N_eff/CPU s':>11} {'train':>18} {'data CPU s':>10}")
    for name, r in rows.items():
        t = r["training"]
        train = f"{t['steps']} steps {t['wall_s']:.0f} s" if t["steps"] else "-"
        print(f"{name:10s} {r['acceptance']:6.3f} {fmt(*r['<|M|>']):>11} {fmt(*r['U_L']):>10} "
              f"{fmt(r['tau_int'], r['tau_int_error']):>11} {r['n_eff']:7.0f} {r['n_eff'] / r['n']:8.3f} "
              f"{r['cpu_s']:6.0f} {r['n_eff_per_cpu_s']:11.3f} {train:>18} {t['data_cpu_s']:10.0f}")
    if args.json:
        report = {"L": args.L, "kappa": args.kappa, "lambda": LAM, "chains": args.chains, "rows": rows}
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=1, default=lambda x: float(x) if np.isscalar(x) else str(x)))
        tmp.replace(args.json)


if __name__ == "__main__":
    main()
