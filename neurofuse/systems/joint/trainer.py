"""Training the joint model (paper §2.6): its settings, presets and :func:`fit`.

:func:`fit` trains a :class:`~neurofuse.systems.joint.model.JointModel` on a dataset store by
running the joint model's task (:class:`~neurofuse.systems.joint.task.JointTask`: pieces,
loss, MEG-first curriculum) in the generic loop (:func:`neurofuse.training.loop.fit_task`:
AdamW steps, gradient clipping, early stopping, a checkpoint every epoch in
``out/checkpoints/`` with exact resume, data parallelism over processes started by
``torchrun``). The best model (lowest validation loss) is saved in ``out/model/`` and every
epoch is logged to ``out/history.csv``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..._checks import _check_int, _check_keys, _check_option, _check_positive
from ..._logging import verbose
from ...training.loop import LoopConfig, fit_task
from ...training.presets import read_fit_config
from .resources import check_fit_dataset
from .task import JointTask

__all__ = ["FIT_PRESETS", "TrainConfig", "fit", "load_fit_config"]


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (paper §2.6 defaults). Every field is overridable.

    Parameters
    ----------
    piece_seconds, loss_seconds : float
        Piece length and the final part of it that enters the loss (40 s, 20 s).
    batch_size : int
        Global batch size in pieces (8), split across data-parallel processes.
    max_epochs : int
        Upper bound on epochs.
    meg_first_epochs : int
        Epochs with ``alpha_fmri = 0`` before the fMRI term is switched on (20).
    alpha_meg, alpha_fmri, alpha_smooth : float
        a1 (1), a2 after the curriculum (1), a3 (1e-4).
    alpha_eeg : float
        Weight of the EEG correlation term (1), on from the first epoch like MEG's; used
        only when the store has EEG subjects (and left out of :meth:`to_dict` at its default,
        so MEG + fMRI runs are described as before).
    lr, weight_decay : float
        AdamW settings.
    grad_clip : float | None
        Max global gradient norm.
    scheduler : 'constant' | 'cosine'
        Learning-rate schedule over ``max_epochs``.
    patience : int
        Epochs without validation improvement before stopping.
    min_epochs : int
        Early stopping may end training only after this many epochs (0: as soon as the fMRI
        phase is reached and ``patience`` runs out). Left out of :meth:`to_dict` at 0, so
        runs from before it keep their fingerprint.
    loss_weighting : 'repeatability' | 'uniform'
        Per-target weights of the correlation terms.
    seed : int
        Initialisation, dropout and shuffling seed.
    mixed_precision : bool
        bf16 autocast of the forward pass, on CUDA or CPU (see
        :class:`~neurofuse.training.loop.LoopConfig`).
    block_size : int
        Query block of the windowed attention.
    fmri_denoise : 'none' | 'in-sample' | 'cross-fitted' | 'auto' | bool
        Training-story fMRI targets (validation always uses the recordings): the recordings;
        the fMRI ridge ceiling's in-sample predictions (the paper's footnote 2; ``True``);
        out-of-fold ridge predictions, each story predicted without its own data
        (:func:`neurofuse.baselines.ridge.denoise_fmri`); or the one of these whose short
        pilot training reaches the lowest validation loss
        (:mod:`neurofuse.systems.joint.denoising`). Default ``'none'``; the ``paper`` preset uses
        ``'in-sample'`` (to reproduce the paper), the ``demo`` preset ``'none'`` (the choice of
        ``'auto'`` on the demo study).
    fmri_denoise_folds : int | 'stories'
        Folds of whole training stories for ``'cross-fitted'`` (``'stories'``: leave one out).
    fmri_denoise_pilot_epochs : int
        fMRI-phase epochs of each pilot of ``'auto'`` (after the ``meg_first_epochs``).
    """

    piece_seconds: float = 40.0
    loss_seconds: float = 20.0
    batch_size: int = 8
    max_epochs: int = 100
    meg_first_epochs: int = 20
    alpha_meg: float = 1.0
    alpha_fmri: float = 1.0
    alpha_smooth: float = 1e-4
    lr: float = 3e-4
    weight_decay: float = 0.01
    grad_clip: float | None = 1.0
    scheduler: str = "constant"
    patience: int = 10
    min_epochs: int = 0
    loss_weighting: str = "repeatability"
    seed: int = 0
    mixed_precision: bool = False
    block_size: int = 128
    fmri_denoise: str = "none"
    fmri_denoise_folds: int | str = "stories"
    fmri_denoise_pilot_epochs: int = 5
    alpha_eeg: float = 1.0

    def __post_init__(self):
        from ...baselines.ridge import check_fmri_denoise

        object.__setattr__(self, "fmri_denoise", check_fmri_denoise(
            self.fmri_denoise, "TrainConfig.fmri_denoise"))
        if self.fmri_denoise_folds != "stories":
            object.__setattr__(self, "fmri_denoise_folds", _check_int(
                "TrainConfig.fmri_denoise_folds", self.fmri_denoise_folds, 2,
                how_to_fix="Pass an int >= 2 or 'stories' (leave one story out)."))
        object.__setattr__(self, "fmri_denoise_pilot_epochs", _check_int(
            "TrainConfig.fmri_denoise_pilot_epochs", self.fmri_denoise_pilot_epochs, 1))
        for name, minimum in (("batch_size", 1), ("max_epochs", 1), ("patience", 1),
                              ("block_size", 1), ("meg_first_epochs", 0), ("min_epochs", 0)):
            object.__setattr__(self, name,
                               _check_int(f"TrainConfig.{name}", getattr(self, name), minimum))
        for name in ("piece_seconds", "loss_seconds", "lr"):
            _check_positive(f"TrainConfig.{name}", getattr(self, name))
        if self.loss_seconds > self.piece_seconds:
            raise ValueError(f"TrainConfig.loss_seconds ({self.loss_seconds:g} s) must not exceed "
                             f"piece_seconds ({self.piece_seconds:g} s): the loss is computed on "
                             "the last part of each piece. Lower loss_seconds.")
        for name in ("alpha_meg", "alpha_fmri", "alpha_smooth", "weight_decay", "alpha_eeg"):
            _check_positive(f"TrainConfig.{name}", getattr(self, name), allow_zero=True)
        if self.grad_clip is not None:
            _check_positive("TrainConfig.grad_clip", self.grad_clip)
        _check_option("TrainConfig.scheduler", self.scheduler, ["constant", "cosine"])
        _check_option("TrainConfig.loss_weighting", self.loss_weighting,
                      ["repeatability", "uniform"])

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        _check_keys("training setting (TrainConfig)", values,
                    [f.name for f in dataclasses.fields(cls)])
        return cls(**values)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        if out["alpha_eeg"] == 1.0:  # the default: runs without EEG keep their fingerprint
            del out["alpha_eeg"]
        if out["min_epochs"] == 0:  # the default: runs from before it keep theirs
            del out["min_epochs"]
        return out

    def loop_config(self) -> LoopConfig:
        """The generic loop's share of these settings."""
        return LoopConfig(max_epochs=self.max_epochs, patience=self.patience,
                          min_epochs=self.min_epochs, grad_clip=self.grad_clip,
                          mixed_precision=self.mixed_precision, seed=self.seed)

    def alphas(self, epoch: int) -> tuple:
        """(a1, a2, a3) in ``epoch`` (0-based): the MEG-first curriculum."""
        a2 = 0.0 if epoch < self.meg_first_epochs else self.alpha_fmri
        return self.alpha_meg, a2, self.alpha_smooth


