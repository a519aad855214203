"""DarkRank: transfer the teacher's ranking of the other samples in the batch, listwise."""

from __future__ import annotations

import math
from itertools import permutations

import torch
import torch.nn.functional as F

from lrface.losses.base import TransferLoss, TransferOutputs
from lrface.losses.registry import register_loss

VARIANTS = ("listnet", "listmle")
MAX_LISTNET_LENGTH = 7  # ListNet enumerates list_length! permutations


def plackett_luce_log_prob(scores: torch.Tensor) -> torch.Tensor:
    """Log-probability, under Plackett-Luce with these scores, of the order they are given in.

    ``scores[..., r]`` is the score of the item placed at rank ``r``;
    ``log P = sum_r (s_r - logsumexp(s_r, ..., s_last))``.
    """
    tail_lse = torch.logcumsumexp(scores.flip(-1), dim=-1).flip(-1)
    return (scores - tail_lse).sum(-1)


@register_loss("darkrank")
class DarkRank(TransferLoss):
    """DarkRank (Chen, Wang & Zhang, AAAI 2018, arXiv 1707.01220; TuSimple/DarkRank).

    Every sample in the batch is a query; its candidates are the ``list_length`` other samples
    nearest to it in the teacher's embedding space, in the teacher's order. A candidate's score
    is ``-(scale * |u_q - u_c|^2) ** power`` with ``u`` the L2-normalized embedding, i.e. the
    reference code's convention: embeddings normalized then multiplied by ``sqrt(scale)``
    (``--embedding-l2-norm 3.5``) and the squared distance raised to ``--score-power 2``. In the
    paper's notation ``S = -alpha * d^beta`` (Euclidean ``d``) this is ``alpha =
    scale**power``, ``beta = 2 * power``. The reference weight is 16.

    Variants (the paper's "soft" and "hard" transfer):
    - ``listnet``: cross-entropy between the teacher's and the student's Plackett-Luce
      distributions over all ``list_length!`` orders of the candidates (the reference ListNet);
      its minimum, the teacher distribution's entropy, is reached when the student's scores
      equal the teacher's.
    - ``listmle``: negative Plackett-Luce log-likelihood of the teacher's order of the
      candidates under the student's scores (the listnet target collapsed onto the teacher's
      order). The reference ListMLE ranks every other sample of the batch; pass
      ``list_length=None`` for that.

    Only the student's embeddings receive gradient; the loss is averaged over queries.
    """

    name = "darkrank"

    def __init__(
        self,
        weight: float = 16.0,
        variant: str = "listnet",
        scale: float = 3.5,
        power: float = 2.0,
        list_length: int | None = 4,
    ):
        super().__init__(weight)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if variant == "listnet" and (list_length is None or list_length > MAX_LISTNET_LENGTH):
            raise ValueError(f"listnet needs list_length <= {MAX_LISTNET_LENGTH}")
        if list_length is not None and list_length < 1:
            raise ValueError("list_length must be positive")
        self.variant = variant
        self.scale = scale
        self.power = power
        self.list_length = list_length

    def candidates(self, teacher: torch.Tensor) -> torch.Tensor:
        """``N x k`` indices of each query's nearest other samples, nearest first."""
        n = len(teacher)
        k = n - 1 if self.list_length is None else min(self.list_length, n - 1)
        unit = F.normalize(teacher, dim=1)
        dist = 2 - 2 * unit @ unit.T
        dist.fill_diagonal_(math.inf)
        return dist.topk(k, dim=1, largest=False).indices

    def scores(self, embeddings: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """``N x k`` scores of each query's candidates under these embeddings."""
        unit = F.normalize(embeddings, dim=1)
        sq_dist = (unit[:, None, :] - unit[candidates]).pow(2).sum(-1)
        return -(self.scale * sq_dist).pow(self.power)

    def forward(self, outputs: TransferOutputs) -> torch.Tensor:
        teacher = outputs.teacher.detach()
        if len(teacher) < 2:
            raise ValueError("DarkRank needs at least two samples per batch")
        candidates = self.candidates(teacher)
        student_scores = self.scores(outputs.student, candidates)
        if self.variant == "listmle":
            return -plackett_luce_log_prob(student_scores).mean()
        orders = torch.tensor(
            list(permutations(range(candidates.shape[1]))), device=candidates.device
        )
        teacher_log_p = plackett_luce_log_prob(self.scores(teacher, candidates)[:, orders])
        student_log_p = plackett_luce_log_prob(student_scores[:, orders])
        return -(teacher_log_p.exp() * student_log_p).sum(1).mean()
