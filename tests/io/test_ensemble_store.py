"""How an ensemble lives on disk while it grows (lgdiff/_io/ensemble.py, docs/file-format.md; issue #15 items 4
and 10): one writer at a time, appends that cost one record, a kill at any moment leaves a readable ensemble
that resumes bit for bit, and a reader written from the format specification alone reads what lgdiff wrote."""

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.numpy import load_file
from safetensors.torch import save_file

import lgdiff
from cli.main import cli
from lgdiff import Field, Lattice
from lgdiff._io.ensemble import Ensemble, EnsembleError, EnsembleMetadata, EnsembleWriter

REPO = Path(__file__).resolve().parents[2]
C, SHAPE = 3, (4, 3)


def meta(**changes) -> EnsembleMetadata:
    base = dict(kind="scalar", theory="phi4", group=None, lattice=SHAPE, params={"kappa": 0.2, "lam": 0.02},
                algorithm="hmc", settings={}, seed=1, chains=C, dtype="float64")
    return EnsembleMetadata(**{**base, **changes})


def states(n: int, seed: int = 0) -> list[Field]:
    g = torch.Generator().manual_seed(seed)
    return [Field.randn(Lattice(shape=SHAPE), batch=C, generator=g) for _ in range(n)]


def acceptance(t: int) -> torch.Tensor:
    return torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64) * (t % 3) / 2


def rng(t: int) -> torch.Tensor:
    return torch.Generator().manual_seed(100 + t).get_state()


def append_from(writer: EnsembleWriter, records: list[Field]) -> None:
    """Continue where the file stopped, as a resumed run does: record t is ``records[t]`` with index 2 t + 1."""
    for t in range(writer.n_records, len(records)):
        writer.append(records[t], 2 * t + 1, acceptance(t), rng(t))


def write(path: Path, records: list[Field], *, flush_every: int = 1) -> None:
    with EnsembleWriter.open(path, meta(), flush_every=flush_every) as w:
        append_from(w, records)


def assert_holds(e: Ensemble, records: list[Field]) -> None:
    """``e`` holds exactly the first ``len(records)`` records of the run."""
    T = len(records)
    assert e.n_records == T and e.index.tolist() == [2 * t + 1 for t in range(T)]
    assert torch.equal(e.acceptance, torch.stack([acceptance(t) for t in range(T)]).reshape(T, C))
    if T:
        assert torch.equal(e.rng_state, rng(T - 1))
        assert torch.equal(e.configs().data, torch.cat([s.data for s in records]))


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# ---- item 4: one writer per file ---------------------------------------------------------------------

def test_a_second_writer_is_refused_while_the_first_is_open(tmp_path):
    path, records = tmp_path / "e.safetensors", states(4)
    first = EnsembleWriter.open(path, meta())
    append_from(first, records[:2])
    with pytest.raises(EnsembleError, match=rf"^{path} is being written by another writer \(process "
                                            rf"{os.getpid()}\); wait for it to finish or choose another --out$"):
        EnsembleWriter.open(path, meta())
    first.close()
    with EnsembleWriter.open(path, meta()) as second:  # the lock went with the first writer
        append_from(second, records)
    assert_holds(Ensemble.load(path), records)
    assert names(tmp_path) == ["e.safetensors"]


def test_a_writer_that_is_dropped_without_close_releases_the_file(tmp_path):
    path, records = tmp_path / "e.safetensors", states(3)
    w = EnsembleWriter.open(path, meta())
    append_from(w, records[:2])
    del w  # as if the process died: no close(); the flushed records stay, the lock goes
    with EnsembleWriter.open(path, meta()) as again:
        append_from(again, records)
    assert_holds(Ensemble.load(path), records)


_HOLDER = """
import sys
sys.path.insert(0, {repo!r})
from tests.io.test_ensemble_store import EnsembleWriter, append_from, meta, states
with EnsembleWriter.open({path!r}, meta(), flush_every=500) as w:
    append_from(w, states(3)[:1])
    print("ready", flush=True)
    sys.stdin.readline()
    append_from(w, states(3))
"""


def test_concurrent_generate_to_one_out_is_refused(tmp_path):
    """Two runs with one --out: the second stops at once with one line; the first run is not harmed."""
    out = tmp_path / "e.safetensors"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER.format(repo=str(REPO), path=str(out))], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert holder.stdout.readline() == "ready\n", holder.stderr.read()
        with lgdiff.checks(False):
            result = CliRunner().invoke(cli, ["generate", "--theory", "phi4", "--dim", "2", "--L", "4", "--kappa",
                                              "0.2", "--lam", "0.02", "--n", "3", "--therm", "1", "--chains", "3",
                                              "--flush-every", "500", "--out", str(out)])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
        assert errors == [f"Error: {out} is being written by another writer (process {holder.pid}); wait for it "
                          f"to finish or choose another --out"], result.output
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.wait(timeout=60) == 0, holder.stderr.read()
    finally:
        holder.kill()
        holder.wait()
        for stream in (holder.stdin, holder.stdout, holder.stderr):
            stream.close()
    assert_holds(Ensemble.load(out), states(3))
    assert names(tmp_path) == ["e.safetensors"]


