"""Damaged and out-of-spec ensembles are refused on read, in one line naming the file and the record
(lgdiff/_io/ensemble.py; issue #15 items 6, 7 and 11).

The damaged files are written the way a foreign or older writer would write them (format_version 1, no
checksums) or by flipping bytes of a file lgdiff wrote; every error is an `EnsembleError` that the CLI prints
as one line, and nothing on disk changes."""

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save_file

import lgdiff
from cli.main import cli
from lgdiff import U1, Field, Lattice, LinkField
from lgdiff._io.ensemble import Ensemble, EnsembleError, EnsembleMetadata, EnsembleWriter

PHI4 = ["--theory", "phi4", "--dim", "2", "--L", "4", "--kappa", "0.2", "--lam", "0.02", "--therm", "2",
        "--chains", "2", "--seed", "5", "--n-steps", "3"]


def tensors_and_meta(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()["lgdiff"])


def save_v1(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """A format_version 1 file (no checksums), as lgdiff before checksums or a foreign writer wrote it."""
    keep = {k: tensors[k].contiguous() for k in ("configs", "index", "acceptance", "rng_state")}
    save_file(keep, str(path), metadata={"lgdiff": json.dumps({**meta, "format_version": 1})})


def rewrite_v1(path: Path, edit) -> None:
    tensors, meta = tensors_and_meta(path)
    edit(tensors)
    path.unlink()
    save_v1(path, tensors, meta)


def scalar_file(path: Path, generator, T: int = 4, C: int = 3) -> list[Field]:
    states = [Field.randn(Lattice(shape=(4, 3)), batch=C, generator=generator) for _ in range(T)]
    meta = EnsembleMetadata(kind="scalar", theory="phi4", group=None, lattice=(4, 3), params={"kappa": 0.2,
                            "lam": 0.02}, algorithm="hmc", settings={}, seed=1, chains=C, dtype="float64")
    with EnsembleWriter.open(path, meta) as w:
        for t, s in enumerate(states):
            w.append(s, t, torch.full((C,), 0.5), torch.Generator().get_state())
    return states


def u1_file(path: Path, generator, T: int = 3, C: int = 2) -> None:
    states = [LinkField.random(U1(), Lattice(shape=(4, 4)), batch=C, generator=generator) for _ in range(T)]
    meta = EnsembleMetadata(kind="links", theory="u1", group="U(1)", lattice=(4, 4), params={"beta": 1.0},
                            algorithm="heatbath", settings={}, seed=0, chains=C, dtype="complex128")
    with EnsembleWriter.open(path, meta) as w:
        for t, s in enumerate(states):
            w.append(s, t, torch.ones(C), torch.Generator().get_state())


def run_cli(*args: str):
    with lgdiff.checks(False):  # as the installed command runs: value checks of the fields are off
        return CliRunner().invoke(cli, list(args))


def assert_one_line_error(result, *fragments: str) -> None:
    """Exit code 1 and one ``Error:`` line (a progress line may precede it) holding every fragment."""
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert "Traceback" not in result.output and len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], result.output


# ---- item 6: non-finite configurations -------------------------------------------------------------

def test_non_finite_record_is_named_on_read(tmp_path, generator):
    path = tmp_path / "e.safetensors"
    scalar_file(path, generator)
    rewrite_v1(path, lambda t: t["configs"][2, 1].view(-1).__setitem__(5, math.nan))
    e = Ensemble.load(path)  # the small tensors are fine: loading is cheap and does not read configurations
    assert torch.isfinite(e.record(1).data).all()
    with pytest.raises(EnsembleError, match=rf"^{path}: record 2 is damaged \(chain 1: non-finite values\)"):
        e.configs()
    with pytest.raises(EnsembleError, match="record 2 is damaged"):
        e.record(2)
    with pytest.raises(EnsembleError, match="record 2 is damaged"):
        e.series(lambda phi: phi.data.mean(dim=(1, 2)), chunk=2)


