"""Bad input that used to end in a traceback or name an internal variable: devices, seeds, non-finite couplings,
lattices too large for memory, a model file given to `info`, a community-format file given to `measure`."""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cli import _memory
from cli.main import cli
from lgdiff import SU, AlgebraField, Lattice, write_ildg, write_nersc

MODELS = Path(__file__).resolve().parents[2] / "lgdiff" / "models"
PHI4 = ["--theory", "phi4", "--L", 4, "--kappa", 0.2, "--lam", 0.02]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_clean_error(result, *needles):
    """A ClickException or usage error (exit 1 or 2), no traceback, the message on one line with every needle."""
    assert result.exit_code in (1, 2), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an uncaught exception
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], errors[0]


def command_args(command, tmp_path):
    data = tmp_path / "data.safetensors"
    if command == "generate":
        return ["generate", *PHI4, "--n", 2, "--chains", 2, "--therm", 1, "--out", tmp_path / "g.safetensors"]
    if command == "train":
        assert run("generate", *PHI4, "--n", 2, "--chains", 2, "--therm", 1, "--out", data).exit_code == 0
        return ["train", "--data", data, "--out", tmp_path / "m.safetensors", "--steps", 1]
    return ["sample", "--theory", "u1", "--L", 4, "--n", 1, "--chains", 1, "--steps", 2, "--out",
            tmp_path / "s.safetensors"]


@pytest.mark.parametrize("command", ["generate", "train", "sample"])
@pytest.mark.parametrize("device", ["tpu9", "", "meta"])
def test_bad_device_is_a_one_line_error(tmp_path, command, device):
    args = command_args(command, tmp_path)
    result = run(*args, "--device", device)
    assert_clean_error(result, "--device")
    assert not (tmp_path / "g.safetensors").exists() and not (tmp_path / "m.safetensors").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the machine without CUDA")
@pytest.mark.parametrize("command", ["generate", "train", "sample"])
def test_cuda_without_cuda_is_a_one_line_error(tmp_path, command):
    assert_clean_error(run(*command_args(command, tmp_path), "--device", "cuda"), "--device", "CUDA is not available")


@pytest.mark.parametrize("command", ["generate", "train", "sample"])
def test_seed_beyond_64_bits_names_the_option(tmp_path, command):
    result = run(*command_args(command, tmp_path), "--seed", 2**64)
    assert_clean_error(result, "--seed")
    assert not (tmp_path / "g.safetensors").exists() and not (tmp_path / "s.safetensors").exists()


def test_largest_seed_runs(tmp_path):
    out = tmp_path / "g.safetensors"
    result = run("generate", *PHI4, "--n", 2, "--chains", 2, "--therm", 1, "--out", out, "--seed", 2**64 - 1)
    assert result.exit_code == 0, result.output
    assert json.loads(run("info", out, "--json").output)["seed"] == 2**64 - 1


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_sample_beta_must_be_finite_and_positive(tmp_path, value):
    result = run("sample", "--theory", "u1", "--L", 4, "--beta", value, "--out", tmp_path / "s.safetensors")
    assert_clean_error(result, "--beta")
    assert "beta_scale" not in result.output and "GaugeSampleConfig" not in result.output


@pytest.mark.parametrize("option", ["--kappa", "--lam"])
def test_generate_couplings_must_be_finite(tmp_path, option):
    args = {"--kappa": 0.2, "--lam": 0.02, option: "nan"}
    result = run("generate", "--theory", "phi4", "--L", 4, *[x for kv in args.items() for x in kv], "--n", 2,
                 "--out", tmp_path / "g.safetensors")
    assert_clean_error(result, option)
    assert "EnsembleMetadata" not in result.output and not (tmp_path / "g.safetensors").exists()


def test_lattice_too_large_for_memory_is_refused_with_both_numbers(tmp_path):
    # 8 chains of 4D SU(3) on 1000^4: 4.1 PB of links (the allocation would fail with a traceback, or worse)
    out = tmp_path / "big.safetensors"
    result = run("generate", "--theory", "su3", "--dim", 4, "--L", 1000, "--beta", 5.0, "--n", 2, "--chains", 8,
                 "--out", out)
    assert_clean_error(result, "--L 1000", "PB", "available")
    assert not out.exists()


