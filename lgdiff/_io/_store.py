"""Low-level pieces of the ensemble store (docs/file-format.md): safetensors blobs written with plain system
calls (so that a file of any size streams to disk without being held in memory, and a journal can hold one blob
after another), and the advisory lock that keeps a second writer off a file.

Nothing here knows about ensembles; `lgdiff._io.ensemble` builds the file format from these pieces.
"""

import contextlib
import json
import os
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import attrs
import numpy as np
import torch
from torch import Tensor

try:
    import fcntl
except ImportError:  # Windows: no advisory locks (docs/file-format.md says so)
    fcntl = None  # type: ignore[assignment]

SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.uint8: "U8"}
TORCH_DTYPES = {v: k for k, v in SAFETENSORS_DTYPES.items()}
_MAX_HEADER = 100_000_000  # what the safetensors library accepts
O_BINARY = getattr(os, "O_BINARY", 0)
"""Add to ``os.open`` flags: no newline translation on Windows (0 elsewhere)."""


def tensor_bytes(t: Tensor) -> memoryview:
    """The raw little-endian bytes of a contiguous CPU tensor, without a copy."""
    return memoryview(t.detach().contiguous().reshape(-1).numpy().view(np.uint8))


def blob_header(entries: Sequence[tuple[str, torch.dtype, Sequence[int]]], metadata: Mapping[str, str]) -> bytes:
    """The first bytes of a safetensors blob whose tensors ``(name, dtype, shape)`` follow it in this order:
    the 8-byte little-endian header size and the JSON header, padded with spaces to a multiple of 8 bytes (so
    that the data start 8-byte aligned, as the safetensors library writes it)."""
    header: dict[str, object] = {"__metadata__": dict(metadata)}
    offset = 0
    for name, dtype, shape in entries:
        nbytes = int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": SAFETENSORS_DTYPES[dtype], "shape": list(shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text


def pread(fd: int, n: int, pos: int) -> bytes:
    """Up to ``n`` bytes of ``fd`` from byte ``pos`` (``os.pread``; seek and read where there is none)."""
    if hasattr(os, "pread"):
        return os.pread(fd, n, pos)
    os.lseek(fd, pos, os.SEEK_SET)
    return os.read(fd, n)


def write_all(fd: int, chunks: Iterable[bytes | memoryview]) -> None:
    """Write every chunk to ``fd``: a list or tuple in one ``writev`` call, other iterables (e.g. a generator of
    large chunks) one chunk at a time. Loops until done (a call may write less than asked)."""
    groups = [chunks] if isinstance(chunks, (list, tuple)) else ([chunk] for chunk in chunks)
    for group in groups:
        views = [view for view in (memoryview(c).cast("B") for c in group) if view.nbytes]
        while views:
            done = os.writev(fd, views) if hasattr(os, "writev") else os.write(fd, views[0])
            while views and done >= views[0].nbytes:
                done -= views[0].nbytes
                views.pop(0)
            if views:
                views[0] = views[0][done:]


@typing.final
@attrs.frozen
class BlobTensor:
    """One tensor of a blob: its safetensors dtype, shape and absolute byte range in the file."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    stop: int


class TornBlob(Exception):
    """The blob does not fit in the file: the tail of an interrupted write."""


def read_blob_header(fd: int, pos: int, size: int) -> tuple[dict[str, BlobTensor], dict[str, str], int]:
    """Parse the safetensors blob at byte ``pos`` of a file of ``size`` bytes: its tensors, its ``__metadata__``
    and the byte where it ends. Raises `TornBlob` when the blob runs past the end of the file and `ValueError`
    (one line) when it is not a valid safetensors blob."""
    if pos + 8 > size:
        raise TornBlob
    n = int.from_bytes(pread(fd, 8, pos), "little")
    if n > _MAX_HEADER:
        raise ValueError(f"header size {n} at byte {pos} is not a safetensors header")
    if pos + 8 + n > size:
        raise TornBlob
    try:
        header = json.loads(pread(fd, n, pos + 8))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"the header at byte {pos} is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"the header at byte {pos} is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    start = pos + 8 + n
    tensors, end = {}, start
    for name, info in header.items():
        try:
            a, b = info["data_offsets"]
            shape = tuple(int(s) for s in info["shape"])
            tensors[name] = BlobTensor(str(info["dtype"]), shape, start + int(a), start + int(b))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"tensor {name!r} at byte {pos} has no valid dtype, shape and data_offsets") from None
        end = max(end, start + int(b))
    if end > size:
        raise TornBlob
    return tensors, metadata, end


def read_tensor(fd: int, entry: BlobTensor, start: int = 0, stop: int | None = None) -> Tensor:
    """Rows ``[start, stop)`` of the tensor ``entry`` (all rows by default), read with ``pread``."""
    dtype = TORCH_DTYPES[entry.dtype]
    rows = entry.shape[0] if entry.shape else 1
    stop = rows if stop is None else stop
    row_bytes = (entry.stop - entry.start) // max(rows, 1)
    nbytes = (stop - start) * row_bytes
    raw = pread(fd, nbytes, entry.start + start * row_bytes)
    if len(raw) != nbytes:
        raise OSError(f"short read: {len(raw)} of {nbytes} bytes")
    out = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype)
    return out.reshape(stop - start, *entry.shape[1:]) if entry.shape else out.reshape(())


class Busy(Exception):
    """Another writer holds the lock; ``pid`` is its process id if it could be read."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(pid)
        self.pid = pid


@typing.final
class WriterLock:
    """An exclusive advisory lock (``flock``) on a lock file, held for as long as a writer is open.

    The lock file holds the holder's process id, for the error message of the next writer. It is removed on
    release; a writer that locked a lock file which was removed meanwhile tries again on the new one. A killed
    holder's lock goes with its process (the kernel drops it); the file it leaves is reused.
    """

    def __init__(self, path: Path, fd: int | None) -> None:
        self._path, self._fd, self._pid = path, fd, os.getpid()

    @classmethod
    def acquire(cls, path: Path) -> "WriterLock":
        """Lock ``path`` or raise `Busy`."""
        if fcntl is None:
            return cls(path, None)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | O_BINARY, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                text = pread(fd, 32, 0).decode(errors="replace").strip()
                os.close(fd)
                raise Busy(int(text) if text.isdigit() else None) from None
            except BaseException:
                os.close(fd)
                raise
            try:
                here, ours = os.stat(path), os.fstat(fd)
                if (here.st_dev, here.st_ino) == (ours.st_dev, ours.st_ino):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)  # the previous holder removed this lock file after we opened it: lock the new one
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            cls(path, fd).release()
            raise
        return cls(path, fd)

    def release(self) -> None:
        """Remove the lock file and unlock (idempotent; a no-op in a forked child, whose parent holds it)."""
        if self._fd is None or os.getpid() != self._pid:
            return
        fd, self._fd = self._fd, None
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
        finally:
            os.close(fd)
