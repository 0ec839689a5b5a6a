"""The joint model's training task (paper §2.6) for the generic loop.

* 40-s pieces, batch 8, loss on the last 20 s (:mod:`neurofuse.systems.joint.data`);
* ``L = a1 (1 - r_MEG) + a2 (1 - r_fMRI) + a3 L_smooth`` with a1 = 1, a3 = 1e-4 and a2 = 0 for
  the first ``meg_first_epochs`` (20) epochs, then 1 (:mod:`neurofuse.systems.joint.losses`);
  MEG and fMRI terms are weighted by each target's repeatability;
* AdamW (one optimizer, ``"main"``) and a constant or cosine schedule; early stopping on the
  validation stories with the same loss. The curriculum is the task's
  :meth:`~JointTask.phase` (a2), so the early-stopping memory restarts when a2 switches on,
  and training stops early only once the fMRI phase is reached.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..._io import hash_arrays, hash_file
from ..._logging import logger
from ...data.store import MANIFEST
from ...training.task import Task
from .data import PieceLoader, loss_weights, make_pieces
from .losses import joint_loss

__all__ = ["JointTask"]


def _to_device(batch, device):
    out = {"features": torch.as_tensor(batch["features"], device=device),
           "loss_start": torch.as_tensor(batch["loss_start"], device=device)}
    for kind in ("meg", "fmri", "eeg"):
        if kind in batch:
            out[kind] = {s: (torch.as_tensor(a, device=device),
                             torch.as_tensor(r, device=device))
                         for s, (a, r) in batch[kind].items()}
    return out


class JointTask(Task):
    """Train a :class:`~neurofuse.systems.joint.model.JointModel` on a dataset store.

    Parameters
    ----------
    dataset : Dataset
        An opened dataset store with ``train`` (and ideally ``val``) stories.
    config : TrainConfig
        Training settings (:class:`~neurofuse.systems.joint.trainer.TrainConfig`).
    encoder_kwargs : dict | None
        :class:`~neurofuse.systems.joint.encoder.StimulusEncoder` sizes.
    denoised_fmri : dict | None
        ``{subject: {story: array (n_sources, n_trs)}}``: training-story fMRI targets used
        instead of the recordings (validation always uses the recorded fMRI).
    """

    train_logs = ("total", "meg", "fmri", "smooth")
    progress_keys = ("train_total", "val_total", "val_meg_r", "val_fmri_r", "val_eeg_r")
    # Heads of subjects absent from a batch (and the HRFs in the MEG-first phase) get no
    # gradient, so DDP must look for unused parameters. Buffers are fixed physics built
    # identically from the dataset on every rank (and sparse CSR morphs, which DDP cannot
    # broadcast), so they are not synchronised.
    ddp_options = {"find_unused_parameters": True, "broadcast_buffers": False}

    def __init__(self, dataset, config, *, encoder_kwargs=None, denoised_fmri=None):
        self.dataset, self.cfg = dataset, config
        self.encoder_kwargs = dict(encoder_kwargs or {})
        self.denoised_fmri = denoised_fmri
        self.meg_subjects = [s for s in dataset.subjects if "meg" in dataset.modalities(s)]
        self.fmri_subjects = [s for s in dataset.subjects if "fmri" in dataset.modalities(s)]
        self.eeg_subjects = [s for s in dataset.subjects if "eeg" in dataset.modalities(s)]
        self.train_stories = dataset.splits.get("train", [])
        self.val_stories = dataset.splits.get("val", [])
        if not self.train_stories:
            raise ValueError("The dataset has no training stories (split 'train').")
        self._fingerprint = None

    def setup(self, ctx):
        from .model import JointModel

        cfg, ds = self.cfg, self.dataset
        enc_kwargs = {"block_size": cfg.block_size, **self.encoder_kwargs}
        model = JointModel.from_dataset(ds, encoder_kwargs=enc_kwargs).to(ctx.device)
        train_pieces = self._pieces(self.train_stories)
        if not train_pieces:  # before the loss weights, whose repeatability needs time points
            longest = max(ds.n_times(s) for s in self.train_stories) / ds.sfreq
            raise ValueError(
                f"No training piece: every training story is shorter than one piece "
                f"(TrainConfig.piece_seconds = {cfg.piece_seconds:g} s; the longest of the "
                f"{len(self.train_stories)} training stories lasts {longest:.1f} s). Use a "
                f"shorter piece_seconds (a whole number of TRs, {ds.tr:g} s) and loss_seconds, "
                "or longer stories.")
        self.weights = {}
        for kind, subs in (("meg", self.meg_subjects), ("fmri", self.fmri_subjects),
                           ("eeg", self.eeg_subjects)):
            for s in subs:
                self.weights[(kind, s)] = torch.as_tensor(
                    loss_weights(ds, s, kind, mode=cfg.loss_weighting), dtype=torch.float32,
                    device=ctx.device)
        subjects = dict(meg_subjects=self.meg_subjects, fmri_subjects=self.fmri_subjects,
                        eeg_subjects=self.eeg_subjects,
                        rank=ctx.rank, world_size=ctx.world_size, batch_size=cfg.batch_size)
        self.train = PieceLoader(ds, train_pieces, shuffle=True,
                                 seed=cfg.seed, fmri_targets=self.denoised_fmri, **subjects)
        self.val = PieceLoader(ds, self._pieces(self.val_stories), shuffle=False, **subjects)
        if len(self.val.pieces) == 0:
            logger.warning("No validation pieces: early stopping uses the training loss.")
        self.samples_per_tr = int(round(ds.tr * ds.sfreq))
        enc = model.encoder.config
        self.mixture = enc if enc.source_prior == "mixture" else None
        self.mixture_logits = model.encoder.source_layer.mixture_logits \
            if self.mixture is not None else None
        self.prior_on_validation = (self.mixture is not None
                                    and enc.source_mixture_loss == "validation")
        if self.prior_on_validation and not self.val.pieces:
            raise ValueError("The encoder's source_prior='mixture' with source_mixture_loss="
                             "'validation' fits the mixture weights on the validation stories, "
                             "and this dataset has none long enough for one piece (split "
                             f"'val': {self.val_stories}). Add validation stories, or set "
                             "source_mixture_loss='training'.")
        self._prior_steps, self._prior_batches = 0, None
        return model

    def _pieces(self, stories):
        return make_pieces(self.dataset, stories, piece_seconds=self.cfg.piece_seconds,
                           loss_seconds=self.cfg.loss_seconds)

    def configure_optimizers(self, model):
        cfg = self.cfg
        # The mixture logits fitted on validation stories have their own optimizer ("prior").
        own = self.mixture_logits if self.prior_on_validation else None
        params = [p for p in model.parameters() if p.requires_grad and p is not own]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.scheduler == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.max_epochs)
        else:
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)
        optimizers = {"main": optimizer}
        if own is not None:
            optimizers["prior"] = torch.optim.Adam([own], lr=self.mixture.source_mixture_lr)
        return optimizers, {"main": scheduler}

    @property
    def resume_may_change(self):
        # max_epochs is a cosine schedule's period: a resumed run may not change it then
        return tuple(k for k in Task.resume_may_change
                     if k != "max_epochs" or self.cfg.scheduler != "cosine")

    # ---------------------------------------------------------------- the curriculum
    def phase(self, epoch):
        return self.cfg.alphas(epoch)[1]

    def may_stop(self, epoch):
        # Stop only once the fMRI phase is reached (or there is no fMRI to wait for).
        return self.cfg.alphas(epoch)[1] == self.cfg.alpha_fmri or not self.fmri_subjects

    def epoch_info(self, epoch):
        info = {"alpha_fmri": self.cfg.alphas(epoch)[1]}
        if self.mixture is not None:  # the mixture weights after this epoch
            weights = torch.softmax(self.mixture_logits.detach().double(), 0).tolist()
            info.update({f"mix_{w:g}mm": p for w, p in zip(self.mixture.source_widths, weights)})
        return info

    # ---------------------------------------------------------------- batches and losses
    def train_batches(self, epoch):
        # The validation batches of the mixture logits restart with every epoch (an exact
        # resume restarts at an epoch boundary).
        self._prior_steps, self._prior_batches = 0, None
        return self.train.epoch(epoch)

    def _prior_loss(self, ctx):
        """The "prior" optimizer's loss: one validation batch's, every
        ``source_mixture_every`` steps once the fMRI term is on; else a constant (its
        backward leaves the logits without a gradient, so the optimizer skips them)."""
        alphas = self.cfg.alphas(ctx.epoch)
        step, self._prior_steps = self._prior_steps, self._prior_steps + 1
        if (self.fmri_subjects and alphas[1] == 0) or step % self.mixture.source_mixture_every:
            return torch.zeros((), device=ctx.device, requires_grad=True), None
        batch = next(self._prior_batches, None) if self._prior_batches is not None else None
        if batch is None:  # cycle through the validation pieces
            self._prior_batches = iter(self.val.epoch(0))
            batch = next(self._prior_batches)
        terms = self._loss(ctx, batch, alphas)
        return terms.total * batch["weight"], None

    def _loss(self, ctx, batch, alphas):
        b = _to_device(batch, ctx.device)
        with ctx.autocast():
            # Heads whose loss weight is 0 are not evaluated (the MEG-first phase skips fMRI).
            eeg = {"eeg": list(b["eeg"])} if self.cfg.alpha_eeg and b.get("eeg") else {}
            pred = ctx.model(b["features"], meg=list(b["meg"]) if alphas[0] else [],
                             fmri=list(b["fmri"]) if alphas[1] else [], **eeg)
        pred.sources, pred.meg, pred.fmri = (pred.sources.float(),
                                             {k: v.float() for k, v in pred.meg.items()},
                                             {k: v.float() for k, v in pred.fmri.items()})
        pred.eeg = {k: v.float() for k, v in pred.eeg.items()}
        return joint_loss(pred, b, self.weights, alpha_meg=alphas[0], alpha_fmri=alphas[1],
                          alpha_smooth=alphas[2], samples_per_tr=self.samples_per_tr,
                          alpha_eeg=self.cfg.alpha_eeg)

    def training_step(self, ctx, batch, optimizer):
        if optimizer == "prior":
            return self._prior_loss(ctx)
        terms = self._loss(ctx, batch, self.cfg.alphas(ctx.epoch))
        # weight = local pieces * world / global pieces (1 on one process): DDP's mean of
        # the weighted local means is the mean over the global batch, even or not.
        return terms.total * batch["weight"], (terms.as_floats() if batch["n_real"] else None)

    def validate(self, ctx, epoch):
        """Validation loss (same format as training) and mean correlations."""
        if not self.val.pieces:
            return {}
        alphas = self.cfg.alphas(epoch)
        sums = torch.zeros(5)
        n = torch.zeros(1)
        for batch in self.val.epoch(0):
            terms = self._loss(ctx, batch, alphas)
            b = batch["n_real"]  # 0 for a stand-in piece (see PieceLoader.epoch)
            eeg = 0.0 if terms.eeg is None else terms.eeg
            sums += torch.tensor([terms.total, terms.meg, terms.fmri, terms.smooth,
                                  eeg]).float() * b
            n += b
        if ctx.distributed:
            torch.distributed.all_reduce(sums)
            torch.distributed.all_reduce(n)
        total, meg, fmri, smooth, eeg = (sums / n.clamp_min(1)).tolist()
        out = {"val_total": total, "val_smooth": smooth}
        # 1 - weighted mean r per modality (computed with the modality switched on).
        out["val_meg_r"] = 1.0 - meg
        if alphas[1] > 0:
            out["val_fmri_r"] = 1.0 - fmri
        if self.eeg_subjects and self.cfg.alpha_eeg:
            out["val_eeg_r"] = 1.0 - eeg
        return out

    @staticmethod
    def monitor(row):
        """The loss the best epoch is chosen by: validation total, else training total."""
        return row["val_total"] if "val_total" in row else row["train_total"]

    # ---------------------------------------------------------------- what is saved
    def model_state(self, model):
        return model.flat_state()

    def load_model_state(self, model, tensors):
        model.load_flat_state(tensors)

    def model_config(self, model):
        return model.config_dict()

    def config(self):
        """Training settings and ``data``: a fingerprint of the store (its manifest and the
        first 1000 samples of the first training story's stimulus features)."""
        if self._fingerprint is None:
            ds = self.dataset
            head = np.asarray(ds.features(self.train_stories[0])[:1000])
            self._fingerprint = hash_arrays(hash_file(Path(ds.path) / MANIFEST), head)
        return {**self.cfg.to_dict(), "data": self._fingerprint}

    def run_config(self, model):
        return {"train": self.cfg.to_dict(), "model": model.config_dict(),
                "dataset": str(self.dataset.path)}

    def save_model(self, model, path):
        model.save(path, overwrite=True)
