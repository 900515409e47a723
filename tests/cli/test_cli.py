import json
import re

import pytest
from click.testing import CliRunner

import lgdiff
from cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_info_json():
    result = run("info", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["lgdiff"] == lgdiff.__version__
    assert "SU(3)" in report["groups"]


def test_unknown_command_fails_cleanly():
    result = run("frobnicate")
    assert result.exit_code != 0
    assert "No such command" in result.output


def test_every_command_has_help():
    for cmd in ("generate", "measure", "info"):
        result = run(cmd, "--help")
        assert result.exit_code == 0 and "Usage" in result.output


@pytest.fixture
def phi4_file(tmp_path):
    out = tmp_path / "phi4.safetensors"
    result = run("generate", "--theory", "phi4", "--L", 4, "--kappa", 0.2, "--lam", 0.02, "--n", 6, "--chains", 4,
                 "--therm", 5, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    return out, result


def test_generate_then_measure_and_info(phi4_file):
    out, gen = phi4_file
    report = json.loads(gen.output.strip().splitlines()[-1])
    assert set(report) >= {"mag", "abs_mag", "chi2", "binder", "acceptance"}
    assert {"mean", "error", "tau_int", "method"} <= set(report["mag"]) <= {"mean", "error", "tau_int", "method", "warning"}
    again = run("measure", out, "--json")
    assert again.exit_code == 0
    assert json.loads(again.output)["chi2"]["mean"] == report["chi2"]["mean"]
    info = json.loads(run("info", out, "--json").output)
    assert info["records"] == 6 and info["chains"] == 4 and info["theory"] == "phi4"
    assert info["params"] == {"kappa": 0.2, "lam": 0.02} and info["seed"] == 0
    assert "lgdiff generate" in info["command"]


def test_rerun_resumes_and_extends(phi4_file):
    out, _ = phi4_file
    result = run("generate", "--theory", "phi4", "--L", 4, "--kappa", 0.2, "--lam", 0.02, "--n", 9, "--chains", 4,
                 "--therm", 5, "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads(run("info", out, "--json").output)["records"] == 9


def test_mismatching_append_is_refused(phi4_file):
    out, _ = phi4_file
    result = run("generate", "--theory", "phi4", "--L", 4, "--kappa", 0.3, "--lam", 0.02, "--n", 9, "--chains", 4,
                 "--therm", 5, "--out", out)
    assert result.exit_code == 1
    assert "params.kappa" in result.output and "Traceback" not in result.output


def test_gauge_generate_heatbath(tmp_path):
    out = tmp_path / "su2.safetensors"
    result = run("generate", "--theory", "su2", "--L", 4, "--beta", 2.0, "--algorithm", "heatbath", "--n", 4,
                 "--chains", 2, "--therm", 2, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert {"plaquette", "wilson_1x1", "wilson_1x2", "wilson_2x2", "polyakov"} <= set(report)
    assert report["wilson_1x1"]["mean"] == report["plaquette"]["mean"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--theory", "phi4", "--L", 4, "--lam", 0.1, "--n", 2], "needs --kappa and --lam"),
        (["--theory", "su3", "--L", 4, "--n", 2], "needs --beta"),
        (["--theory", "su3", "--L", 4, "--beta", 5.0, "--kappa", 0.1, "--n", 2], "are for phi4"),
        (["--theory", "u1", "--L", 4, "--beta", 1.0, "--algorithm", "wolff", "--n", 2], "is for scalar phi^4"),
        (["--theory", "phi4", "--L", 4, "--kappa", 0.1, "--lam", 0.1, "--algorithm", "heatbath", "--n", 2],
         "heatbath is for gauge theories"),
        (["--theory", "u1", "--L", 4, "--dim", 1, "--beta", 1.0, "--n", 2], "needs D >= 2"),
        (["--theory", "u1", "--L", 4, "--beta", 1.0, "--n", 2, "--step-size", -1], "must be a positive number"),
    ],
)
def test_bad_options_fail_with_one_line(tmp_path, args, message):
    result = run("generate", *args, "--out", tmp_path / "x.safetensors")
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.safetensors").exists()


def test_foreign_and_missing_files(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_text("hello")
    for cmd in ("measure", "info"):
        result = run(cmd, bad)
        assert result.exit_code == 1 and "not a readable safetensors file" in result.output
    result = run("measure", tmp_path / "missing.safetensors")
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_sample_gauge_with_shipped_model(tmp_path):
    out = tmp_path / "u1.safetensors"
    result = run("sample", "--theory", "u1", "--L", 4, "--n", 2, "--chains", 2, "--steps", 5, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert {"plaquette", "wilson_1x1", "topo_charge", "acceptance"} <= set(report)
    info = json.loads(run("info", out, "--json").output)
    assert info["theory"] == "u1" and info["params"] == {"beta": 1.0} and "lgdiff sample" in info["command"]
    assert info["settings"]["drift"] == "force"


def test_sample_gauge_drift_and_chain_options(tmp_path):
    out = tmp_path / "u1.safetensors"
    result = run("sample", "--theory", "u1", "--L", 4, "--n", 2, "--chains", 2, "--steps", 3, "--drift", "score",
                 "--therm", 3, "--every", 2, "--corrector", 2, "--out", out)
    assert result.exit_code == 0, result.output
    settings = json.loads(run("info", out, "--json").output)["settings"]
    assert (settings["drift"], settings["therm"], settings["every"], settings["corrector"]) == ("score", 3, 2, 2)


def test_sample_warns_when_the_chains_are_not_equilibrated(tmp_path):
    # beta = 7, MAALA from a 10-step denoiser, no thermalisation: the plaquette is still climbing
    args = ["sample", "--theory", "u1", "--L", 16, "--beta", 7, "--method", "maala", "--every", 5, "--n", 16,
            "--chains", 8, "--steps", 10]
    result = run(*args, "--therm", 0, "--out", tmp_path / "a.safetensors")
    assert result.exit_code == 0 and "warning: the plaquette drifts from" in result.stderr, result.output
    assert "rerun with a longer --therm" in result.stderr
    # thermalised chains of the same run: no drift warning (the topological charge is frozen at beta = 7, which
    # measure reports as a jackknife over the chain means)
    result = run(*args, "--therm", 2000, "--out", tmp_path / "b.safetensors")
    assert result.exit_code == 0 and "drifts" not in result.stderr, result.stderr
    assert re.search(r"warning: (\w+, )*topo_charge(, \w+)*: error from a jackknife over the 8 chain means", result.stderr)


def test_u1_at_beta_7_samples_with_preconditioned_resampling_by_default(tmp_path):
    out = tmp_path / "r.safetensors"
    result = run("sample", "--theory", "u1", "--L", 4, "--beta", 7, "--n", 2, "--chains", 2, "--steps", 4,
                 "--out", out)
    assert result.exit_code == 0 and "shipped u1_b7.0_L16" in result.stderr, result.output
    info = json.loads(run("info", out, "--json").output)
    assert info["algorithm"] == "dm-resample+heatbath" and info["settings"]["preconditioner"] == "free-u1"
    assert info["settings"]["t_max"] == 0.15
    result = run("sample", "--theory", "u1", "--L", 4, "--beta", 7, "--drift", "force", "--out", out)
    assert result.exit_code != 0 and "--drift and --leapfrog are for gauge sampling with --method maala" in result.output


def test_sample_bad_options(tmp_path):
    result = run("sample", "--theory", "su3", "--L", 4, "--kappa", 0.1, "--out", tmp_path / "x.safetensors")
    assert result.exit_code != 0 and "are for phi4" in result.output
    result = run("sample", "--theory", "phi4", "--dim", 3, "--L", 8, "--kappa", 0.2, "--lam", 0.02,
                 "--out", tmp_path / "y.safetensors")
    assert result.exit_code == 1 and "no shipped diffusion model for theory 'phi4' in D = 3" in result.output
    result = run("sample", "--theory", "u1", "--L", 4, "--method", "sde", "--drift", "force",
                 "--out", tmp_path / "w.safetensors")
    assert result.exit_code != 0 and "--drift is for gauge sampling with --method maala" in result.output
    result = run("sample", "--theory", "u1", "--L", 4, "--t-max", 0.2, "--out", tmp_path / "v.safetensors")
    assert result.exit_code != 0 and "--t-max is for gauge sampling with --method resample" in result.output
    result = run("sample", "--theory", "u1", "--L", 4, "--method", "maala", "--precondition",
                 "--out", tmp_path / "t.safetensors")
    assert result.exit_code != 0 and "--precondition/--no-precondition is for U(1) with --method" in result.output
    result = run("sample", "--theory", "phi4", "--L", 4, "--kappa", 0.2, "--lam", 0.02, "--method", "resample",
                 "--out", tmp_path / "u.safetensors")
    assert result.exit_code != 0 and "--method resample is for gauge theories" in result.output
    result = run("sample", "--theory", "phi4", "--L", 4, "--kappa", 0.2, "--lam", 0.02, "--method", "heatbath",
                 "--out", tmp_path / "s.safetensors")
    assert result.exit_code != 0 and "--method heatbath is for gauge theories" in result.output
    result = run("sample", "--theory", "su3", "--L", 4, "--method", "heatbath", "--leapfrog", 3,
                 "--out", tmp_path / "r.safetensors")
    assert result.exit_code != 0 and "--drift and --leapfrog are for gauge sampling with --method maala" in result.output
    result = run("sample", "--theory", "su3", "--L", 5, "--method", "heatbath", "--out", tmp_path / "q.safetensors")
    assert result.exit_code == 1 and "--method heatbath needs even extents" in result.output
    result = run("sample", "--theory", "su2", "--L", 4, "--out", tmp_path / "z.safetensors")
    assert result.exit_code == 1 and "no shipped diffusion model" in result.output


def test_su3_sample_defaults_to_the_heatbath_from_the_model_start(tmp_path):
    out = tmp_path / "su3.safetensors"
    result = run("sample", "--theory", "su3", "--L", 4, "--n", 2, "--chains", 2, "--steps", 2, "--therm", 1,
                 "--every", 1, "--out", out)
    assert result.exit_code == 0, result.output
    info = json.loads(run("info", out, "--json").output)
    assert info["algorithm"] == "heatbath" and info["params"] == {"beta": 5.0}
    assert info["settings"]["model"].endswith("su3_b5.0_L4.safetensors") and info["settings"]["denoise_steps"] == 2


def test_train_gauge_model_then_sample_with_it(tmp_path):
    data, model = tmp_path / "u1.safetensors", tmp_path / "model.safetensors"
    assert run("generate", "--theory", "u1", "--L", 4, "--beta", 2.0, "--algorithm", "heatbath", "--n", 4,
               "--chains", 4, "--therm", 2, "--out", data).exit_code == 0
    result = run("train", "--data", data, "--out", model, "--steps", 3, "--batch-size", 4, "--channels", 2,
                 "--blocks", 1)
    assert result.exit_code == 0, result.output
    from lgdiff._run.sample_gauge import model_metadata

    meta = model_metadata(model)
    assert meta["kind"] == "lcnn" and meta["beta"] == 2.0 and meta["step"] == 3
    assert meta["train"]["target"] == "heat_kernel" and meta["config"]["channels"] == 2
    assert "lgdiff train" in meta["command"]
    out = tmp_path / "dm.safetensors"
    result = run("sample", "--theory", "u1", "--L", 4, "--model", model, "--n", 2, "--chains", 2, "--steps", 4,
                 "--out", out, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(run("info", out, "--json").output)
    assert info["params"] == {"beta": 2.0} and info["algorithm"] == "dm-maala"


def test_train_gauge_with_the_force_residual_then_resample(tmp_path):
    data, model = tmp_path / "u1.safetensors", tmp_path / "model.safetensors"
    assert run("generate", "--theory", "u1", "--L", 4, "--beta", 3.0, "--algorithm", "direct", "--n", 4,
               "--chains", 4, "--therm", 0, "--out", data).exit_code == 0
    result = run("train", "--data", data, "--out", model, "--steps", 3, "--batch-size", 4, "--channels", 2,
                 "--blocks", 1, "--force-residual")
    assert result.exit_code == 0, result.output
    from lgdiff._run.sample_gauge import model_metadata

    assert model_metadata(model)["config"]["force_beta"] == 3.0
    out = tmp_path / "dm.safetensors"
    result = run("sample", "--theory", "u1", "--L", 4, "--model", model, "--method", "resample", "--t-max", 0.05,
                 "--local-sweeps", 2, "--n", 2, "--chains", 2, "--steps", 4, "--no-precondition", "--out", out,
                 "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(run("info", out, "--json").output)
    assert info["algorithm"] == "dm-resample+heatbath+heatbath" and info["settings"]["t_max"] == 0.05
    assert info["settings"]["preconditioner"] == "none"
    phi4 = tmp_path / "phi4.safetensors"
    assert run("generate", "--theory", "phi4", "--L", 4, "--kappa", 0.2, "--lam", 0.02, "--n", 2, "--chains", 2,
               "--therm", 1, "--out", phi4).exit_code == 0
    result = run("train", "--data", phi4, "--out", tmp_path / "p.safetensors", "--force-residual", "--steps", 1,
                 "--channels", 4, "--batch-size", 2)
    assert result.exit_code == 0, result.output
    from lgdiff._models.files import load_model

    config = load_model(tmp_path / "p.safetensors")[0].config
    assert (config.force_kappa, config.force_lam) == (0.2, 0.02) and config.force_c0 > 0
    result = run("train", "--data", phi4, "--out", tmp_path / "q.safetensors", "--force-residual", "--sde", "vp",
                 "--steps", 1)
    assert result.exit_code == 1 and "drop --sde vp" in result.output
    result = run("train", "--data", phi4, "--out", tmp_path / "q.safetensors", "--force-residual", "--force-filter",
                 2, "--steps", 1)
    assert result.exit_code == 1 and "--force-filter is for gauge ensembles" in result.output
    result = run("train", "--objective", "osq", "--theory", "phi4", "--L", 4, "--kappa", 0.2, "--lam", 0.02,
                 "--force-residual", "--out", tmp_path / "o.safetensors")
    assert result.exit_code != 0 and "--force-residual is for --objective dsm" in result.output
    # the covariant filter of the force: recorded in the model, and only with the force residual
    filtered = tmp_path / "filtered.safetensors"
    result = run("train", "--data", data, "--out", filtered, "--steps", 2, "--batch-size", 4, "--channels", 2,
                 "--blocks", 1, "--force-residual", "--force-filter", 3)
    assert result.exit_code == 0, result.output
    assert model_metadata(filtered)["config"]["force_filter"] == 3
    result = run("train", "--data", data, "--out", tmp_path / "f.safetensors", "--steps", 1, "--force-filter", 3)
    assert result.exit_code == 2 and "--force-filter filters the Wilson force of --force-residual" in result.output


def test_train_gauge_refuses_vp(tmp_path):
    data = tmp_path / "u1.safetensors"
    assert run("generate", "--theory", "u1", "--L", 4, "--beta", 2.0, "--algorithm", "heatbath", "--n", 2,
               "--chains", 2, "--therm", 1, "--out", data).exit_code == 0
    result = run("train", "--data", data, "--out", tmp_path / "m.safetensors", "--sde", "vp")
    assert result.exit_code == 1 and "group VE process only" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m.safetensors").exists()
