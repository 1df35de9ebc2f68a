"""What a variant is: its networks, its loss and penalty, its optimizer, its defaults."""
from dataclasses import dataclass, field


@dataclass
class Variant:
    name: str
    summary: str                     # one line for `ganforge list`
    build: object                    # (data_shape, z_dim, num_classes) -> (G, D)
    loss: str                        # a key of ganforge.gan.LOSSES
    penalty: str = None              # None, "gp", "gp_one_sided" or "r1"
    penalty_weight: float = 10.0
    weight_clip: float = None        # WGAN's clipping of the critic's weights
    optimizer: str = "adam"          # "adam" or "rmsprop"
    lr: float = 2e-4
    betas: tuple = (0.5, 0.999)
    n_critic: int = 1                # discriminator updates per generator update
    conditional: bool = False
    defaults: dict = field(default_factory=dict)  # data, steps, batch_size, z_dim, ...
