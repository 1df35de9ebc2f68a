"""The IDX format of MNIST and Fashion-MNIST: a big-endian header (two zero bytes, a
type code, the number of dimensions, then each dimension as a 32-bit integer) followed
by the raw values. Files may be gzipped."""
import gzip

import numpy as np

_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataFormatError(ValueError):
    """A data file is not what it claims to be (wrong magic number, truncated, wrong shape)."""


def read_idx(path):
    """The array stored in an IDX file (raw or .gz), with its magic number and size checked."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:  # a broken gzip stream lands here
        raise DataFormatError(f"{path}: cannot be read as {'gzip' if opener is gzip.open else 'a file'} "
                              f"({exc}); the file is corrupt or truncated: reinstall or download it again") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        magic = data[:4].hex() if len(data) >= 4 else "(file shorter than 4 bytes)"
        raise DataFormatError(f"{path}: not an IDX file (magic bytes {magic}, expected 0000 followed by a type "
                              "code and a dimension count)")
    dtype, ndim = np.dtype(_TYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise DataFormatError(f"{path}: the header promises shape {shape} ({expected} bytes in all) but the "
                              f"file has {len(data)} bytes: it is truncated or corrupt")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B, np.dtype(np.int32): 0x0C,
          np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def write_idx(path, array):
    """Write an array as an IDX file (gzipped if the name ends in .gz)."""
    array = np.asarray(array)
    if array.dtype not in _CODES:
        raise TypeError(f"IDX cannot store {array.dtype}; use one of {', '.join(map(str, _CODES))}")
    header = bytes([0, 0, _CODES[array.dtype], array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(array.dtype.newbyteorder(">")).tobytes())
