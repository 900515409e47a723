"""ILDG / LIME files: record headers by hand, layout shared with NERSC, round trips, corrupt files."""

import re
import struct
import xml.etree.ElementTree as ET
import zlib

import numpy as np
import pytest
import torch

import lgdiff
from lgdiff import IldgError, Lattice, LinkField, SU, checks, read_ildg, read_lime, write_ildg, write_nersc
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
        (0x8000, "ildg-format"), (0x0000, "ildg-binary-data"), (0x0000, "scidac-checksum"),
        (0x4000, "ildg-data-lfn"), (0xC000, "lgdiff-metadata")]  # MB on the first record of a message, ME on the last
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
    assert info["records"] == ["ildg-format", "ildg-binary-data", "scidac-checksum"]
    assert info["lfn"] is None and info["metadata"] == {} and info["checksum"] == "verified"
    assert bool((V.data == torch.eye(3, dtype=V.data.dtype)).all())


def test_foreign_file_without_scidac_checksum_is_read(tmp_path, generator):
    # the ILDG standard does not require the SciDAC checksum: a file without one is read, and says so
    path = tmp_path / "a.lime"
    write_ildg(path, LinkField.random(SU3, Lattice(shape=(2, 2, 2, 2)), batch=1, generator=generator))
    kept = [[(r.type, r.data) for r in read_lime(path) if r.type != "scidac-checksum"]]
    path.write_bytes(b"".join(encode_lime(kept)))
    _, info = read_ildg(path)
    assert info["checksum"] == "absent" and info["records"] == ["ildg-format", "ildg-binary-data"]


# ---- an independent reader, from the LIME and SciDAC definitions (struct, zlib, numpy) ------------------

def rotl32(x, n):
    return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF if n else x


def read_ildg_by_spec(path):
    """{record type: data} of a LIME file, and the SciDAC checksum (suma, sumb) of its ildg-binary-data,
    computed as the standard defines it: for each site, rank r = x + Lx (y + Ly (z + Lz t)), the crc32
    of the site's bytes (its four links, as stored) rotated left by r % 29 (suma) and r % 31 (sumb), all
    XORed together. One plain loop over the sites."""
    raw = path.read_bytes()
    records, pos = {}, 0
    while pos < len(raw):
        magic, version, flags, length = struct.unpack(">IHHQ", raw[pos:pos + 16])
        assert magic == 0x456789AB and version == 1
        rtype = raw[pos + 16:pos + 144].split(b"\0")[0].decode()
        records[rtype] = raw[pos + 144:pos + 144 + length]
        pos += 144 + length + (-length % 8)
    ns = {"ildg": "http://www.lqcd.org/ildg"}
    fmt = ET.fromstring(records["ildg-format"])
    dims = [int(fmt.find(f"ildg:{k}", ns).text) for k in ("lx", "ly", "lz", "lt")]
    bytes_per_site = 4 * 9 * 2 * int(fmt.find("ildg:precision", ns).text) // 8
    data = records["ildg-binary-data"]
    assert len(data) == bytes_per_site * int(np.prod(dims))
    suma = sumb = 0
    for rank in range(int(np.prod(dims))):
        crc = zlib.crc32(data[rank * bytes_per_site:(rank + 1) * bytes_per_site])
        suma ^= rotl32(crc, rank % 29)
        sumb ^= rotl32(crc, rank % 31)
    return records, (suma, sumb)


@pytest.mark.parametrize("precision", ["single", "double"])
def test_scidac_checksum_agrees_with_an_independent_reader(tmp_path, generator, precision):
    path = tmp_path / "cfg.lime"
    write_ildg(path, LinkField.random(SU3, Lattice(shape=(4, 2, 6, 8)), batch=1, generator=generator),
               precision=precision)
    records, (suma, sumb) = read_ildg_by_spec(path)
    root = ET.fromstring(records["scidac-checksum"])
    assert root.tag == "scidacChecksum" and root.find("version").text == "1.0"
    assert (int(root.find("suma").text, 16), int(root.find("sumb").text, 16)) == (suma, sumb)
    assert suma != sumb  # 384 sites: the two rotations differ