# ---------------------------------------------------------------------------- fit


@verbose
def fit(dataset, out, *, train_config=None, encoder_kwargs=None, resume=False, device=None,
        denoised_fmri=None, known_fmri_targets=None, epoch_callback=None, verbose=None):
    """Train the joint model on a dataset store.

    Parameters
    ----------
    dataset : Dataset | path-like
        Opened with :func:`neurofuse.data.store.read_dataset` if a path.
    out : path-like
        Output folder: ``model/`` (best model), ``checkpoints/``, ``history.csv``,
        ``config.json``.
    train_config : TrainConfig | dict | None
        Training settings (unknown keys raise).
    encoder_kwargs : dict | None
        :class:`~neurofuse.systems.joint.encoder.StimulusEncoder` sizes (paper defaults
        otherwise).
    resume : bool
        Continue from ``out/checkpoints`` exactly where it stopped.
    device : str | torch.device | None
        Defaults to CUDA (this process's local rank under torchrun) when available, else CPU.
    denoised_fmri : dict | None
        ``{subject: {story: array (n_sources, n_trs)}}``: training-story fMRI targets to use
        instead of the recordings, e.g. the fMRI ridge ceiling's predictions (paper footnote
        2); given, they are used as they are, whatever ``fmri_denoise`` says. None: the
        targets follow ``train_config.fmri_denoise`` (computed here, kept in
        ``out/fmri-denoise/``). Validation always uses the recorded fMRI.
    known_fmri_targets : dict | None
        ``{method: targets}`` already computed (e.g. ``{"in-sample": ...}`` from ridge
        ceilings fitted elsewhere), reused instead of recomputed.
    epoch_callback : callable | None
        Called as ``epoch_callback(epoch, row)`` after each epoch (``row``: the history dict).
    verbose : bool | str | None

    Returns
    -------
    history : list of dict
        One row per epoch: losses, validation correlations, learning rate, seconds.
    """
    from ...data.store import read_dataset

    if not hasattr(dataset, "splits"):
        dataset = read_dataset(dataset)
    cfg = train_config if isinstance(train_config, TrainConfig) else \
        TrainConfig.from_dict(dict(train_config or {}))
    check_fit_dataset(dataset, cfg, encoder_kwargs)  # refuse what cannot fit, before building
    if denoised_fmri is None and cfg.fmri_denoise != "none":
        from .denoising import fmri_targets

        _, denoised_fmri = fmri_targets(dataset, out, cfg, encoder_kwargs=encoder_kwargs,
                                        device=device, known=known_fmri_targets)
    task = JointTask(dataset, cfg, encoder_kwargs=encoder_kwargs,
                     denoised_fmri=denoised_fmri or None)
    return fit_task(task, out, config=cfg.loop_config(), resume=resume, device=device,
                    epoch_callback=epoch_callback)


