"""NERSC gauge files: known bytes and checksums, axis mapping, bit-exact round trips, corrupt files."""

import cmath
import struct

import numpy as np
import pytest
import torch

import lgdiff
from lgdiff import (GaugeTransform, Lattice, LinkField, NerscError, SU, U1, checks, mean_plaquette, read_nersc,
                    write_nersc)

SU3 = SU(3)


def split(path):
    """(header text, data bytes) of a NERSC file, split by hand at END_HEADER."""
    raw = path.read_bytes()
    cut = raw.index(b"END_HEADER\n") + len(b"END_HEADER\n")
    return raw[:cut].decode("ascii"), raw[cut:]


def header_value(text, key):
    return next(line.split("=", 1)[1].strip() for line in text.splitlines() if line.startswith(key + " "))


def replace_header(path, old, new):
    raw = path.read_bytes()
    assert raw.count(old.encode()) == 1
    path.write_bytes(raw.replace(old.encode(), new.encode()))


# ---- known answers ------------------------------------------------------------------------------

@pytest.mark.parametrize(("precision", "storage", "one_word_sum", "ones_per_link"), [
    ("single", "3x3", 0x3F800000, 3),  # 1.0f = 0x3f800000; a 3x3 unit matrix stores three 1.0
    ("single", "3x2", 0x3F800000, 2),  # 3x2 storage: only the two stored rows count
    ("double", "3x3", 0x3FF00000, 3),  # 1.0 = 0x3ff00000_00000000: halves 0x3ff00000 and 0
])
def test_unit_gauge_header_and_checksum_by_hand(tmp_path, precision, storage, one_word_sum, ones_per_link):
    U = LinkField.identity(SU3, Lattice(shape=(2, 2, 2, 2)), batch=1)
    path = tmp_path / "unit.nersc"
    write_nersc(path, U, precision=precision, storage=storage)
    text, data = split(path)
    n_links = 2 ** 4 * 4
    assert header_value(text, "CHECKSUM") == f"{(n_links * ones_per_link * one_word_sum) % 2**32:x}"
    assert float(header_value(text, "PLAQUETTE")) == 1.0
    assert float(header_value(text, "LINK_TRACE")) == 1.0
    assert header_value(text, "DATATYPE") == {"3x3": "4D_SU3_GAUGE_3x3", "3x2": "4D_SU3_GAUGE"}[storage]
    assert header_value(text, "FLOATING_POINT") == ("IEEE32BIG" if precision == "single" else "IEEE64BIG")
    rows = 3 if storage == "3x3" else 2
    one_link = [1.0 if (c == r and part == 0) else 0.0 for r in range(rows) for c in range(3) for part in (0, 1)]
    fmt = ">" + ("f" if precision == "single" else "d") * len(one_link)
    assert data == struct.pack(fmt, *one_link) * n_links
    V, header = read_nersc(path)
    assert V.data.dtype == (torch.complex64 if precision == "single" else torch.complex128)
    assert bool((V.data == torch.eye(3, dtype=V.data.dtype)).all())
    assert header["DIMENSION_4"] == "2"


def phase_links(shape):
    """U_mu(x) = diag(e^{i theta}, e^{-i theta}, 1) with theta = 0.001 * (position of the link in NERSC
    order: mu fastest, then x, y, z, t), built with plain loops."""
    Lx, Ly, Lz, Lt = shape
    data = torch.zeros((1, 4, *shape, 3, 3), dtype=torch.complex128)
    for t in range(Lt):
        for z in range(Lz):
            for y in range(Ly):
                for x in range(Lx):
                    for mu in range(4):
                        k = mu + 4 * (x + Lx * (y + Ly * (z + Lz * t)))
                        data[0, mu, x, y, z, t] = torch.diag(torch.tensor(
                            [cmath.exp(0.001j * k), cmath.exp(-0.001j * k), 1.0], dtype=torch.complex128))
    return LinkField(data, SU3, Lattice(shape=shape))


def test_axis_mapping_x_fastest_then_mu(tmp_path):
    shape = (2, 3, 4, 5)
    path = tmp_path / "phase.nersc"
    write_nersc(path, phase_links(shape), endian="little")
    text, data = split(path)
    assert [header_value(text, f"DIMENSION_{k}") for k in range(1, 5)] == ["2", "3", "4", "5"]
    values = np.frombuffer(data, dtype="<f8").reshape(-1, 18)  # one row per link, in file order
    k = np.arange(values.shape[0])
    np.testing.assert_array_equal(values[:, 0], np.cos(0.001 * k))  # U[0, 0] = e^{i theta_k}
    np.testing.assert_array_equal(values[:, 1], np.sin(0.001 * k))
    np.testing.assert_array_equal(values[:, 8], np.cos(-0.001 * k))  # U[1, 1] = e^{-i theta_k}: entry 4 (re, im)
    np.testing.assert_array_equal(values[:, 9], np.sin(-0.001 * k))


