"""Where a training step's time goes: per op (forward and backward) and per layer.

    with Profile() as prof:
        step()
    print(prof.report())

While active, every Function's forward and backward and every optimizer step is timed.
Times are exclusive: a backward that builds a graph (create_graph=True) runs forwards of
its own, and those count for their own ops, not twice. Each Function remembers the
innermost module whose forward created it, so its backward (and the ops that backward
creates) is charged to that layer too.
The rest of the step's wall time (graph bookkeeping, Python glue) is reported as such.
FLOPs are counted for the GEMM-shaped ops (matmul, linear and the three convolutions), from their
operand shapes, so an op's GFLOP/s column says how close it runs to the BLAS ceiling.
Profiling adds its own overhead of a few microseconds per op.
"""
import math
import time
from collections import defaultdict

from . import optim
from .autograd import Function
from .nn.module import Module, Sequential


def _gemm_flops(fn, xs, y):
    """2 x multiply-adds of the GEMM-shaped ops, from their operand shapes."""
    name = type(fn).__name__
    if name in ("MatMul", "Linear", "LinearLeakyReLU"):  # every output element sums over x's last axis
        return 2 * y.size * xs[0].shape[-1]
    if name == "Conv2d":  # every output element sums C/groups * KH * KW products
        return 2 * y.size * math.prod(xs[1].shape[1:])
    if name == "ConvTranspose2d":  # every input element spreads over O/groups * KH * KW outputs
        return 2 * xs[0].size * math.prod(xs[1].shape[1:])
    if name == "Conv2dWeightGrad":  # every weight sums over N * OH * OW products
        x, gy = xs
        return 2 * y.size * x.shape[0] * gy.shape[2] * gy.shape[3]
    return 0


