"""The EEG→MEG generator's training task for the generic loop (paper §III-A: AdamW, clip 1).

One optimiser (``"main"``: AdamW, lr 1e-4, weight decay 1e-2, betas (0.9, 0.999), over the
parameters that require gradients: a frozen pretrained encoder's do not). Every epoch visits
the training subjects' epochs in a fresh random order drawn from torch's generator, which the
loop's checkpoints restore, so a resumed run continues exactly. The loss is the generator's
Eq. 9 total; validation reports every term on the validation subjects with a fixed noise
seed (the diffusion terms draw timesteps and noise), so epochs compare, and ``val_loss`` (or
``val_rec``: ``TrainConfig.monitor``) is monitored.

A frozen encoder is a fixed function of the EEG, so with ``cache_encoder`` (default) its
tokens ``H_enc`` of each training and validation epoch are computed on the epoch's first visit
and kept (``n × C_e × P × D`` floats, ~80 kB per epoch of the demo world), and later visits
skip the encoder — the largest share of a step's time on a CPU. The encoder runs in eval mode
either way, so the result does not change beyond rounding.
"""

from __future__ import annotations

import torch

from ...training.task import Task

__all__ = ["GeneratorTask", "MONITORS", "monitored"]

#: Seed of the noise drawn by validation's diffusion terms (the same every epoch).
VAL_SEED = 1234

#: What early stopping may follow (``TrainConfig.monitor``): Eq. 9's total, or L_rec alone.
MONITORS = ("val_loss", "val_rec")


def monitored(row, monitor="val_loss"):
    """The number early stopping minimises in a history row: ``monitor`` (a validation
    column), else its training counterpart (``train_loss``, ``train_rec``) when the run has
    no validation subject (a row with validation numbers but not ``monitor``: KeyError)."""
    if monitor in row or any(k.startswith("val_") for k in row):
        return row[monitor]
    return row["train_" + monitor[len("val_"):]]


