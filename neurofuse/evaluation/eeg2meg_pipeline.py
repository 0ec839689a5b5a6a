"""System B end to end: world → pretraining → generator (and ablations) → scores and report.

:func:`evaluate_eeg2meg` is what ``neurofuse eeg2meg evaluate`` runs on a paired EEG–MEG
store (a simulated world, or real data loaded into the store):

1. **Pretraining** of the LaBraM encoder by masked patch modelling on EEG that is disjoint
   from the paired data (by default a separate simulated EEG-only world on the template
   head, with another seed), unless an encoder folder is given.
2. **Fits** of the full generator and of each requested ablation (``no_pretrained``,
   ``no_sfm``, ``no_bsc``, ``no_diffusion``) on the training subjects, selected by the
   validation subjects' loss; the test subjects are never read while fitting.
3. **Baselines** on the same held-out subjects: the physics transfer (EEG → minimum-norm
   inverse on the subject's own EEG forward → its MEG forward; λ² and the gain per sensor
   type chosen on the validation subjects) and a lagged ridge EEG → MEG fitted on the
   training subjects.
4. **Scores** (§III): per-band Pearson r, RMSE, NMI and SSIM of every method's MEG against
   the real MEG; SVM decoding (10 runs × 10-fold CV) from EEG, EEG + each method's MEG and
   EEG + real MEG per held-out subject and task, with chance level and an exact binomial
   p-value, then mean ± s.d. across subjects and a pooled binomial test of all their trials;
   the same on the EEG-only subjects (the cross-dataset test);
   dSPM source imaging from EEG, EEG + real MEG and EEG + each synthetic MEG scored against
   the true sources.
5. ``results.json`` (rows in the schema of ``benchmarks/results/eeg2meg.json``) and
   ``report.html`` (topomaps as Fig. 3, the band metrics, the decoding table).

Each step writes its outputs before the next starts, and a rerun with ``resume=True`` skips
the finished ones (fits resume from their checkpoints), but only those trained under the
settings asked for now: ``pretrain/done.json`` and ``fits/<method>/done.json`` record them
(a folder written before these records is compared on its loop's ``config.json``: the
training, model and data settings, not the pretraining world or the encoder given), and a
rerun under others is refused before any work, naming each differing setting
(:func:`~neurofuse.evaluation.fit_reuse._check_fit_record`). A fit also records its
pretrained encoder's weight checksum (``started.json`` when it starts, ``done.json`` when
done), compared once the pretraining is finished: a fit made or begun on an earlier
pretraining is refused then, after a pretraining redone, not before it.
"""

from __future__ import annotations

import json
import time
import numpy as np

from .._checks import _check_option
from .._io import make_dir, write_json
from .._logging import logger, verbose

__all__ = ["ABLATIONS", "DEMO", "METHODS", "evaluate_eeg2meg", "run_eeg2meg_demo",
           "summary_line"]

#: Generator variants: the full model and the paper's ablations (Table I) plus no diffusion.
ABLATIONS = {"generator": {}, "no_pretrained": {"encoder": "scratch"}, "no_sfm": {"sfm": False},
             "no_bsc": {"bsc": False}, "no_diffusion": {"diffusion": False}}
#: Every method that makes MEG from EEG.
METHODS = (*ABLATIONS, "physics", "ridge")

#: ``neurofuse eeg2meg demo``: minutes on 2 CPU cores. Not tuned on test results. One held-out
#: subject (40-60 trials per task): its decoding p-values say how little that can show; the
#: benchmark holds out three.
DEMO = {
    "world": {"preset": "demo", "n_subjects": 5, "n_eeg_only_subjects": 1, "n_trials": 20},
    # EEG-only, on the template head, another seed: disjoint from the paired data
    "pretrain_world": {"preset": "demo", "n_subjects": 0, "n_eeg_only_subjects": 2,
                       "eeg_only_tasks": ("somatomotor", "faces", "motor_imagery"),
                       "anatomy": "template", "n_trials": 20, "save_sources": False},
    # up to 40 epochs with patience 5 (4 until stop 30): chosen on the benchmark world's
    # validation subject (benchmarks/bench_eeg2meg_pretrain.py, docs/eeg2meg.md)
    "pretrain": {"encoder_config": "small",
                 "config": {"epochs": 40, "batch_size": 128, "patience": 5}},
    "fit": "demo",
    "methods": ("generator", "physics", "ridge"),
    "n_runs": 10,
}


