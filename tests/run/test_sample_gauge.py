"""``GaugeSampleConfig``: the sampling run behind ``lgdiff sample --theory su3|u1`` (ensemble file, metadata,
errors), the shipped models, and (slow) the shipped U(1) model against the exact 2D results."""

import math
from pathlib import Path

import attrs
import pytest
import torch

from lgdiff import SU, U1, Lattice, LinkField
from lgdiff._exact import u1_2d_topological_susceptibility, u1_2d_wilson_loop
from lgdiff._io.ensemble import EnsembleError
from lgdiff._models.lcnn import LCNNConfig
from lgdiff._observables.gauge import topological_charge_u1_2d, wilson_loop
from lgdiff._run.sample_gauge import (HEATBATH_DEFAULTS, RESAMPLE_DEFAULTS, GaugeSampleConfig, default_method,
                                      default_model, model_metadata)
from lgdiff._run.theory import Theory
from lgdiff._sde.group import GroupVE
from lgdiff._train.gauge import GaugeTrainConfig, train_lcnn

SHIPPED_PHI4 = str(Path(__file__).resolve().parents[2] / "lgdiff" / "models" / "phi4_k0.27_L16.safetensors")


@pytest.fixture(scope="module")
def tiny_u1_model(tmp_path_factory) -> str:
    """A U(1) model trained for a few steps at beta_0 = 2 (the run's mechanics, not its physics)."""
    path = tmp_path_factory.mktemp("model") / "u1.safetensors"
    data = LinkField.identity(U1(), Lattice(shape=(4, 4)), batch=8)
    train_lcnn(data, path, config=GaugeTrainConfig(steps=3, batch_size=4), process=GroupVE(),
               arch=LCNNConfig(group=U1(), dim=2, channels=3, blocks=1),
               provenance={"theory": "u1", "beta": 2.0, "command": "pytest"})
    return str(path)


def u1_theory(L: int, beta: float) -> Theory:
    return Theory(name="u1", lattice=Lattice(shape=(L, L)), params={"beta": beta})


def test_maala_run_writes_an_ensemble_with_its_settings(tmp_path, tiny_u1_model):
    config = GaugeSampleConfig(theory=u1_theory(6, 3.0), model=tiny_u1_model, n=3, chains=2, steps=4, therm=5,
                               every=2)
    ticks = []
    ens = config.run(tmp_path / "e.safetensors", command="lgdiff sample ...", progress=ticks.append)
    assert sum(ticks) == config.work_units == 1 + 5 + 3 * 2  # the denoised start, then one tick per proposal
    meta = ens.metadata
    assert (meta.kind, meta.theory, meta.group, meta.lattice, meta.chains) == ("links", "u1", "U(1)", (6, 6), 2)
    assert meta.algorithm == "dm-maala" and meta.params == {"beta": 3.0} and meta.command == "lgdiff sample ..."
    s = meta.settings
    assert s["beta_0"] == 2.0 and s["beta_scale"] == 1.5 and s["adapted"] == 1 and s["step_size"] > 0
    assert s["n_steps"] == 10 and s["drift"] == "force" and len(s["model_sha256"]) == 64
    assert ens.n_records == 3 and ens.acceptance.shape == (3, 2)
    assert list(ens.index) == [6, 8, 10]
    assert U1().membership_error(ens.configs().data).amax() < 1e-5


def test_fixed_step_and_explicit_beta_scale_are_used(tmp_path, tiny_u1_model):
    config = GaugeSampleConfig(theory=u1_theory(4, 1.0), model=tiny_u1_model, n=2, chains=2, steps=2, therm=0,
                               langevin_step=0.03, beta_scale=1.0)
    s = config.run(tmp_path / "e.safetensors").metadata.settings
    assert s["step_size"] ** 2 / 2 == pytest.approx(0.03) and s["adapted"] == 0 and s["beta_scale"] == 1.0


