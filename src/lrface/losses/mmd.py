"""Maximum mean discrepancy losses: Neuron Selectivity Transfer and embedding-level MMD.

Both use the biased estimate ``MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y)``
(Gretton et al., JMLR 2012), which is exactly 0 for identical sample sets and non-negative
for positive-definite kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lrface.losses.base import TransferLoss, TransferOutputs
from lrface.losses.registry import register_loss

KERNELS = ("poly", "linear", "gaussian")


def _mmd2(kxx: torch.Tensor, kyy: torch.Tensor, kxy: torch.Tensor) -> torch.Tensor:
    """Biased MMD^2 from kernel matrices whose last two dims index the samples."""
    return kxx.mean((-2, -1)) + kyy.mean((-2, -1)) - 2 * kxy.mean((-2, -1))


def _sq_dists(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between the rows of ``x`` and ``y`` (batched)."""
    xx = x.pow(2).sum(-1, keepdim=True)
    yy = y.pow(2).sum(-1, keepdim=True)
    return (xx + yy.transpose(-2, -1) - 2 * x @ y.transpose(-2, -1)).clamp_min(0)


def _mean_offdiag_sq_dist(dxx: torch.Tensor, dyy: torch.Tensor, dxy: torch.Tensor) -> torch.Tensor:
    """Mean squared distance over distinct pairs of the pooled set, detached (a bandwidth)."""
    n = dxx.shape[-1] + dyy.shape[-1]
    total = dxx.sum((-2, -1)) + dyy.sum((-2, -1)) + 2 * dxy.sum((-2, -1))
    return (total / (n * n - n)).detach().clamp_min(1e-12)


def spatial_samples(features: torch.Tensor) -> torch.Tensor:
    """``N x C x H x W`` -> ``N x C x HW``: each channel's map flattened and L2-normalized."""
    return F.normalize(features.flatten(2), dim=2)


def match_spatial(
    student: torch.Tensor, teacher: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive-average-pool whichever map is larger down to the smaller spatial size."""
    size = (min(student.shape[-2], teacher.shape[-2]), min(student.shape[-1], teacher.shape[-1]))
    if student.shape[-2:] != size:
        student = F.adaptive_avg_pool2d(student, size)
    if teacher.shape[-2:] != size:
        teacher = F.adaptive_avg_pool2d(teacher, size)
    return student, teacher


@register_loss("nst")
class NSTLoss(TransferLoss):
    """Neuron Selectivity Transfer (Huang & Wang, arXiv 1707.01219).

    For each matching layer pair and each sample, the student's channels and the teacher's
    channels are two sets of samples (each channel's ``H*W`` activation map, L2-normalized),
    and the loss is the MMD^2 between the sets, averaged over the batch and summed over layers.
    Channel counts may differ; spatial sizes are matched by pooling the larger map. Kernels:
    ``poly`` ``(x.y + c)^d`` (the paper's choice, d=2, c=0, which matches the channel Gram
    matrices), ``linear`` ``x.y`` (matches the mean activation map), and ``gaussian``
    ``exp(-|x-y|^2 / (2 sigma2))`` with ``sigma2`` the mean pairwise squared distance of the
    pooled set when not given. The authors' code drops the constant teacher-teacher term; it is
    kept here so the value is a true MMD^2 (0 when the distributions match). The reference
    weight is 50.
    """

    name = "nst"
    needs = ("student_features", "teacher_features")

    def __init__(
        self,
        weight: float = 50.0,
        kernel: str = "poly",
        degree: int = 2,
        c: float = 0.0,
        sigma2: float | None = None,
    ):
        super().__init__(weight)
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        self.kernel = kernel
        self.degree = degree
        self.c = c
        self.sigma2 = sigma2

    def layer_mmd(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Batch-mean MMD^2 between one student and one teacher feature map."""
        student, teacher = match_spatial(student, teacher)
        x, y = spatial_samples(student), spatial_samples(teacher.detach())
        if self.kernel == "gaussian":
            dxx, dyy, dxy = _sq_dists(x, x), _sq_dists(y, y), _sq_dists(x, y)
            if self.sigma2 is None:
                sigma2 = _mean_offdiag_sq_dist(dxx, dyy, dxy)[:, None, None]
            else:
                sigma2 = torch.as_tensor(self.sigma2, dtype=x.dtype, device=x.device)
            kxx, kyy, kxy = (torch.exp(-d / (2 * sigma2)) for d in (dxx, dyy, dxy))
        else:
            kxx, kyy, kxy = x @ x.transpose(1, 2), y @ y.transpose(1, 2), x @ y.transpose(1, 2)
            if self.kernel == "poly":
                kxx, kyy, kxy = ((k + self.c).pow(self.degree) for k in (kxx, kyy, kxy))
        return _mmd2(kxx, kyy, kxy).mean()

    def forward(self, outputs: TransferOutputs) -> torch.Tensor:
        pairs = list(zip(outputs.student_features, outputs.teacher_features, strict=True))
        if not pairs:
            raise ValueError("NSTLoss needs student_features and teacher_features")
        return torch.stack([self.layer_mmd(s, t) for s, t in pairs]).sum()


@register_loss("mmd")
class DomainMMD(TransferLoss):
    """MMD^2 between the batch of student LR embeddings and teacher HR embeddings.

    Aligns the two embedding distributions without using the pairing (as in DAN, Long et al.,
    ICML 2015): a sum of Gaussian kernels with bandwidths ``base * multiplier**i`` for
    ``i = -(num_kernels // 2) ... ``, ``base`` the mean pairwise squared distance of the pooled
    batch (detached) unless ``bandwidth`` fixes it. Embeddings are L2-normalized first unless
    ``normalize`` is False. The two batches may differ in size.
    """

    name = "mmd"

    def __init__(
        self,
        weight: float = 1.0,
        num_kernels: int = 5,
        multiplier: float = 2.0,
        bandwidth: float | None = None,
        normalize: bool = True,
    ):
        super().__init__(weight)
        self.num_kernels = num_kernels
        self.multiplier = multiplier
        self.bandwidth = bandwidth
        self.normalize = normalize

    def forward(self, outputs: TransferOutputs) -> torch.Tensor:
        x, y = outputs.student, outputs.teacher.detach()
        if self.normalize:
            x, y = F.normalize(x, dim=1), F.normalize(y, dim=1)
        dxx, dyy, dxy = _sq_dists(x, x), _sq_dists(y, y), _sq_dists(x, y)
        if self.bandwidth is None:
            base = _mean_offdiag_sq_dist(dxx, dyy, dxy)
        else:
            base = torch.as_tensor(self.bandwidth, dtype=x.dtype, device=x.device)
        powers = torch.arange(self.num_kernels, dtype=x.dtype, device=x.device)
        bandwidths = base * self.multiplier ** (powers - self.num_kernels // 2)

        def kernel(d: torch.Tensor) -> torch.Tensor:
            return torch.exp(-d[..., None] / bandwidths).sum(-1)

        return _mmd2(kernel(dxx), kernel(dyy), kernel(dxy))