def test_scidac_checksum_known_answer_unit_gauge(tmp_path):
    # every site holds the same bytes, so one crc c; over 16 sites suma = XOR_r rotl(c, r) for r < 16 = sumb
    path = tmp_path / "unit.lime"
    write_ildg(path, LinkField.identity(SU3, Lattice(shape=(2, 2, 2, 2)), batch=1))
    site = struct.pack(">72d", *([1.0 if (c == r and part == 0) else 0.0
                                  for r in range(3) for c in range(3) for part in (0, 1)] * 4))
    c = zlib.crc32(site)
    want = 0
    for r in range(16):
        want ^= rotl32(c, r)
    root = ET.fromstring(next(r.data for r in read_lime(path) if r.type == "scidac-checksum"))
    assert int(root.find("suma").text, 16) == want == int(root.find("sumb").text, 16)


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
    # 24 sites x 4 links x 18 numbers x 8 bytes = 13824 bytes of binary data, then the 296 bytes of the
    # scidac-checksum record
    good_file.write_bytes(good_file.read_bytes()[:-400])
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
    # a file without scidac-checksum (nothing else would catch it) whose first link is not unitary
    records = [(r.type, r.data) for r in read_lime(good_file) if r.type != "scidac-checksum"]
    records[1] = (records[1][0], struct.pack(">d", 2.0) + records[1][1][8:])  # Re U[0, 0] of the first link
    good_file.write_bytes(b"".join(encode_lime([records])))
    with pytest.raises(IldgError, match=r"links are not in SU\(3\).* at \(mu, x, y, z, t\) = \(0, 0, 0, 0, 0\)"):
        read_ildg(good_file)


def test_corrupt_data_fails_the_scidac_checksum(good_file):
    raw = bytearray(good_file.read_bytes())
    start = record_layout(bytes(raw))[1][0] + 144
    raw[start + 7] ^= 0x01  # the last mantissa bit of Re U[0, 0] of the first link: still unitary
    good_file.write_bytes(bytes(raw))
    with pytest.raises(IldgError, match=r"scidac-checksum mismatch: the file says suma [0-9a-f]+ sumb [0-9a-f]+, "
                                        r"the data give suma [0-9a-f]+ sumb [0-9a-f]+; the file is corrupt"):
        read_ildg(good_file)


def test_corrupt_checksum_record(good_file):
    raw = good_file.read_bytes()
    at = raw.index(b"<suma>") + len(b"<suma>")
    good_file.write_bytes(raw[:at] + (b"0" if raw[at:at + 1] != b"0" else b"1") + raw[at + 1:])
    with pytest.raises(IldgError, match="scidac-checksum mismatch"):
        read_ildg(good_file)
    good_file.write_bytes(raw.replace(b"<suma>", b"<sumx>").replace(b"</suma>", b"</sumx>"))
    with pytest.raises(IldgError, match=r"the scidac-checksum record needs <suma> and <sumb> hex numbers"):
        read_ildg(good_file)


@pytest.mark.parametrize(("value", "match"), [
    (float("nan"), r"links are not finite \(NaN or inf\) at \(mu, x, y, z, t\) = \(3, 1, 0, 0, 0\)"),
    (1.5, r"links are not in SU\(3\): .* at \(mu, x, y, z, t\) = \(3, 1, 0, 0, 0\)"),
])
def test_write_refuses_links_off_the_group(tmp_path, generator, value, match):
    U = LinkField.random(SU3, Lattice(shape=(2, 2, 2, 2)), batch=1, generator=generator)
    data = U.data.clone()
    data[0, 3, 1, 0, 0, 0, 1, 1] = value
    with checks(False), pytest.raises(IldgError, match=match):  # as in a run: value checks are off by default
        write_ildg(tmp_path / "x.lime", LinkField(data, SU3, U.lattice))
    assert not list(tmp_path.iterdir())


def test_single_precision_links_written_in_double_are_read_back(tmp_path, generator):
    U = LinkField.random(SU3, Lattice(shape=(2, 2, 2, 2)), batch=1, generator=generator, dtype=torch.complex64)
    with checks(False):  # as in a run
        write_ildg(tmp_path / "c64.lime", U, precision="double")
    V, _ = read_ildg(tmp_path / "c64.lime")
    torch.testing.assert_close(V.data, U.data.to(torch.complex128), rtol=0, atol=1e-6)
    assert float(SU3.membership_error(V.data).max()) < 1e-13


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
