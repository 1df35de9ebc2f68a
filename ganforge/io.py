"""Checkpoints and pictures.

Tensors are stored in the safetensors format (a little-endian length, a JSON header,
then raw bytes; no pickle, so loading a file cannot run code), everything else in JSON
beside it. ganforge reads and writes that format itself, in a few lines, so that a
trained generator loads with NumPy alone (the `safetensors` package, where installed,
reads the same files: a test checks it).

A checkpoint is a folder, written under a temporary name and renamed into place, so a
crash never leaves a half-written one; `latest` names the newest complete checkpoint.
"""
import json
import os
import shutil
import struct
import tempfile

import numpy as np

from . import backend
from .tensor import Tensor

_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I8": np.int8, "I16": np.int16,
           "I32": np.int32, "I64": np.int64, "U8": np.uint8, "BOOL": np.bool_}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, truncated, corrupt or from another model."""


# --- safetensors ---------------------------------------------------------------------------

def save_tensors(path, tensors, metadata=None):
    """Write {name: array} (and a {str: str} metadata map) to a .safetensors file, under a
    temporary name renamed into place, so that the file is never half-written."""
    header, offset, blobs = ({"__metadata__": dict(metadata)} if metadata else {}), 0, []
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        array = array if array.flags.c_contiguous else np.ascontiguousarray(array)  # which would make a 0-d one 1-d
        if array.dtype not in _NAMES:
            raise TypeError(f"save_tensors: {name!r} has dtype {array.dtype}, which safetensors cannot store")
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _NAMES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format aligns the data to 8 bytes
    write_atomically(path, struct.pack("<Q", len(encoded)), encoded, *blobs)


MAX_HEADER_BYTES = 100_000_000  # the format's own limit, which the safetensors package enforces


def load_tensors(path):
    """{name: array} from a .safetensors file (see read_safetensors)."""
    return read_safetensors(path)[0]


def read_safetensors(path):
    """({name: array}, {str: str} metadata) from a .safetensors file. A file the format does not allow is refused
    with a CheckpointError that names the problem: a truncated file, a header that is not a
    UTF-8 JSON object, an entry without its dtype, shape or two offsets, an unknown dtype,
    a size that does not match the shape, or byte ranges that overlap, leave holes or do
    not cover the data (the `safetensors` package refuses the same files: a test checks it)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc})") from None
    if len(raw) < 8:
        raise CheckpointError(f"{path}: truncated ({len(raw)} bytes): not a complete safetensors file")
    (header_size,) = struct.unpack("<Q", raw[:8])
    if header_size > MAX_HEADER_BYTES:
        raise CheckpointError(f"{path}: the header claims {header_size} bytes, more than the format allows: "
                              "not a safetensors file, or a corrupt one")
    if 8 + header_size > len(raw):
        raise CheckpointError(f"{path}: truncated: the header claims {header_size} bytes, the file has {len(raw)}")
    entries, metadata = _header_entries(raw[8:8 + header_size], len(raw) - 8 - header_size, path)
    data = memoryview(raw)[8 + header_size:]
    return {name: np.frombuffer(data[start:end], dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
            for name, (dtype, shape, start, end) in entries.items()}, metadata or {}


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _header_entries(header_bytes, data_size, path):
    """({name: (dtype, shape, start, end)}, metadata) of a safetensors header, every rule checked."""
    def corrupt(problem):
        return CheckpointError(f"{path}: corrupt safetensors header: {problem}")

    try:
        header = json.loads(header_bytes.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise corrupt("not UTF-8") from None
    except ValueError:
        raise corrupt("not JSON") from None
    if not isinstance(header, dict):
        raise corrupt(f"a JSON {type(header).__name__}, not an object of tensors")
    metadata = header.get("__metadata__")
    if metadata is not None and not (isinstance(metadata, dict)
                                     and all(isinstance(v, str) for v in metadata.values())):
        raise corrupt("__metadata__ must map names to strings")
    entries = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
            raise corrupt(f"tensor {name!r} needs a dtype, a shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise corrupt(f"tensor {name!r} has dtype {dtype!r}, not one of {', '.join(_DTYPES)}")
        if not isinstance(shape, list) or not all(map(_is_count, shape)):
            raise corrupt(f"tensor {name!r} has shape {shape!r}, not a list of sizes")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_count, offsets)) \
                or offsets[0] > offsets[1]:
            raise corrupt(f"tensor {name!r} has data_offsets {offsets!r}, not [start, end]")
        dtype = np.dtype(_DTYPES[dtype]).newbyteorder("<")
        size = dtype.itemsize
        for extent in shape:
            size *= extent
        if size != offsets[1] - offsets[0]:
            raise CheckpointError(f"{path}: tensor {name!r} has the wrong size for its shape {shape}: the file is "
                                  "truncated or corrupt")
        entries[name] = (dtype, tuple(shape), offsets[0], offsets[1])
    # the tensors' byte ranges must tile the data exactly: no overlaps, no holes, nothing after
    position = 0
    for name, (_, _, start, end) in sorted(entries.items(), key=lambda item: item[1][2:]):
        if start != position:
            raise CheckpointError(f"{path}: tensor {name!r} starts at byte {start} of the data, where "
                                  f"{position} was expected: its bytes overlap another tensor's or leave a hole")
        position = end
    if position != data_size:
        raise CheckpointError(f"{path}: the tensors cover {position} bytes of data, the file holds {data_size}: "
                              "it is truncated or corrupt")
    return entries, metadata


# --- gf.save and gf.load ------------------------------------------------------------------------
# torch.save's habit, in safetensors: the tensors of `obj` are stored under their dotted
# paths ("G.main.0.weight"), so a state dict's file is a plain safetensors file that
# safetensors.torch.load_file reads; the rest of `obj` (nesting, numbers, strings) is JSON
# in the header's metadata, so that gf.load gives the same object back.

_STRUCTURE = "ganforge.structure"


def save(obj, path):
    """Save a tensor, or dicts, lists and tuples of tensors, arrays, numbers and strings (a
    state dict, an optimizer's, a whole training state) to a .safetensors file."""
    tensors = {}

    def encode(value, where):
        if isinstance(value, Tensor) or isinstance(value, np.ndarray) or backend.is_cupy_array(value):
            name = where or "tensor"
            if name in tensors:
                raise ValueError(f"gf.save: two tensors would both be stored as {name!r}: rename a key")
            tensors[name] = backend.to_device(value._data if isinstance(value, Tensor) else value, "cpu")
            return {"tensor": name}
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, (str, int)) or isinstance(key, bool):
                    raise TypeError(f"gf.save: dict keys must be strings or ints, got {key!r} at {where or 'the top'}")
            return {"dict": [[key, encode(v, f"{where}.{key}" if where else str(key))] for key, v in value.items()]}
        if isinstance(value, (list, tuple)):
            items = [encode(v, f"{where}.{i}" if where else str(i)) for i, v in enumerate(value)]
            return {"tuple" if isinstance(value, tuple) else "list": items}
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or isinstance(value, (bool, int, float, str)):
            return {"value": value}
        raise TypeError(f"gf.save cannot store a {type(value).__name__} (at {where or 'the top'}): save tensors, "
                        "numbers, strings, and dicts or lists of them (a module's state_dict(), not the module)")

    structure = encode(obj, "")
    save_tensors(path, tensors, {_STRUCTURE: json.dumps(structure)})


