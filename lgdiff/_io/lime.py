"""LIME, the record container of ILDG and SciDAC files (Lattice QCD Interchange Message Encapsulation).

A LIME file is a sequence of records. Each record is a 144-byte header, all integers big endian,

====== ===== ==================================================================
offset bytes field
====== ===== ==================================================================
0      4     magic number ``0x456789ab``
4      2     format version, 1
6      2     flags: bit 15 ``MB`` (first record of a message), bit 14 ``ME`` (last record)
8      8     data length in bytes (without padding)
16     128   record type, ASCII, NUL padded (e.g. ``ildg-binary-data``)
====== ===== ==================================================================

followed by the data, padded with NULs to a multiple of 8 bytes. Records are grouped in messages:
the first record of a message has MB set, the last ME (a one-record message has both).
"""

import os
import struct
import typing
from collections.abc import Sequence
from pathlib import Path

import attrs

MAGIC = 0x456789AB
VERSION = 1
HEADER_BYTES = 144
TYPE_BYTES = 128
_MB, _ME = 0x8000, 0x4000
_HEADER = struct.Struct(">IHHQ128s")


class LimeError(ValueError):
    """A LIME file is not well formed; the message says where and what to do."""


def _check_type(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, str) or not value or not value.isascii() or "\0" in value or len(value) > TYPE_BYTES - 1:
        raise LimeError(f"a LIME record type must be 1..{TYPE_BYTES - 1} ASCII characters without NUL; got {value!r}")


@typing.final
@attrs.frozen
class LimeRecord:
    """One record: its type string, its data (without padding) and its message flags."""

    type: str = attrs.field(validator=_check_type)
    data: bytes = attrs.field(validator=attrs.validators.instance_of(bytes), repr=lambda d: f"<{len(d)} bytes>")
    mb: bool = True
    me: bool = True


def _padding(n: int) -> int:
    return -n % 8


def encode_lime(messages: Sequence[Sequence[tuple[str, bytes]]]) -> list[bytes]:
    """The bytes of a LIME file holding ``messages``, each a sequence of ``(type, data)`` records (MB on
    the first, ME on the last record of each message), as chunks to write one after the other."""
    out: list[bytes] = []
    for message in messages:
        if not message:
            raise LimeError("a LIME message needs at least one record; got an empty message")
        for i, (rtype, data) in enumerate(message):
            record = LimeRecord(rtype, bytes(data), mb=i == 0, me=i == len(message) - 1)
            flags = (_MB if record.mb else 0) | (_ME if record.me else 0)
            out.append(_HEADER.pack(MAGIC, VERSION, flags, len(record.data), record.type.encode("ascii")))
            out.append(record.data)
            out.append(b"\0" * _padding(len(record.data)))
    return out


def read_lime(path: str | os.PathLike) -> list[LimeRecord]:
    """All records of a LIME file, checked: magic number and version of every header, record lengths
    against the file size (a truncated file), and MB/ME nesting of the messages. Raises `LimeError`."""
    path = Path(path)
    if not path.is_file():
        raise LimeError(f"{path}: no such LIME/ILDG file; check the path")
    buf = path.read_bytes()
    records: list[LimeRecord] = []
    pos, in_message = 0, False
    while pos < len(buf):
        n = len(records)
        if len(buf) - pos < HEADER_BYTES:
            raise LimeError(f"{path} is truncated: {len(buf) - pos} bytes at offset {pos} where LIME record {n} "
                            f"needs a {HEADER_BYTES}-byte header; copy the file again")
        magic, version, flags, length, rtype = _HEADER.unpack_from(buf, pos)
        if magic != MAGIC:
            what = "is not a LIME/ILDG file" if n == 0 else f"is damaged: record {n} at offset {pos}"
            raise LimeError(f"{path} {what}: magic number {magic:#010x}, expected {MAGIC:#010x}; give an ILDG/LIME "
                            f"file")
        if version != VERSION:
            raise LimeError(f"{path}: LIME record {n} has format version {version}; lgdiff reads version {VERSION}")
        end = pos + HEADER_BYTES + length
        if end > len(buf):
            shown = rtype.split(b"\0", 1)[0].decode("ascii", "replace")
            raise LimeError(f"{path} is truncated: LIME record {n} ({shown}) "
                            f"declares {length} bytes of data, the file has {len(buf) - pos - HEADER_BYTES} left; "
                            f"copy the file again")
        mb, me = bool(flags & _MB), bool(flags & _ME)
        if mb == in_message:
            raise LimeError(f"{path}: LIME record {n} has MB={int(mb)} but a message is "
                            f"{'still open' if in_message else 'not open'}; the file is damaged")
        try:
            name = rtype.split(b"\0", 1)[0].decode("ascii")
            records.append(LimeRecord(name, buf[pos + HEADER_BYTES:end], mb=mb, me=me))
        except (UnicodeDecodeError, LimeError):
            raise LimeError(f"{path}: LIME record {n} has an invalid type string {rtype!r}; the file is damaged") from None
        in_message = not me
        pos = end + _padding(length)
    if not records:
        raise LimeError(f"{path} is empty; give an ILDG/LIME file")
    if in_message:
        raise LimeError(f"{path}: the last LIME message has no ME record; the file is truncated, copy it again")
    return records