def _world_config(spec, seed=None):
    from ..simulation.eeg_meg import EEGMEGWorldConfig

    spec = dict(spec)
    preset = spec.pop("preset", "demo")
    if seed is not None:
        spec.setdefault("seed", seed)
    return EEGMEGWorldConfig.from_preset(preset, **spec)


def _pretraining_eeg(store, paired_subjects):
    """EEG epochs (list of arrays) and channel names of every subject not in the paired data."""
    from ..data.store import read_dataset

    ds = read_dataset(store)
    arrays, names = [], []
    for sub in ds.subjects:
        if sub in paired_subjects or "eeg" not in ds.modalities(sub):
            continue
        for name in ds.epoch_names(sub, "eeg"):
            arrays.append(np.asarray(ds.epochs(sub, "eeg", name), dtype=np.float32))
            names.append(list(ds.info(sub, "eeg")["ch_names"]))
    return arrays, names


def _pretrain_record(spec, seed):
    """What a finished pretraining records (``pretrain/done.json``): its world, the
    encoder's sizes and the pretraining settings."""
    from ..systems.eeg2meg.pretrain import PretrainConfig, _encoder_config

    config = spec["pretrain"].get("config")
    train = config if isinstance(config, PretrainConfig) else PretrainConfig.from_dict(
        dict(config or {}))
    return {"world": _world_config(spec["pretrain_world"], seed=seed + 1000).to_json(),
            "encoder": _encoder_config(spec["pretrain"].get("encoder_config",
                                                            "small")).to_dict(),
            "train": train.to_dict()}


def _pretrain_prev(folder):
    """The settings a finished pretraining in ``folder`` recorded, or for a folder written
    before that record, what its loop's ``encoder/config.json`` records (the world is then
    not compared); None if it is not finished."""
    done, run = folder / "done.json", folder / "encoder" / "config.json"
    if not (done.is_file() and (folder / "encoder" / "model" / "model.json").is_file()):
        return None
    prev = json.loads(done.read_text())
    if "train" not in prev and run.is_file():
        run = json.loads(run.read_text())
        prev = {"encoder": run.get("encoder"), "train": run.get("train")}
    return prev


def _check_pretrain(out, spec, seed):
    """Refuse to reuse a finished pretraining trained under other settings."""
    from ..systems.eeg2meg.pretrain import PretrainTask
    from .fit_reuse import _check_fit_record, _loop_rules

    folder = out / "pretrain"
    prev = _pretrain_prev(folder)
    if prev is not None:
        _check_fit_record(prev, _pretrain_record(spec, seed), folder=folder / "encoder",
                          what=f"The pretrained encoder in '{folder}'",
                          fix=f"the generators would build on another encoder than the one "
                              f"asked for. Remove '{folder}' (and '{out / 'fits'}', trained "
                              f"on it) to pretrain again, or pass another output folder.",
                          **_loop_rules(PretrainTask))


def _pretrain_step(out, spec, *, resume, seed):
    """Pretrain the encoder on EEG disjoint from the paired data; return its folder."""
    from ..simulation.eeg_meg import simulate_eeg_meg_world
    from ..systems.eeg2meg.pretrain import pretrain_encoder

    folder = out / "pretrain"
    model = folder / "encoder" / "model"
    done = folder / "done.json"
    if resume and done.is_file() and (model / "model.json").is_file():
        _check_pretrain(out, spec, seed)
        return model
    store = folder / "eeg"
    if not (store / "neurofuse-dataset.json").is_file():
        cfg = _world_config(spec["pretrain_world"], seed=seed + 1000)
        logger.info("Simulating the pretraining EEG (a separate world, seed %d)", cfg.seed)
        simulate_eeg_meg_world(store, cfg, overwrite=True)
    arrays, _ = _pretraining_eeg(store, paired_subjects=())
    if not arrays:
        raise ValueError(f"The pretraining world '{store}' has no EEG epochs.")
    path = pretrain_encoder(
        arrays, folder / "encoder", encoder_config=spec["pretrain"].get("encoder_config",
                                                                        "small"),
        config=spec["pretrain"].get("config"),
        resume=resume and (folder / "encoder" / "checkpoints").is_dir())
    write_json(done, {"n_epochs": sum(len(a) for a in arrays), "store": str(store),
                      **_pretrain_record(spec, seed)})
    return path


