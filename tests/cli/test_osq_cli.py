"""Optimal stochastic quantisation on the command line (issue #20): `lgdiff train --objective osq` trains a phi4
drift without data, `lgdiff sample --method osq|osq-imh --model` samples with it through the one resumable run, and
every wrong combination of options, models and methods is a one-line error."""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cli.main import cli
from lgdiff import Lattice, Phi4Action
from lgdiff._io.checkpoint import load_checkpoint
from lgdiff._io.ensemble import Ensemble
from lgdiff._io.files import file_sha256
from lgdiff._run.sample_scalar import ScalarSampleConfig
from lgdiff._run.theory import Theory
from lgdiff._samplers.hartree import hartree_gaussian

MODELS = Path(__file__).resolve().parents[2] / "lgdiff" / "models"
PHI4 = ["--theory", "phi4", "--L", 4, "--kappa", 0.2, "--lam", 0.02]
TRAIN = ["train", "--objective", "osq", *PHI4, "--steps", 2, "--batch-size", 4, "--path-steps", 4, "--channels", 4]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result, code, *needles):
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # no traceback
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("osq") / "m.safetensors"
    result = run(*TRAIN, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_train_osq_writes_a_phi4_drift_with_its_provenance(model):
    _, meta = load_checkpoint(model)
    assert meta["kind"] == "osq" and meta["network"] == "ncsnpp" and meta["step"] == 2
    assert meta["theory"] == "phi4" and meta["params"] == {"kappa": 0.2, "lam": 0.02} and meta["lattice"] == [4, 4]
    assert meta["config"]["z2_odd"] is True and meta["config"]["channels"] == 4 and meta["dtype"] == "float32"
    # the default prior is the Hartree free field of kappa = 0.2, lambda = 0.02 on 4 x 4
    h = hartree_gaussian(Phi4Action(kappa=0.2, lam=0.02), (4, 4))
    assert h.phase == "symmetric"
    assert meta["osq"] == {"T": 1.0, "steps": 4, "g": pytest.approx(2**0.5), "prior_std": pytest.approx(h.std),
                           "prior_kinetic": pytest.approx(h.kinetic)}
    assert meta["train"]["objective"] == "exact" and meta["train"]["gradient"] == "path"
    assert meta["command"].startswith("lgdiff train --objective osq") and "--path-steps 4" in meta["command"]
    info = json.loads(run("info", model, "--json").output)
    assert info["kind"] == "osq" and info["osq"]["steps"] == 4 and info["action"]["class"] == "Phi4Action"


def test_rerunning_a_finished_train_osq_leaves_the_model(model):
    before = model.read_bytes()
    result = run(*TRAIN, "--out", model)
    assert result.exit_code == 0, result.output
    assert model.read_bytes() == before
    # a rerun with other process settings is another model: refused, the file kept
    assert_one_line_error(run(*TRAIN, "--horizon", 2.0, "--out", model), 1, str(model), "other osq")
    assert model.read_bytes() == before


def test_train_osq_options(tmp_path):
    out = tmp_path / "p.safetensors"
    result = run(*TRAIN, "--osq-objective", "plain", "--gradient", "log-variance", "--noise", 1.0,
                 "--osq-prior", "white", "--prior-std", 0.5,
                 "--dim", 1, "--no-z2", "--dtype", "float64", "--out", out)
    assert result.exit_code == 0, result.output
    _, meta = load_checkpoint(out)
    assert meta["train"]["objective"] == "plain" and meta["train"]["gradient"] == "log-variance"
    assert meta["osq"]["g"] == 1.0 and meta["osq"]["prior_std"] == 0.5 and meta["lattice"] == [4]
    assert "prior_kinetic" not in meta["osq"]
    assert meta["config"]["z2_odd"] is False and meta["dtype"] == "float64"


def test_sample_osq_imh_names_the_kernel_and_the_model(model, tmp_path):
    out = tmp_path / "s.safetensors"
    result = run("sample", "--theory", "phi4", "--L", 4, "--method", "osq-imh", "--model", model, "--n", 2,
                 "--chains", 2, "--out", out)
    assert result.exit_code == 0, result.output
    assert "acceptance" in result.output
    meta = Ensemble.load(out).metadata
    assert meta.algorithm == "osq-imh" and meta.params == {"kappa": 0.2, "lam": 0.02}  # the model's couplings
    assert meta.settings["model_sha256"] == file_sha256(model) and meta.settings["model_step"] == 2
    assert meta.settings["steps"] == 4 and meta.settings["T"] == 1.0  # the model's process
    assert "--method osq-imh" in meta.command and "--steps" not in meta.command


def test_sample_osq_overrides_couplings_and_path_steps(model, tmp_path):
    out = tmp_path / "raw.safetensors"
    result = run("sample", "--theory", "phi4", "--L", 8, "--kappa", 0.25, "--method", "osq", "--model", model,
                 "--steps", 3, "--n", 2, "--chains", 2, "--out", out)
    assert result.exit_code == 0, result.output
    ens = Ensemble.load(out)
    assert ens.metadata.algorithm == "osq" and ens.metadata.params == {"kappa": 0.25, "lam": 0.02}
    assert ens.metadata.settings["steps"] == 3 and tuple(ens.metadata.lattice) == (8, 8)
    assert bool((ens.acceptance == 1).all())  # raw draws: every path accepted


@pytest.mark.parametrize("method", ["osq-imh", "osq"])
def test_sample_osq_resumes_to_the_uninterrupted_file(model, tmp_path, method):
    # osq-imh carries each chain's log weight in the resume state: a rerun with a larger --n continues the chains
    args = ["sample", "--theory", "phi4", "--L", 4, "--method", method, "--model", model, "--chains", 4, "--seed", 3]
    assert run(*args, "--n", 6, "--out", tmp_path / "whole.safetensors").exit_code == 0
    assert run(*args, "--n", 2, "--out", tmp_path / "part.safetensors").exit_code == 0
    assert run(*args, "--n", 6, "--out", tmp_path / "part.safetensors").exit_code == 0
    a, b = Ensemble.load(tmp_path / "part.safetensors"), Ensemble.load(tmp_path / "whole.safetensors")
    assert a.n_records == b.n_records == 6
    assert torch.equal(a.configs().data, b.configs().data)
    assert torch.equal(a.acceptance, b.acceptance) and torch.equal(a.rng_state, b.rng_state)
    if method == "osq-imh":
        assert 0 < float(b.acceptance.mean()) < 1  # proposals are rejected: the carried weights matter


def test_sample_osq_without_a_model_runs_v0_from_the_hartree_prior_and_resumes(tmp_path):
    args = ["sample", "--theory", "phi4", "--L", 4, "--kappa", 0.25, "--lam", 0.022, "--method", "osq-imh",
            "--chains", 4, "--seed", 5]
    whole, part = tmp_path / "whole.safetensors", tmp_path / "part.safetensors"
    result = run(*args, "--n", 6, "--out", whole)
    assert result.exit_code == 0, result.output
    assert run(*args, "--n", 2, "--out", part).exit_code == 0
    assert run(*args, "--n", 6, "--out", part).exit_code == 0
    a, b = Ensemble.load(part), Ensemble.load(whole)
    assert torch.equal(a.configs().data, b.configs().data) and torch.equal(a.acceptance, b.acceptance)
    meta = b.metadata
    h = hartree_gaussian(Phi4Action(kappa=0.25, lam=0.022), (4, 4))
    assert meta.algorithm == "osq-imh" and meta.settings["model"] == "none" and meta.settings["drift"] == "v = 0"
    assert meta.settings["osq_steps"] == 20 and meta.settings["osq_T"] == 0.5
    assert meta.settings["osq_prior_std"] == pytest.approx(h.std)
    assert meta.settings["osq_prior_kinetic"] == pytest.approx(h.kinetic)
    assert 0 < float(b.acceptance.mean()) < 1
    theory = Theory(name="phi4", lattice=Lattice(shape=(4, 4)), params={"kappa": 0.25, "lam": 0.022})
    with pytest.raises(ValueError, match="needs a score model"):
        ScalarSampleConfig(theory=theory, model=None, method="path")


def test_sample_osq_with_blocks(model, tmp_path):
    out = tmp_path / "b.safetensors"
    result = run("sample", "--theory", "phi4", "--L", 4, "--method", "osq-imh", "--model", model, "--n", 2,
                 "--chains", 4, "--blocks", 2, "--out", out)
    assert result.exit_code == 0, result.output
    meta = Ensemble.load(out).metadata
    assert meta.chains == 4 and meta.settings["run.blocks"] == 2


TRAIN_ERRORS = {  # options -> exit code (2: usage, 1: a value the library refuses), what the message says
    "data with osq": (["--data", "x.safetensors"], 2, "--data is for --objective dsm"),
    "gauge theory": (["--theory", "u1"], 2, "OSQ trains scalar fields"),
    "missing lam": (["--lam", None], 2, "needs --kappa and --lam"),
    "odd L": (["--L", 5], 2, "needs an L divisible by 2"),
    "epochs": (["--epochs", 1.0], 2, "--epochs is for --objective dsm"),
    "sde": (["--sde", "vp"], 2, "--sde is for --objective dsm"),
    "narrow network": (["--channels", 2], 1, "channels >= 4"),
    "white width, hartree prior": (["--prior-std", 0.5], 2, "give --osq-prior white"),
    "no hartree gaussian": (["--kappa", 0.3, "--lam", 0.0], 1, "Hartree Gaussian"),
    "unknown prior": (["--osq-prior", "flat"], 2, "--osq-prior"),
}


def _replace(args, extra):
    """``args`` with the options of ``extra`` set (added or replaced; value ``None`` drops the option)."""
    args = list(args)
    for name, value in zip(extra[::2], extra[1::2], strict=True):
        if name in args:
            i = args.index(name)
            del args[i:i + 2]
        if value is not None:
            args += [name, value]
    return args


@pytest.mark.parametrize("case", list(TRAIN_ERRORS))
def test_train_osq_user_errors(tmp_path, case):
    extra, code, needle = TRAIN_ERRORS[case]
    out = tmp_path / "m.safetensors"
    assert_one_line_error(run(*_replace(TRAIN, extra), "--out", out), code, needle)
    assert not out.exists()


def test_train_options_of_the_other_objective_are_refused(tmp_path):
    out = tmp_path / "m.safetensors"
    assert_one_line_error(run("train", "--out", out), 2, "--objective dsm needs --data")
    result = run("train", "--data", tmp_path / "d.safetensors", "--L", 4, "--path-steps", 3, "--out", out)
    assert_one_line_error(result, 2, "--L, --path-steps are for --objective osq")
    assert_one_line_error(run("train", "--objective", "osq", "--L", 4, "--out", out), 2, "needs --theory phi4")
    assert not out.exists()


def test_sample_osq_user_errors(model, tmp_path):
    out = tmp_path / "s.safetensors"
    sample = ["sample", "--theory", "phi4", "--L", 4, "--n", 1, "--chains", 1, "--out", out]
    assert_one_line_error(run(*sample, "--method", "osq-imh"), 2, "without --model", "needs --kappa and --lam")
    assert_one_line_error(run(*sample, "--method", "osq", "--model", model, "--beta", 1.0), 2, "--beta")
    dsm = MODELS / "phi4_k0.27_L16.safetensors"
    assert_one_line_error(run(*sample, "--method", "osq-imh", "--model", dsm), 1, str(dsm),
                          "diffusion score network", "--method sde, ode, imh, path, maala")
    assert_one_line_error(run(*sample, "--kappa", 0.2, "--lam", 0.02, "--method", "path", "--model", model), 1,
                          str(model), "optimal-stochastic-quantisation drift", "--method osq, osq-imh")
    assert_one_line_error(run(*_replace(sample, ["--L", 5]), "--method", "osq", "--model", model), 1,
                          "--L 5", "divisible by 2")
    assert_one_line_error(run(*sample, "--dim", 3, "--method", "osq", "--model", model), 1, "D = 2", "--dim 3")
    assert_one_line_error(run("sample", "--theory", "u1", "--L", 4, "--method", "osq", "--model", model, "--out", out),
                          2, "--method osq is for phi4")
    assert not out.exists()


def test_sample_config_refuses_a_model_of_the_other_kind(model, tmp_path):
    dsm = MODELS / "phi4_k0.27_L16.safetensors"
    with pytest.raises(ValueError, match=r"holds a diffusion score network \(NCSN\+\+\), which --method osq cannot"):
        ScalarSampleConfig.from_osq_model(dsm, 4, method="osq")
    config = ScalarSampleConfig.from_osq_model(model, 4)
    assert config.method == "osq-imh" and config.steps is None
    assert config.theory.params == {"kappa": 0.2, "lam": 0.02}
    with pytest.raises(ValueError, match="cannot use: sample it with --method osq, osq-imh"):
        ScalarSampleConfig(theory=config.theory, model=model, method="maala").run(tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="--method path needs --steps"):
        ScalarSampleConfig(theory=config.theory, model=dsm, method="path", steps=None)