# ---- an independent reader, from the format's definition (numpy only, float64 throughout) ---------------

def read_nersc_by_spec(path):
    """(header, links [Lt, Lz, Ly, Lx, 4, 3, 3] complex128) of a NERSC file, following the format's
    definition: KEY = VALUE lines up to END_HEADER, then x-fastest sites, per site mu = 0..3, per link
    the stored rows of (re, im) pairs; a 3x2 link's third row is conj(row0 x row1)."""
    text, data = split(path)
    header = {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in text.splitlines()[1:-1])}
    fp = header["FLOATING_POINT"]
    dtype = ("<" if fp.endswith("LITTLE") else ">") + ("f4" if fp.startswith("IEEE32") else "f8")
    rows = {"4D_SU3_GAUGE_3x3": 3, "4D_SU3_GAUGE": 2}[header["DATATYPE"]]
    dims = [int(header[f"DIMENSION_{k}"]) for k in range(1, 5)]
    words = np.frombuffer(data, dtype=dtype)
    checksum = int(words.astype(dtype.replace(">", "<")).view("<u4").sum(dtype=np.uint64)) % 2**32
    pairs = words.astype(np.float64).reshape(*dims[::-1], 4, rows, 3, 2)
    u = pairs[..., 0] + 1j * pairs[..., 1]
    if rows == 2:
        u = np.concatenate([u, np.conj(np.cross(u[..., 0, :], u[..., 1, :]))[..., None, :]], axis=-2)
    return header, u, checksum


def plaquette_by_spec(u):
    """<Re tr U_p / 3> over the six planes, U_p = U_mu(x) U_nu(x + mu) U_mu(x + nu)^dag U_nu(x)^dag;
    direction mu runs along array axis 3 - mu of [t, z, y, x]."""
    dag = lambda m: np.conj(np.swapaxes(m, -1, -2))  # noqa: E731
    total = 0.0
    for mu in range(4):
        for nu in range(mu + 1, 4):
            u_mu, u_nu = u[..., mu, :, :], u[..., nu, :, :]
            p = u_mu @ np.roll(u_nu, -1, axis=3 - mu) @ dag(np.roll(u_mu, -1, axis=3 - nu)) @ dag(u_nu)
            total += np.trace(p, axis1=-2, axis2=-1).real.mean() / 3
    return total / 6


@pytest.mark.parametrize("storage", ["3x3", "3x2"])
@pytest.mark.parametrize("precision", ["single", "double"])
def test_header_agrees_with_an_independent_float64_reader(tmp_path, generator, precision, storage):
    # external readers (PyQUDA, Grid) recompute PLAQUETTE and LINK_TRACE in double precision from the stored
    # numbers: a header computed in single-precision arithmetic is off by ~1e-8 and refused
    U = LinkField.random(SU3, Lattice(shape=(4, 4, 4, 4)), batch=1, generator=generator)
    path = tmp_path / "cfg.nersc"
    write_nersc(path, U, precision=precision, storage=storage)
    header, u, checksum = read_nersc_by_spec(path)
    assert int(header["CHECKSUM"], 16) == checksum
    assert abs(float(header["PLAQUETTE"]) - plaquette_by_spec(u)) < 1e-13
    assert abs(float(header["LINK_TRACE"]) - np.trace(u, axis1=-2, axis2=-1).real.mean() / 3) < 1e-13
    assert abs(plaquette_by_spec(u) - float(mean_plaquette(U)[0])) < 1e-6  # the reader reads what was written


def test_independent_plaquette_is_lgdiffs_on_double_data(generator):
    # the test's own reference against lgdiff's mean_plaquette, on the same float64 links
    U = LinkField.random(SU3, Lattice(shape=(2, 3, 4, 5)), batch=1, generator=generator)
    u = U.data[0].permute(4, 3, 2, 1, 0, 5, 6).numpy()
    assert abs(plaquette_by_spec(u) - float(mean_plaquette(U)[0])) < 1e-14


# ---- round trips --------------------------------------------------------------------------------