def _fit_config(base, changes):
    from ..systems.eeg2meg.trainer import FIT_PRESETS

    if isinstance(base, str) and base in FIT_PRESETS:
        base = {"preset": base}
    if not isinstance(base, dict):
        from .._io import read_config

        base = read_config(base, what="training config")
    base = json.loads(json.dumps(base))
    base.setdefault("model", {}).update(changes)
    return base


def _encoder_key(encoder, out):
    """How a fit's record names the encoder it was given: this folder's own pretraining
    (wherever the folder is), another encoder folder (its absolute path) or LaBraM sizes."""
    from pathlib import Path

    if isinstance(encoder, dict):
        return encoder
    if isinstance(encoder, Path) or (isinstance(encoder, str) and (
            Path(encoder).expanduser().is_dir() or "/" in encoder)):
        path = Path(encoder).expanduser().absolute()
        if path == (Path(out) / "pretrain" / "encoder" / "model").expanduser().absolute():
            return "pretrain/encoder/model"
        return str(path)
    return str(encoder)


def _check_started(started, checkpoints, weights, *, what, resume=True):
    """Refuse to resume a fit begun on other encoder weights than ``weights`` (its
    ``started`` file records those it began on; a run begun before that file, or without a
    pretrained encoder, is not compared); else record ``weights`` there for a new run."""
    if resume and checkpoints.is_dir() and started.is_file():
        before = json.loads(started.read_text()).get("encoder_weights")
        if before != weights:
            raise ValueError(
                f"{what} was begun on another pretrained encoder (weights {before} there, "
                f"{weights} now: the pretraining was redone); its checkpoints would carry "
                f"the earlier encoder on. Remove '{checkpoints.parent}' to train it again.")
    elif not (resume and checkpoints.is_dir()):
        write_json(started, {"encoder_weights": weights}, what="fit's start record")


def _fit_record(fit_config, method, encoder, out, *, check_weights=True):
    """``(set-up, record)``: what ``method``'s generator is trained with, and what its
    finished fit records (``fits/<method>/done.json``): ``train``, ``model`` (defaults
    included, but the data's sizes), ``data``, the ``encoder`` it was given
    (:func:`_encoder_key`) and, for a pretrained one, ``encoder_weights``
    (:func:`_encoder_weights`; not with ``check_weights=False``)."""
    from ..systems.eeg2meg.config import GeneratorConfig
    from ..systems.eeg2meg.trainer import _FROM_DATA, load_fit_config
    from .fit_reuse import _with_defaults

    config = _fit_config(fit_config, ABLATIONS[method])
    train, model, data = load_fit_config(config)
    model = {k: v for k, v in _with_defaults(GeneratorConfig, model).items()
             if k not in _FROM_DATA}
    record = {"train": train.to_dict(), "model": model, "data": data.to_dict(),
              "encoder": _encoder_key(encoder, out)}
    # a scratch encoder takes only the sizes of the one given
    weights = None if model.get("encoder") == "scratch" or not check_weights \
        else _encoder_weights(encoder)
    if weights is not None:
        record["encoder_weights"] = weights
    return config, record


def _encoder_weights(encoder):
    """The checksum of a pretrained encoder folder's weights (its ``model.json``), or None
    (LaBraM sizes, or a folder not written yet). A fit records it, so a fit trained on
    another encoder at the same path (a pretraining redone) is not reused; a record
    written before stop 31 has none, and is then not compared on it."""
    from pathlib import Path

    if not isinstance(encoder, (str, Path)):
        return None
    path = Path(encoder).expanduser()
    if not (path / "model.json").is_file() and (path / "model" / "model.json").is_file():
        path = path / "model"
    spec = path / "model.json"
    if not spec.is_file():
        return None
    return (json.loads(spec.read_text()).get("checksums") or {}).get("model.safetensors")


