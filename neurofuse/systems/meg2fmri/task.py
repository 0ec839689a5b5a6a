"""The MEG2fMRI cGAN's training task (paper §3.4) for the generic loop.

Two optimisers, stepped in this order for every mini-batch (Pix2Pix's schedule):

``"discriminator"``
    ``L_D = (BCE(D(x, y), 1) + BCE(D(x, G(x)), 0)) / 2`` (BCE with logits, averaged over the
    patches; G(x) detached). Halving is Pix2Pix's.
``"generator"``
    ``L_G = BCE(D(x, G(x)), 1) + recon_weight * MSE(G(x), y)``, with the discriminator just
    updated.

Adam (lr 1e-4, betas (0.5, 0.999)) for each, each with a StepLR (x0.5 every 20 epochs).
Mini-batches are drawn in a fresh random order every epoch from torch's random-number
generator, which the loop's checkpoints restore: a resumed run continues exactly.

Validation: the generated slices of the validation pairs against their targets, ``val_mse``
(the monitored number; the paper trains a fixed 125 epochs, so early stopping is off unless
``patience`` is set). Optionally the generated slices of fixed inputs are recorded after
chosen epochs (``snapshots.safetensors``; see :func:`read_snapshots`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..._io import atomic_path
from ...training.task import Task
from .model import MEG2fMRICGAN

__all__ = ["CganTask", "read_snapshots"]

SNAPSHOT_FILE = "snapshots.safetensors"


def read_snapshots(out):
    """Read the generated slices recorded during a fit.

    Parameters
    ----------
    out : path-like
        The fit's output folder (or the ``snapshots.safetensors`` file itself).

    Returns
    -------
    epochs : array of int, shape (n_recorded,)
        1-based epochs after which each record was made.
    images : array of float32, shape (n_recorded, n_inputs, *output_shape)
        The generator's slices (volumes, sequences) for the fixed inputs after those epochs.
    """
    from safetensors.numpy import load_file

    path = Path(out).expanduser()
    if path.is_dir():
        path = path / SNAPSHOT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No snapshots at '{path}': pass snapshot_inputs to fit.")
    data = load_file(str(path))
    return data["epochs"], data["images"]


class CganTask(Task):
    """Train a :class:`~neurofuse.systems.meg2fmri.model.MEG2fMRICGAN` on paired arrays.

    Parameters
    ----------
    X_train : array, shape (n_train, n_features)
        MEG vectors.
    Y_train : array, shape (n_train, height, width) or (n_train, [n_frames,] n_x, n_y, n_z)
        Targets in [0, 1] (slices, volumes or sequences; ``model_config`` matches them).
    config : TrainConfig
        Training settings (:class:`~neurofuse.systems.meg2fmri.trainer.TrainConfig`).
    model_config : CganConfig
        Sizes (``n_features`` equals the width of ``X_train``).
    X_val, Y_val : array | None
        Validation pairs (held out from the training subjects' pairs).
    snapshot_inputs : array, shape (n_inputs, n_features) | None
        MEG vectors whose generated slices are recorded.
    snapshot_every : int
        Record after every ``snapshot_every``-th epoch and after the last one.
    snapshot_path : path-like | None
        Where the records go (``out/snapshots.safetensors``).
    data_key : str
        A fingerprint of the data; a checkpoint made on other data is not resumed.
    """

    train_logs = ("d_loss", "g_loss", "g_adv", "g_recon")
    progress_keys = ("train_d_loss", "train_g_loss", "val_mse")
    # The discriminator's step does not use the generator's parameters.
    ddp_options = {"find_unused_parameters": True}

    def __init__(self, X_train, Y_train, config, model_config, *, X_val=None, Y_val=None,
                 snapshot_inputs=None, snapshot_every=1, snapshot_path=None, data_key=None):
        self.cfg, self.model_cfg = config, model_config
        self.arrays = {"X_train": X_train, "Y_train": Y_train, "X_val": X_val, "Y_val": Y_val,
                       "snap": snapshot_inputs}
        if snapshot_inputs is not None and snapshot_path is None:
            raise ValueError("'snapshot_path' is needed with 'snapshot_inputs': where to write "
                             "the generated slices (e.g. out / 'snapshots.safetensors').")
        self.snapshot_every, self.snapshot_path = snapshot_every, snapshot_path
        self.data_key = data_key
        self._snapshots = None

    def setup(self, ctx):
        def tensor(a):
            return None if a is None else torch.as_tensor(np.asarray(a, np.float32),
                                                          device=ctx.device)

        self.t = {k: tensor(a) for k, a in self.arrays.items()}
        self.rank, self.world_size = ctx.rank, ctx.world_size
        return MEG2fMRICGAN(self.model_cfg).to(ctx.device)

    def configure_optimizers(self, model):
        cfg = self.cfg
        optimizers, schedulers = {}, {}
        # The dict's order is the order of the steps: discriminator, then generator.
        for name, module in (("discriminator", model.discriminator),
                             ("generator", model.generator)):
            opt = torch.optim.Adam(module.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
            optimizers[name] = opt
            schedulers[name] = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step,
                                                               gamma=cfg.lr_gamma)
        return optimizers, schedulers

    # ---------------------------------------------------------------- batches and losses
    def train_batches(self, epoch):
        """Shuffled mini-batches of ``batch_size`` pairs (the last one may be smaller); under
        data parallelism each process takes every ``world_size``-th pair of a batch."""
        X, Y = self.t["X_train"], self.t["Y_train"]
        order = torch.randperm(len(X)).to(X.device)
        for b0 in range(0, len(order), self.cfg.batch_size):
            idx = order[b0:b0 + self.cfg.batch_size][self.rank::self.world_size]
            if len(idx) == 0:
                continue
            yield X[idx], Y[idx]

    def training_step(self, ctx, batch, optimizer):
        meg, real = batch
        if optimizer == "discriminator":
            with ctx.autocast():
                real_logits, fake_logits = ctx.model(meg, real, step="discriminator")
            real_logits, fake_logits = real_logits.float(), fake_logits.float()
            loss = 0.5 * (F.binary_cross_entropy_with_logits(real_logits,
                                                             torch.ones_like(real_logits))
                          + F.binary_cross_entropy_with_logits(fake_logits,
                                                               torch.zeros_like(fake_logits)))
            return loss, {"d_loss": float(loss.detach())}
        with ctx.autocast():
            fake, fake_logits = ctx.model(meg, step="generator")
        fake, fake_logits = fake.float(), fake_logits.float()
        adv = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
        recon = F.mse_loss(fake, real)
        loss = adv + self.cfg.recon_weight * recon
        return loss, {"g_loss": float(loss.detach()), "g_adv": float(adv.detach()),
                      "g_recon": float(recon.detach())}

    # ---------------------------------------------------------------- validation, snapshots
    def _generate(self, ctx, X):
        return torch.cat([ctx.module(X[b0:b0 + 256]).float()
                          for b0 in range(0, len(X), 256)]) if len(X) else X[:0]

    def validate(self, ctx, epoch):
        """``val_mse``: mean squared error of the generated validation slices."""
        row = {}
        if self.t["X_val"] is not None and len(self.t["X_val"]):
            fake = self._generate(ctx, self.t["X_val"])
            row["val_mse"] = float(F.mse_loss(fake, self.t["Y_val"]))
        if self.t["snap"] is not None and ctx.rank == 0:
            last = epoch + 1 == self.cfg.epochs
            if (epoch + 1) % self.snapshot_every == 0 or last:
                self._record(epoch + 1, self._generate(ctx, self.t["snap"]).cpu().numpy())
        return row

    def _record(self, epoch, images):
        """Append ``images`` for 1-based ``epoch``; records of later epochs (left by a run
        interrupted after recording but before its checkpoint) are dropped."""
        from safetensors.numpy import save_file

        if self._snapshots is None:  # first record of this run: continue what is on disk
            self._snapshots = ([], [])
            if Path(self.snapshot_path).is_file():
                epochs, old = read_snapshots(self.snapshot_path)
                self._snapshots = (list(epochs), list(old))
        epochs, imgs = self._snapshots
        keep = [i for i, e in enumerate(epochs) if e < epoch]
        epochs, imgs = [epochs[i] for i in keep] + [epoch], [imgs[i] for i in keep] + [images]
        self._snapshots = (epochs, imgs)
        with atomic_path(self.snapshot_path, what="snapshots") as tmp:
            save_file({"epochs": np.asarray(epochs, np.int64),
                       "images": np.stack(imgs).astype(np.float32)}, str(tmp))

    def monitor(self, row):
        """Validation MSE, else the training reconstruction MSE."""
        return row.get("val_mse", row["train_g_recon"])

    # ---------------------------------------------------------------- what is saved
    def model_config(self, model):
        return {**model.config_dict(), "data": self.data_key}

    def config(self):
        return self.cfg.to_dict()

    def run_config(self, model):
        return {"train": self.cfg.to_dict(), "model": model.config.to_dict(),
                "data": self.data_key}

    def save_model(self, model, path):
        model.save(path, overwrite=True)
