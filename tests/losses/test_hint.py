import pytest
import torch

from lrface.losses.base import TransferOutputs
from lrface.losses.hint import HintLoss


def hint_outputs(features, maps) -> TransferOutputs:
    n = len(next(iter(maps.values())))
    return TransferOutputs(
        student=torch.zeros(n, 4),
        teacher=torch.zeros(n, 4),
        student_features=features,
        teacher_maps=maps,
    )


def identity_regressors(loss: HintLoss) -> None:
    with torch.no_grad():
        for regressor in loss.regressors:
            regressor.weight.copy_(torch.eye(regressor.out_channels).view_as(regressor.weight))
            regressor.bias.zero_()


def test_matching_maps_give_zero_and_a_zero_prediction_gives_the_target_power():
    torch.manual_seed(0)
    channels = (2, 3)
    loss = HintLoss(stages=(0, 1), student_channels=channels, teacher_channels=channels)
    identity_regressors(loss)
    maps = {0: torch.randn(4, 2, 4, 4), 1: torch.randn(4, 3, 2, 2)}
    features = [maps[0].clone(), maps[1].clone()]
    assert loss(hint_outputs(features, maps)).item() < 1e-12
    zero = [torch.zeros_like(f) for f in features]
    expected = (maps[0].pow(2).mean() + maps[1].pow(2).mean()) / 2
    assert torch.allclose(loss(hint_outputs(zero, maps)), expected)


def test_larger_student_maps_are_pooled_to_the_target_grid():
    loss = HintLoss(stages=(0,), student_channels=(1,), teacher_channels=(1,))
    identity_regressors(loss)
    features = [torch.arange(16.0).view(1, 1, 4, 4)]
    pooled = torch.tensor([[2.5, 4.5], [10.5, 12.5]]).view(1, 1, 2, 2)
    assert loss(hint_outputs(features, {0: pooled})).item() < 1e-12


def test_gradients_reach_student_and_regressors_not_targets():
    torch.manual_seed(0)
    loss = HintLoss(stages=(1,), student_channels=(4, 5), teacher_channels=(6, 7))
    features = [torch.randn(3, 4, 4, 4), torch.randn(3, 5, 2, 2, requires_grad=True)]
    target = torch.randn(3, 7, 2, 2, requires_grad=True)
    loss(hint_outputs(features, {1: target})).backward()
    assert features[1].grad is not None and features[1].grad.abs().sum() > 0
    assert all(p.grad is not None for p in loss.regressors.parameters())
    assert target.grad is None
    assert loss.regressors[0].weight.shape == (7, 5, 1, 1)


@pytest.mark.parametrize("stages", [(), (4,), (-1,)])
def test_bad_stages_are_refused(stages):
    with pytest.raises(ValueError, match="stage"):
        HintLoss(stages=stages)