def _fit_prev(folder):
    """The settings a finished fit in ``folder`` recorded, or for a folder written before
    that record, what its loop's ``config.json`` records (the encoder is then not
    compared); None if it is not finished."""
    from ..systems.eeg2meg.task import GeneratorTask
    from ..systems.eeg2meg.trainer import _FROM_DATA
    from ..training.loop import with_added_later

    done, run = folder / "done.json", folder / "config.json"
    if not (done.is_file() and (folder / "model" / "model.json").is_file()):
        return None
    prev = json.loads(done.read_text())
    if "train" not in prev and run.is_file():
        run = json.loads(run.read_text())
        prev = {"train": run.get("train"),
                "model": {k: v for k, v in ((run.get("model") or {}).get("generator")
                                            or {}).items() if k not in _FROM_DATA},
                "data": (run.get("data") or {}).get("config")}
    # settings added later: the value older runs had, as a checkpoint is read
    added = GeneratorTask.added_later
    return with_added_later(prev, {"train": added["config"],
                                   "model": added["model_config"]["generator"]})


def _check_fit(out, method, *, encoder, fit_config, check_weights=True):
    """Refuse to reuse ``method``'s finished fit trained under other settings; return the
    set-up and the record of a new one."""
    from functools import partial

    from ..systems.eeg2meg.task import GeneratorTask, monitored
    from ..systems.eeg2meg.trainer import _GENERATION_ONLY, FIT_PRESETS
    from .fit_reuse import _check_fit_record, _loop_rules

    folder = out / "fits" / method
    config, record = _fit_record(fit_config, method, encoder, out,
                                 check_weights=check_weights)
    prev = _fit_prev(folder)
    if prev is not None:
        # new stopping settings are replayed on what this set-up monitors (a fit that
        # monitored another number differs in train.monitor, and is refused)
        rules = _loop_rules(GeneratorTask,
                            monitor=partial(monitored, monitor=record["train"]["monitor"]))
        # how a trained generator samples does not change its weights
        free = [*rules["free"], *(("model", k) for k in _GENERATION_ONLY)]
        _check_fit_record(prev, record, folder=folder,
                          what=f"The {method!r} generator in '{folder}'", presets=FIT_PRESETS,
                          **{**rules, "free": free})
    return config, record


def _check_finished(out, spec, generators, *, encoder, fit_config, seed):
    """Before any work: refuse to reuse a finished pretraining or fit of ``out`` trained
    under other settings than these (a rerun with ``resume=True`` reuses them)."""
    # the folder's own encoder's weights only once its pretraining is finished (they change
    # while it trains, and a redone one is compared by _fit_step after it)
    weights = True
    if encoder is None and any(m != "no_pretrained" for m in generators):
        _check_pretrain(out, spec, seed)
        encoder = out / "pretrain" / "encoder" / "model"
        weights = _pretrain_prev(out / "pretrain") is not None
    elif encoder is None:
        encoder = spec["pretrain"].get("encoder_config", "small")
    for m in generators:
        _check_fit(out, m, encoder=encoder, fit_config=fit_config, check_weights=weights)


def _fit_step(world, out, method, *, encoder, fit_config, resume):
    from ..systems.eeg2meg.task import monitored
    from ..systems.eeg2meg.trainer import fit

    folder = out / "fits" / method
    model = folder / "model"
    done = folder / "done.json"
    config, record = _check_fit(out, method, encoder=encoder, fit_config=fit_config) \
        if resume else _fit_record(fit_config, method, encoder, out)
    if resume and done.is_file() and (model / "model.json").is_file():
        return model
    _check_started(folder / "started.json", folder / "checkpoints",
                   record.get("encoder_weights"), what=f"The {method!r} generator in '{folder}'",
                   resume=resume)
    logger.info("Fitting %s", method)
    history = fit(world, folder, encoder=encoder, config=config,
                  resume=resume and (folder / "checkpoints").is_dir())
    monitor = record["train"]["monitor"]
    write_json(done, {"epochs": len(history),
                      "val_loss": [h.get("val_loss") for h in history],
                      "monitored": [monitored(h, monitor) for h in history], **record})
    return model