@pytest.mark.parametrize("storage", ["3x3", "3x2"])
@pytest.mark.parametrize("endian", ["big", "little"])
@pytest.mark.parametrize("precision", ["single", "double"])
def test_round_trip(tmp_path, generator, precision, endian, storage):
    U = LinkField.random(SU3, Lattice(shape=(2, 2, 2, 4)), batch=1, generator=generator)
    path = tmp_path / "cfg.nersc"
    write_nersc(path, U, precision=precision, storage=storage, endian=endian, ensemble_id="test-ens",
                sequence_number=42, beta=5.7)
    V, header = read_nersc(path)
    want = U.data.to(torch.complex64) if precision == "single" else U.data
    assert V.data.dtype == want.dtype and V.lattice == U.lattice and V.group == SU3
    # stored rows are bit exact (single: the float32-rounded input); a 3x2 file rebuilds the third row
    assert torch.equal(V.data[..., :2, :], want[..., :2, :])
    if storage == "3x3":
        assert torch.equal(V.data, want)
    else:
        torch.testing.assert_close(V.data[..., 2, :], want[..., 2, :], rtol=0,
                                   atol=1e-6 if precision == "single" else 1e-14)
    assert header["ENSEMBLE_ID"] == "test-ens" and header["SEQUENCE_NUMBER"] == "42" and header["BETA"] == "5.7"
    assert abs(float(header["PLAQUETTE"]) - float(mean_plaquette(U)[0])) < (1e-6 if precision == "single" else 1e-14)
    assert header["FLOATING_POINT"] == f"IEEE{32 if precision == 'single' else 64}{endian.upper()}"


def test_gauge_transformed_unit_gauge_keeps_plaquette_one(tmp_path, generator):
    lattice = Lattice(shape=(2, 2, 2, 2))
    omega = GaugeTransform.random(SU3, lattice, batch=1, generator=generator)
    U = LinkField.identity(SU3, lattice, batch=1).gauge_transform(omega)
    path = tmp_path / "pure_gauge.nersc"
    header = write_nersc(path, U, precision="single")
    assert abs(float(header["PLAQUETTE"]) - 1.0) < 1e-6
    V, _ = read_nersc(path)
    assert abs(float(mean_plaquette(V)[0]) - 1.0) < 1e-6


def test_writing_leaves_only_the_target(tmp_path):
    write_nersc(tmp_path / "a.nersc", LinkField.identity(SU3, Lattice(shape=(2, 2, 2, 2)), batch=1))
    assert [p.name for p in tmp_path.iterdir()] == ["a.nersc"]


def test_header_printed_with_few_digits_is_accepted_but_a_wrong_value_is_not(tmp_path, generator):
    U = LinkField.random(SU3, Lattice(shape=(2, 2, 2, 2)), batch=1, generator=generator)
    path = tmp_path / "cfg.nersc"
    header = write_nersc(path, U)
    replace_header(path, f"PLAQUETTE = {header['PLAQUETTE']}", f"PLAQUETTE = {float(header['PLAQUETTE']):.6f}")
    read_nersc(path)  # six printed digits: allowed difference 1e-6
    replace_header(path, f"PLAQUETTE = {float(header['PLAQUETTE']):.6f}",
                   f"PLAQUETTE = {float(header['PLAQUETTE']) + 3e-4:.6f}")
    with pytest.raises(NerscError, match=r"PLAQUETTE mismatch: the header says .*allowed difference 1e-06"):
        read_nersc(path)


# ---- bad input ----------------------------------------------------------------------------------

@pytest.fixture
def good_file(tmp_path, generator):
    U = LinkField.random(SU3, Lattice(shape=(2, 2, 2, 2)), batch=1, generator=generator)
    path = tmp_path / "cfg.nersc"
    write_nersc(path, U, precision="single")
    return path


def test_bad_checksum(good_file):
    text, data = split(good_file)
    flipped = bytearray(data)
    flipped[5] ^= 0x01  # one low mantissa bit: still unitary within single precision
    good_file.write_bytes(text.encode() + bytes(flipped))
    with pytest.raises(NerscError, match="checksum mismatch: the header says [0-9a-f]+, the data sum to"):
        read_nersc(good_file)


def test_truncated_data(good_file):
    # 2^4 sites x 4 links x 18 numbers x 4 bytes = 4608 bytes of data
    good_file.write_bytes(good_file.read_bytes()[:-8])
    with pytest.raises(NerscError, match=r"is truncated: DIMENSION_1..4 = \(2, 2, 2, 2\) .* need 4608 bytes .* has 4600"):
        read_nersc(good_file)


def test_non_unitary_links_with_consistent_checksum(good_file):
    text, data = split(good_file)
    values = np.frombuffer(data, dtype=">f4").copy()
    values[0] *= 1.5  # Re U[0, 0] of the first link
    old_sum = header_value(text, "CHECKSUM")
    new_sum = f"{int(values.astype('<f4').view('<u4').sum(dtype=np.uint64)) % 2**32:x}"
    good_file.write_bytes(text.replace(f"CHECKSUM = {old_sum}", f"CHECKSUM = {new_sum}").encode() + values.tobytes())
    with pytest.raises(NerscError, match=r"links are not in SU\(3\).* at \(mu, x, y, z, t\) = \(0, 0, 0, 0, 0\)"):
        read_nersc(good_file)