class GeneratorTask(Task):
    """Train an :class:`~neurofuse.systems.eeg2meg.generator.EEG2MEGGenerator`.

    Parameters
    ----------
    data : PairedEpochs
        The paired epochs (:class:`~neurofuse.systems.eeg2meg.data.PairedEpochs`).
    config : TrainConfig
        Training settings (:class:`~neurofuse.systems.eeg2meg.trainer.TrainConfig`).
    build_model : callable
        ``build_model() -> torch.nn.Module`` with ``losses(eeg, meg)`` returning a dict of
        Eq. 9 terms and ``"total"``; called once, on the CPU, after torch is seeded.
    describe : dict
        JSON description of the model (sizes, encoder origin), saved with checkpoints so a
        resume with another model is refused.
    save : callable
        ``save(model, path)`` writes the model folder.
    """

    no_batches_hint = ("The store's training subjects have no paired epochs: simulate more "
                       "subjects or lower n_val_subjects / n_test_subjects.")

    def __init__(self, data, config, *, build_model, describe, save):
        self.data, self.cfg = data, config
        self._build, self._describe, self._save = build_model, describe, save
        self.train_logs = ("loss",)
        self._cache = {}  # item -> H_enc (C_e, P, D) of the frozen encoder
        self._model = None

    @property
    def progress_keys(self):
        """The losses on the progress bar, with what early stopping follows."""
        keys = ("train_loss", "val_loss")
        return keys + ((self.cfg.monitor,) if self.cfg.monitor not in keys else ())

    def setup(self, ctx):
        self.device, self.rank, self.world_size = ctx.device, ctx.rank, ctx.world_size
        self._model = self._build().to(ctx.device)
        self._cache = {}
        return self._model

    def configure_optimizers(self, model):
        params = [p for p in model.parameters() if p.requires_grad]
        return {"main": torch.optim.AdamW(params, lr=self.cfg.lr, betas=tuple(self.cfg.betas),
                                          weight_decay=self.cfg.weight_decay)}, {}

    def _batch(self, items):
        eeg, meg = self.data.load(items)
        eeg = torch.as_tensor(eeg, device=self.device)
        meg = torch.as_tensor(meg, device=self.device)
        return eeg, meg, self._encoded(items, eeg)

    def _encoded(self, items, eeg):
        """The frozen encoder's tokens of ``items`` (cached), or None when not cached."""
        model = self._model
        if not (getattr(self.cfg, "cache_encoder", False) and model is not None
                and getattr(model, "frozen_encoder", False)):
            return None
        items = [tuple(i) for i in items]
        missing = [k for k, item in enumerate(items) if item not in self._cache]
        if missing:
            with torch.no_grad():
                h = model.encode_eeg(eeg[missing])  # (b, C_e, P, D); eval mode, frozen
            for k, hk in zip(missing, h):
                self._cache[items[k]] = hk
        return torch.stack([self._cache[item] for item in items])

    def train_batches(self, epoch):
        """Shuffled batches of ``batch_size`` epochs; under data parallelism each process takes
        every ``world_size``-th epoch of a batch."""
        items = self.data.items("train")
        order = torch.randperm(len(items)).tolist()
        for b0 in range(0, len(order), self.cfg.batch_size):
            idx = order[b0:b0 + self.cfg.batch_size][self.rank::self.world_size]
            if idx:
                yield self._batch([items[i] for i in idx])

    def training_step(self, ctx, batch, optimizer):
        eeg, meg, h_enc = batch
        with ctx.autocast():
            terms = ctx.model.losses(eeg, meg, h_enc=h_enc)
        loss = terms["total"].float()
        logs = {"loss": float(loss.detach())}
        logs.update({k: float(v.detach()) for k, v in terms.items() if k != "total"})
        return loss, logs

    def validate(self, ctx, epoch):
        """``val_loss`` and ``val_<term>``: means over the validation epochs (none without)."""
        items = self.data.items("val")
        if not items:
            return {}
        sums, n = {}, 0
        # validation's diffusion noise is the same every epoch; the training stream is kept
        state = torch.random.get_rng_state()
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        torch.manual_seed(VAL_SEED)
        try:
            for b0 in range(0, len(items), self.cfg.batch_size):
                chunk = items[b0:b0 + self.cfg.batch_size]
                eeg, meg, h_enc = self._batch(chunk)
                with ctx.autocast():
                    terms = ctx.module.losses(eeg, meg, h_enc=h_enc)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * len(chunk)
                n += len(chunk)
        finally:
            torch.random.set_rng_state(state)
            if cuda is not None:
                torch.cuda.set_rng_state_all(cuda)
        out = {f"val_{k}": v / n for k, v in sums.items() if k != "total"}
        out["val_loss"] = sums["total"] / n
        return out

    #: settings added after runs were checkpointed, with the value those runs had (training,
    #: and the generator's in :meth:`model_config`); fit records are read by the same rule
    added_later = {"config": {"monitor": "val_loss"},  # stop 34
                   "model_config": {"generator": {"dead_code_threshold": 0.0,  # stop 30
                                                  "band_pad": "reflect_limited"}}}  # stop 33

    def monitor(self, row):
        """``TrainConfig.monitor`` of the row (:func:`monitored`)."""
        # (self may be None: a rule replaying a record with the default, as _loop_rules does)
        return monitored(row, getattr(getattr(self, "cfg", None), "monitor", "val_loss"))

    # ---------------------------------------------------------------- what is saved
    def model_config(self, model):
        return {**self._describe, "data": self.data.fingerprint()}

    def config(self):
        return {**self.cfg.to_dict(), "data": self.data.fingerprint()}

    def run_config(self, model):
        return {"train": self.cfg.to_dict(), "model": self._describe,
                "data": self.data.describe()}

    def save_model(self, model, path):
        self._save(model, path)