def test_resample_run_records_its_moves_and_resumes_bit_for_bit(tmp_path, tiny_u1_model):
    config = GaugeSampleConfig(theory=u1_theory(4, 1.0), model=tiny_u1_model, method="resample", n=3, chains=2,
                               steps=4, t_max=0.05, local_sweeps=2)
    assert config.chain == RESAMPLE_DEFAULTS
    ticks = []
    ens = config.run(tmp_path / "e.safetensors", progress=ticks.append)
    assert sum(ticks) == config.work_units == 1 + RESAMPLE_DEFAULTS[0] + 3 * RESAMPLE_DEFAULTS[1]
    meta = ens.metadata
    assert meta.algorithm == "dm-resample+heatbath+heatbath"
    s = meta.settings
    assert s["t_max"] == 0.05 and s["local_sweeps"] == 2 and s["dm-resample.t_max"] == 0.05
    assert s["dm-resample.steps"] == 4 and s["dm-resample.spacing"] == "uniform"
    # U(1): the reverse steps are preconditioned by default, at the mean-field beta I_1(1) / I_0(1) = 0.4464
    assert s["preconditioner"] == "free-u1" and s["precond_beta"] == pytest.approx(0.44639, abs=1e-5)
    # the recorded acceptance is the resampling move's (the heatbath's is always 1)
    assert ens.acceptance.shape == (3, 2) and set(ens.acceptance.flatten().tolist()) <= {0.0, 1.0}
    # a run cut short and rerun continues bit for bit
    short = attrs.evolve(config, n=1).run(tmp_path / "r.safetensors")
    assert short.n_records == 1
    resumed = config.run(tmp_path / "r.safetensors")
    assert torch.equal(resumed.configs().data, ens.configs().data)
    with pytest.raises(ValueError, match="--local-sweeps must be >= 0"):
        attrs.evolve(config, local_sweeps=-1)
    with pytest.raises(ValueError, match="--t-max must be below"):
        attrs.evolve(config, t_max=1.0)


def test_the_default_method_follows_the_model(tiny_u1_model):
    # resampling needs a score that is right at small t: the force-residual U(1) model; SU(N) runs the checkerboard
    # heatbath from the model's start where it can (even L); MAALA for the others
    assert default_method(default_model_path("u1_b7.0_L16"), 16) == "resample"
    assert default_method(default_model_path("u1_b1.0_L16"), 16) == "maala"
    assert default_method(default_model_path("su3_b5.0_L4"), 6) == "heatbath"
    assert default_method(default_model_path("su3_b5.0_L4"), 5) == "maala"
    assert default_method(tiny_u1_model, 4) == "maala"


def default_model_path(name: str) -> str:
    return str(Path(SHIPPED_PHI4).parent / f"{name}.safetensors")


def test_preconditioning_is_on_for_u1_reverse_kernels_and_can_be_turned_off(tmp_path, tiny_u1_model):
    config = GaugeSampleConfig(theory=u1_theory(4, 7.0), model=tiny_u1_model, method="resample", n=1, chains=2,
                               steps=2, therm=0)
    assert config.preconditioner is not None and 6.4 < config.preconditioner.beta < 6.5  # 7 I_1(7) / I_0(7)
    off = attrs.evolve(config, precondition=False)
    assert off.preconditioner is None
    assert off.run(tmp_path / "off.safetensors").metadata.settings["preconditioner"] == "none"
    assert attrs.evolve(config, method="maala").preconditioner is None
    assert attrs.evolve(config, method="path").preconditioner is None  # opt-in there
    assert attrs.evolve(config, method="path", precondition=True).preconditioner == config.preconditioner
    with pytest.raises(ValueError, match="--precondition is for U\\(1\\) with --method"):
        attrs.evolve(config, method="maala", precondition=True)
    su3 = Theory(name="su3", lattice=Lattice(shape=(4, 4, 4, 4)), params={"beta": 5.0})
    with pytest.raises(ValueError, match="--precondition is for U\\(1\\)"):
        GaugeSampleConfig(theory=su3, model=tiny_u1_model, method="resample", precondition=True)


def test_sde_run_records_independent_batches(tmp_path, tiny_u1_model):
    config = GaugeSampleConfig(theory=u1_theory(4, 2.0), model=tiny_u1_model, method="sde", n=2, chains=3, steps=3)
    ticks = []
    ens = config.run(tmp_path / "e.safetensors", progress=ticks.append)
    assert ens.metadata.algorithm == "dm-sde" and ens.n_records == 2 and ens.chains == 3
    assert sum(ticks) == config.work_units == 2
    assert torch.equal(ens.acceptance, torch.ones(2, 3, dtype=torch.float64))