def _baseline_cov(ds, sub, data):
    """EEG noise covariance from the pre-stimulus part of the subject's epochs (MNE)."""
    import mne

    epochs = [ds.to_mne_epochs(sub, "eeg", n) for n in data._sets(sub)]
    if epochs[0].tmin >= 0:
        return None
    return mne.compute_covariance(epochs, tmax=0.0, method="shrunk", verbose="error")


def _physics(ds, data, val_subjects, test_eeg):
    """Physics transfer per test subject: the subject's own forwards and pre-stimulus noise
    covariance; λ² and the gain per sensor type chosen on a validation subject's real MEG."""
    from ..systems.eeg2meg.baselines import PhysicsTransfer

    def transfer(sub, **kw):
        return PhysicsTransfer(ds.forward(sub, "eeg"), ds.forward(sub, "meg"),
                               _baseline_cov(ds, sub, data), info=ds.info(sub, "eeg"),
                               verbose="error", **kw)

    lambda2, scales = None, None
    for sub in val_subjects[:1]:
        e, m, _ = data.subject_arrays(sub, physical=True)
        t = transfer(sub).fit(e, m)
        lambda2, scales = t.lambda2_, dict(t.scales_)
    out = {}
    for sub, e in test_eeg.items():
        t = transfer(sub, lambda2=lambda2)
        if scales:
            t._set_scales(scales)
        if t.eeg_ch_names_ != data.eeg_names or t.meg_ch_names_ != data.meg_names:
            raise RuntimeError(f"The forward channels of {sub} are not in the store's order.")
        out[sub] = t.predict(e)
    return out, {"lambda2": lambda2, "scales": scales}


def _ridge(data, test_eeg):
    from ..systems.eeg2meg.baselines import EEGMEGRidge

    eeg, meg, _ = data.arrays("train")
    # folds of whole subjects when there are several, so the penalty is chosen for new people
    subjects = [s for s, _, _ in data.items("train")]
    groups = np.unique(subjects, return_inverse=True)[1]
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        groups, n_groups = None, 5
    ridge = EEGMEGRidge(cv=min(5, n_groups)).fit(eeg, meg, groups=groups)
    out = {}
    for sub, e in test_eeg.items():
        out[sub] = data.to_physical(ridge.predict(data.standardize(e, "eeg")), "meg")
    return out


def _generate(model_dir, test_eeg, eeg_only):
    """The generator's MEG for the test subjects and for every EEG-only epoch set (one load)."""
    from ..systems.eeg2meg.model import load_generator, synthesize

    model, meta = load_generator(model_dir, return_meta=True)
    test = {sub: synthesize(model, e, meta=meta) for sub, e in test_eeg.items()}
    only = {key: synthesize(model, x, meta=meta) for key, (x, _) in eeg_only.items()}
    return test, only


