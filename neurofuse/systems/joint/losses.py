"""The training loss of paper §2.6.

``L = a1 (1 - corr(MEG)) + a2 (1 - corr(fMRI)) + a3 L_smooth``, where each correlation term is
the repeatability-weighted mean over sensors / sources of ``1 - r``; with EEG subjects, plus
``a_eeg (1 - corr(EEG))``, the EEG term weighted like the MEG one, and ``L_smooth`` is the mean
squared difference of consecutive source estimates.

The correlation ``r`` of a target is computed over time within each piece's loss window, and
the loss is the mean over pieces (and over the subjects that heard each piece). A mean over
pieces splits exactly across data-parallel processes, so training on N processes gives the
same gradients as one process with the same global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def masked_correlation(pred, target, mask, tiny=1e-30):
    """Pearson r per piece and target over the masked time samples.

    Scale-free: each centred series is divided by its own norm, so data in tesla (1e-12) and
    predictions in arbitrary units give the same r as standardised ones.

    Parameters
    ----------
    pred, target : tensor, shape (B, T, n_targets)
    mask : tensor, shape (B, T)
        1 where the sample counts.

    Returns
    -------
    r : tensor, shape (B, n_targets)
    """
    m = mask.to(pred.dtype).unsqueeze(-1)  # (B, T, 1)
    n = m.sum(1, keepdim=True).clamp_min(1.0)  # (B, 1, 1)
    pc = (pred - (pred * m).sum(1, keepdim=True) / n) * m
    tc = (target - (target * m).sum(1, keepdim=True) / n) * m
    pc = pc / pc.norm(dim=1, keepdim=True).clamp_min(tiny)
    tc = tc / tc.norm(dim=1, keepdim=True).clamp_min(tiny)
    return (pc * tc).sum(1)


def loss_mask(loss_start, n_times, *, step=1, device=None):
    """(B, n_times // step) mask that is 1 from ``loss_start // step`` on."""
    idx = torch.arange(n_times // step, device=device)
    start = torch.as_tensor(loss_start, device=device) // step
    return (idx[None, :] >= start[:, None]).float()


def smoothness_loss(sources, *, latent=None):
    """Mean squared difference between consecutive source estimates.

    Parameters
    ----------
    sources : tensor, shape (B, T, S)
    latent : tuple (z, weight) | None
        If given, ``sources = z @ weight.T + bias`` with ``z`` (B, T, d) and ``weight`` (S, d)
        (a linear source layer, :attr:`~neurofuse.systems.joint.model.ModelOutput.latent`): the same
        value is computed in the d-wide space, ``sum_t dz_t^T (W^T W) dz_t / (B (T-1) S)``
        (the bias cancels), without a pass over the (B, T, S) sources.

    Returns
    -------
    loss : tensor, shape ()
    """
    if latent is None:
        return (sources[:, 1:] - sources[:, :-1]).pow(2).mean()
    z, weight = latent
    dtype = torch.promote_types(z.dtype, torch.float32)
    z, weight = z.to(dtype), weight.to(dtype)
    d = z.shape[-1]
    dz = (z[:, 1:] - z[:, :-1]).reshape(-1, d)  # (B (T-1), d)
    gram = weight.T @ weight  # (d, d)
    return ((dz @ gram) * dz).sum() / (dz.shape[0] * weight.shape[0])


@dataclass(frozen=True)
class LossTerms:
    """Loss components of one batch (tensors; ``total`` is what is backpropagated).

    ``eeg`` is None when the loss had no EEG term (no EEG subject or ``alpha_eeg`` 0).
    """

    total: torch.Tensor
    meg: torch.Tensor
    fmri: torch.Tensor
    smooth: torch.Tensor
    eeg: torch.Tensor | None = None

    def as_floats(self) -> dict:
        keys = ("total", "meg", "fmri", "smooth") + (("eeg",) if self.eeg is not None else ())
        return {k: float(getattr(self, k).detach()) for k in keys}


def joint_loss(out, batch, weights, *, alpha_meg=1.0, alpha_fmri=1.0, alpha_smooth=1e-4,
               samples_per_tr=100, alpha_eeg=1.0):
    """The joint loss of one batch.

    Parameters
    ----------
    out : ModelOutput
        Model predictions for the batch.
    batch : dict
        ``loss_start`` (B,) tensor; ``meg``/``fmri`` (and optionally ``eeg``):
        {subject: (target (B_s, T', n), rows (B_s,))} tensors (see
        :class:`~neurofuse.systems.joint.data.PieceLoader`).
    weights : dict
        ``{("meg"|"fmri"|"eeg", subject): tensor (n_targets,)}`` summing to 1.
    alpha_meg, alpha_fmri, alpha_smooth : float
        a1, a2, a3. Terms with alpha 0 are not computed.
    alpha_eeg : float
        Weight of the EEG term (computed when the batch has EEG targets and the output EEG
        predictions, and ``alpha_eeg`` > 0).

    Returns
    -------
    terms : LossTerms
    """
    B, T = out.sources.shape[:2]
    dev = out.sources.device
    zero = out.sources.new_zeros(())
    eeg_preds = getattr(out, "eeg", None) or {}
    has_eeg = bool(alpha_eeg) and bool(eeg_preds) and bool(batch.get("eeg"))
    kinds = ("meg", "fmri") + (("eeg",) if has_eeg else ())
    per_piece = {k: out.sources.new_zeros(B) for k in kinds}
    count = {k: out.sources.new_zeros(B) for k in kinds}
    for kind, preds, step, alpha in (("meg", out.meg, 1, alpha_meg),
                                     ("fmri", out.fmri, samples_per_tr, alpha_fmri),
                                     ("eeg", eeg_preds, 1, alpha_eeg if has_eeg else 0)):
        if alpha == 0:
            continue
        for sub, pred in preds.items():
            if sub not in batch[kind]:
                continue
            target, rows = batch[kind][sub]
            mask = loss_mask(batch["loss_start"][rows], T, step=step, device=dev)
            r = masked_correlation(pred[rows], target, mask)  # (B_s, n_targets)
            per_piece[kind] = per_piece[kind].index_add(
                0, rows, ((1.0 - r) * weights[(kind, sub)].to(r.dtype)).sum(1))
            count[kind] = count[kind].index_add(0, rows, torch.ones_like(rows, dtype=r.dtype))
    terms = {}
    for kind in kinds:
        has = count[kind] > 0
        terms[kind] = (per_piece[kind][has] / count[kind][has]).sum() / B if has.any() else zero
    smooth = (smoothness_loss(out.sources, latent=getattr(out, "latent", None))
              if alpha_smooth else zero)
    total = alpha_meg * terms["meg"] + alpha_fmri * terms["fmri"] + alpha_smooth * smooth
    if has_eeg:
        total = total + alpha_eeg * terms["eeg"]
    return LossTerms(total, terms["meg"], terms["fmri"], smooth, terms.get("eeg"))