@pytest.mark.parametrize(("drift", "leapfrog", "therm", "every"), [
    ("force", None, 200, 2),   # documented defaults: 2000 and 20 force evaluations, 10 leapfrog steps per proposal
    ("force", 7, 286, 2),      # 2000 / 7 rounded up, 20 / 7 rounded down
    ("score", None, 40, 5),    # 40 and 5 model evaluations, one step per proposal
    ("score", 10, 4, 1),       # at least one proposal between records
])
def test_the_default_chain_is_the_documented_number_of_evaluations(tmp_path, tiny_u1_model, drift, leapfrog, therm,
                                                                   every):
    # the defaults through a run: the proposals made (progress ticks after the denoised start), the update number
    # of every record, and what the file records
    n = 2
    settings = {} if leapfrog is None else {"leapfrog": leapfrog}
    config = GaugeSampleConfig(theory=u1_theory(4, 1.0), model=tiny_u1_model, drift=drift, n=n, chains=1, steps=2,
                               **settings)
    ticks = []
    ens = config.run(tmp_path / "e.safetensors", progress=ticks.append)
    assert sum(ticks) == 1 + therm + n * every
    assert list(ens.index) == [therm + k * every - 1 for k in range(1, n + 1)]
    s = ens.metadata.settings
    steps = leapfrog or {"force": 10, "score": 1}[drift]
    assert (s["drift"], s["therm"], s["every"], s["leapfrog"], s["n_steps"]) == (drift, therm, every, steps, steps)


def test_given_therm_and_every_override_the_defaults_and_are_recorded(tmp_path, tiny_u1_model):
    config = GaugeSampleConfig(theory=u1_theory(4, 1.0), model=tiny_u1_model, drift="score", n=2, chains=2, steps=2,
                               therm=3, every=1, corrector=2, leapfrog=2)
    ticks = []
    ens = config.run(tmp_path / "s.safetensors", progress=ticks.append)
    assert sum(ticks) == config.work_units == 1 + 3 + 2 and list(ens.index) == [3, 4]
    s = ens.metadata.settings
    assert (s["drift"], s["therm"], s["every"], s["corrector"], s["leapfrog"]) == ("score", 3, 1, 2, 2)


def test_force_drift_run_reproduces_the_exact_u1_plaquette(tmp_path, tiny_u1_model):
    # the run layer end to end: a barely trained model starts the chains, the exact t -> 0 score drives them
    beta, lattice = 3.0, (4, 4)
    config = GaugeSampleConfig(theory=u1_theory(4, beta), model=tiny_u1_model, n=40, chains=16, steps=4, therm=200,
                               every=5)
    ens = config.run(tmp_path / "f.safetensors")
    m, e = _chain_mean(ens.series(lambda U: wilson_loop(U, 1, 1)))
    exact = u1_2d_wilson_loop(beta, lattice, 1, 1)
    assert abs(m - exact) < 4 * e, f"plaquette {m} +- {e} vs exact {exact}"
    assert 0.4 < float(ens.acceptance.mean()) < 0.8 and ens.metadata.settings["drift"] == "force"


def test_heatbath_run_from_the_model_start_reproduces_the_exact_u1_plaquette(tmp_path, tiny_u1_model):
    # a barely trained model starts the chains, heatbath + overrelaxation with the exact action moves them; the
    # same model's raw draws (the start alone) miss the exact value: the chain, not the model, makes it right
    beta, lattice = 3.0, (4, 4)
    exact = u1_2d_wilson_loop(beta, lattice, 1, 1)
    config = GaugeSampleConfig(theory=u1_theory(4, beta), model=tiny_u1_model, method="heatbath", n=40, chains=16,
                               steps=4)
    ticks = []
    ens = config.run(tmp_path / "h.safetensors", progress=ticks.append)
    therm, every = HEATBATH_DEFAULTS
    assert sum(ticks) == config.work_units == 1 + therm + 40 * every
    assert list(ens.index) == [therm + k * every - 1 for k in range(1, 41)]
    meta = ens.metadata
    assert meta.algorithm == "heatbath" and len(meta.settings["model_sha256"]) == 64
    assert (meta.settings["therm"], meta.settings["every"], meta.settings["n_overrelax"]) == (therm, every, 1)
    assert torch.equal(ens.acceptance, torch.ones(40, 16, dtype=torch.float64))
    m, e = _chain_mean(ens.series(lambda U: wilson_loop(U, 1, 1)))
    assert abs(m - exact) < 4 * e, f"plaquette {m} +- {e} vs exact {exact}"
    raw = attrs.evolve(config, method="sde", n=4).run(tmp_path / "raw.safetensors")
    m_raw, e_raw = _chain_mean(raw.series(lambda U: wilson_loop(U, 1, 1)))
    assert abs(m_raw - exact) > 8 * e_raw, f"raw draws {m_raw} +- {e_raw} vs exact {exact}"


