"""`lgdiff convert`: ensemble -> NERSC / ILDG -> ensemble keeps every configuration's observables and the
metadata; bad input fails with one line and leaves no file behind."""

import json

import pytest
import torch
from click.testing import CliRunner

from cli.main import cli
from lgdiff._io.ensemble import EnsembleError
from lgdiff import (AlgebraField, checks, Ensemble, EnsembleMetadata, EnsembleWriter, Lattice, LinkField, SU, mean_plaquette,
                    polyakov_loop, wilson_loop, write_nersc)

SU3 = SU(3)
INDICES = (10, 20)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result, match):
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a ClickException, not a traceback
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert match in lines[0], lines[0]


def smooth_links(generator, lattice, batch, group=SU3):
    """exp(0.3 X) with Gaussian X: close to the unit gauge, so Wilson and Polyakov loops are far from 0."""
    return (AlgebraField.randn(group, lattice, batch=batch, generator=generator) * 0.3).exp()


def make_ensemble(path, generator, *, group=SU3, shape=(3, 3, 3, 3)):
    meta = EnsembleMetadata(kind="links", theory="su3" if group == SU3 else "su2", group=str(group), lattice=shape,
                            params={"beta": 5.7}, algorithm="hmc", settings={}, seed=3, chains=2, dtype="complex128")
    with EnsembleWriter.open(path, meta) as w:
        for index in INDICES:
            w.append(smooth_links(generator, Lattice(shape=shape), 2, group), index, torch.ones(2),
                     generator.get_state())
    return Ensemble.load(path)


@pytest.fixture
def ensemble(tmp_path, generator):
    return make_ensemble(tmp_path / "ens.safetensors", generator)


def observables(U):
    return torch.stack([mean_plaquette(U), wilson_loop(U, 1, 2), wilson_loop(U, 2, 2),
                        polyakov_loop(U).real, polyakov_loop(U).imag, polyakov_loop(U, 0).real])


@pytest.mark.parametrize(("fmt", "options", "atol"), [
    ("nersc", [], 1e-13),
    ("nersc", ["--storage", "3x2", "--endian", "little"], 1e-13),
    ("ildg", ["--precision", "single"], 2e-6),
])
def test_round_trip_keeps_observables_and_metadata(tmp_path, ensemble, fmt, options, atol):
    pattern = tmp_path / "out" / f"cfg.c{{chain}}.{{index}}.{fmt}"
    result = run("convert", ensemble.path, pattern, *options)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(f"cfg.c{c}.{i}.{fmt}" for c in (0, 1) for i in INDICES)
    original = ensemble.configs()  # time major: element t * C + c
    for chain in (0, 1):
        files = [tmp_path / "out" / f"cfg.c{chain}.{i}.{fmt}" for i in reversed(INDICES)]  # order from the files
        out = tmp_path / f"back{chain}.safetensors"
        result = run("convert", *files, out)
        assert result.exit_code == 0, result.output
        back = Ensemble.load(out)
        assert back.index.tolist() == list(INDICES)
        meta = back.metadata
        assert (meta.theory, meta.group, meta.lattice, meta.chains) == ("su3", "SU(3)", (3, 3, 3, 3), 1)
        assert meta.params == {"beta": 5.7} and meta.algorithm == f"imported:{fmt}"
        assert meta.settings["sources"] == ", ".join(f"cfg.c{chain}.{i}.{fmt}" for i in INDICES)
        assert meta.settings["ensemble_id"] == "lgdiff-su3-seed3"
        assert meta.dtype == ("complex64" if "single" in options else "complex128")
        want = observables(original[torch.tensor([t * 2 + chain for t in range(len(INDICES))])])
        with checks(False):  # float32 links promoted to complex128 are unitary to 1e-7, not to the 1e-9 of checks()
            got = observables(back.configs(dtype=torch.complex128))
        torch.testing.assert_close(got, want, rtol=0, atol=atol)
        assert float(want[0].min()) > 0.5 and float(want[3].abs().min()) > 0.05  # loops far from zero


@pytest.mark.parametrize("fmt", ["nersc", "ildg"])
def test_export_refuses_a_record_off_the_group(tmp_path, generator, fmt):
    # an ensemble cannot hold links off the group: the store checks membership when it folds its records into the
    # file and on every read (docs/file-format.md), so convert never meets one; write_nersc and write_ildg refuse
    # such links themselves too (tests/io)
    shape = (2, 2, 2, 2)
    meta = EnsembleMetadata(kind="links", theory="su3", group="SU(3)", lattice=shape, params={"beta": 5.7},
                            algorithm="hmc", settings={}, seed=3, chains=2, dtype="complex128")
    path = tmp_path / "bad.safetensors"
    with pytest.raises(EnsembleError, match="record 1 is damaged \\(chain 1: links not in SU\\(3\\)"):
        with checks(False), EnsembleWriter.open(path, meta) as w:
            for index in INDICES:
                U = smooth_links(generator, Lattice(shape=shape), 2)
                if index == INDICES[1]:
                    data = U.data.clone()
                    data[1, 2, 1, 0, 1, 0] = 2 * data[1, 2, 1, 0, 1, 0]
                    U = U.with_data(data)
                w.append(U, index, torch.ones(2), generator.get_state())
    result = run("convert", path, tmp_path / "out" / f"cfg.c{{chain}}.{{index}}.{fmt}")
    assert_one_line_error(result, f"{path}: record 1 is damaged (chain 1: links not in SU(3)")
    written = [p.name for p in (tmp_path / "out").iterdir()] if (tmp_path / "out").exists() else []
    assert not [name for name in written if f".{INDICES[1]}." in name]


