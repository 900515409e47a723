"""The shipped models: one table for every theory, consistent with the files; `lgdiff sample` without --model takes
the model nearest to the requested coupling, says which, and warns far from its training point."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from lgdiff._io.checkpoint import load_checkpoint
from lgdiff._run.shipped import FAR_COUPLING, SHIPPED_MODELS, choose_shipped_model

MODELS = Path(__file__).resolve().parents[2] / "lgdiff" / "models"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_the_table_lists_every_shipped_file_with_its_training_point():
    assert sorted(m.name + ".safetensors" for m in SHIPPED_MODELS) == sorted(p.name for p in MODELS.iterdir()
                                                                             if p.suffix == ".safetensors")
    for model in SHIPPED_MODELS:
        _, meta = load_checkpoint(model.path)
        trained = meta.get("params") or {"beta": meta["beta"]}
        assert (meta["theory"], trained, tuple(meta["lattice"])) == (model.theory, model.params, model.lattice)


@pytest.mark.parametrize("beta, name", [(1.0, "u1_b1.0_L16"), (1.5, "u1_b1.0_L16"), (3.0, "u1_b7.0_L16"),
                                        (7.0, "u1_b7.0_L16"), (11.0, "u1_b7.0_L16")])
def test_u1_takes_the_model_nearest_in_beta(beta, name):
    assert choose_shipped_model("u1", params={"beta": beta}, L=16).model.name == name


@pytest.mark.parametrize("L, name", [(8, "phi4_k0.27_L16"), (16, "phi4_k0.27_L16"), (24, "phi4_k0.27_L32"),
                                     (32, "phi4_k0.27_L32"), (64, "phi4_k0.27_L32")])
def test_phi4_at_equal_couplings_takes_the_training_lattice_nearest_to_l(L, name):
    choice = choose_shipped_model("phi4", params={"kappa": 0.27, "lam": 0.022}, L=L)
    assert choice.model.name == name and choice.warnings == ()
    assert choose_shipped_model("phi4", params={"kappa": 0.27, "lam": 0.022}).model.name == "phi4_k0.27_L16"


@pytest.mark.parametrize("kappa, name", [(0.21, "phi4_k0.21_L32"), (0.2, "phi4_k0.21_L32"), (0.25, "phi4_k0.27_L16"),
                                         (0.27, "phi4_k0.27_L16"), (0.3, "phi4_k0.27_L16")])
def test_phi4_takes_the_model_nearest_in_kappa(kappa, name):
    choice = choose_shipped_model("phi4", params={"kappa": kappa, "lam": 0.022}, L=16)
    assert choice.model.name == name and choice.params == {"kappa": kappa, "lam": 0.022}
    assert choice.path.name == name + ".safetensors"


def test_near_the_training_point_there_is_no_warning():
    assert choose_shipped_model("phi4", params={"kappa": 0.27, "lam": 0.022}, L=8).warnings == ()
    assert choose_shipped_model("su3", params={"beta": 5.5}, L=6).warnings == ()  # the documented run
    assert choose_shipped_model("u1", L=16).params == {"beta": 1.0}  # no coupling given: the model's


def test_far_couplings_and_volumes_are_warned():
    (warning,) = choose_shipped_model("phi4", params={"kappa": 0.27, "lam": 0.05}, L=16).warnings
    assert "lam = 0.05" in warning and "kappa" not in warning.split(" is far")[0]
    assert "phi4_k0.27_L16 (trained at kappa = 0.27, lam = 0.022 on 16x16)" in warning
    (warning,) = choose_shipped_model("u1", params={"beta": 1.0 + 1.1 * FAR_COUPLING}, L=64).warnings
    assert "beta = 1.165" in warning and "L = 64" in warning
    assert choose_shipped_model("u1", params={"beta": 1.0 + 0.9 * FAR_COUPLING}, L=32).warnings == ()


def test_no_shipped_model():
    with pytest.raises(ValueError, match="no shipped diffusion model for theory 'su2'"):
        choose_shipped_model("su2", params={"beta": 2.0})
    with pytest.raises(ValueError, match="no shipped diffusion model for theory 'phi4' in D = 3"):
        choose_shipped_model("phi4", params={"kappa": 0.2, "lam": 0.02}, dim=3)


def test_sample_phi4_uses_the_shipped_model(tmp_path):
    out = tmp_path / "phi4.safetensors"
    result = run("sample", "--theory", "phi4", "--L", 8, "--kappa", 0.26, "--lam", 0.022, "--method", "sde",
                 "--n", 1, "--chains", 2, "--steps", 3, "--out", out)
    assert result.exit_code == 0, result.output
    assert "model: shipped phi4_k0.27_L16 (trained at kappa = 0.27, lam = 0.022 on 16x16)" in result.stderr
    assert "far from" not in result.stderr
    info = json.loads(run("info", out, "--json").output)
    assert Path(info["settings"]["model"]).name == "phi4_k0.27_L16.safetensors"
    assert info["params"] == {"kappa": 0.26, "lam": 0.022}


def test_sample_gauge_says_which_model_and_warns_far_from_it(tmp_path):
    result = run("sample", "--theory", "u1", "--L", 4, "--beta", 1.5, "--n", 1, "--chains", 1, "--steps", 2,
                 "--therm", 1, "--every", 1, "--out", tmp_path / "u1.safetensors")
    assert result.exit_code == 0, result.output
    assert "model: shipped u1_b1.0_L16 (trained at beta = 1 on 16x16)" in result.stderr
    assert "warning: the run (beta = 1.5, L = 4) is far from the training point" in result.stderr


def test_docstring_examples_run():
    import doctest

    from lgdiff._run import shipped

    result = doctest.testmod(shipped)
    assert result.attempted > 0 and result.failed == 0


def test_phi4_default_is_the_mixture_from_a_fitted_prior(tmp_path):
    # every update: one FA-HMC trajectory and one path proposal (GlobalLocal), the proposals from a MagnetisedPrior
    # fitted to the model with a generator seeded by --seed (the same prior in every run of the command)
    from lgdiff._run.sample_scalar import ScalarSampleConfig
    from lgdiff._run.theory import Theory
    from lgdiff import Lattice

    args = ("sample", "--theory", "phi4", "--L", 8, "--kappa", 0.27, "--lam", 0.022, "--steps", 4, "--n", 2,
            "--chains", 2)
    infos = []
    for name in ("a", "b"):
        result = run(*args, "--out", tmp_path / f"{name}.safetensors")
        assert result.exit_code == 0, result.output
        infos.append(json.loads(run("info", tmp_path / f"{name}.safetensors", "--json").output))
    settings = infos[0]["settings"]
    assert infos[0]["algorithm"] == "dm-path+fahmc" and settings["local.m_eff2"] == 0.1  # lgdiff generate's FA-HMC
    assert settings["global.prior"] == "magnetised" and 0 < settings["global.prior_fit_proposals"] <= 64  # finite
    assert 0 < settings["global.prior_shift"] < 2 and settings["global.prior_fit_ess"] >= 1
    assert {k: v for k, v in infos[1]["settings"].items() if "prior" in k} == \
        {k: v for k, v in settings.items() if "prior" in k}
    result = run(*args, "--method", "path", "--no-fit-prior", "--out", tmp_path / "c.safetensors")
    assert result.exit_code == 0, result.output
    info = json.loads(run("info", tmp_path / "c.safetensors", "--json").output)
    assert info["algorithm"] == "dm-path" and not any("prior" in k for k in info["settings"])
    result = run(*args, "--method", "imh", "--fit-prior", "--out", tmp_path / "d.safetensors")
    assert result.exit_code != 0 and "--fit-prior/--no-fit-prior is for phi4 with --method path or mix" in result.output
    result = run("sample", "--theory", "u1", "--L", 4, "--fit-prior", "--out", tmp_path / "e.safetensors")
    assert result.exit_code != 0 and "--fit-prior/--no-fit-prior is for phi4" in result.output
    theory = Theory(name="phi4", lattice=Lattice(shape=(8, 8)), params={"kappa": 0.27, "lam": 0.022})
    with pytest.raises(ValueError, match="--fit-prior is for phi4 with --method path or mix"):
        ScalarSampleConfig(theory=theory, model=tmp_path / "a.safetensors", method="maala", fit_prior=True)


def test_phi4_path_is_preconditioned_by_the_hartree_gaussian_by_default(tmp_path):
    from lgdiff._run.sample_scalar import ScalarSampleConfig
    from lgdiff._run.theory import Theory
    from lgdiff._samplers.hartree import hartree_gaussian
    from lgdiff import Lattice, Phi4Action

    out = tmp_path / "p.safetensors"
    result = run("sample", "--theory", "phi4", "--L", 8, "--kappa", 0.27, "--lam", 0.022, "--steps", 4, "--n", 2,
                 "--chains", 2, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    settings = json.loads(run("info", out, "--json").output)["settings"]
    gauss = hartree_gaussian(Phi4Action(kappa=0.27, lam=0.022), (8, 8))  # of the sampled lattice
    assert settings["preconditioner"] == "free-scalar"
    assert settings["precond_std"] == pytest.approx(gauss.std) and settings["precond_kinetic"] == 0.54
    result = run("sample", "--theory", "phi4", "--L", 8, "--kappa", 0.27, "--lam", 0.022, "--steps", 4, "--n", 2,
                 "--chains", 2, "--no-precondition", "--out", tmp_path / "q.safetensors")
    assert result.exit_code == 0, result.output
    assert json.loads(run("info", tmp_path / "q.safetensors", "--json").output)["settings"]["preconditioner"] == "none"
    result = run("sample", "--theory", "phi4", "--L", 8, "--kappa", 0.27, "--lam", 0.022, "--method", "imh",
                 "--precondition", "--out", tmp_path / "r.safetensors")
    assert result.exit_code != 0 and "--precondition/--no-precondition is for phi4 with --method path, sde or mix" \
        in result.output
    theory = Theory(name="phi4", lattice=Lattice(shape=(8, 8)), params={"kappa": 0.27, "lam": 0.022})
    with pytest.raises(ValueError, match="--precondition is for phi4 with --method path, sde, mix"):
        ScalarSampleConfig(theory=theory, model=out, method="maala", precondition=True)