#: Named training set-ups: ``train`` holds TrainConfig fields, ``encoder`` StimulusEncoder sizes.
_DEMO_TRAIN = {"batch_size": 2, "max_epochs": 50, "meg_first_epochs": 5, "patience": 6,
               "min_epochs": 40, "lr": 1e-3, "fmri_denoise": "none"}
_DEMO_ENCODER = {"d_model": 64, "n_layers": 2, "n_heads": 2, "d_ff": 128, "window": 250,
                 "dropout": 0.1, "source_fwhm": 15.0}

FIT_PRESETS = {
    # The paper's model and schedule (§2.2, §2.6).
    "paper": {"train": {"fmri_denoise": "in-sample"}, "encoder": {}},
    # A small model that learns the demo study on 2 CPU cores in a few minutes. Its source
    # layer is smoothed (15 mm FWHM, not in the paper): with the demo's 14 minutes of training
    # stories per subject, unsmoothed per-source weights fit noise. 15 mm had the lowest
    # validation loss of none / 10 / 15 / 20 mm on the demo study (docs/simulation-benchmark.md).
    # It is the demo's training set-up (neurofuse.evaluation.pipeline.DEMO_FIT is this preset):
    # batches of 2 pieces (on 2 CPU cores an epoch at batch 2 takes about a quarter of the time
    # of one at batch 8, the (B, T, sources) tensors staying in cache, and gives 4x the
    # optimizer steps); 50 epochs take about 5 minutes on an idle 2-core machine; held-out MEG
    # r on the demo study at the paper's fMRI weight was about 0.55 after 20 epochs and
    # 0.73-0.74 after 50 (at weight 0.03: 0.776; the ridge ceiling: 0.74). Training fMRI:
    # the recordings ("none"), the choice of the no-ground-truth rule fmri_denoise="auto" on
    # the demo study (pilot validation losses none 1.459, in-sample 1.481, cross-fitted
    # 1.513; docs/simulation-benchmark.md). The paper's in-sample denoising lets noise in
    # through the ceiling's own fit; the `paper` preset keeps it, to reproduce.
    # Early stopping waits for 40 epochs: on less data than the demo's, validation loss sits
    # on a plateau (held-out MEG r ~0.35) for 10 to 40 epochs before it falls again; the
    # smallest min_epochs whose kept epoch matched a run without early stopping (within 0.01
    # validation loss) on 2-6 training stories was 40 (benchmarks/bench_min_epochs.py,
    # benchmarks/results/min_epochs.json). The demo's own fit ran past it (at weight 1 it
    # stopped at 47).
    # The fMRI term weighs 0.03 (alpha_fmri; the paper's is 1): of 0, 0.01, 0.03, 0.1, 0.3
    # and 1, the weight whose model predicts the validation stories' MEG and fMRI best (mean
    # r, neurofuse.evaluation.selection.validation_choice; no test story, no ground truth),
    # on the demo study at fMRI CNR 0.3 and at CNR inf alike, an interior maximum
    # (benchmarks/results/variants_alpha_fmri_cnr0.3.json, ..._cnrinf.json). At weight 1 the
    # fMRI term cost the sources even with noise-free fMRI; see docs/simulation-benchmark.md.
    "demo": {"train": {**_DEMO_TRAIN, "alpha_fmri": 0.03}, "encoder": dict(_DEMO_ENCODER)},
    # The demo's set-up with fMRI weight 0.1: the `demo` preset in stops 27-28, chosen then
    # from a coarser grid (0, 0.1, 0.3, 1); kept to resume or reproduce those measurements.
    "demo-alpha0.1": {"train": {**_DEMO_TRAIN, "alpha_fmri": 0.1},
                      "encoder": dict(_DEMO_ENCODER)},
    # The demo's set-up with the paper's fMRI weight (alpha_fmri 1): the `demo` preset until
    # stop 26, which the benchmarks measured before then (to resume or reproduce them).
    "demo-alpha1": {"train": dict(_DEMO_TRAIN), "encoder": dict(_DEMO_ENCODER)},
    # Seconds: for tests.
    "tiny": {
        "train": {"max_epochs": 3, "meg_first_epochs": 1, "piece_seconds": 8.0,
                  "loss_seconds": 4.0, "batch_size": 4, "lr": 1e-3},
        "encoder": {"d_model": 16, "n_layers": 2, "n_heads": 2, "d_ff": 32, "window": 50,
                    "dropout": 0.1},
    },
}


def load_fit_config(config):
    """Resolve a training set-up into ``(TrainConfig, encoder_kwargs)``.

    Parameters
    ----------
    config : str | path-like | dict
        A preset name (``"paper"``, ``"demo"``, ``"tiny"``), a TOML/JSON file, or a dict, with
        optional keys ``preset`` (start from that preset), ``train`` (TrainConfig fields) and
        ``encoder`` (StimulusEncoder sizes). Unknown keys raise.
    """
    from .encoder import EncoderConfig

    resolved = read_fit_config(config, FIT_PRESETS, ("train", "encoder"))
    train = TrainConfig.from_dict(resolved["train"])
    encoder = resolved["encoder"]
    EncoderConfig.from_dict(encoder)  # validates the keys now, not after loading data
    return train, encoder