def test_memory_check_uses_the_available_memory(tmp_path, monkeypatch):
    # 2 chains of 4D SU(3) on 8^4 in float64: 2 x 4 x 4096 x 9 x 16 bytes = 4.5 MB; with 20 MB free HMC is refused
    monkeypatch.setattr(_memory, "available_bytes", lambda device: (20 * 2**20, "test"))
    args = ["generate", "--theory", "su3", "--dim", 4, "--L", 8, "--beta", 5.0, "--n", 1, "--chains", 2,
            "--therm", 0, "--out", tmp_path / "a.safetensors"]
    result = run(*args)
    assert_clean_error(result, "4.5 MB", f"{4.5 * _memory.GENERATE_FACTORS['links', 'hmc'] + 4.5:.1f} MB",
                       "20.0 MB available (test)", "--dtype float32")
    monkeypatch.setattr(_memory, "available_bytes", lambda device: (2**40, "test"))
    assert run(*args).exit_code == 0


def write_cgroup(root: Path, rel: str, limit: str, usage: str, v1: bool = False) -> None:
    path = (root / "memory" if v1 else root) / rel
    path.mkdir(parents=True, exist_ok=True)
    names = ("memory.limit_in_bytes", "memory.usage_in_bytes") if v1 else ("memory.max", "memory.current")
    (path / names[0]).write_text(limit + "\n")
    (path / names[1]).write_text(usage + "\n")


def test_cgroup_headroom_is_the_tightest_limit_on_the_path(tmp_path):
    write_cgroup(tmp_path, "", "max", "5000")
    write_cgroup(tmp_path, "slurm/job_1", "8000", "3000")  # 5000 left
    write_cgroup(tmp_path, "slurm/job_1/step_0", "max", "2500")
    assert _memory.cgroup_headroom("0::/slurm/job_1/step_0\n", tmp_path) == 5000
    write_cgroup(tmp_path, "slurm", "6000", "4000")  # 2000 left above the job
    assert _memory.cgroup_headroom("0::/slurm/job_1/step_0\n", tmp_path) == 2000
    assert _memory.cgroup_headroom("0::/\n", tmp_path) is None  # the root: no limit


def test_cgroup_v1_memory_controller(tmp_path):
    write_cgroup(tmp_path, "job", "1000", "400", v1=True)
    assert _memory.cgroup_headroom("5:cpu,cpuacct:/job\n3:memory:/job\n", tmp_path) == 600
    write_cgroup(tmp_path, "free", str(2**63 - 4096), "400", v1=True)  # v1's "no limit"
    assert _memory.cgroup_headroom("3:memory:/free\n", tmp_path) is None


def test_info_describes_a_model_file():
    result = run("info", MODELS / "phi4_k0.21_L32.safetensors", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["kind"] == "ncsnpp" and report["theory"] == "phi4"
    assert report["params"] == {"kappa": 0.21, "lam": 0.022} and report["lattice"] == [32, 32]
    assert report["step"] == 1200 and report["parameters"] > 0 and "losses" not in report
    text = run("info", MODELS / "su3_b5.0_L4.safetensors")
    assert text.exit_code == 0 and "lcnn" in text.output and "SU(3)" in text.output, text.output


def su3_links(shape=(2, 2, 2, 2)):
    generator = torch.Generator().manual_seed(0)
    return (AlgebraField.randn(SU(3), Lattice(shape=shape), batch=1, generator=generator) * 0.3).exp()


@pytest.mark.parametrize("fmt", ["ildg", "nersc"])
@pytest.mark.parametrize("command", ["measure", "info"])
def test_community_format_suggests_convert(tmp_path, fmt, command):
    path = tmp_path / ("cfg.lime" if fmt == "ildg" else "cfg.nersc")
    (write_ildg if fmt == "ildg" else write_nersc)(path, su3_links())
    result = run(command, path)
    assert_clean_error(result, str(path), "lgdiff convert", "ILDG" if fmt == "ildg" else "NERSC")


def test_sample_lattice_too_large_for_memory_is_refused(tmp_path):
    out = tmp_path / "big.safetensors"
    result = run("sample", "--theory", "u1", "--L", 10**6, "--n", 1, "--chains", 2, "--out", out)
    assert_clean_error(result, "--L 1000000", "TB", "available", "network's activations")
    assert not out.exists()


def test_an_allocation_that_fails_is_a_one_line_error():
    import click

    from cli.main import _user_errors

    with pytest.raises(click.ClickException, match=r"^out of memory allocating 1024\.0 PB: use a smaller --L"):
        with _user_errors():
            torch.empty(2**60, dtype=torch.uint8)  # 1 EB: the allocator refuses at once