# ---- item 10: an append costs one record ----------------------------------------------------------------

def dir_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir())


def test_an_append_writes_the_new_record_and_not_the_old_ones(tmp_path):
    path, records = tmp_path / "e.safetensors", states(40)
    record_bytes = C * SHAPE[0] * SHAPE[1] * 8
    with EnsembleWriter.open(path, meta(), flush_every=1) as w:
        append_from(w, records[:1])
        first, first_bytes = path.stat(), path.read_bytes()
        sizes = [dir_bytes(tmp_path)]
        for t in range(2, len(records) + 1):
            append_from(w, records[:t])
            assert w.n_written == t
            now = path.stat()  # the file of the first record is neither rewritten nor replaced
            assert (now.st_ino, now.st_size, now.st_mtime_ns) == (first.st_ino, first.st_size, first.st_mtime_ns)
            sizes.append(dir_bytes(tmp_path))
        assert path.read_bytes() == first_bytes
        assert_holds(Ensemble.load(path), records)  # readers see every record while the writer is open
    growth = np.diff(sizes)
    overhead = 8 + 8 * C + 8 + rng(0).numel() + 512  # index, acceptance, checksum, generator state, header
    assert record_bytes < growth.min() and growth.max() <= record_bytes + overhead, growth  # flat in n
    assert_holds(Ensemble.load(path), records)
    assert names(tmp_path) == ["e.safetensors"]  # closed: one plain file again


def test_a_reader_keeps_its_records_while_the_writer_appends_and_folds(tmp_path):
    path, records = tmp_path / "e.safetensors", states(6)
    w = EnsembleWriter.open(path, meta(), flush_every=1)
    append_from(w, records[:4])
    e = Ensemble.load(path)  # the file (record 0) and three frames of its journal
    append_from(w, records)  # two more frames after the reader loaded
    assert_holds(e, records[:4])
    w.close()  # the journal the reader knew is gone; its records are in the rewritten file
    assert_holds(e, records[:4])
    assert_holds(Ensemble.load(path), records)


# ---- a kill at any moment ------------------------------------------------------------------------------

KILLED, KILLED_IN_WRITE = 77, 78
_MUTATIONS = ("writev", "fsync", "ftruncate", "replace", "rename", "unlink")


