import doctest
import json
import os
import signal
import subprocess
import sys
import time
import typing
from pathlib import Path

import attrs
import pytest
import torch
from safetensors.torch import save_file

import lgdiff._io.ensemble as ens
from lgdiff import SU, U1, AlgebraField, Field, Lattice, LinkField
from lgdiff._io.ensemble import (
    Ensemble,
    EnsembleError,
    EnsembleMetadata,
    EnsembleWriter,
)
from lgdiff._run.split import generate_ensemble
from lgdiff._samplers.base import AbstractKernel, run_chain

REPO = Path(__file__).resolve().parents[2]


# ---- tiny kernels (the physics is irrelevant here; only the random stream matters) ----------------

@typing.final
@attrs.frozen
class RandomWalk(AbstractKernel[Field]):
    """Random-walk Metropolis for S = phi^2 / 2 per site; ``pause`` slows it down (not a setting)."""

    width: float = 0.7
    pause: float = 0.0

    @property
    def name(self) -> str:
        return "random-walk"

    def settings(self) -> dict[str, float | int | str]:
        return {"width": self.width}

    def step(self, state: Field, *, generator: torch.Generator) -> tuple[Field, torch.Tensor]:
        if self.pause:
            time.sleep(self.pause)
        x = state.data
        prop = x + self.width * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        d_s = 0.5 * (prop**2 - x**2).flatten(1).sum(1)
        u = torch.rand(d_s.shape, generator=generator, dtype=x.dtype, device=x.device)
        accept = torch.log(u) < -d_s
        new = torch.where(accept.reshape(-1, *[1] * (x.ndim - 1)), prop, x)
        return state.with_data(new), torch.exp(torch.clamp(-d_s, max=0.0))


@typing.final
@attrs.frozen
class LinkWalk(AbstractKernel[LinkField]):
    """U <- exp(eps X) U with Gaussian X: a random walk on the group, always accepted."""

    eps: float = 0.3

    @property
    def name(self) -> str:
        return "link-walk"

    def settings(self) -> dict[str, float | int | str]:
        return {"eps": self.eps}

    def step(self, state: LinkField, *, generator: torch.Generator) -> tuple[LinkField, torch.Tensor]:
        x = AlgebraField.randn(state.group, state.lattice, batch=state.batch, generator=generator,
                               dtype=state.data.dtype, device=state.data.device)
        return state.evolve(x, self.eps), torch.ones(state.batch, dtype=state.data.real.dtype)


def scalar_meta(**changes) -> EnsembleMetadata:
    base = dict(kind="scalar", theory="phi4", group=None, lattice=(4, 3), params={"kappa": 0.21, "lam": 0.022},
                algorithm="hmc", settings={"step_size": 0.1, "n_steps": 10, "integrator": "leapfrog"}, seed=11,
                chains=3, dtype="float64")
    return EnsembleMetadata(**{**base, **changes})


def make_state(kind: str, group, lattice: Lattice, dtype: torch.dtype, chains: int, generator) -> Field | LinkField:
    if kind == "scalar":
        return Field.randn(lattice, batch=chains, generator=generator, dtype=dtype)
    return LinkField.random(group, lattice, batch=chains, generator=generator, dtype=dtype)


def write_records(path, meta, states, *, flush_every=1, start=0):
    with EnsembleWriter.open(path, meta, flush_every=flush_every) as w:
        for i, s in enumerate(states):
            w.append(s, start + i, torch.full((meta.chains,), 0.5), torch.Generator().manual_seed(i).get_state())
    return w


def v1_json(meta: EnsembleMetadata) -> str:
    """The metadata of a format_version 1 file (no checksums), for files written by hand."""
    return json.dumps({**json.loads(meta.to_json()), "format_version": 1})


def temp_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.lgdiff-tmp"))


# ---- round trips ----------------------------------------------------------------------------------

CASES = [
    ("scalar", None, (), torch.float64),
    ("scalar", None, (4, 3), torch.float32),
    ("scalar", None, (2, 3, 2), torch.float64),
    ("links", U1(), (4, 3), torch.complex64),
    ("links", U1(), (2, 2, 2), torch.complex128),
    ("links", SU(3), (2, 3), torch.complex64),
    ("links", SU(3), (2, 2), torch.complex128),
]