def test_measure_and_compare_name_the_damaged_record(tmp_path, generator):
    good, bad = tmp_path / "good.safetensors", tmp_path / "bad.safetensors"
    scalar_file(good, generator)
    scalar_file(bad, generator)
    rewrite_v1(bad, lambda t: t["configs"][3, 0].view(-1).__setitem__(0, math.inf))
    before = bad.read_bytes()
    assert_one_line_error(run_cli("measure", str(bad)), f"{bad}: record 3 is damaged (chain 0: non-finite values)")
    assert_one_line_error(run_cli("compare", str(good), str(bad)), f"{bad}: record 3 is damaged")
    assert bad.read_bytes() == before


def test_plot_names_the_damaged_record(tmp_path, generator):
    pytest.importorskip("matplotlib")
    bad = tmp_path / "bad.safetensors"
    scalar_file(bad, generator)
    rewrite_v1(bad, lambda t: t["configs"][1, 2].view(-1).__setitem__(4, math.nan))
    assert_one_line_error(run_cli("plot", str(bad), "--out", str(tmp_path / "plots")),
                          f"{bad}: record 1 is damaged (chain 2: non-finite values)")


def test_generate_refuses_to_continue_a_damaged_file_and_leaves_it_untouched(tmp_path):
    out = tmp_path / "e.safetensors"
    done = run_cli("generate", *PHI4, "--n", "3", "--out", str(out))
    assert done.exit_code == 0, done.output
    rewrite_v1(out, lambda t: t["configs"][1, 1].view(-1).__setitem__(3, math.nan))
    before = out.read_bytes()
    assert_one_line_error(run_cli("generate", *PHI4, "--n", "5", "--out", str(out)),
                          f"{out}: record 1 is damaged (chain 1: non-finite values)")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.safetensors"]  # no temporary, journal or lock left


# ---- item 7: out-of-spec values ----------------------------------------------------------------------

def test_links_off_the_group_are_refused(tmp_path, generator):
    path = tmp_path / "u.safetensors"
    u1_file(path, generator)

    def scale(t):
        t["configs"][1] *= 3  # U(1) links of modulus 3: the plaquette of these is not a plaquette

    rewrite_v1(path, scale)
    e = Ensemble.load(path)
    assert e.record(0).data.abs().sub(1).abs().max() < 1e-12
    with pytest.raises(EnsembleError, match=rf"^{path}: record 1 is damaged \(chain 0: links not in U\(1\): "
                                            r"distance 2\.0e\+00 > 1e-08"):
        e.configs()
    assert_one_line_error(run_cli("measure", str(path)), f"{path}: record 1 is damaged (chain 0: links not in U(1)")


def test_group_tolerance_follows_the_dtype(tmp_path, generator):
    """Rounding drift passes (complex128: up to 1e-8, complex64: up to 1e-2, what long runs that never
    re-unitarise reach); larger departures do not."""
    path = tmp_path / "u.safetensors"
    u1_file(path, generator)
    rewrite_v1(path, lambda t: t["configs"].mul_(1 + 1e-9))
    with lgdiff.checks(False):  # the fields' own (stricter, opt-in) check is not what is tested here
        Ensemble.load(path).configs()
        rewrite_v1(path, lambda t: t["configs"][2].mul_(1 + 1e-7))
        with pytest.raises(EnsembleError, match=r"record 2 is damaged \(chain 0: links not in U\(1\): distance "
                                                r"1\.0e-07 > 1e-08\)"):
            Ensemble.load(path).configs()
        tensors, meta = tensors_and_meta(path)
        single = tensors["configs"].float() * (1 + 1e-3)
        path.unlink()
        save_v1(path, {**tensors, "configs": single}, {**meta, "dtype": "complex64"})
        assert Ensemble.load(path).configs().data.dtype == torch.complex64
        single[1] *= 1.05
        path.unlink()
        save_v1(path, {**tensors, "configs": single}, {**meta, "dtype": "complex64"})
        with pytest.raises(EnsembleError, match=r"record 1 is damaged \(chain 0: links not in U\(1\): distance "
                                                r"5\.1e-02 > 1e-02\)"):
            Ensemble.load(path).configs()


