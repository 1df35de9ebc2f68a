"""On PYTHONPATH for mutation runs only: import ganforge from the scratch copy being
mutated (the first PYTHONPATH entry after this folder), not from the editable install,
whose import hook would otherwise send every `import ganforge` to the original tree."""
import sys

sys.meta_path[:] = [finder for finder in sys.meta_path if "_editable" not in type(finder).__module__]
