"""ILDG / LIME files: record headers by hand, layout shared with NERSC, round trips, corrupt files."""

import re
import struct

import pytest
import torch

import lgdiff
from lgdiff import IldgError, Lattice, LinkField, SU, read_ildg, read_lime, write_ildg, write_nersc
from lgdiff._io.lime import encode_lime

SU3 = SU(3)


def record_layout(raw):
    """[(offset, flags, length, type)] of every LIME record, parsed by hand from the bytes."""
    out, pos = [], 0
    while pos < len(raw):
        magic, version, flags, length = struct.unpack(">IHHQ", raw[pos:pos + 16])
        assert (magic, version) == (0x456789AB, 1)
        out.append((pos, flags, length, raw[pos + 16:pos + 144].rstrip(b"\0").decode()))
        pos += 144 + length + (-length % 8)
    return out


def test_lime_records_by_hand(tmp_path, generator):
    U = LinkField.random(SU3, Lattice(shape=(2, 3, 4, 5)), batch=1, generator=generator)
    path = tmp_path / "cfg.lime"
    write_ildg(path, U, lfn="lfn://ildg/test/cfg", metadata={"beta": 6.0})
    raw = path.read_bytes()
    layout = record_layout(raw)
    assert [(flags, rtype) for _, flags, _, rtype in layout] == [
        (0x8000, "ildg-format"), (0x0000, "ildg-binary-data"), (0x4000, "ildg-data-lfn"),
        (0xC000, "lgdiff-metadata")]  # MB on the first record of a message, ME on the last
    assert all(offset % 8 == 0 for offset, *_ in layout)
    assert layout[1][2] == 2 * 3 * 4 * 5 * 4 * 9 * 2 * 8  # complex128 3x3 per link
    xml = raw[layout[0][0] + 144:layout[0][0] + 144 + layout[0][2]].decode()
    assert [re.search(f"<{k}>(\\d+)</{k}>", xml).group(1) for k in ("lx", "ly", "lz", "lt")] == ["2", "3", "4", "5"]
    assert "<field>su3gauge</field>" in xml and "<precision>64</precision>" in xml
    assert len(raw) == layout[-1][0] + 144 + layout[-1][2] + (-layout[-1][2] % 8)


@pytest.mark.parametrize("precision", ["single", "double"])
def test_binary_data_is_nersc_3x3_big_endian(tmp_path, generator, precision):
    # both formats specify [t][z][y][x][mu][row][col] big-endian complex: the bytes must agree
    U = LinkField.random(SU3, Lattice(shape=(2, 3, 2, 3)), batch=1, generator=generator)
    write_ildg(tmp_path / "a.ildg", U, precision=precision)
    write_nersc(tmp_path / "a.nersc", U, precision=precision, storage="3x3", endian="big")
    binary = next(r.data for r in read_lime(tmp_path / "a.ildg") if r.type == "ildg-binary-data")
    nersc = (tmp_path / "a.nersc").read_bytes()
    assert binary == nersc[nersc.index(b"END_HEADER\n") + 11:]


@pytest.mark.parametrize("precision", ["single", "double"])
def test_round_trip_bit_exact(tmp_path, generator, precision):
    U = LinkField.random(SU3, Lattice(shape=(2, 2, 3, 2)), batch=1, generator=generator)
    write_ildg(tmp_path / "c.lime", U, precision=precision, lfn="lfn://x",
               metadata={"beta": 5.7, "sequence_number": 12, "ensemble_id": "e1"})
    V, info = read_ildg(tmp_path / "c.lime")
    want = U.data.to(torch.complex64) if precision == "single" else U.data
    assert torch.equal(V.data, want) and V.lattice == U.lattice
    assert info["precision"] == precision and info["dims"] == (2, 2, 3, 2) and info["lfn"] == "lfn://x"
    assert info["metadata"] == {"beta": 5.7, "sequence_number": 12, "ensemble_id": "e1"}