@pytest.mark.parametrize(("kind", "group", "shape", "dtype"), CASES, ids=lambda v: str(v))
def test_round_trip_is_exact(kind, group, shape, dtype, tmp_path, generator):
    lattice, chains, T = Lattice(shape=shape), 2, 5
    states = [make_state(kind, group, lattice, dtype, chains, generator) for _ in range(T)]
    meta = EnsembleMetadata.for_run(states[0], RandomWalk(), theory="test", params={"beta": 1.5}, seed=3)
    path = tmp_path / "e.safetensors"
    write_records(path, meta, states, flush_every=2, start=10)  # T odd: the last record is written by close()
    e = Ensemble.load(path)
    assert e.metadata == meta and e.n_records == T and e.chains == chains
    assert e.index.tolist() == list(range(10, 10 + T))
    assert torch.equal(e.acceptance, torch.full((T, chains), 0.5, dtype=torch.float64))
    assert torch.equal(e.rng_state, torch.Generator().manual_seed(T - 1).get_state())
    everything = e.configs()
    assert type(everything) is type(states[0]) and everything.data.dtype == dtype
    assert torch.equal(everything.data, torch.cat([s.data for s in states]))  # [t, c], time major
    assert torch.equal(e.record(3).data, states[3].data)
    assert torch.equal(e.record(-1).data, states[-1].data)
    if kind == "links":
        assert e.record(0).group == group


def test_links_are_stored_as_real_pairs(tmp_path, generator):
    U = LinkField.random(SU(2), Lattice(shape=(3, 2)), batch=2, generator=generator, dtype=torch.complex64)
    path = tmp_path / "u.safetensors"
    write_records(path, EnsembleMetadata.for_run(U, LinkWalk(), theory="su2", params={"beta": 2.0}, seed=0), [U])
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = f.get_tensor("configs")
        meta = json.loads(f.metadata()["lgdiff"])
    assert raw.dtype == torch.float32 and raw.shape == (1, 2, 2, 3, 2, 2, 2, 2)
    assert torch.equal(raw[0, ..., 0], U.data.real) and torch.equal(raw[0, ..., 1], U.data.imag)
    assert meta["format"] == "lgdiff.ensemble" and meta["format_version"] == 2
    assert meta["group"] == "SU(2)" and meta["lattice"] == [3, 2] and meta["dtype"] == "complex64"


def test_configs_converts_device_and_dtype(tmp_path, generator):
    phi = Field.randn(Lattice(shape=(3,)), batch=2, generator=generator)
    path = tmp_path / "p.safetensors"
    write_records(path, scalar_meta(lattice=(3,), chains=2), [phi])
    out = Ensemble.load(path).configs(device="cpu", dtype=torch.float32)
    assert out.data.dtype == torch.float32
    assert torch.equal(out.data, phi.data.float())


# ---- metadata -------------------------------------------------------------------------------------

def test_metadata_json_round_trip():
    meta = scalar_meta(command="lgdiff generate --out x.safetensors")
    text = meta.to_json()
    assert "\n" not in text and json.loads(text)["format"] == "lgdiff.ensemble"
    assert EnsembleMetadata.from_json(text) == meta


def test_metadata_differences_name_keys_and_ignore_provenance():
    meta = scalar_meta()
    assert meta.differences(attrs.evolve(meta, created="1999-01-01T00:00:00+00:00", command="x",
                                         lgdiff_version="9.9")) == {}
    other = attrs.evolve(meta, params={"kappa": 0.27, "lam": 0.022}, seed=12, settings={"n_steps": 10})
    assert meta.differences(other) == {
        "params.kappa": (0.21, 0.27),
        "settings.integrator": ("leapfrog", "<missing>"),
        "settings.step_size": (0.1, "<missing>"),
        "seed": (11, 12),
    }
    assert not meta.compatible_with(other)
    assert meta.compatible_with(attrs.evolve(meta, params={"lam": 0.022, "kappa": 0.21}))  # order is irrelevant


