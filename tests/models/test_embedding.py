import math

import pytest
import torch

from lgdiff._models.embedding import GaussianFourierFeatures, SinusoidalFeatures, TimeEmbedding, _check_time


def test_gaussian_fourier_features_formula(generator):
    emb = GaussianFourierFeatures(8, scale=3.0, generator=generator)
    f = emb.frequencies
    assert f.shape == (4,) and f.dtype == torch.float64
    t = torch.tensor([0.0, 0.25, 0.7])
    phase = 2 * math.pi * t[:, None] * f
    torch.testing.assert_close(emb(t), torch.cat([torch.sin(phase), torch.cos(phase)], dim=1), rtol=0, atol=0)
    # frequencies follow the generator: same seed, same buffer; they are saved with the module
    again = GaussianFourierFeatures(8, scale=3.0, generator=torch.Generator().manual_seed(generator.initial_seed()))
    torch.testing.assert_close(again.frequencies, f, rtol=0, atol=0)
    assert "frequencies" in emb.state_dict()


def test_gaussian_fourier_frequencies_have_the_requested_spread():
    # f_k ~ N(0, scale^2): the sample variance of 20000 frequencies is scale^2 within 4 standard errors
    scale, n = 5.0, 20000
    f = GaussianFourierFeatures(2 * n, scale=scale, generator=torch.Generator().manual_seed(7)).frequencies
    var, err = float(f.var()), scale**2 * math.sqrt(2 / (n - 1))
    assert abs(var - scale**2) < 4 * err
    assert abs(float(f.mean())) < 4 * scale / math.sqrt(n)


def test_sinusoidal_features_formula():
    emb = SinusoidalFeatures(6, max_period=100.0, scale=10.0)
    t = torch.tensor([0.3, 1.0])
    w = torch.tensor([1.0, 100.0 ** (-1 / 3), 100.0 ** (-2 / 3)])
    phase = 10.0 * t[:, None] * w
    torch.testing.assert_close(emb(t), torch.cat([torch.sin(phase), torch.cos(phase)], dim=1), rtol=1e-14, atol=0)
    assert emb(t.float()).dtype == torch.float32


@pytest.mark.parametrize("kind", ["fourier", "sinusoidal"])
def test_time_embedding_shapes_grads_and_dependence(kind, generator):
    emb = TimeEmbedding(8, 12, 5, kind=kind, scale=2.0 if kind == "fourier" else 100.0, generator=generator)
    t = torch.tensor([0.05, 0.5, 0.95])
    out = emb(t)
    assert out.shape == (3, 5) and out.dtype == torch.float64
    assert float((out[0] - out[2]).detach().abs().amax()) > 1e-2  # distinct times, distinct embeddings
    out.square().sum().backward()
    for name, p in emb.named_parameters():
        assert p.grad is not None and float(p.grad.abs().amax()) > 0, name
    assert sum(p.numel() for p in emb.parameters()) == 8 * 12 + 12 + 12 * 5 + 5


def test_time_embedding_float32(generator):
    emb = TimeEmbedding(4, 4, 2, generator=generator, dtype=torch.float32)
    assert emb(torch.tensor([0.1, 0.2], dtype=torch.float64)).dtype == torch.float32


def test_embedding_errors(generator):
    with pytest.raises(ValueError, match="even number of features >= 2"):
        GaussianFourierFeatures(5, generator=generator)
    with pytest.raises(ValueError, match="even number of features >= 2"):
        SinusoidalFeatures(0)
    with pytest.raises(ValueError, match="finite scale > 0"):
        GaussianFourierFeatures(4, scale=0.0, generator=generator)
    with pytest.raises(ValueError, match="finite max_period > 1"):
        SinusoidalFeatures(4, max_period=1.0)
    with pytest.raises(ValueError, match="needs out >= 1"):
        TimeEmbedding(4, 4, 0, generator=generator)
    with pytest.raises(ValueError, match="kind must be 'fourier' or 'sinusoidal'"):
        TimeEmbedding(4, 4, 1, kind="gauss", generator=generator)
    with pytest.raises(ValueError, match="one real time per configuration, shape \\[B\\]"):
        _check_time("X", torch.zeros((2, 1)))
