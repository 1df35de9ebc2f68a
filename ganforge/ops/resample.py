"""Resampling by a linear map along each image axis: y = R x C^T for (..., H, W) images,
R of shape (h, H) and C of shape (w, W). Bicubic resizing (functional.bicubic_resize) is
this op with the weight matrices of data/resize.py. Being linear, its gradient is the
same op with the transposed matrices: R^T gy C, and so on to any order."""
from ..autograd import Function


class Resample(Function):
    needs_inputs = False  # the gradient needs the matrices, not x

    def __init__(self, rows, cols):
        self.rows, self.cols = rows, cols  # arrays on x's device, in x's dtype

    def forward(self, x):
        return self.rows @ x @ self.cols.T

    def backward(self, gy):
        return Resample(self.rows.T, self.cols.T)(gy)