class Profile:
    def __init__(self):
        self.ops = defaultdict(lambda: [0, 0.0, 0.0])     # op -> [calls, forward s, backward s]
        self.flops = defaultdict(int)                     # op -> floating-point operations (GEMM-shaped ops)
        self.layers = defaultdict(lambda: [0.0, 0.0])     # layer -> [forward s, backward s]
        self.optimizer_s = 0.0
        self.wall_s = 0.0
        self._children = [0.0]  # time spent in timed calls nested in the current one
        self._layer_stack = ["(outside any layer)"]
        self._backward_depth = 0  # > 0 while a backward runs: ops it creates are that layer's backward
        self._names = {}
        self._patched = []

    # --- timing -------------------------------------------------------------------------------

    def _timed(self, fn, *args):
        """Run fn, returning (result, exclusive seconds)."""
        self._children.append(0.0)
        start = time.perf_counter()
        try:
            result = fn(*args)
        finally:
            elapsed = time.perf_counter() - start
            nested = self._children.pop()
            self._children[-1] += elapsed
        return result, elapsed - nested

    def _patch(self, owner, attribute, wrapper, original=None):
        """Replace owner.attribute (its own or inherited) by wrapper(it, or `original`),
        until __exit__."""
        self._patched.append((owner, attribute, owner.__dict__.get(attribute)))
        setattr(owner, attribute, wrapper(original or getattr(owner, attribute)))

    def _wrap_forward(self, op, original):
        def forward(fn, *xs):
            fn._profile_layer = self._layer_stack[-1]
            y, seconds = self._timed(original, fn, *xs)
            self.flops[op] += _gemm_flops(fn, xs, y)
            self.ops[op][0] += 1
            self.ops[op][1] += seconds
            self.layers[fn._profile_layer][1 if self._backward_depth else 0] += seconds
            return y
        return forward

    def _wrap_backward(self, op, original):
        def backward(fn, gy):
            layer = getattr(fn, "_profile_layer", "(outside any layer)")
            self._layer_stack.append(layer)
            self._backward_depth += 1
            try:
                gx, seconds = self._timed(original, fn, gy)
            finally:
                self._backward_depth -= 1
                self._layer_stack.pop()
            self.ops[op][2] += seconds
            self.layers[layer][1] += seconds
            return gx
        return backward

    def _layer_name(self, module):
        return self._names.get(id(module)) or f"{type(module).__name__}@{id(module) % 10000:04d}"

    def _in_layer(self, name, fn, *args, **kwargs):
        """fn(*args, **kwargs) with the ops it runs counted as layer `name`'s."""
        self._layer_stack.append(name)
        try:
            return fn(*args, **kwargs)
        finally:
            self._layer_stack.pop()

    def _wrap_module_call(self, original):
        def call(module, *args, **kwargs):
            return self._in_layer(self._layer_name(module), original, module, *args, **kwargs)
        return call

    def _wrap_fused_call(self, original):
        def call(first, second, fused, x):
            name = f"{self._layer_name(first)}+{self._layer_name(second)}"
            return self._in_layer(name, original, first, second, fused, x)
        return staticmethod(call)

    def _wrap_optimizer_step(self, original):
        def step(opt):
            result, seconds = self._timed(original, opt)
            self.optimizer_s += seconds
            return result
        return step

    # --- use --------------------------------------------------------------------------------

    def name_layers(self, **networks):
        """Give the layers of these modules readable names, e.g. name_layers(G=G, D=D)."""
        for prefix, net in networks.items():
            for name, module in net.named_modules():
                if not list(module.children()):  # leaves: the layers that create ops
                    self._names[id(module)] = f"{prefix}.{name}({type(module).__name__})"
        return self

    def __enter__(self):
        # Each op's own methods, looked up before any is wrapped: an op that inherits its
        # forward (LinearLeakyReLU's is Linear's) is then timed under its own name only.
        methods = [(name, cls, cls.forward, cls.backward) for name, cls in Function.registry.items()]
        for name, cls, forward, backward in methods:
            self._patch(cls, "forward", lambda f, name=name: self._wrap_forward(name, f), forward)
            self._patch(cls, "backward", lambda f, name=name: self._wrap_backward(name, f), backward)
        self._patch(Module, "__call__", self._wrap_module_call)
        self._patch(Sequential, "_call_fused", self._wrap_fused_call)
        for cls in (optim.SGD, optim.Adam, optim.RMSprop):
            self._patch(cls, "step", self._wrap_optimizer_step)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall_s += time.perf_counter() - self._start
        for owner, attribute, original in reversed(self._patched):
            if original is None:
                delattr(owner, attribute)  # it was inherited
            else:
                setattr(owner, attribute, original)
        self._patched = []

    def total_flops(self):
        """FLOPs counted in GEMM-shaped ops (matmul, linear and the three convolutions)."""
        return sum(self.flops.values())

    def report(self, steps=1, top=15):
        """Tables of the heaviest ops and layers, in milliseconds per step."""
        ms = 1000.0 / steps
        op_total = sum(f + b for _, f, b in self.ops.values())
        lines = [f"wall {self.wall_s * ms:.1f} ms/step: ops {op_total * ms:.1f}, optimizer "
                 f"{self.optimizer_s * ms:.1f}, the rest (graph bookkeeping, Python glue) "
                 f"{(self.wall_s - op_total - self.optimizer_s) * ms:.1f}; {self.total_flops() / steps / 1e9:.2f} "
                 f"GFLOP/step in GEMM-shaped ops", "",
                 f"{'op':24s} {'calls':>7s} {'forward':>9s} {'backward':>9s} {'share':>6s} {'GFLOP/s':>8s}"]
        for op, (calls, f, b) in sorted(self.ops.items(), key=lambda kv: -(kv[1][1] + kv[1][2]))[:top]:
            rate = f"{self.flops[op] / f / 1e9:8.1f}" if self.flops[op] and f else ""
            lines.append(f"{op:24s} {calls / steps:7.0f} {f * ms:9.2f} {b * ms:9.2f} "
                         f"{100 * (f + b) / self.wall_s:5.1f}% {rate}")
        lines += ["", f"{'layer':40s} {'forward':>9s} {'backward':>9s} {'share':>6s}"]
        for layer, (f, b) in sorted(self.layers.items(), key=lambda kv: -sum(kv[1]))[:top]:
            lines.append(f"{layer[:40]:40s} {f * ms:9.2f} {b * ms:9.2f} {100 * (f + b) / self.wall_s:5.1f}%")
        return "\n".join(lines)
