"""The `ganforge` command. `ganforge info` says what this installation can do."""
import argparse
import platform
import sys


def _blas():
    import numpy as np
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy: no dict mode
        return "unknown"


def _optional_version(name):
    try:
        module = __import__(name)
        return getattr(module, "__version__", "installed")
    except Exception as exc:
        return f"not available ({type(exc).__name__})"


def info(out=None):
    import numpy as np

    import ganforge as gf
    from ganforge import backend, dispatch, native

    ok, reason = native.available()
    cupy_reason = backend.cupy_unavailable_reason()
    lines = [
        f"ganforge   {gf.__version__}",
        f"python     {platform.python_version()} ({platform.machine()}, {platform.system()})",
        f"numpy      {np.__version__}, BLAS: {_blas()}",
        "compiled   " + (f"ganforge._C loaded ({native.module().num_threads()} threads)" if ok
                         else f"missing, using NumPy reference kernels: {reason}"),
        "cupy       " + (f"{backend.cupy().__version__}, GPU available" if cupy_reason is None
                         else f"not available ({cupy_reason})"),
        f"triton     {_optional_version('triton')}",
        "",
        "kernels (op, device -> chosen implementation; others available or why not):",
    ]
    for op, device, chosen, statuses in dispatch.table():
        others = ", ".join(f"{impl}: {'yes' if ok else 'no (' + why + ')'}" for impl, (ok, why) in statuses.items())
        lines.append(f"  {op:10s} {device:5s} -> {chosen:6s} [{others}]")
    print("\n".join(lines), file=out or sys.stdout)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="ganforge", description="ganforge: a from-scratch GAN engine")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions, BLAS, compiled module, GPU support and kernel choices")
    args = parser.parse_args(argv)
    if args.command == "info":
        info()
    return 0


if __name__ == "__main__":
    sys.exit(main())
