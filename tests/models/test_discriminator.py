import torch
from torch import nn

from lrface.models.discriminator import DomainDiscriminator


def test_layout_is_fc512_prelu_fc512_prelu_fc2():
    disc = DomainDiscriminator()
    layers = list(disc.net)
    assert [type(m) for m in layers] == [nn.Linear, nn.PReLU, nn.Linear, nn.PReLU, nn.Linear]
    assert (layers[0].in_features, layers[0].out_features) == (128, 512)
    assert (layers[2].in_features, layers[2].out_features) == (512, 512)
    assert (layers[4].in_features, layers[4].out_features) == (512, 2)
    assert disc(torch.randn(5, 128)).shape == (5, 2)


def test_normalize_flag_makes_output_scale_invariant():
    torch.manual_seed(0)
    x = torch.randn(4, 8)
    normalized = DomainDiscriminator(in_dim=8, hidden=16, normalize=True)
    torch.testing.assert_close(normalized(x), normalized(10 * x))
    raw = DomainDiscriminator(in_dim=8, hidden=16)
    assert not torch.allclose(raw(x), raw(10 * x))