def test_heatbath_run_resumes_bit_for_bit_and_needs_even_extents(tmp_path, tiny_u1_model):
    config = GaugeSampleConfig(theory=u1_theory(4, 2.0), model=tiny_u1_model, method="heatbath", n=4, chains=2,
                               steps=2, therm=3, every=2)
    whole = config.run(tmp_path / "whole.safetensors")
    attrs.evolve(config, n=2).run(tmp_path / "part.safetensors")
    resumed = config.run(tmp_path / "part.safetensors")
    assert torch.equal(whole.configs().data, resumed.configs().data)
    with pytest.raises(ValueError, match="--method heatbath needs even extents .*got L = \\(5, 5\\): use --method maala"):
        GaugeSampleConfig(theory=u1_theory(5, 2.0), model=tiny_u1_model, method="heatbath")


def test_from_model_takes_beta_and_dimension_from_the_model(tiny_u1_model):
    config = GaugeSampleConfig.from_model("u1", 8, model=tiny_u1_model, n=2)
    assert config.theory.params == {"beta": 2.0} and config.theory.lattice.shape == (8, 8) and config.n == 2
    assert GaugeSampleConfig.from_model("u1", 8, beta=5.0, model=tiny_u1_model).theory.params == {"beta": 5.0}


def test_run_errors_say_what_to_fix(tmp_path, tiny_u1_model):
    with pytest.raises(ValueError, match="unknown method 'ode' for a gauge theory"):
        GaugeSampleConfig(theory=u1_theory(4, 1.0), model=tiny_u1_model, method="ode")
    with pytest.raises(ValueError, match="GaugeSampleConfig is for gauge theories"):
        GaugeSampleConfig(theory=Theory(name="phi4", lattice=Lattice(shape=(4, 4)), params={"kappa": 0.2, "lam": 0.02}),
                          model=tiny_u1_model)
    with pytest.raises(ValueError, match="--chains must be >= 1; got 0"):
        GaugeSampleConfig(theory=u1_theory(4, 1.0), model=tiny_u1_model, chains=0)
    with pytest.raises(ValueError, match="unknown drift 'exact'; expected one of force, score"):
        GaugeSampleConfig(theory=u1_theory(4, 1.0), model=tiny_u1_model, drift="exact")
    with pytest.raises(ValueError, match="--leapfrog must be >= 1; got 0"):
        GaugeSampleConfig(theory=u1_theory(4, 1.0), model=tiny_u1_model, leapfrog=0)
    with pytest.raises(ValueError, match="--corrector must be >= 0; got -1"):
        GaugeSampleConfig(theory=u1_theory(4, 1.0), model=tiny_u1_model, corrector=-1)
    with pytest.raises(ValueError, match="--every must be >= 1; got 0"):
        GaugeSampleConfig(theory=u1_theory(4, 1.0), model=tiny_u1_model, every=0)
    with pytest.raises(ValueError, match="--t-langevin must be a positive number"):
        GaugeSampleConfig(theory=u1_theory(4, 1.0), model=tiny_u1_model, t_langevin=0.0)
    su2 = Theory(name="su2", lattice=Lattice(shape=(4, 4)), params={"beta": 2.0})
    with pytest.raises(ValueError, match="is for U\\(1\\) in D = 2; the theory su2 on L = \\(4, 4\\) needs SU\\(2\\)"):
        GaugeSampleConfig(theory=su2, model=tiny_u1_model).run(tmp_path / "a.safetensors")
    (tmp_path / "b.safetensors").write_bytes(b"")
    with pytest.raises(EnsembleError, match="not a readable safetensors file"):
        GaugeSampleConfig(theory=u1_theory(4, 1.0), model=tiny_u1_model).run(tmp_path / "b.safetensors")
    with pytest.raises(ValueError, match="no shipped diffusion model for theory 'su2'"):
        default_model("su2")


@pytest.mark.parametrize(("theory", "group", "dim", "L", "beta"), [("su3", SU(3), 4, 4, 5.0), ("u1", U1(), 2, 16, 1.0)])
def test_shipped_models_are_small_and_carry_their_provenance(theory, group, dim, L, beta):
    path = default_model(theory)
    assert path.name == f"{theory}_b{beta}_L{L}.safetensors" and path.stat().st_size < 300_000
    meta = model_metadata(path)
    assert meta["theory"] == theory and meta["beta"] == beta and meta["lattice"] == [L] * dim
    assert LCNNConfig.from_dict(meta["config"]).group == group
    assert meta["command"].startswith("OMP_NUM_THREADS=1 python examples/train_gauge_models.py train")
    assert meta["train_seconds"] > 0 and meta["data_command"].startswith("lgdiff generate")


