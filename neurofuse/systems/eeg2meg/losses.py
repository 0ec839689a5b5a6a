"""The terms of Eq. 9 and their weighted sum.

Paper ↔ code
------------
- ``‖Y − Ŷ‖₁`` is a *mean* absolute error over every element (batch, channel, time), as are
  the squared norms of Eq. 4 and Eq. 6, so the weights do not depend on the epoch size.
- ``"ae"``, the MEG autoencoder's own reconstruction ``mean |Y − D(E(Y))|``, is added with
  weight ``lambda_ae``: the paper implies an MEG latent space but not how it is learnt.
- With ``bsc=False`` the ``λ_spec`` term is dropped (reported as 0).
"""

from __future__ import annotations

import torch

__all__ = ["LOSS_TERMS", "reconstruction_loss", "total_loss"]

#: The weighted terms of the total loss, with the config field of each weight.
LOSS_TERMS = {"rec": "lambda_rec", "vq": "lambda_vq", "diff": "lambda_diff",
              "spec": "lambda_spec", "ae": "lambda_ae"}


def reconstruction_loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Time-domain L1 reconstruction of Eq. 9, ``mean |Y − Ŷ|``.

    Parameters
    ----------
    y_hat, y : torch.Tensor, shape (B, C_m, T)
        Synthesised and real MEG.

    Returns
    -------
    loss : torch.Tensor, scalar
    """
    return (y_hat - y).abs().mean()


def total_loss(terms: dict, config) -> torch.Tensor:
    """Eq. 9 (plus the autoencoder term): ``Σ λ_term · term``.

    Parameters
    ----------
    terms : dict of str to torch.Tensor
        At least the keys of :data:`LOSS_TERMS`.
    config : GeneratorConfig
        Holds the weights; ``bsc=False`` drops the spectral term.

    Returns
    -------
    total : torch.Tensor, scalar
    """
    missing = sorted(set(LOSS_TERMS) - set(terms))
    if missing:
        raise ValueError(f"'terms' lacks the loss term(s) {missing}; expected every one of "
                         f"{list(LOSS_TERMS)}.")
    total = 0.0
    for name, weight_name in LOSS_TERMS.items():
        if name == "spec" and not config.bsc:
            continue
        weight = getattr(config, weight_name)
        if weight:
            total = total + weight * terms[name]
    if not torch.is_tensor(total):
        total = torch.zeros((), device=terms["rec"].device)
    return total
