"""The sVAE loss (docs/science.md §4) against a hand computation, and the sampling conventions of forward()."""
from __future__ import annotations

import math

import torch

from shared.model import ScatterVAE, VAEConfig, gaussian_nll, kl_divergence


def test_nll_and_kl_match_hand_computation():
    # one star, two coefficients, numbers small enough to do on paper:
    # w = err² + s² = [0.25 + 0.75, 1 + 3] = [1, 4];  nll = ½(2²/1 + ln 1) + ½(2²/4 + ln 4) = 2 + ½ + ln 2
    x = torch.tensor([[1.0, -1.0]])
    xhat = torch.tensor([[3.0, 1.0]])
    err = torch.tensor([[0.5, 1.0]])
    s = torch.tensor([[math.sqrt(0.75), math.sqrt(3.0)]])
    assert torch.isclose(gaussian_nll(x, err, xhat, s), torch.tensor([2.5 + math.log(2.0)]), rtol=1e-6).all()
    # KL per dim: −½(1 + lv − μ² − e^lv). μ = (1, 0), lv = (0, ln 2): −½(1 + 0 − 1 − 1) − ½(1 + ln2 − 0 − 2)
    mu, lv = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]])
    assert torch.isclose(kl_divergence(mu, lv), torch.tensor([0.5 + 0.5 * (1 - math.log(2.0))]), rtol=1e-6).all()


def test_model_loss_equals_loop_over_stars_and_coefficients():
    torch.manual_seed(0)
    m = ScatterVAE().eval()
    x = torch.randn(6, 110)
    err = torch.rand(6, 110) * 0.3 + 0.01
    with torch.no_grad():
        nll, kl = m.loss(x, err)
        xhat, s, mu, lv = m(x)
    X, E, XH, S, MU, LV = (t.double().numpy() for t in (x, err, xhat, s, mu, lv))
    for i in range(6):
        hand = sum(0.5 * (X[i, j] - XH[i, j]) ** 2 / (E[i, j] ** 2 + S[i, j] ** 2)
                   + 0.5 * math.log(E[i, j] ** 2 + S[i, j] ** 2) for j in range(110))
        hand_kl = sum(-0.5 * (1 + LV[i, k] - MU[i, k] ** 2 - math.exp(LV[i, k])) for k in range(6))
        assert abs(nll[i].item() - hand) <= 1e-5 * max(1.0, abs(hand))
        assert abs(kl[i].item() - hand_kl) <= 1e-5 * max(1.0, abs(hand_kl))
    loss, mean_nll, mean_kl = m.batch_loss((x, err), None)
    assert torch.isclose(loss, (nll + kl).mean(), rtol=1e-6)


def test_sampling_conventions():
    torch.manual_seed(1)
    m = ScatterVAE(VAEConfig()).eval()
    x = torch.randn(4, 110)
    with torch.no_grad():
        at_mu = m(x)[0]
        assert torch.equal(m(x, sample=False)[0], at_mu)          # eval default: z = μ
        a = m(x, sample=True, generator=torch.Generator().manual_seed(5))[0]
        b = m(x, sample=True, generator=torch.Generator().manual_seed(5))[0]
        assert torch.equal(a, b) and not torch.equal(a, at_mu)     # seeded draws, different from z = μ
        mu, lv = m.encode(x)
        eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(5))
        assert torch.allclose(m.decode(mu + torch.exp(0.5 * lv) * eps)[0], a)


def test_folded_batchnorm_gives_same_outputs():
    """Folding BN into the linear layers (used for inference) changes only float32 rounding, once the BN
    running statistics are non-trivial (set here to random values)."""
    from shared.model import fold_batchnorm
    torch.manual_seed(2)
    m = ScatterVAE().eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.normal_()
            mod.running_var.uniform_(0.5, 2)
            mod.weight.data.uniform_(0.5, 2)
            mod.bias.data.normal_()
    f = fold_batchnorm(m)
    assert not any(isinstance(mod, torch.nn.BatchNorm1d) for mod in f.modules())
    x = torch.randn(16, 110)
    with torch.no_grad():
        for a, b in zip(m(x), f(x)):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * a.abs().max().item())
