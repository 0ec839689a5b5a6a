"""The transcoder's training task for the generic loop (paper §4.4.1: Adam, batch size 1).

One optimiser (``"main"``, Adam over the four networks). Every epoch visits the training
items (runs, or chunks of runs) in a fresh random order drawn from torch's random-number
generator, which the loop's checkpoints restore, so a resumed run continues exactly. A batch
stacks ``batch_size`` items (paper: 1). The loss is :func:`~.losses.transcoder_loss` of the
model's outputs; validation (with validation runs) reports the same terms on them, and the
mean of the weighted loss, ``val_loss``, is monitored.
"""

from __future__ import annotations

import numpy as np
import torch

from ...training.task import Task
from .losses import LOSS_TERMS, transcoder_loss
from .model import Transcoder

__all__ = ["TranscoderTask"]


class TranscoderTask(Task):
    """Train a :class:`~neurofuse.systems.transcoder.model.Transcoder` on a data set's runs.

    Parameters
    ----------
    data : TranscoderData
        The batch items (:class:`~neurofuse.systems.transcoder.data.TranscoderData`).
    config : TrainConfig
        Training settings (:class:`~neurofuse.systems.transcoder.trainer.TrainConfig`).
    model_config : TranscoderConfig | SubjectConfig
        Sizes (``n_channels``, ``volume_shape`` and ``steps_per_tr`` match ``data``).
    model_cls : type | None
        The model built from ``model_config`` (None: the group-level
        :class:`~neurofuse.systems.transcoder.model.Transcoder`; the subject level passes
        :class:`~neurofuse.systems.transcoder.subject.SubjectTranscoder` with its
        :class:`~neurofuse.systems.transcoder.subject.SubjectData`).
    """

    train_logs = ("loss", *LOSS_TERMS)
    progress_keys = ("train_loss", "val_loss")
    no_batches_hint = ("The data set has no training run: simulate more runs (the last ones "
                       "form the test split) or lower n_val.")

    def __init__(self, data, config, model_config, *, model_cls=None):
        self.data, self.cfg, self.model_cfg = data, config, model_config
        self.model_cls = model_cls or Transcoder

    def setup(self, ctx):
        self.device, self.rank, self.world_size = ctx.device, ctx.rank, ctx.world_size
        return self.model_cls(self.model_cfg).to(ctx.device)

    def configure_optimizers(self, model):
        return {"main": torch.optim.Adam(model.parameters(), lr=self.cfg.lr,
                                         betas=tuple(self.cfg.betas))}, {}

    def _batch(self, items, purpose):
        loaded = [self.data.load(item, purpose) for item in items]
        eeg = torch.as_tensor(np.stack([e for e, _, _ in loaded]), device=self.device)
        fmri = torch.as_tensor(np.stack([f for _, f, _ in loaded]), device=self.device)
        return eeg, fmri  # group: (B, C, N*s), (B, X, Y, Z, N); subject: (B, X, Y, Z, T) both

    def train_batches(self, epoch):
        """Shuffled batches of ``batch_size`` items; under data parallelism each process takes
        every ``world_size``-th item of a batch."""
        items = self.data.items("train")
        order = torch.randperm(len(items)).tolist()
        for b0 in range(0, len(order), self.cfg.batch_size):
            idx = order[b0:b0 + self.cfg.batch_size][self.rank::self.world_size]
            if idx:
                yield self._batch([items[i] for i in idx], "train")

    def _loss(self, model, ctx, eeg, fmri):
        with ctx.autocast():
            out = model(eeg, fmri, cycle=self.cfg.cycle)
        return transcoder_loss(out, eeg, fmri, weights=self.cfg.weights,
                               reduction=self.cfg.reduction)

    def training_step(self, ctx, batch, optimizer):
        loss, terms = self._loss(ctx.model, ctx, *batch)
        return loss, {"loss": float(loss.detach()), **{k: float(v) for k, v in terms.items()}}

    def validate(self, ctx, epoch):
        """``val_loss`` and ``val_<term>``: means over the validation items (none without)."""
        items = self.data.items("val")
        if not items:
            return {}
        sums = dict.fromkeys(("loss", *LOSS_TERMS), 0.0)
        for item in items:
            loss, terms = self._loss(ctx.module, ctx, *self._batch([item], "val"))
            sums["loss"] += float(loss)
            for k, v in terms.items():
                sums[k] += float(v)
        return {f"val_{k}": v / len(items) for k, v in sums.items()}

    def monitor(self, row):
        """The validation loss, else the training loss."""
        return row.get("val_loss", row["train_loss"])

    # ---------------------------------------------------------------- what is saved
    def model_config(self, model):
        return {**model.config_dict(), "data": self.data.fingerprint()}

    def config(self):
        return {**self.cfg.to_dict(), "data": self.data.fingerprint()}

    def run_config(self, model):
        return {"train": self.cfg.to_dict(), "model": model.config.to_dict(),
                "data": self.data.describe()}

    def save_model(self, model, path):
        model.save(path, overwrite=True, extra={"data": self.data.describe()})