@pytest.mark.parametrize(("old", "new", "match"), [
    ("DIMENSION_4 = 2", "DIMENSION_4 = 1", "has a header that does not match its data: DIMENSION_1..4 = \\(2, 2, 2, 1\\)"),
    ("DATATYPE = 4D_SU3_GAUGE_3x3", "DATATYPE = 4D_SU2_GAUGE", "DATATYPE = '4D_SU2_GAUGE' is not supported"),
    ("FLOATING_POINT = IEEE32BIG", "FLOATING_POINT = VAX", "FLOATING_POINT = 'VAX' is not one of IEEE32BIG"),
    ("DIMENSION_2 = 2", "DIMENSION_2 = -2", "needs DIMENSION_2 = a positive int; got '-2'"),
], ids=["dims", "datatype", "floating_point", "negative_dim"])
def test_bad_header(good_file, old, new, match):
    replace_header(good_file, old, new)
    with pytest.raises(NerscError, match=match):
        read_nersc(good_file)


def test_foreign_file(tmp_path):
    png = tmp_path / "image.nersc"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(NerscError, match="is not a NERSC gauge file: it does not start with BEGIN_HEADER"):
        read_nersc(png)


def test_missing_file(tmp_path):
    with pytest.raises(NerscError, match="no such NERSC file"):
        read_nersc(tmp_path / "nope.nersc")


@pytest.mark.parametrize(("group", "shape", "batch", "match"), [
    (SU(2), (2, 2, 2, 2), 1, r"hold SU\(3\) links on a 4D lattice; got SU\(2\)"),
    (U1(), (2, 2, 2, 2), 1, r"hold SU\(3\) links on a 4D lattice; got U\(1\)"),
    (SU3, (2, 2), 1, r"on a 4D lattice; got SU\(3\) on L=\(2, 2\)"),
    (SU3, (2, 2, 2, 2), 2, "holds one configuration; got a LinkField of batch 2"),
])
def test_write_refuses_other_groups_dims_and_batches(tmp_path, group, shape, batch, match):
    with pytest.raises(ValueError, match=match):
        write_nersc(tmp_path / "x.nersc", LinkField.identity(group, Lattice(shape=shape), batch=batch))
    assert not list(tmp_path.iterdir())


def test_write_refuses_unknown_options(tmp_path):
    U = LinkField.identity(SU3, Lattice(shape=(2, 2, 2, 2)), batch=1)
    with pytest.raises(NerscError, match="precision must be 'single' or 'double'; got 'half'"):
        write_nersc(tmp_path / "x.nersc", U, precision="half")
    with pytest.raises(NerscError, match="storage must be '3x3' or '3x2'; got '2x3'"):
        write_nersc(tmp_path / "x.nersc", U, storage="2x3")
    assert not list(tmp_path.iterdir())


# ---- what is written must be a gauge field the readers accept --------------------------------------------

def spoiled(generator, how):
    """Random SU(3) links with the link (mu, x, y, z, t) = (1, 0, 1, 0, 0) made NaN or scaled off the group."""
    U = LinkField.random(SU3, Lattice(shape=(2, 2, 2, 2)), batch=1, generator=generator)
    data = U.data.clone()
    data[0, 1, 0, 1, 0, 0] = float("nan") if how == "nan" else 1.5 * data[0, 1, 0, 1, 0, 0]
    with checks(False):
        return LinkField(data, SU3, U.lattice)


@pytest.mark.parametrize(("how", "match"), [
    ("nan", r"links are not finite \(NaN or inf\) at \(mu, x, y, z, t\) = \(1, 0, 1, 0, 0\)"),
    ("scaled", r"links are not in SU\(3\): .* at \(mu, x, y, z, t\) = \(1, 0, 1, 0, 0\)"),
])
def test_write_refuses_links_off_the_group(tmp_path, generator, how, match):
    with checks(False), pytest.raises(NerscError, match=match):  # as in a run: value checks are off by default
        write_nersc(tmp_path / "x.nersc", spoiled(generator, how))
    assert not list(tmp_path.iterdir())


def test_single_precision_links_written_in_double_are_read_back(tmp_path, generator):
    # complex64 links are unitary to ~1e-7: as IEEE64 data they must still pass the double-precision check
    U = LinkField.random(SU3, Lattice(shape=(2, 2, 2, 2)), batch=1, generator=generator, dtype=torch.complex64)
    path = tmp_path / "c64.nersc"
    with checks(False):  # as in a run
        write_nersc(path, U, precision="double")
    V, header = read_nersc(path)
    assert V.data.dtype == torch.complex128
    torch.testing.assert_close(V.data, U.data.to(torch.complex128), rtol=0, atol=1e-6)
    assert float(SU3.membership_error(V.data).max()) < 1e-13


def test_public_api():
    assert lgdiff.read_nersc is read_nersc and issubclass(lgdiff.NerscError, ValueError)
