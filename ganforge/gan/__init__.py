"""GAN losses and penalties (the variants, trainer and model zoo build on these)."""
from .losses import LOSSES, discriminator_loss, generator_loss  # noqa: F401
from .penalties import clip_weights_, dragan_penalty, gradient_penalty, r1_penalty, r2_penalty  # noqa: F401
from .trainer import Trainer, TrainingDiverged, generate, load_generator, resume_or_start  # noqa: F401,E402
from .variants import VARIANTS, get_variant  # noqa: F401,E402
