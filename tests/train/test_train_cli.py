"""`lgdiff train` refuses non-finite data (naming the record) and a resume on other data (issue #15)."""

import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save_file

from cli.main import cli
from lgdiff._io.checkpoint import load_checkpoint
from lgdiff._io.ensemble import _checksums


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _phi4(path, seed: int):
    result = run("generate", "--theory", "phi4", "--L", 4, "--kappa", 0.2, "--lam", 0.02, "--n", 4, "--chains", 2,
                 "--therm", 2, "--seed", seed, "--out", path)
    assert result.exit_code == 0, result.output
    return path


TRAIN = ("--steps", 4, "--batch-size", 4, "--channels", 4)


def test_train_refuses_an_ensemble_with_a_non_finite_record_and_names_it(tmp_path):
    # an ensemble converted by another tool: the writer refuses non-finite records, so patch the file itself
    path = _phi4(tmp_path / "phi4.safetensors", seed=0)
    with safe_open(str(path), framework="pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    tensors["configs"][2, 1, 0, 3] = float("nan")  # record 2, chain 1
    # with a consistent checksum, as a tool that writes the format would: the damage is the NaN itself
    tensors["crc32"] = _checksums(tensors["configs"], tensors["index"], tensors["acceptance"])
    save_file(tensors, str(path), metadata=metadata)
    model = tmp_path / "m.safetensors"
    result = run("train", "--data", path, "--out", model, *TRAIN)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    # the ensemble reader checks every record it reads (docs/file-format.md) and names the damaged one first
    assert f"{path}: record 2 is damaged (chain 1: non-finite values)" in result.output
    assert not model.exists()


def test_a_resumed_train_with_other_data_is_refused_and_keeps_the_model(tmp_path):
    first, other = _phi4(tmp_path / "a.safetensors", seed=0), _phi4(tmp_path / "b.safetensors", seed=1)
    model = tmp_path / "m.safetensors"
    assert run("train", "--data", first, "--out", model, *TRAIN).exit_code == 0
    tensors, meta = load_checkpoint(model)
    # the same command on another ensemble: continuing would mix the two (and rewrite the provenance)
    result = run("train", "--data", other, "--out", model, *TRAIN)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"{model} was trained on other data" in result.output and "--data" in result.output
    again, meta_again = load_checkpoint(model)
    assert meta_again == meta and all(torch.equal(again[k], tensors[k]) for k in tensors)
