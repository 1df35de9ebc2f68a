"""Quality measures for generators."""
from .mode_coverage import mode_coverage  # noqa: F401
