"""Changes of dtype and device; gradients go back to the input's dtype and device."""
import numpy as np

from .. import backend
from .. import functional as F
from ..autograd import Function


class Cast(Function):
    needs_inputs = False

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def forward(self, x):
        return x.astype(self.dtype)

    def backward(self, gy):
        return F.cast(gy, self.inputs[0].dtype)


class Copy(Function):
    """A copy with its own memory (for clone())."""
    needs_inputs = False


    def forward(self, x):
        return x.copy()

    def backward(self, gy):
        return gy


class ToDevice(Function):
    needs_inputs = False

    def __init__(self, device):
        self.device = backend.normalize_device(device)

    def forward(self, x):
        return backend.to_device(x, self.device)

    def backward(self, gy):
        return F.to_device(gy, self.inputs[0].device)