def test_metadata_validation():
    with pytest.raises(EnsembleError, match=r"params\['kappa'\] = nan is not finite"):
        scalar_meta(params={"kappa": float("nan")})
    with pytest.raises(EnsembleError, match=r"settings\['step_size'\] = inf is not finite"):
        scalar_meta(settings={"step_size": float("inf")})
    with pytest.raises(EnsembleError, match="group must be None for a scalar ensemble"):
        scalar_meta(group="SU(3)")
    with pytest.raises(EnsembleError, match="group is required for a links ensemble"):
        scalar_meta(kind="links", dtype="complex128")
    with pytest.raises(EnsembleError, match="'U\\(1\\)' or 'SU\\(N\\)'"):
        scalar_meta(kind="links", group="SU(1)", dtype="complex128")
    with pytest.raises(EnsembleError, match="dtype of a links ensemble must be one of"):
        scalar_meta(kind="links", group="U(1)")
    with pytest.raises(EnsembleError, match="chains must be >= 1"):
        scalar_meta(chains=0)
    with pytest.raises(TypeError, match=r"params\['kappa'\] must be a float, int, str, bool or None"):
        scalar_meta(params={"kappa": torch.tensor(0.1)})
    with pytest.raises(EnsembleError, match="lattice must be 0..4 positive ints"):
        scalar_meta(lattice=(4, 0))


def test_metadata_from_bad_json():
    good = json.loads(scalar_meta().to_json())
    with pytest.raises(EnsembleError, match="not valid JSON"):
        EnsembleMetadata.from_json("{")
    with pytest.raises(EnsembleError, match="describes 'lgdiff.model', not an lgdiff ensemble"):
        EnsembleMetadata.from_json(json.dumps({**good, "format": "lgdiff.model"}))
    with pytest.raises(EnsembleError, match="format_version 3, newer than this lgdiff reads \\(2\\); upgrade"):
        EnsembleMetadata.from_json(json.dumps({**good, "format_version": 3}))
    with pytest.raises(EnsembleError, match=r"missing keys \['seed'\] and unknown keys \['sede'\]"):
        EnsembleMetadata.from_json(json.dumps({**{k: v for k, v in good.items() if k != "seed"}, "sede": 1}))
    with pytest.raises(EnsembleError, match=r"invalid: .*params\['kappa'\] = nan is not finite"):
        EnsembleMetadata.from_json(json.dumps({**good, "params": {"kappa": float("nan")}}))


# ---- append, reopen, resume -----------------------------------------------------------------------

def test_reopen_appends_without_duplicates_or_losses(tmp_path, generator):
    meta = scalar_meta()
    states = [Field.randn(Lattice(shape=(4, 3)), batch=3, generator=generator) for _ in range(5)]
    path = tmp_path / "e.safetensors"
    write_records(path, meta, states[:3])
    later = attrs.evolve(meta, created="2030-01-01T00:00:00+00:00", command="again")
    with EnsembleWriter.open(path, later) as w:
        point = w.resume_state()
        assert point is not None and point.index == 2 and point.n_records == 3
        assert torch.equal(point.state.data, states[2].data)
        assert torch.equal(point.rng_state, torch.Generator().manual_seed(2).get_state())
        with pytest.raises(EnsembleError, match="already holds records up to index 2; got index 2"):
            w.append(states[3], 2, torch.ones(3), torch.Generator().get_state())
        for i in (3, 4):
            w.append(states[i], i, torch.ones(3), torch.Generator().get_state())
    e = Ensemble.load(path)
    assert e.index.tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(e.configs().data, torch.cat([s.data for s in states]))
    assert e.metadata.created == meta.created and e.metadata.command is None  # the file's provenance is kept


def test_new_file_has_no_resume_point_and_no_file_until_a_record(tmp_path):
    path = tmp_path / "sub" / "dir" / "e.safetensors"
    with EnsembleWriter.open(path, scalar_meta()) as w:
        assert w.resume_state() is None
    assert path.parent.is_dir() and not path.exists()


def test_mismatching_metadata_is_refused_and_file_untouched(tmp_path, generator):
    path = tmp_path / "e.safetensors"
    write_records(path, scalar_meta(), [Field.randn(Lattice(shape=(4, 3)), batch=3, generator=generator)])
    before = path.read_bytes()
    other = scalar_meta(params={"kappa": 0.27, "lam": 0.022})
    with pytest.raises(EnsembleError, match=r"holds a different ensemble \(params.kappa: file 0.21 != requested "
                                            r"0.27\); choose another --out, or delete the file") as info:
        EnsembleWriter.open(path, other)
    assert "\n" not in str(info.value)
    with pytest.raises(EnsembleError, match=r"lattice: file \(4, 3\) != requested \(4, 4\); seed: file 11 != "
                                            r"requested 5"):
        EnsembleWriter.open(path, scalar_meta(lattice=(4, 4), seed=5))
    assert path.read_bytes() == before