def load(path, map_location=None):
    """What gf.save stored, its tensors as Tensors (on `map_location`: "cpu" or "cuda").
    A safetensors file written by anything else loads as {name: Tensor}."""
    arrays, metadata = read_safetensors(path)
    device = map_location or "cpu"

    def decode(node):
        kind, value = next(iter(node.items()))
        if kind == "tensor":
            return Tensor(backend.to_device(arrays[value], device))
        if kind == "dict":
            return {key: decode(v) for key, v in value}
        if kind in ("list", "tuple"):
            items = [decode(v) for v in value]
            return tuple(items) if kind == "tuple" else items
        if kind == "value":
            return value
        raise KeyError(kind)

    if _STRUCTURE not in metadata:
        return {name: Tensor(backend.to_device(a, device)) for name, a in arrays.items()}
    try:
        return decode(json.loads(metadata[_STRUCTURE]))
    except (ValueError, KeyError, TypeError, AttributeError, StopIteration):
        raise CheckpointError(f"{path}: its {_STRUCTURE} metadata is corrupt: the file was not written by "
                              "gf.save, or was edited") from None


# --- checkpoints -----------------------------------------------------------------------------

def save_checkpoint(run_dir, name, tensors, state):
    """Write tensors.safetensors and state.json into run_dir/name atomically; point `latest` at it."""
    os.makedirs(run_dir, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f".{name}.", dir=run_dir)
    try:
        save_tensors(os.path.join(scratch, "tensors.safetensors"), tensors)
        with open(os.path.join(scratch, "state.json"), "w") as f:
            json.dump(state, f)
        for file in os.listdir(scratch):
            with open(os.path.join(scratch, file), "rb") as f:
                os.fsync(f.fileno())
        final = os.path.join(run_dir, name)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(scratch, final)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    write_atomically(os.path.join(run_dir, "latest"), name.encode())
    return final