@verbose
def evaluate_eeg2meg(world, out, *, encoder=None, fit_config="demo", methods=METHODS,
                     pretrain=None, n_runs=10, n_splits=10, source_imaging=True, resume=True,
                     seed=0, verbose=None) -> dict:
    """Fit and score System B and its baselines on a paired EEG–MEG store.

    Parameters
    ----------
    world : path-like
        A store with paired ``eeg``/``meg`` epoch sets
        (:func:`~neurofuse.simulation.eeg_meg.simulate_eeg_meg_world`).
    out : path-like
        Output folder (``pretrain/``, ``fits/<method>/``, ``results.json``, ``report.html``).
    encoder : path-like | None
        A pretrained encoder folder; None: pretrain one on a separate simulated EEG world.
    fit_config : str | path-like | dict
        The generator's set-up (:func:`~neurofuse.systems.eeg2meg.trainer.load_fit_config`);
        each ablation changes only its flag.
    methods : tuple of str
        Among :data:`METHODS`.
    pretrain : dict | None
        ``{"pretrain_world": {...}, "pretrain": {"encoder_config", "config"}}`` (default:
        :data:`DEMO`'s).
    n_runs, n_splits : int
        Repetitions and folds of the decoding cross-validation (paper: 10 × 10).
    source_imaging : bool
        Score dSPM source imaging with each MEG (needs the world's true sources). A store
        without them or without forwards (real recordings) is refused before any work
        unless this is False and ``physics`` is left out.
    resume : bool
        Skip finished steps and resume interrupted fits.
    seed : int
        Seed of the pretraining world.
    verbose : bool | str | None

    Returns
    -------
    results : dict
        ``signal`` rows ``{"method", "band", "pearson", "rmse", "nmi", "ssim"}``; ``decoding``
        rows ``{"method", "task", "accuracy", "f1"}`` averaged over the test subjects, with
        ``accuracy_sd``/``f1_sd`` (s.d. across subjects), ``n_subjects``, ``n_trials``,
        ``n_correct``, ``chance`` and ``p_value`` (exact binomial test of the pooled trials
        against chance); ``decoding_by_subject`` (one row per subject, the same fields from
        :meth:`~.eeg2meg.decoding.DecodingScores.summary`); ``cross_dataset`` (as
        ``decoding``) and ``source_imaging`` rows; ``paper``: the paper's Table I and
        decoding F1 beside ours (:func:`~.eeg2meg.paper.paper_rows`); and the settings.
    """
    from ..data.store import read_dataset
    from ..systems.eeg2meg.data import PairedEpochs
    from ..systems.eeg2meg.trainer import load_fit_config
    from .eeg2meg.paper import paper_rows
    from .eeg2meg.signal_metrics import compute_band_metrics, summarize_band_metrics

    t0 = time.time()
    for m in methods:
        _check_option("methods", m, METHODS)
    out = make_dir(out, option="out")
    spec = {**DEMO, **(pretrain or {})}
    generators = [m for m in methods if m in ABLATIONS]
    if resume:
        _check_finished(out, spec, generators, encoder=encoder, fit_config=fit_config,
                        seed=seed)
    ds = read_dataset(world)
    _, _, data_cfg = load_fit_config(_fit_config(fit_config, {}))
    data = PairedEpochs(ds, data_cfg)
    _check_physics_inputs(ds, data, methods, source_imaging)  # before any fit
    if generators and encoder is None and any(m != "no_pretrained" for m in generators):
        encoder = _pretrain_step(out, spec, resume=resume,
                                 seed=seed)
    elif encoder is None:
        encoder = spec["pretrain"].get("encoder_config", "small")
    test, val = data.subjects["test"], data.subjects["val"]
    sfreq = data.sfreq
    # every test subject's epochs are read once (physical units), and every EEG-only set
    paired = {sub: data.subject_arrays(sub, physical=True) for sub in test}
    test_eeg = {sub: a[0] for sub, a in paired.items()}
    real = {sub: a[1] for sub, a in paired.items()}
    eeg_only = {(sub, name): (np.asarray(ds.epochs(sub, "eeg", name), dtype=np.float64),
                              np.asarray(ds.epoch_labels(sub, "eeg", name)))
                for sub in ds.subjects if "meg" not in ds.modalities(sub)
                for name in ds.epoch_names(sub, "eeg")} if generators else {}
    synthetic, syn_only, settings = {}, {}, {"encoder": str(encoder)}
    for m in generators:
        model_dir = _fit_step(world, out, m, encoder=encoder, fit_config=fit_config,
                              resume=resume)
        synthetic[m], syn_only[m] = _generate(model_dir, test_eeg, eeg_only)
    if "physics" in methods:
        synthetic["physics"], settings["physics"] = _physics(ds, data, val, test_eeg)
    if "ridge" in methods:
        synthetic["ridge"] = _ridge(data, test_eeg)

    # ---- signal fidelity (per band, pooled over the test subjects' epochs)
    signal = []
    for m, per_sub in synthetic.items():
        syn = np.concatenate([per_sub[s] for s in test])
        ref = np.concatenate([real[s] for s in test])
        signal += summarize_band_metrics(compute_band_metrics(syn, ref, sfreq), method=m)

    # ---- decoding per task on the test subjects (Fig. 5) and on EEG-only subjects (Fig. 6)
    decoding = []
    for sub in test:
        labels = paired[sub][2]
        for name, sl in data.set_slices(sub):
            rows = _decoding_rows(test_eeg[sub][sl], labels[sl], sfreq,
                                  {m: synthetic[m][sub][sl] for m in synthetic},
                                  real[sub][sl], n_runs, n_splits)
            decoding += [{"subject": sub, "task": name, **r} for r in rows]
    cross = []
    for (sub, name), (x, y) in eeg_only.items():
        rows = _decoding_rows(x, y, sfreq, {m: syn_only[m][(sub, name)] for m in syn_only},
                              None, n_runs, n_splits)
        cross += [{"subject": sub, "task": name, **r} for r in rows]

    # ---- source imaging (Fig. 7, quantitative)
    sources = []
    if source_imaging:
        sources = _source_imaging_rows(ds, data, paired, synthetic)
    results = {"signal": signal, "decoding": _mean_rows(decoding),
               "decoding_by_subject": decoding, "cross_dataset": _mean_rows(cross),
               "source_imaging": sources, "settings": settings,
               "subjects": data.subjects, "methods": list(methods),
               "paper": paper_rows(_mean_rows(decoding)),  # Table I and F1 beside ours
               "seconds": round(time.time() - t0, 1)}
    write_json(out / "results.json", results)
    _report(out, results, ds, data, paired, synthetic)
    return results