def _chain_mean(series: torch.Tensor) -> tuple[float, float]:
    m = series.mean(0)
    return float(m.mean()), float(m.std() / math.sqrt(m.shape[0]))


@pytest.mark.slow
@pytest.mark.parametrize("drift", ["force", "score"])
@pytest.mark.parametrize("beta", [1.0, 3.0])
def test_shipped_u1_model_reproduces_exact_wilson_loops_and_chi_t_on_8x8(tmp_path, beta, drift):
    config = GaugeSampleConfig.from_model("u1", 8, beta=beta, n=60, chains=16, therm=100, every=5, drift=drift)
    ens = config.run(tmp_path / "e.safetensors")
    for r in (1, 2, 3):
        m, e = _chain_mean(ens.series(lambda U, r=r: wilson_loop(U, r, r)))
        exact = u1_2d_wilson_loop(beta, (8, 8), r, r)
        assert abs(m - exact) < 4 * e, f"W({r},{r}) = {m} +- {e} vs exact {exact}"
    m, e = _chain_mean(ens.series(topological_charge_u1_2d) ** 2 / 64)
    exact = u1_2d_topological_susceptibility(beta, (8, 8))
    assert abs(m - exact) < 4 * e, f"chi_t = {m} +- {e} vs exact {exact}"
    assert float(ens.acceptance.mean()) > 0.4


@pytest.mark.parametrize("method", ["maala", "sde"])
def test_an_interrupted_sample_run_resumes_bit_for_bit(tmp_path, tiny_u1_model, method):
    # the one resumable ensemble run: a run stopped after some records and rerun with the same command continues
    # the file (generator state, tuned step, chain) and ends with the file of an uninterrupted run
    config = GaugeSampleConfig(theory=u1_theory(4, 2.0), model=tiny_u1_model, method=method, n=6, chains=2, steps=3,
                               therm=4, every=2)
    whole = config.run(tmp_path / "whole.safetensors", flush_every=1)
    attrs.evolve(config, n=2).run(tmp_path / "part.safetensors", flush_every=1)  # stopped after 2 records
    part = config.run(tmp_path / "part.safetensors", flush_every=1)
    assert torch.equal(part.configs().data, whole.configs().data)
    assert torch.equal(part.acceptance, whole.acceptance) and torch.equal(part.index, whole.index)
    assert part.metadata.settings == whole.metadata.settings


@pytest.mark.parametrize("method", ["path", "imh"])
def test_independence_sampler_runs_on_links_and_resumes(tmp_path, tiny_u1_model, method):
    # the global exact routes on links through the run layer: records, acceptance in [0, 1], and a stopped run
    # resumed with its chains' log weights gives the file of an uninterrupted one
    config = GaugeSampleConfig(theory=u1_theory(2, 1.0), model=tiny_u1_model, method=method, n=5, chains=2, steps=3)
    whole = config.run(tmp_path / "w.safetensors", flush_every=1)
    assert whole.metadata.algorithm == f"dm-{method}" and whole.n_records == 5
    assert ((whole.acceptance >= 0) & (whole.acceptance <= 1)).all()
    attrs.evolve(config, n=2).run(tmp_path / "p.safetensors", flush_every=1)
    part = config.run(tmp_path / "p.safetensors", flush_every=1)
    assert torch.equal(part.configs().data, whole.configs().data) and torch.equal(part.acceptance, whole.acceptance)


def test_one_loader_gives_the_score_of_either_kind_of_model_file(tmp_path, tiny_u1_model):
    from lgdiff import Field, load_score
    from lgdiff._models.files import lcnn_score

    gauge, scalar = load_score(tiny_u1_model), load_score(SHIPPED_PHI4)
    U = LinkField.random(U1(), Lattice(shape=(4, 4)), batch=2, generator=torch.Generator().manual_seed(0))
    t = torch.full((2,), 0.3, dtype=torch.float64)
    torch.testing.assert_close(gauge.score(U, t).data, lcnn_score(gauge.network, gauge.process)(U, t).data)
    x = Field.zeros(Lattice(shape=(4, 4)), batch=2, dtype=scalar.dtype).data
    torch.testing.assert_close(scalar.score(x, t.to(scalar.dtype)), scalar.network(x, t.to(scalar.dtype)))
    with pytest.raises(ValueError, match="is a scalar NCSN\\+\\+; a gauge theory needs an L-CNN model"):
        GaugeSampleConfig(theory=u1_theory(4, 1.0), model=SHIPPED_PHI4).run(tmp_path / "x.safetensors")
