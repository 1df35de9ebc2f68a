"""ganforge: a from-scratch GAN engine over NumPy and CuPy.

    import ganforge as gf
    x = gf.randn(8, 2, requires_grad=True)
    y = (x ** 2).sum()
    g, = gf.grad(y, x, create_graph=True)   # differentiable: g.sum().backward() works
"""
__version__ = "0.1.0"

from . import backend, dispatch  # noqa: F401
from .autograd import Function, enable_grad, grad, is_grad_enabled, no_grad, set_grad_enabled  # noqa: F401
from .tensor import (Generator, Tensor, arange, default_generator, from_dlpack, full, full_like,  # noqa: F401
                     get_default_dtype, manual_seed, ones, ones_like, rand, rand_like, randn, randn_like,
                     set_default_dtype, tensor, zeros, zeros_like)
from . import functional  # noqa: F401,E402
from . import ops  # noqa: F401,E402  (the Functions and their `ref` kernels)
from . import backends  # noqa: F401,E402  (the kernels' fast twins: C++, Triton, CUDA)
from .functional import *  # noqa: F401,F403,E402  (gf.exp, gf.matmul, gf.cat, ... as in torch)
from .functional import cat, constant, expand  # noqa: F401,E402
from . import data, distributed, gan, io, metrics, nn, optim  # noqa: F401,E402
from .io import load, save  # noqa: F401,E402  (torch.save's habit, in safetensors)
from .backends.cpu.native import set_flush_denormal  # noqa: F401,E402  (torch's name)

float32, float64, int32, int64, bool_ = "float32", "float64", "int32", "int64", "bool"
