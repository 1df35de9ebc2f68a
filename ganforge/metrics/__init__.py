"""Quality measures for generators."""
from .mode_coverage import mode_coverage  # noqa: F401
from .similarity import mean_absolute_error, psnr  # noqa: F401
from .super_resolution import luma, ssim, super_resolution_scores, upscaling_report  # noqa: F401