def test_append_validates_the_record(tmp_path, generator):
    meta = scalar_meta()
    path = tmp_path / "e.safetensors"
    good = Field.randn(Lattice(shape=(4, 3)), batch=3, generator=generator)
    rng = torch.Generator().get_state()
    w = EnsembleWriter.open(path, meta)
    U = LinkField.random(U1(), Lattice(shape=(4, 3)), batch=3, generator=generator)
    with pytest.raises(EnsembleError, match="is a scalar ensemble; append a Field, got LinkField"):
        w.append(U, 0, torch.ones(3), rng)
    with pytest.raises(EnsembleError, match=r"holds L=\(4, 3\); got a state on L=\(4, 4\)"):
        w.append(Field.zeros(Lattice(shape=(4, 4)), batch=3), 0, torch.ones(3), rng)
    with pytest.raises(EnsembleError, match="holds 3 chains; got a state of batch 2"):
        w.append(good[:2], 0, torch.ones(3), rng)
    with pytest.raises(EnsembleError, match="holds float64 configurations; got torch.float32"):
        w.append(good.to(dtype=torch.float32), 0, torch.ones(3), rng)
    with pytest.raises(EnsembleError, match=r"acceptance must be \[3\] \(one per chain\); got \(2,\)"):
        w.append(good, 0, torch.ones(2), rng)
    with pytest.raises(EnsembleError, match="acceptance must be finite and in \\[0, 1\\]"):
        w.append(good, 0, torch.tensor([0.5, float("nan"), 1.0]), rng)
    with pytest.raises(EnsembleError, match="rng_state must be generator.get_state\\(\\), a uint8"):
        w.append(good, 0, torch.ones(3), torch.zeros(4))
    with pytest.raises(EnsembleError, match="record indices are >= 0; got -1"):
        w.append(good, -1, torch.ones(3), rng)
    w.close()
    assert not path.exists() and temp_files(tmp_path) == []  # nothing was ever recorded
    with pytest.raises(EnsembleError, match="writer of .* is closed"):
        w.append(good, 0, torch.ones(3), rng)


def test_link_append_checks_group(tmp_path, generator):
    U = LinkField.random(SU(2), Lattice(shape=(2, 2)), batch=1, generator=generator)
    meta = EnsembleMetadata.for_run(U, LinkWalk(), theory="su2", params={"beta": 2.0}, seed=0)
    with EnsembleWriter.open(tmp_path / "u.safetensors", meta) as w:
        V = LinkField.random(SU(3), Lattice(shape=(2, 2)), batch=1, generator=generator)
        with pytest.raises(EnsembleError, match=r"holds SU\(2\) links; got SU\(3\)"):
            w.append(V, 0, torch.ones(1), torch.Generator().get_state())


def test_writer_requires_safetensors_suffix(tmp_path):
    with pytest.raises(EnsembleError, match=r"ensemble files are named \*.safetensors; got .*e.pt"):
        EnsembleWriter.open(tmp_path / "e.pt", scalar_meta())
    with pytest.raises(ValueError, match="flush_every >= 1; got 0"):
        EnsembleWriter.open(tmp_path / "e.safetensors", scalar_meta(), flush_every=0)


# ---- bad files ------------------------------------------------------------------------------------

