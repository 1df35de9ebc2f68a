"""GANs: losses and penalties, the models (one file each in models/), and the trainer
that runs any of them."""
from .losses import LOSSES, discriminator_loss, generator_loss  # noqa: F401
from .penalties import clip_weights_, dragan_penalty, gradient_penalty, r1_penalty, r2_penalty  # noqa: F401
from .model import MODELS, DataInfo, Model, get_model, register_model  # noqa: F401
from . import models  # noqa: F401,E402  (registers the models)
from .trainer import (Trainer, TrainingDiverged, generate, load_generator, load_model, require_w_space,  # noqa: F401,E402
                      resume_or_start)
