"""The safetensors reader: every file the format does not allow is refused with a
CheckpointError, and it agrees with the `safetensors` package (a test dependency) on which
files are valid, case by case and under a fuzz of headers and bytes."""
import json
import re
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganforge import io

from .conftest import import_reference

safetensors_numpy = import_reference("safetensors.numpy", "pip install safetensors")
OURS = sorted(io._DTYPES)
PACKAGE_ONLY = {"BF16", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "C64", "F4", "F6_E2M3", "F6_E3M2", "E8M0",
                "F8_E8M0"}  # dtypes the package reads and NumPy has no type for


def file_of(header, data=b""):
    encoded = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


def verdicts(raw, tmp_path):
    """(ours, the package's): each None if it accepts the file, else the error."""
    path = tmp_path / "t.safetensors"
    path.write_bytes(raw)
    results = []
    for load in (lambda: io.load_tensors(str(path)), lambda: safetensors_numpy.load(raw)):
        try:
            loaded = load()
            results.append((None, loaded))
        except Exception as exc:  # the package raises its own error type
            results.append((exc, None))
    (ours, ours_loaded), (theirs, theirs_loaded) = results
    if ours is not None:
        assert isinstance(ours, io.CheckpointError), f"{type(ours).__name__}: {ours}"
        assert str(path) in str(ours)
    if ours is None and theirs is None:
        assert set(ours_loaded) == set(theirs_loaded)
        for name, array in theirs_loaded.items():
            np.testing.assert_array_equal(ours_loaded[name], array)
    return ours, theirs


F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
CASES = {
    "valid": ({"a": F32x2}, b"\0" * 8),
    "an extra key in an entry": ({"a": dict(F32x2, note=1)}, b"\0" * 8),
    "metadata": ({"__metadata__": {"k": "v"}, "a": F32x2}, b"\0" * 8),
    "null metadata": ({"__metadata__": None}, b""),
    "no tensors": ({}, b""),
    "empty tensors at one offset": ({"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
                                     "b": {"dtype": "I8", "shape": [2, 0], "data_offsets": [0, 0]}}, b""),
    "a hole before": ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8),
    "bytes after": ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 8),
    "overlap": ({"a": F32x2, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8),
    "past the end": ({"a": F32x2}, b"\0" * 4),
    "a list for a header": ([1, 2], b""),
    "a float in a shape": ({"a": dict(F32x2, shape=[2.0])}, b"\0" * 8),
    "a bool in a shape": ({"a": dict(F32x2, shape=[True, True])}, b"\0" * 4),
    "a string for a shape": ({"a": dict(F32x2, shape="2")}, b"\0" * 8),
    "negative offsets": ({"a": {"dtype": "F32", "shape": [0], "data_offsets": [-4, -4]}}, b""),
    "three offsets": ({"a": dict(F32x2, data_offsets=[0, 8, 8])}, b"\0" * 8),
    "offsets backwards": ({"a": {"dtype": "F32", "shape": [0], "data_offsets": [4, 0]}}, b"\0" * 4),
    "an unknown dtype": ({"a": dict(F32x2, dtype="Q9")}, b"\0" * 8),
    "no offsets": ({"a": {"dtype": "F32", "shape": [2]}}, b"\0" * 8),
    "a list for an entry": ({"a": [1]}, b""),
    "metadata of numbers": ({"__metadata__": {"k": 1}}, b""),
    "a shape too large": ({"a": {"dtype": "F32", "shape": [2**62, 4], "data_offsets": [0, 0]}}, b""),
    "the wrong size": ({"a": dict(F32x2, shape=[3])}, b"\0" * 8),
    "not UTF-8": (b"\xff\xfe{}", b""),
    "not JSON": (b"{nope", b""),
    "NaN": (b'{"a": NaN}', b""),
    "spaces around": (b"  {}  ", b""),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_reader_refuses_what_the_safetensors_package_refuses(case, tmp_path):
    header, data = CASES[case]
    ours, theirs = verdicts(file_of(header, data), tmp_path)
    assert (ours is None) == (theirs is None), f"{case}: ours {ours!r}, the package's {theirs!r}"


def test_the_errors_name_the_problem(tmp_path):
    path = tmp_path / "x.safetensors"
    for (header, data), message in [
            (CASES["overlap"], "its bytes overlap another tensor's or leave a hole"),
            (CASES["bytes after"], "the tensors cover 4 bytes of data, the file holds 8"),
            (CASES["an unknown dtype"], "tensor 'a' has dtype 'Q9', not one of"),
            (CASES["a list for a header"], "a JSON list, not an object of tensors"),
            (CASES["the wrong size"], "tensor 'a' has the wrong size for its shape [3]"),
            (CASES["not UTF-8"], "not UTF-8")]:
        path.write_bytes(file_of(header, data))
        with pytest.raises(io.CheckpointError, match=re.escape(message)):
            io.load_tensors(str(path))
    path.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(io.CheckpointError, match="more than the format allows"):
        io.load_tensors(str(path))


names = st.sampled_from(["a", "b", "c", "__metadata__"])
counts = st.integers(0, 6) | st.sampled_from([-1, 2**63])
entries = st.fixed_dictionaries(
    {"dtype": st.sampled_from(OURS + ["Q9", "f32", 3]),
     "shape": st.lists(st.integers(0, 3), max_size=3) | st.just("2") | st.lists(st.booleans(), max_size=2),
     "data_offsets": st.lists(counts, min_size=1, max_size=3)},
    optional={"note": st.integers()}) | st.none() | st.lists(st.integers(), max_size=2)


@settings(max_examples=300, deadline=None)
@given(header=st.dictionaries(names, entries, max_size=3), data_size=st.integers(0, 40))
def test_fuzzed_headers_get_the_packages_verdict(header, data_size, tmp_path_factory):
    if isinstance(header.get("__metadata__"), dict):  # metadata maps to strings in a valid file
        header["__metadata__"] = {k: str(v) for k, v in header["__metadata__"].items()}
    ours, theirs = verdicts(file_of(header, bytes(range(data_size))), tmp_path_factory.mktemp("fuzz"))
    assert (ours is None) == (theirs is None), f"{header}: ours {ours!r}, the package's {theirs!r}"


@settings(max_examples=300, deadline=None)
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.none() | st.integers(0, 10**6))
def test_fuzzed_bytes_of_a_valid_file_get_the_packages_verdict(flips, cut, tmp_path_factory):
    header = {"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
              "b": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]}}
    raw = bytearray(file_of(header, bytes(range(24))))
    for position, value in flips:
        raw[position % len(raw)] = value
    raw = bytes(raw if cut is None else raw[:cut % (len(raw) + 1)])
    ours, theirs = verdicts(raw, tmp_path_factory.mktemp("fuzz"))
    if ours is not None and theirs is None and any(dtype.encode() in raw for dtype in PACKAGE_ONLY):
        return  # a flip made a dtype that only the package reads (NumPy has no bfloat16)
    assert (ours is None) == (theirs is None), f"{raw!r}: ours {ours!r}, the package's {theirs!r}"