def _decoding_rows(eeg, y, sfreq, synth, real_meg, n_runs, n_splits):
    """Rows of one subject and task: EEG alone, EEG + real MEG, EEG + each method's MEG, all
    on the same folds (:func:`~.eeg2meg.decoding.compare_decoding`'s conditions)."""
    from .eeg2meg.decoding import _cross_validate_conditions

    megs = ({} if real_meg is None else {"real_meg": real_meg}) | dict(synth)
    scores = _cross_validate_conditions(eeg, y, sfreq, megs, base="eeg_only", n_runs=n_runs,
                                        n_splits=n_splits, verbose="error")
    return [{"method": m, **sc.summary()} for m, sc in scores.items()]


def _mean_rows(rows):
    """Per method and task: mean ± s.d. across subjects, and the pooled binomial test."""
    from .eeg2meg.decoding import binomial_p_value

    out = {}
    for r in rows:
        out.setdefault((r["method"], r["task"]), []).append(r)
    merged = []
    for (m, t), rs in out.items():
        acc, f1 = np.array([r["accuracy"] for r in rs]), np.array([r["f1"] for r in rs])
        n_trials = int(sum(r["n_trials"] for r in rs))
        n_correct = int(sum(r["n_correct"] for r in rs))
        chance = max(r["chance"] for r in rs)  # equal for one task; else the conservative one
        sd = dict(ddof=1) if len(rs) > 1 else {}
        merged.append({"method": m, "task": t, "accuracy": float(acc.mean()),
                       "f1": float(f1.mean()), "accuracy_sd": float(acc.std(**sd)),
                       "f1_sd": float(f1.std(**sd)), "n_subjects": len(rs),
                       "n_trials": n_trials, "n_correct": n_correct, "chance": float(chance),
                       "p_value": binomial_p_value(n_correct, n_trials, chance)})
    return merged


def _check_physics_inputs(ds, data, methods, source_imaging):
    """Refuse, before any work, a physics transfer or source imaging the store cannot feed:
    both need each subject's EEG and MEG forwards, source imaging the true sources (a
    simulation's; real recordings have neither)."""
    wants = [("the physics transfer", data.subjects["val"] + data.subjects["test"], False)
             ] if "physics" in methods else []
    if source_imaging:
        wants.append(("source imaging", data.subjects["test"], True))
    for what, subjects, truth in wants:
        missing = [f"{mod} forward of {sub}" for sub in subjects for mod in ("eeg", "meg")
                   if "forward" not in ds.files(sub, mod)]
        if truth:
            missing += [f"true sources of {sub}/{name}" for sub in subjects
                        for name, _ in data.set_slices(sub)
                        if f"sources/{sub}/{name}.npy" not in ds.ground_truth_names]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise ValueError(
                f"The store '{ds.path}' lacks what {what} needs: {', '.join(missing[:3])}"
                f"{more} (real recordings have no forward or true sources). Leave 'physics' "
                "out of methods (--methods generator ... ridge) and pass source_imaging=False "
                "(--no-source-imaging), or add the subjects' forwards (neurofuse.anatomy."
                "make_forward) to the store.")


