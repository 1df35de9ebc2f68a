"""PyTorch's keyword names beside NumPy's, for every op at once.

ganforge's ops are written with NumPy's names (`axis=`, `keepdims=`, `ddof=`); a script
written with PyTorch's habits passes `dim=`, `keepdim=`, `correction=`. Rather than give
each op two spellings, `accept_pytorch_names` wraps a function so that it takes both, and
`functional.py` and `Tensor` apply it to all of theirs (see the end of each).
"""
import functools
import inspect

# PyTorch's keyword -> ganforge's (NumPy's) keyword
ALIASES = {"dim": "axis", "keepdim": "keepdims", "correction": "ddof"}


def accept_pytorch_names(fn):
    """`fn`, also taking PyTorch's names for the NumPy-named keywords it has. Functions
    without such keywords come back unchanged."""
    parameters = inspect.signature(fn).parameters
    renames = {theirs: ours for theirs, ours in ALIASES.items() if ours in parameters and theirs not in parameters}
    if not renames:
        return fn

    @functools.wraps(fn)
    def with_pytorch_names(*args, **kwargs):
        if kwargs:  # the common, positional call pays for one test
            for theirs, ours in renames.items():
                if theirs in kwargs:
                    if ours in kwargs:
                        raise TypeError(f"{fn.__name__}() got both {theirs}= and {ours}=: pass one of them")
                    kwargs[ours] = kwargs.pop(theirs)
        return fn(*args, **kwargs)
    return with_pytorch_names


def accept_pytorch_names_in(namespace, names):
    """Apply `accept_pytorch_names` to each function `names` lists in `namespace` (a
    module's globals() or a class)."""
    for name in names:
        if isinstance(namespace, dict):
            namespace[name] = accept_pytorch_names(namespace[name])
        elif inspect.isfunction(vars(namespace).get(name)):
            setattr(namespace, name, accept_pytorch_names(vars(namespace)[name]))