def write_atomically(path, *chunks):
    """Write the bytes `chunks` to `path` under a temporary name, synced, then renamed into
    place: a crash leaves the old file or the new one, never half of one."""
    scratch = f"{path}.tmp"
    try:
        with open(scratch, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(scratch, path)
    except BaseException:
        if os.path.exists(scratch):
            os.remove(scratch)
        raise


def latest_checkpoint(run_dir):
    """The folder of the newest complete checkpoint of a run."""
    pointer = os.path.join(run_dir, "latest")
    if not os.path.exists(pointer):
        raise CheckpointError(f"{run_dir} has no checkpoint (no 'latest' file): train first, or check the path")
    with open(pointer) as f:
        name = f.read().strip()
    return os.path.join(run_dir, name)


def load_checkpoint(path):
    """(tensors, state) from a checkpoint folder (or a run folder: its latest checkpoint)."""
    if os.path.exists(os.path.join(path, "latest")):
        path = latest_checkpoint(path)
    if not os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with open(os.path.join(path, "state.json")) as f:
            state = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: state.json is missing: the checkpoint is incomplete") from None
    except ValueError:
        raise CheckpointError(f"{path}/state.json is corrupt (not valid JSON)") from None
    return load_tensors(os.path.join(path, "tensors.safetensors")), state


# --- pictures ----------------------------------------------------------------------------------

def _pillow():
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise ImportError("writing PNG files needs Pillow: pip install pillow (or ganforge[viz])") from None
    return Image, ImageDraw


def to_pixels(images):
    """Values in [-1, 1] as uint8 pixel values 0..255."""
    return np.clip((images + 1) * 127.5, 0, 255).round().astype(np.uint8)


def image_grid(images, rows=None, padding=2):
    """(N, C, H, W) images in [-1, 1] tiled into one uint8 array (H', W', C) for display."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"image_grid expects (N, 1 or 3, H, W) images, got shape {images.shape}")
    n, c, h, w = images.shape
    cols = rows if rows else int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, c), 255, dtype=np.uint8)
    pixels = to_pixels(images).transpose(0, 2, 3, 1)
    for i in range(n):
        r, q = divmod(i, cols)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        grid[top:top + h, left:left + w] = pixels[i]
    return grid


def _grid_picture(images, rows, scale):
    """image_grid's tiling as a Pillow picture, each pixel scale x scale."""
    Image, _ = _pillow()
    grid = image_grid(images, rows)
    picture = Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid)
    return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)


def save_image_grid(path, images, rows=None, scale=2):
    _grid_picture(images, rows, scale).save(path)


def save_gif(path, frames, rows=None, scale=2, seconds_per_frame=0.08):
    """An animated GIF, one image grid per frame: frames (T, N, C, H, W) in [-1, 1], looping."""
    pictures = [_grid_picture(images, rows, scale) for images in frames]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=int(seconds_per_frame * 1000),
                     loop=0)


def save_image(path, image):
    """One (C, H, W) image in [-1, 1] as a PNG (or any format Pillow knows by the extension)."""
    Image, _ = _pillow()
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"save_image expects a (1 or 3, H, W) image, got shape {image.shape}")
    pixels = to_pixels(image).transpose(1, 2, 0)
    Image.fromarray(pixels[..., 0] if image.shape[0] == 1 else pixels).save(path)


def save_scatter(path, points, means=None, extent=None, size=480):
    """A scatter plot of 2-D samples (blue) over the mixture's means (red circles)."""
    Image, ImageDraw = _pillow()
    points = np.asarray(points, dtype=np.float64)
    reference = points if means is None else np.concatenate([points, means])
    extent = extent or float(np.abs(reference).max()) * 1.15 + 1e-9
    picture = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(picture)

    def pixel(p):
        return ((p[0] + extent) / (2 * extent) * size, (extent - p[1]) / (2 * extent) * size)
    for p in points:
        x, y = pixel(p)
        draw.rectangle((x, y, x + 1, y + 1), fill=(40, 90, 200))
    for m in [] if means is None else means:
        x, y = pixel(m)
        draw.ellipse((x - 5, y - 5, x + 5, y + 5), outline=(220, 40, 40), width=2)
    picture.save(path)


def smoothed(values, weight=0.9):
    """An exponential moving average of a noisy curve, debiased at its start (as
    TensorBoard's smoothing); NaNs are skipped (a loss logged every few steps is drawn
    through), and the line ends at the curve's last value (a loss logged in one phase of a
    run only is not drawn on through the next)."""
    out, average, total = [], 0.0, 0.0
    for value in values:
        if np.isfinite(value):
            average, total = weight * average + (1 - weight) * value, weight * total + (1 - weight)
        out.append(average / total if total else np.nan)
    finite = np.flatnonzero(np.isfinite(np.asarray(values, dtype=np.float64)))
    if len(finite):
        out[finite[-1] + 1:] = [np.nan] * (len(out) - finite[-1] - 1)
    return np.array(out)