def _source_imaging_rows(ds, data, paired, synthetic):
    from .eeg2meg.source_imaging import compare_source_imaging

    rows = []
    for sub, (eeg, real, labels) in paired.items():
        fwd = _combined_forward(ds, sub)
        for name, sl in data.set_slices(sub):
            tmin = float(ds.epochs_info(sub, "eeg", name)["tmin"])
            truth_all = np.asarray(ds.ground_truth(f"sources/{sub}/{name}"))
            pick = np.flatnonzero(labels[sl] == labels[sl].min())  # the lowest class's trials
            truth = truth_all[pick].mean(axis=0)
            for m, per_sub in synthetic.items():
                scores = compare_source_imaging(
                    fwd, eeg[sl][pick], truth, sfreq=data.sfreq, tmin=tmin,
                    real_meg=real[sl][pick], synthetic_meg=per_sub[sub][sl][pick],
                    verbose="error")
                for cond, sc in scores.items():
                    method = {"eeg": "eeg_only", "eeg+real_meg": "real_meg"}.get(cond, m)
                    if method != m and any(r["method"] == method and r["subject"] == sub and
                                           r["task"] == name for r in rows):
                        continue
                    rows.append({"method": method, "subject": sub, "task": name,
                                 **{k: float(v) for k, v in sc.items()
                                    if np.isscalar(v)}})
    return rows


def _combined_forward(ds, sub):
    """The subject's EEG + MEG forward (the store keeps one per modality)."""
    from .eeg2meg.source_imaging import combine_forwards

    return combine_forwards(ds.forward(sub, "meg"), ds.forward(sub, "eeg"))


def summary_line(results) -> str:
    """One line: per-band r of the generator vs physics vs ridge, and decoding accuracy
    (mean over tasks; chance and the largest pooled binomial p-value over tasks)."""
    by = {}
    for r in results["signal"]:
        by.setdefault(r["method"], []).append(r["pearson"])
    parts = [f"{m} r {np.nanmean(v):.2f}" for m, v in by.items()]
    dec = {}
    for r in results["decoding"]:
        dec.setdefault(r["method"], []).append(r)
    acc = [f"{m} {np.mean([r['accuracy'] for r in v]):.2f}"
           + (f" (p <= {max(r['p_value'] for r in v):.2g})" if "p_value" in v[0] else "")
           for m, v in dec.items()]
    chance = sorted({round(r["chance"], 2) for r in results["decoding"] if "chance" in r})
    if chance:
        acc.append("chance " + "/".join(f"{c:.2f}" for c in chance))
    return ("neurofuse eeg2meg: MEG r (mean over bands) " + ", ".join(parts)
            + "; decoding accuracy " + ", ".join(acc))


def _report(out, results, ds, data, paired, synthetic):
    from ..viz.eeg2meg import report_sections
    from ..viz.report import make_report

    sections = report_sections(results, ds, data, paired, synthetic)
    make_report(out / "report.html", title="neurofuse eeg2meg", sections=sections,
                results={k: results[k] for k in ("signal", "decoding", "cross_dataset",
                                                  "source_imaging")})


@verbose
def run_eeg2meg_demo(out, *, resume=True, verbose=None) -> dict:
    """World → pretraining → generator → scores beside physics and ridge (2 CPU cores).

    Parameters
    ----------
    out : path-like
        Output folder (``world/``, then what :func:`evaluate_eeg2meg` writes).
    resume : bool
        Reuse finished steps.
    verbose : bool | str | None

    Returns
    -------
    results : dict
    """
    from ..simulation.eeg_meg import simulate_eeg_meg_world

    out = make_dir(out, option="out")
    world = out / "world"
    if not (resume and (world / "neurofuse-dataset.json").is_file()):
        simulate_eeg_meg_world(world, _world_config(DEMO["world"]), overwrite=True)
    results = evaluate_eeg2meg(world, out, fit_config=DEMO["fit"], methods=DEMO["methods"],
                               n_runs=DEMO["n_runs"], resume=resume)
    logger.info("%s", summary_line(results))
    return results