def _foreign_files(tmp_path: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, expected message)."""
    files = {}
    text = tmp_path / "text.safetensors"
    text.write_text("this is a text file, not a tensor file\n")
    files["text"] = (text, r"is not a readable safetensors file \(.*\): it is truncated, corrupt or of another format")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    files["empty"] = (empty, "is not a readable safetensors file")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-7])
    files["truncated"] = (truncated, r"is not a readable safetensors file \(.*\): it is truncated")
    head_only = tmp_path / "head.safetensors"
    head_only.write_bytes(good.read_bytes()[:40])
    files["head"] = (head_only, "is not a readable safetensors file")
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(plain))
    files["plain"] = (plain, "is a safetensors file but not an lgdiff ensemble \\(no 'lgdiff' metadata key\\)")
    model = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(3)}, str(model), metadata={"lgdiff": json.dumps({"format": "lgdiff.model"})})
    files["model"] = (model, "not a usable lgdiff ensemble: the metadata describes 'lgdiff.model'")
    damaged = tmp_path / "damaged.safetensors"
    save_file({"configs": torch.zeros(1, 3, 4, 3), "index": torch.zeros(1, dtype=torch.int64),
               "acceptance": torch.zeros(1, 2, dtype=torch.float64), "rng_state": torch.zeros(4, dtype=torch.uint8)},
              str(damaged), metadata={"lgdiff": v1_json(scalar_meta())})
    files["damaged"] = (damaged, r"damaged lgdiff ensemble: acceptance is F64 \[1, 2\], expected F64 \[1, 3\]")
    files["missing"] = (tmp_path / "missing.safetensors", "no such ensemble file; check the path")
    files["directory"] = (tmp_path, "is not a file")
    return files


CASES_BAD = ["text", "empty", "truncated", "head", "plain", "model", "damaged", "missing", "directory"]


@pytest.fixture
def good_file(tmp_path, generator) -> Path:
    path = tmp_path / "good" / "e.safetensors"
    write_records(path, scalar_meta(), [Field.randn(Lattice(shape=(4, 3)), batch=3, generator=generator)] * 2)
    return path


@pytest.mark.parametrize("case", CASES_BAD)
def test_bad_files_give_one_line_errors(case, tmp_path, good_file):
    path, message = _foreign_files(tmp_path, good_file)[case]
    with pytest.raises(EnsembleError, match=message) as info:
        Ensemble.load(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("case", ["text", "truncated", "plain", "model"])
def test_writer_refuses_to_overwrite_a_foreign_file(case, tmp_path, good_file):
    path, message = _foreign_files(tmp_path, good_file)[case]
    before = path.read_bytes()
    with pytest.raises(EnsembleError, match=message):
        EnsembleWriter.open(path, scalar_meta())
    assert path.read_bytes() == before


def test_index_must_increase_in_the_file(tmp_path):
    path = tmp_path / "e.safetensors"
    save_file({"configs": torch.zeros(2, 3, 4, 3), "index": torch.tensor([4, 4]),
               "acceptance": torch.zeros(2, 3, dtype=torch.float64), "rng_state": torch.zeros(4, dtype=torch.uint8)},
              str(path), metadata={"lgdiff": v1_json(scalar_meta())})
    with pytest.raises(EnsembleError, match="index is not strictly increasing"):
        Ensemble.load(path)


# ---- atomicity ------------------------------------------------------------------------------------

def test_non_finite_record_is_refused_and_nothing_is_written(tmp_path, generator):
    path = tmp_path / "e.safetensors"
    good = Field.randn(Lattice(shape=(4, 3)), batch=3, generator=generator)
    write_records(path, scalar_meta(), [good])
    before = path.read_bytes()
    bad = good.data.clone()
    bad[1, 2, 0] = float("nan")
    with EnsembleWriter.open(path, scalar_meta()) as w:
        with pytest.raises(EnsembleError, match=r"non-finite configuration \(chain 1\) .* Nothing was written"):
            w.append(good.with_data(bad), 1, torch.ones(3), torch.Generator().get_state())
        assert w.n_records == 1
    assert path.read_bytes() == before and temp_files(tmp_path) == []


def test_non_finite_links_are_refused(tmp_path, generator):
    U = LinkField.random(U1(), Lattice(shape=(2, 2)), batch=2, generator=generator)
    meta = EnsembleMetadata.for_run(U, LinkWalk(), theory="u1", params={"beta": 1.0}, seed=0)
    path = tmp_path / "u.safetensors"
    with lgdiff_checks_off():
        bad = U.with_data(U.data.clone().index_put_((torch.tensor(1),), torch.tensor(complex("inf+0j"))))
    with EnsembleWriter.open(path, meta) as w:
        with pytest.raises(EnsembleError, match=r"non-finite configuration \(chain 1\)"):
            w.append(bad, 0, torch.ones(2), torch.Generator().get_state())
    assert not path.exists() and temp_files(tmp_path) == []


def lgdiff_checks_off():
    import lgdiff

    return lgdiff.checks(False)


def _failing_write(fd, chunks):
    os.write(fd, b"partial")  # a half-written file or frame, then the failure
    raise OSError(28, "No space left on device")


def test_failed_write_leaves_existing_target_and_no_temporary(tmp_path, generator, monkeypatch):
    path = tmp_path / "e.safetensors"
    states = [Field.randn(Lattice(shape=(4, 3)), batch=3, generator=generator) for _ in range(2)]
    write_records(path, scalar_meta(), states[:1])
    before = path.read_bytes()
    w = EnsembleWriter.open(path, scalar_meta())
    monkeypatch.setattr(ens, "write_all", _failing_write)
    with pytest.raises(EnsembleError, match=r"could not write .* \(\[Errno 28\] No space left on device\); the file "
                                            r"on disk is unchanged and holds 1 records"):
        w.append(states[1], 1, torch.ones(3), torch.Generator().get_state())
    assert path.read_bytes() == before and temp_files(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [".e.safetensors.lgdiff-lock", "e.safetensors"]  # no journal
    monkeypatch.undo()
    w.close()  # the buffered record survives the failed flush and is written now
    assert Ensemble.load(path).index.tolist() == [0, 1]


def test_failed_first_write_leaves_no_file(tmp_path, generator, monkeypatch):
    monkeypatch.setattr(ens, "write_all", _failing_write)
    path = tmp_path / "e.safetensors"
    w = EnsembleWriter.open(path, scalar_meta())
    with pytest.raises(EnsembleError, match="could not write"):
        w.append(Field.randn(Lattice(shape=(4, 3)), batch=3, generator=generator), 0, torch.ones(3),
                 torch.Generator().get_state())
    assert [p.name for p in tmp_path.iterdir()] == [".e.safetensors.lgdiff-lock"]  # held while the writer is open
    del w  # the process ends
    assert list(tmp_path.iterdir()) == []


def test_interrupt_inside_save_removes_the_temporary(tmp_path, generator, monkeypatch):
    def interrupted(fd, chunks):
        os.write(fd, b"partial")
        raise KeyboardInterrupt

    path = tmp_path / "e.safetensors"
    monkeypatch.setattr(ens, "write_all", interrupted)
    w = EnsembleWriter.open(path, scalar_meta())
    with pytest.raises(KeyboardInterrupt):
        w.append(Field.randn(Lattice(shape=(4, 3)), batch=3, generator=generator), 0, torch.ones(3),
                 torch.Generator().get_state())
    assert [p.name for p in tmp_path.iterdir()] == [".e.safetensors.lgdiff-lock"]  # held while the writer is open
    del w  # the process ends
    assert list(tmp_path.iterdir()) == []


def test_stale_temporary_from_a_kill_is_removed(tmp_path, good_file):
    stale = good_file.parent / f".{good_file.name}.abc123.lgdiff-tmp"
    stale.write_bytes(b"half a file")
    unrelated = good_file.parent / ".other.safetensors.abc123.lgdiff-tmp"
    unrelated.write_bytes(b"another writer's")
    EnsembleWriter.open(good_file, scalar_meta()).close()
    assert not stale.exists() and unrelated.exists()


def test_flush_every_loses_at_most_the_unflushed_records(tmp_path, generator):
    path = tmp_path / "e.safetensors"
    states = [Field.randn(Lattice(shape=(4, 3)), batch=3, generator=generator) for _ in range(5)]
    w = EnsembleWriter.open(path, scalar_meta(), flush_every=2)
    for i, s in enumerate(states):
        w.append(s, i, torch.ones(3), torch.Generator().get_state())
        assert w.n_written == 2 * ((i + 1) // 2)
    del w  # the process dies: no close(), record 4 is lost, records 0-3 are on disk
    e = Ensemble.load(path)
    assert e.index.tolist() == [0, 1, 2, 3]
    assert torch.equal(e.configs().data, torch.cat([s.data for s in states[:4]]))


# ---- resumption is bit-identical ------------------------------------------------------------------

def walk_initial(generator: torch.Generator) -> Field:
    return Field.randn(Lattice(shape=(3, 2)), batch=4, generator=generator, device=generator.device)


def run_walk(path, *, n, flush_every=1, pause=0.0, progress=None, device="cpu") -> Ensemble:
    return generate_ensemble(path, RandomWalk(pause=pause), walk_initial, theory="toy", params={"m2": 1.0},
                             seed=7, n=n, therm=3, every=2, flush_every=flush_every, progress=progress, device=device)


def assert_same_ensemble(a: Ensemble, b: Ensemble) -> None:
    assert a.metadata.compatible_with(b.metadata)
    assert torch.equal(a.index, b.index)
    assert torch.equal(a.acceptance, b.acceptance)
    assert torch.equal(a.rng_state, b.rng_state)
    assert torch.equal(a.configs().data, b.configs().data)


class _Stop(Exception):
    pass


def stop_after(steps: int):
    """A progress callback that interrupts the run (as Ctrl-C would) when ``steps`` steps are done."""
    done = 0

    def progress(k: int) -> None:
        nonlocal done
        done += k
        if done == steps:
            raise _Stop

    return progress


def test_interrupted_and_resumed_run_is_bit_identical(tmp_path):
    full = run_walk(tmp_path / "full.safetensors", n=12)
    assert full.index.tolist() == [3 + 2 * k + 1 for k in range(12)]  # therm 3, every 2
    path = tmp_path / "cut.safetensors"
    with pytest.raises(_Stop):
        run_walk(path, n=12, flush_every=4, progress=stop_after(15))
    # records end at steps 5, 7, .., 13; step 15 ends the 6th, but the interrupt comes before it is yielded.
    # Records 4 and 5 were still buffered (flush_every=4): the writer flushed them on the way out.
    assert Ensemble.load(path).n_records == 5
    assert_same_ensemble(run_walk(path, n=12, flush_every=4), full)
    assert_same_ensemble(run_walk(path, n=12), full)  # a finished run: rerunning changes nothing


def test_resume_on_device_is_bit_identical(device, tmp_path):
    full = run_walk(tmp_path / "full.safetensors", n=8, device=device)
    path = tmp_path / "cut.safetensors"
    with pytest.raises(_Stop):
        run_walk(path, n=8, progress=stop_after(10), device=device)
    assert Ensemble.load(path).n_records == 3
    resumed = run_walk(path, n=8, device=device)
    assert_same_ensemble(resumed, full)
    assert resumed.record(0, device=device).data.device.type == device.type


def test_resumed_run_can_be_extended(tmp_path):
    full = run_walk(tmp_path / "full.safetensors", n=9)
    path = tmp_path / "grow.safetensors"
    run_walk(path, n=4)
    assert_same_ensemble(run_walk(path, n=9), full)


def test_resume_with_other_run_settings_is_refused(tmp_path):
    path = tmp_path / "e.safetensors"
    run_walk(path, n=2)
    with pytest.raises(EnsembleError, match="settings.run.every: file 2 != requested 3"):
        generate_ensemble(path, RandomWalk(), walk_initial, theory="toy", params={"m2": 1.0}, seed=7, n=4,
                          therm=3, every=3)


def test_links_resume_bit_identical_with_run_chain(tmp_path, generator):
    """The manual protocol (writer + run_chain), on SU(2) links in complex64."""
    kernel, lattice, n = LinkWalk(), Lattice(shape=(2, 3)), 6
    U0 = LinkField.random(SU(2), lattice, batch=2, generator=generator, dtype=torch.complex64)
    meta = EnsembleMetadata.for_run(U0, kernel, theory="su2", params={"beta": 2.0}, seed=0)

    def record(path, generator, initial, count, start=0, therm=2):
        with EnsembleWriter.open(path, meta, flush_every=2) as w:
            for step in run_chain(kernel, initial, n=count, generator=generator, therm=therm, start=start):
                w.append(step.state, step.index, step.acceptance, generator.get_state())

    record(tmp_path / "full.safetensors", torch.Generator().manual_seed(5), U0, n)
    record(tmp_path / "cut.safetensors", torch.Generator().manual_seed(5), U0, 3)
    with EnsembleWriter.open(tmp_path / "cut.safetensors", meta) as w:
        point = w.resume_state()
    g = torch.Generator()
    point.restore(g)
    record(tmp_path / "cut.safetensors", g, point.state, n - point.n_records, start=point.index + 1, therm=0)
    assert_same_ensemble(Ensemble.load(tmp_path / "cut.safetensors"), Ensemble.load(tmp_path / "full.safetensors"))


def test_restore_into_a_wrong_generator_is_explained(tmp_path, good_file):
    with EnsembleWriter.open(good_file, scalar_meta()) as w:
        point = w.resume_state()
    bad = attrs.evolve(point, rng_state=torch.zeros(10, dtype=torch.uint8))
    with pytest.raises(EnsembleError, match="does not fit a generator on cpu .*resume on the device type"):
        bad.restore(torch.Generator())


_CHILD = """
import sys
sys.path.insert(0, {repo!r})
from tests.io.test_ensemble import run_walk
run_walk({path!r}, n={n}, flush_every=3, pause=0.01)
"""


def test_sigkill_during_generate_then_rerun_resumes(tmp_path):
    """A real kill -9 at an arbitrary moment (possibly inside a flush): the file stays readable, holds a
    prefix of the uninterrupted run, and rerunning the same command completes it bit for bit."""
    n = 40
    full = run_walk(tmp_path / "full.safetensors", n=n)
    path = tmp_path / "killed.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", _CHILD.format(repo=str(REPO), path=str(path), n=n)], env=env,
                             stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        if path.exists() and Ensemble.load(path).n_records >= 6:
            break
        time.sleep(0.005)
    assert child.poll() is None, f"the child ended before the kill: {child.stderr.read().decode()[-2000:]}"
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stderr.close()
    killed = Ensemble.load(path)
    T = killed.n_records
    assert 6 <= T < n
    assert torch.equal(killed.index, full.index[:T])
    assert torch.equal(killed.configs().data, full.configs().data[: T * full.chains])
    assert_same_ensemble(run_walk(path, n=n), full)
    assert temp_files(tmp_path) == []


# ---- measurement ----------------------------------------------------------------------------------

def test_series_matches_configs_in_chunks(tmp_path):
    e = run_walk(tmp_path / "e.safetensors", n=7)
    calls = []

    def magnetisation(phi: Field) -> torch.Tensor:
        calls.append(phi.batch)
        return phi.data.mean(dim=(1, 2))

    m = e.series(magnetisation, chunk=3)
    assert calls == [12, 12, 4]  # 3 + 3 + 1 records of 4 chains
    expected = e.configs().data.mean(dim=(1, 2)).reshape(7, 4)
    assert m.shape == (7, 4) and torch.equal(m, expected)
    assert torch.equal(m[2], e.record(2).data.mean(dim=(1, 2)))
    with pytest.raises(ValueError, match=r"fn must return one value per configuration, \[12\]; got \(3,\)"):
        e.series(lambda phi: phi.data[:3, 0, 0], chunk=3)


def test_series_reads_chunks_of_bounded_size_by_default(tmp_path, monkeypatch):
    # memory stays bounded for big ensembles: by default a read is about _CHUNK_BYTES of records, at least one
    e = run_walk(tmp_path / "e.safetensors", n=7)
    record = e.configs().data[: e.chains].numel() * e.configs().data.element_size()
    calls = []

    def magnetisation(phi: Field) -> torch.Tensor:
        calls.append(phi.batch)
        return phi.data.mean(dim=(1, 2))

    monkeypatch.setattr(ens, "_CHUNK_BYTES", 2 * record)
    m = e.series(magnetisation)
    assert calls == [8, 8, 8, 4]  # 2 + 2 + 2 + 1 records of 4 chains
    assert torch.equal(m, e.series(magnetisation, chunk=7))
    calls.clear()
    monkeypatch.setattr(ens, "_CHUNK_BYTES", record // 2)  # a record larger than a chunk: one record per read
    e.series(magnetisation)
    assert calls == [4] * 7


def test_reader_notices_a_replaced_file(tmp_path):
    path = tmp_path / "e.safetensors"
    e = run_walk(path, n=2)
    path.unlink()
    generate_ensemble(path, RandomWalk(), walk_initial, theory="toy", params={"m2": 2.0}, seed=7, n=2)
    with pytest.raises(EnsembleError, match="changed on disk since it was loaded"):
        e.configs()


def test_docstring_examples_run():
    result = doctest.testmod(ens, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
