# On PYTHONPATH for mutation runs only: PyTorch hidden, so that a mutant counts as killed
# only when the PyTorch-free suite catches it (the parity tests then skip themselves).
raise ImportError("PyTorch is hidden for this mutation run (mutation/no_torch)")