def _die_at(k: int, half: bool) -> None:
    """In a forked child: make the k-th file-mutating system call the last thing the process does (after writing
    half of its bytes if ``half`` and it is a write), as SIGKILL at that moment would. fsync is only counted:
    what a killed process leaves is what other processes see, synced or not."""
    real = {name: getattr(os, name) for name in _MUTATIONS}
    count = 0

    def hooked(name):
        def call(*args):
            nonlocal count
            count += 1
            if count == k:
                if name == "writev" and half:
                    data = b"".join(bytes(b) for b in args[1])
                    os.write(args[0], data[: len(data) // 2])
                os._exit(KILLED_IN_WRITE if name == "writev" else KILLED)
            return None if name == "fsync" else real[name](*args)

        return call

    for name in _MUTATIONS:
        setattr(os, name, hooked(name))


def _in_child(k: int, half: bool, job) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns into pytest
        code = 1
        try:
            _die_at(k, half)
            job()
            code = 0
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("start", ["new", "v1"])
def test_a_kill_at_any_moment_leaves_a_readable_prefix_that_resumes(tmp_path, start, monkeypatch):
    """The child writes records 0..4 (flush_every 1 up to record 2 and close, then reopen and flush_every 2) to
    a new file or to a format_version 1 file of two records, and dies at its k-th write, fsync, rename, unlink or
    truncate, for every k until it finishes (at a write, once before it and once half-way through it). Each time
    the file on disk holds a prefix of the run, and a writer that resumes it ends with exactly the uninterrupted
    ensemble."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # this process checks contents, not durability: be quick
    records = states(5)

    def job(path: Path) -> None:
        write(path, records[:3], flush_every=1)
        write(path, records, flush_every=2)

    k, half, runs = 1, False, 0
    while True:
        runs += 1
        directory = tmp_path / f"run{runs}"
        directory.mkdir()
        path = directory / "e.safetensors"
        if start == "v1":
            save_file({"configs": torch.stack([s.data for s in records[:2]]), "index": torch.tensor([1, 3]),
                       "acceptance": torch.stack([acceptance(0), acceptance(1)]), "rng_state": rng(1)}, str(path),
                      metadata={"lgdiff": json.dumps({**json.loads(meta().to_json()), "format_version": 1})})
        code = _in_child(k, half, lambda: job(path))
        assert code in (0, KILLED, KILLED_IN_WRITE), f"the child failed at k={k} (exit {code})"
        if path.exists():
            e = Ensemble.load(path)
            assert_holds(e, records[:e.n_records])
        write(path, records, flush_every=len(records))  # rerunning the same command
        assert_holds(Ensemble.load(path), records)
        assert names(directory) == ["e.safetensors"], (k, half)
        if code == 0:
            break
        k, half = (k, True) if code == KILLED_IN_WRITE and not half else (k + 1, False)
    assert k > 10 and runs > k  # every step of the protocol was interrupted, writes also half-way


# ---- a reader from the specification alone ------------------------------------------------------------

_DTYPES = {"F64": "<f8", "F32": "<f4", "I64": "<i8", "U8": "u1"}


def read_blob(raw: bytes, pos: int) -> tuple[dict[str, np.ndarray], dict[str, str], int] | None:
    """One safetensors blob at ``pos`` (8-byte little-endian header size, JSON header, data): its tensors, its
    ``__metadata__`` and where it ends; ``None`` if it does not fit in ``raw`` (a torn tail)."""
    if pos + 8 > len(raw):
        return None
    n = int.from_bytes(raw[pos:pos + 8], "little")
    if pos + 8 + n > len(raw):
        return None
    header = json.loads(raw[pos + 8:pos + 8 + n])
    metadata = header.pop("__metadata__", {})
    start = pos + 8 + n
    end = start + max(info["data_offsets"][1] for info in header.values())
    if end > len(raw):
        return None
    tensors = {name: np.frombuffer(raw[start + a:start + b], dtype=_DTYPES[info["dtype"]]).reshape(info["shape"])
               for name, info in header.items() for a, b in [info["data_offsets"]]}
    return tensors, metadata, end


def read_by_the_spec(path: Path) -> dict[str, np.ndarray]:
    """docs/file-format.md, section "Reading without lgdiff": the file, then the frames of its journal."""
    raw = path.read_bytes()
    blob = read_blob(raw, 0)
    assert blob is not None
    tensors, metadata, end = blob
    assert end == len(raw)
    parts = {k: [tensors[k]] for k in ("configs", "index", "acceptance", "crc32")}
    rng_state = tensors["rng_state"]
    journal = path.parent / metadata["lgdiff.journal"] if "lgdiff.journal" in metadata else None
    if journal is not None and journal.exists():
        data, pos, T = journal.read_bytes(), 0, tensors["index"].shape[0]
        while (frame := read_blob(data, pos)) is not None:
            ft, fm, pos = frame
            first = json.loads(fm["lgdiff.frame"])["first"]
            if first < tensors["index"].shape[0]:
                break  # a stale journal: these records were folded into the file already
            assert first == T
            for k in parts:
                parts[k].append(ft[k])
            rng_state, T = ft["rng_state"], T + ft["index"].shape[0]
    out = {k: np.concatenate(v) for k, v in parts.items()}
    out["rng_state"] = rng_state
    out["metadata"] = json.loads(metadata["lgdiff"])
    for t in range(out["index"].shape[0]):  # the checksum of record t
        crc = zlib.crc32(out["configs"][t].tobytes())
        crc = zlib.crc32(out["index"][t:t + 1].tobytes(), crc)
        crc = zlib.crc32(out["acceptance"][t].tobytes(), crc)
        assert crc == out["crc32"][t], t
    return out


def assert_spec_reader_agrees(path: Path, records: list[Field]) -> None:
    spec, e = read_by_the_spec(path), Ensemble.load(path)
    assert spec["metadata"] == json.loads(e.metadata.to_json())
    assert spec["metadata"]["format_version"] == 2
    assert np.array_equal(spec["configs"], np.stack([s.data.numpy() for s in records]))
    assert np.array_equal(spec["index"], e.index.numpy())
    assert np.array_equal(spec["acceptance"], e.acceptance.numpy())
    assert np.array_equal(spec["rng_state"], e.rng_state.numpy())


def test_a_reader_written_from_the_spec_reads_a_running_and_a_closed_ensemble(tmp_path):
    path, records = tmp_path / "e.safetensors", states(7)
    w = EnsembleWriter.open(path, meta(), flush_every=2)
    append_from(w, records)
    w.flush()
    assert_spec_reader_agrees(path, records)  # while the run goes on (or after a kill): file + journal
    assert len(names(tmp_path)) == 3  # the file, its journal and the writer's lock
    w.close()
    assert_spec_reader_agrees(path, records)
    assert names(tmp_path) == ["e.safetensors"]
    plain = load_file(str(path))  # a closed ensemble is one ordinary safetensors file
    assert sorted(plain) == ["acceptance", "configs", "crc32", "index", "rng_state"]


def test_an_old_single_file_ensemble_loads_and_is_continued(tmp_path):
    path, records = tmp_path / "old.safetensors", states(5)
    save_file({"configs": torch.stack([s.data for s in records[:3]]), "index": torch.tensor([1, 3, 5]),
               "acceptance": torch.stack([acceptance(t) for t in range(3)]), "rng_state": rng(2)}, str(path),
              metadata={"lgdiff": json.dumps({**json.loads(meta().to_json()), "format_version": 1})})
    assert_holds(Ensemble.load(path), records[:3])
    write(path, records)
    assert_holds(Ensemble.load(path), records)
    assert_spec_reader_agrees(path, records)  # continued as format_version 2, with checksums