def test_single_record_and_explicit_format(tmp_path, ensemble):
    result = run("convert", ensemble.path, tmp_path / "last.c{chain}.dat", "--record", -1, "--format", "nersc")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("last.*")) == ["last.c0.dat", "last.c1.dat"]
    head = (tmp_path / "last.c1.dat").read_bytes()[:2000].decode("ascii", "replace")
    assert "SEQUENCE_NUMBER = 20\n" in head and "BETA = 5.7\n" in head and "ENSEMBLE_LABEL = chain 1\n" in head


def test_import_without_beta_records_it_as_unknown(tmp_path, generator):
    # measuring a configuration needs no coupling: foreign files without beta import, with beta unknown
    U = smooth_links(generator, Lattice(shape=(2, 2, 2, 2)), 1)
    write_nersc(tmp_path / "a.nersc", U, sequence_number=5)
    out = tmp_path / "a.safetensors"
    result = run("convert", tmp_path / "a.nersc", out)
    assert result.exit_code == 0, result.output
    assert "beta unknown (the files do not record it; give --beta to record it)" in result.output
    ens = Ensemble.load(out)
    assert ens.metadata.params == {"beta": None} and ens.index.tolist() == [5]
    assert "lgdiff convert" in ens.metadata.command and "a.nersc" in ens.metadata.command
    result = run("measure", out, "--json")
    assert result.exit_code == 0, result.output
    assert abs(json.loads(result.stdout)["plaquette"]["mean"] - float(mean_plaquette(U)[0])) < 1e-12
    # what needs the coupling refuses, in one line, and leaves the file as it was
    before = out.read_bytes()
    result = run("generate", "--theory", "su3", "--dim", 4, "--L", 2, "--beta", 6.0, "--algorithm", "heatbath",
                 "--n", 1, "--therm", 0, "--chains", 1, "--out", out)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    last = result.output.strip().splitlines()[-1]  # after the progress bar's label, on stderr
    assert last.startswith("Error: ") and "holds configurations imported from files (imported:nersc)" in last
    assert_one_line_error(run("train", "--data", out, "--out", tmp_path / "m.safetensors", "--steps", 1),
                          f"{out} does not record beta (imported without --beta)")
    assert out.read_bytes() == before and not (tmp_path / "m.safetensors").exists()
    # with --beta it is recorded
    result = run("convert", tmp_path / "a.nersc", tmp_path / "b.safetensors", "--beta", 6.0)
    assert result.exit_code == 0 and "beta = 6.0" in result.output, result.output
    assert Ensemble.load(tmp_path / "b.safetensors").metadata.params == {"beta": 6.0}
    assert_one_line_error(run("convert", tmp_path / "a.nersc", out, "--beta", 6.0), "exists; choose another output")


def test_import_refuses_conflicting_beta(tmp_path, generator):
    U = smooth_links(generator, Lattice(shape=(2, 2, 2, 2)), 1)
    write_nersc(tmp_path / "a.nersc", U, beta=5.7)
    assert_one_line_error(run("convert", tmp_path / "a.nersc", tmp_path / "a.safetensors", "--beta", 6.0),
                          "disagree on beta: [5.7, 6.0]")


def test_missing_input(tmp_path):
    assert_one_line_error(run("convert", tmp_path / "nope.safetensors", tmp_path / "x.nersc"), "no such file")
    assert not list(tmp_path.iterdir())


def test_unknown_output_format(tmp_path, ensemble):
    assert_one_line_error(run("convert", ensemble.path, tmp_path / "x.png"), "cannot tell the format of")
    assert_one_line_error(run("convert", ensemble.path, tmp_path / "x.nersc", "--format", "bogus"),
                          "unknown format 'bogus'; expected one of lgdiff, nersc, ildg")
    assert_one_line_error(run("convert", ensemble.path, tmp_path / "x.{index}.c{chain}.nersc", "--precision", "half"),
                          "--precision must be one of single, double; got 'half'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ens.safetensors"]


def test_pattern_needs_placeholders(tmp_path, ensemble):
    assert_one_line_error(run("convert", ensemble.path, tmp_path / "x.c{chain}.nersc"), "needs an {index} placeholder")
    assert_one_line_error(run("convert", ensemble.path, tmp_path / "x.{index}.nersc"), "needs a {chain} placeholder")
    assert_one_line_error(run("convert", ensemble.path, tmp_path / "x.{step}.nersc"), "unknown placeholders ['step']")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ens.safetensors"]


def test_only_su3_in_4d_exports(tmp_path, generator):
    ens = make_ensemble(tmp_path / "su2.safetensors", generator, group=SU(2), shape=(2, 2, 2, 2))
    assert_one_line_error(run("convert", ens.path, tmp_path / "x.{index}.c{chain}.nersc"),
                          "NERSC files hold SU(3) links on a 4D lattice")


def test_foreign_input(tmp_path):
    png = tmp_path / "image.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    assert_one_line_error(run("convert", png, tmp_path / "x.safetensors"), "is neither a NERSC")


def test_help_explains_patterns():
    result = run("convert", "--help")
    assert result.exit_code == 0 and "{index}" in result.output and "{chain}" in result.output


def test_unwritable_output_is_one_line(tmp_path, ensemble):
    blocked = ensemble.path / "x.{index}.c{chain}.nersc"  # the "directory" is the ensemble file
    result = run("convert", ensemble.path, blocked)
    assert_one_line_error(result, str(ensemble.path))