def _matplotlib_figure():
    """A matplotlib Figure drawn off-screen (no pyplot, so no GUI backend or global state),
    or None where matplotlib (the viz extra) is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure


def save_loss_curves(path, history, size=(640, 360)):
    """Each logged loss against the step, in one PNG: the raw values faint, a smoothed line
    over them, with axes, ticks and a legend (matplotlib; a plain Pillow drawing without it)."""
    Figure = _matplotlib_figure()
    if Figure is None:
        return _draw_curves_with_pillow(path, history, size)
    figure = Figure(figsize=(size[0] / 100, size[1] / 100), dpi=100, layout="constrained")
    axes = figure.subplots()
    steps = [h["step"] for h in history]
    names = list(dict.fromkeys(k for h in history for k in h if k != "step"))  # in order, from every row
    for i, key in enumerate(names):
        values = np.array([h.get(key, np.nan) for h in history], dtype=np.float64)
        color = f"C{i}"
        axes.plot(steps, values, color=color, alpha=0.25, linewidth=1)
        axes.plot(steps, smoothed(values), color=color, linewidth=2, label=key)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    if history:
        axes.legend(loc="best", fontsize="small")
    figure.savefig(path)


def save_metric_curves(path, evaluations, size=(640, 360)):
    """Each measure of `evaluations` ({"step", name: value} rows) against the step, one
    panel per measure, in one PNG (matplotlib; a plain Pillow drawing without it)."""
    Figure = _matplotlib_figure()
    if Figure is None:
        return _draw_curves_with_pillow(path, evaluations, size)
    # a measure's spread (kid_std) is drawn as its error bars, not as a panel of its own
    names = [k for k in (evaluations[0] if evaluations else {}) if k != "step" and not k.endswith("_std")]
    columns = 2 if len(names) == 4 else min(len(names), 3) or 1
    rows = -(-len(names) // columns) or 1
    figure = Figure(figsize=(size[0] / 100, size[1] / 100 * rows / 1.4 + 0.6), dpi=100, layout="constrained")
    steps = [e["step"] for e in evaluations]
    panels = np.ravel(figure.subplots(rows, columns, squeeze=False))
    for i, (axes, name) in enumerate(zip(panels, names)):
        values = np.array([e[name] for e in evaluations], dtype=np.float64)
        spread = [e.get(name + "_std", 0.0) for e in evaluations]
        axes.errorbar(steps, values, yerr=spread, marker="o", markersize=3, color=f"C{i}", capsize=2)
        lower_is_better = name.split(": ")[-1] in ("fd", "kid", "l1", "kl")
        if lower_is_better and np.all(values > 0) and values.max() > 20 * values.min():
            axes.set_yscale("log")  # an early FD of 700 would flatten the late 10s
        axes.set_title(name + (" (lower is better)" if lower_is_better else ""), fontsize="medium")
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
    for axes in panels[len(names):]:
        axes.set_visible(False)
    figure.savefig(path)


def _draw_curves_with_pillow(path, history, size=(640, 360)):
    """The fallback where matplotlib is missing: the curves, their range and steps, no axes."""
    Image, ImageDraw = _pillow()
    colors = [(40, 90, 200), (220, 80, 40), (40, 160, 80), (150, 60, 170)]
    picture = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(picture)
    keys = [k for k in (history[0] if history else {}) if k != "step"]
    if not keys:
        picture.save(path)
        return
    steps = np.array([h["step"] for h in history], dtype=np.float64)
    values = {k: np.array([h[k] for h in history], dtype=np.float64) for k in keys}
    finite = np.concatenate([v[np.isfinite(v)] for v in values.values()])
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    high = high if high > low else low + 1.0
    margin = 40
    width, height = size[0] - 2 * margin, size[1] - 2 * margin
    draw.rectangle((margin, margin, margin + width, margin + height), outline=(120, 120, 120))
    span = max(steps.max() - steps.min(), 1.0)
    for i, key in enumerate(keys):
        xs = margin + (steps - steps.min()) / span * width
        ys = margin + (high - values[key]) / (high - low) * height
        line = [(x, y) for x, y in zip(xs, ys) if np.isfinite(y)]
        if len(line) > 1:
            draw.line(line, fill=colors[i % len(colors)], width=2)
        draw.text((margin + 10 + 120 * i, 10), key, fill=colors[i % len(colors)])
    draw.text((margin, margin + height + 8), f"step {int(steps.min())} .. {int(steps.max())}", fill=(0, 0, 0))
    draw.text((4, margin), f"{high:.3g}", fill=(0, 0, 0))
    draw.text((4, margin + height - 10), f"{low:.3g}", fill=(0, 0, 0))
    picture.save(path)