def test_minimal_file_without_optional_records(tmp_path):
    U = LinkField.identity(SU3, Lattice(shape=(2, 2, 2, 2)), batch=1)
    write_ildg(tmp_path / "m.lime", U)
    V, info = read_ildg(tmp_path / "m.lime")
    assert info["records"] == ["ildg-format", "ildg-binary-data"] and info["lfn"] is None and info["metadata"] == {}
    assert bool((V.data == torch.eye(3, dtype=V.data.dtype)).all())


# ---- bad input ----------------------------------------------------------------------------------

@pytest.fixture
def good_file(tmp_path, generator):
    path = tmp_path / "cfg.lime"
    write_ildg(path, LinkField.random(SU3, Lattice(shape=(2, 2, 2, 3)), batch=1, generator=generator))
    return path


def test_foreign_file(tmp_path):
    png = tmp_path / "image.lime"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    with pytest.raises(IldgError, match=r"is not a LIME/ILDG file: magic number 0x89504e47, expected 0x456789ab"):
        read_ildg(png)


def test_truncated_file(good_file):
    # 24 sites x 4 links x 18 numbers x 8 bytes = 13824 bytes of binary data
    good_file.write_bytes(good_file.read_bytes()[:-100])
    with pytest.raises(IldgError, match=r"is truncated: LIME record 1 \(ildg-binary-data\) declares 13824 bytes"):
        read_ildg(good_file)


def test_xml_dims_do_not_match_data(good_file):
    raw = good_file.read_bytes()
    good_file.write_bytes(raw.replace(b"<lt>3</lt>", b"<lt>4</lt>"))  # same length: the LIME structure stays valid
    with pytest.raises(IldgError, match=r"ildg-binary-data holds 13824 bytes, but ildg-format .* needs 18432"):
        read_ildg(good_file)


def test_not_su3gauge(good_file):
    good_file.write_bytes(good_file.read_bytes().replace(b"su3gauge", b"su2gauge"))
    with pytest.raises(IldgError, match="says field 'su2gauge'; lgdiff reads 'su3gauge'"):
        read_ildg(good_file)


def test_non_unitary_links(good_file):
    raw = bytearray(good_file.read_bytes())
    start = record_layout(bytes(raw))[1][0] + 144
    raw[start:start + 8] = struct.pack(">d", 2.0)  # Re U[0, 0] of the first link
    good_file.write_bytes(bytes(raw))
    with pytest.raises(IldgError, match=r"links are not in SU\(3\).* at \(mu, x, y, z, t\) = \(0, 0, 0, 0, 0\)"):
        read_ildg(good_file)


def test_lime_file_without_ildg_records(tmp_path):
    path = tmp_path / "other.lime"
    path.write_bytes(b"".join(encode_lime([[("scidac-private-file-xml", b"<x/>")]])))
    with pytest.raises(IldgError, match="is a LIME file but not an ILDG configuration: it has 0 'ildg-format'"):
        read_ildg(path)


def test_missing_file(tmp_path):
    with pytest.raises(IldgError, match="no such LIME/ILDG file"):
        read_ildg(tmp_path / "nope.lime")


def test_write_refuses_non_su3(tmp_path):
    with pytest.raises(ValueError, match=r"ILDG files hold SU\(3\) links on a 4D lattice; got SU\(2\)"):
        write_ildg(tmp_path / "x.lime", LinkField.identity(SU(2), Lattice(shape=(2, 2, 2, 2)), batch=1))
    assert not list(tmp_path.iterdir())


def test_public_api():
    assert lgdiff.read_ildg is read_ildg and issubclass(lgdiff.IldgError, ValueError)


def test_lime_message_nesting(tmp_path):
    # two records, the first without ME and the second with MB: a message opened twice
    chunks = encode_lime([[("a", b"12345678")], [("b", b"")]])
    header = bytearray(chunks[0])
    header[6:8] = (0x8000).to_bytes(2, "big")  # clear ME on record 0
    path = tmp_path / "nested.lime"
    path.write_bytes(bytes(header) + b"".join(chunks[1:]))
    with pytest.raises(lgdiff.LimeError, match="LIME record 1 has MB=1 but a message is still open"):
        read_lime(path)