def test_acceptance_out_of_range_is_refused_on_load(tmp_path, generator):
    path = tmp_path / "e.safetensors"
    scalar_file(path, generator)
    rewrite_v1(path, lambda t: t["acceptance"].__setitem__((2, 1), 1.5))
    with pytest.raises(EnsembleError, match=rf"^{path}: record 2 is damaged \(acceptance 1\.5 of chain 1 is outside "
                                            r"\[0, 1\]\)"):
        Ensemble.load(path)
    assert_one_line_error(run_cli("measure", str(path)), "record 2 is damaged (acceptance 1.5 of chain 1")
    assert_one_line_error(run_cli("info", str(path)), "record 2 is damaged")


# ---- item 11: checksums ----------------------------------------------------------------------------

def configs_offset(path: Path) -> int:
    """Byte offset of ``configs`` in a safetensors file, read from its header (the format, not lgdiff)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    return 8 + n + header["configs"]["data_offsets"][0]


def test_a_flipped_mantissa_bit_is_detected(tmp_path, generator):
    path = tmp_path / "e.safetensors"
    states = scalar_file(path, generator)
    record_bytes = 3 * 4 * 3 * 8  # C * L0 * L1 float64
    raw = bytearray(path.read_bytes())
    pos = configs_offset(path) + 2 * record_bytes + 5 * 8  # record 2, chain 0, site 5: lowest mantissa byte
    raw[pos] ^= 0x01
    path.write_bytes(bytes(raw))
    e = Ensemble.load(path)
    assert torch.equal(e.record(1).data, states[1].data)  # other records are fine
    with pytest.raises(EnsembleError, match=rf"^{path}: record 2 is damaged \(checksum mismatch: stored "
                                            r"0x[0-9a-f]{8}, the bytes give 0x[0-9a-f]{8}\)"):
        e.configs()
    assert_one_line_error(run_cli("measure", str(path)), f"{path}: record 2 is damaged (checksum mismatch")
    # the opt-out reads the bytes as they are (the flipped value differs from the original by one ulp)
    fast = Ensemble.load(path, verify=False).configs().data
    flipped = fast.reshape(4, 3, 4, 3)[2, 0].reshape(-1)[5]
    original = states[2].data[0].reshape(-1)[5]
    assert flipped != original and abs(flipped - original) <= 2 * torch.finfo(torch.float64).eps * abs(original)


def test_a_flipped_index_or_acceptance_bit_is_detected(tmp_path, generator):
    path = tmp_path / "e.safetensors"
    scalar_file(path, generator)
    tensors, meta = tensors_and_meta(path)
    tensors["acceptance"][1, 2] = 0.25  # in range, finite: only the checksum can tell
    path.unlink()
    save_file(tensors, str(path), metadata={"lgdiff": json.dumps(meta)})
    with pytest.raises(EnsembleError, match=r"record 1 is damaged \(checksum mismatch"):
        Ensemble.load(path).configs()


def test_a_writer_refuses_to_continue_a_file_with_a_bad_checksum(tmp_path, generator):
    path = tmp_path / "e.safetensors"
    scalar_file(path, generator)
    raw = bytearray(path.read_bytes())
    raw[configs_offset(path) + 17] ^= 0x10
    path.write_bytes(bytes(raw))
    meta = Ensemble.load(path).metadata
    with pytest.raises(EnsembleError, match=r"record 0 is damaged \(checksum mismatch"):
        EnsembleWriter.open(path, meta)
    assert path.read_bytes() == bytes(raw)
