"""Primitive Functions, one family per file. Each backward is written in ganforge ops
(through `ganforge.functional`), so every gradient can itself be differentiated."""
from . import activation, conv, convert, elementwise, linalg, norm, penalty, reduce, resample, shape, spectral  # noqa: F401
