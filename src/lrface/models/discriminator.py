"""Domain discriminator for adversarial transfer (DANN, ADDA): is this embedding HR or LR?"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DomainDiscriminator(nn.Module):
    """FC(hidden)-PReLU-FC(hidden)-PReLU-FC(2) on embeddings; logit 1 = teacher/HR domain.

    The layout follows the original system's discriminator (two 512-wide PReLU layers, a
    two-way softmax output). PReLU slopes are per unit. ``normalize`` L2-normalizes inputs
    first, so the discriminator cannot tell the domains apart by embedding norm alone.
    """

    def __init__(self, in_dim: int = 128, hidden: int = 512, normalize: bool = False):
        super().__init__()
        self.normalize = normalize
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.PReLU(hidden),
            nn.Linear(hidden, hidden),
            nn.PReLU(hidden),
            nn.Linear(hidden, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``N x in_dim`` embeddings -> ``N x 2`` domain logits."""
        if self.normalize:
            x = F.normalize(x, dim=1)
        return self.net(x)
