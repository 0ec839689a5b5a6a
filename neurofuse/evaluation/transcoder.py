"""Scoring system D as the paper's §2 does: transcoded fMRI / EEG and sources vs the truth.

Paper eeg-fmri-deep-transcoding, Fig. 4 and 5, on the held-out runs of a simulated data set
(:func:`~neurofuse.simulation.eeg_fmri.read_dataset`):

* **fMRI r** (Fig. 4 i): Pearson r over the TRs between the predicted and the true BOLD of
  every source voxel, averaged over the voxels; **EEG r** (Fig. 4 iv): r over time per
  channel, averaged over the channels. "True" is the noise-free signal, rebuilt from the
  saved components exactly as the simulator made it (``against='clean'``, the paper's
  "ground-truth signals"); ``against='observed'`` scores against the recorded, noisy run.
* **source r** (Fig. 4 ii-iii, Fig. 5): r over time between the estimated and the true
  activity of every source, averaged separately over the *oscillatory* sources (those of the
  regions that carry an oscillation on top of their impulse train) and the *sparse* ones
  (impulse trains only), the split the simulator saves (``ds.source_kind()``). The truth is
  the latent source ``X`` of paper eq. 1-3, all of its activity (impulses plus oscillation),
  at the EEG rate: the paper's "ground-truth source" (``source_truth='latent'``).
  ``source_truth='erp'`` scores against ``P = X * d`` instead, what an EEG inverse can see.
  The paper averages r over 304 held-out 30-s epochs; here r is computed over each whole
  held-out run (same samples, one r per source and run).
* **per run, then across runs**: each run gives one mean r per quantity; the row reports the
  mean over runs and a 95 % interval from Fisher's z over runs (``tanh(mean z ± t_{n-1}
  s_z / √n)``; None with fewer than 2 runs).

Rows follow the benchmark schema ``{"scenario", "method", "fmri_r", "eeg_r", "source_r",
"source_kind"}`` (methods ``transcoder``, ``physics``, ``MNE``, ``dSPM``, ``eLORETA``), with
``source_from`` (``'eeg'`` or ``'fmri'``: the pathway whose source estimate is scored,
Fig. 4 ii vs iii), the intervals ``*_ci`` and ``n_runs`` added; one row per source kind and
pathway, ``source_r`` None for a method without a source estimate.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .._checks import _check_option
from .._logging import logger, verbose
from ..stats import pearson_r

__all__ = ["SOURCE_KINDS", "evaluate_transcoder", "fisher_interval", "score_run",
           "summarize_scores", "true_signals", "write_source_estimate"]

SOURCE_KINDS = ("oscillatory", "sparse")
BASELINES = ("physics", "MNE", "dSPM", "eLORETA")


def true_signals(ds, run):
    """The noise-free truth of a run, rebuilt from its components as the simulator does.

    Parameters
    ----------
    ds : EEGfMRIDataset
    run : int | str

    Returns
    -------
    truth : dict
        ``sources`` (n_sources, n_times) A·m, the latent ``X``; ``erp`` (n_sources,
        n_times), ``P = X * d``; ``eeg`` (n_channels, n_times) V, ``G P`` (average
        reference); ``fmri`` (n_sources, n_trs), the BOLD of the source voxels at their slice
        times.
    """
    from ..physics.hrf import convolve_hrf
    from ..simulation.eeg_fmri.fmri import sample_bold
    from ..simulation.eeg_fmri.sources import region_activity

    cfg = ds.config
    r = ds.read_run(run, mmap=True)
    label, weight = ds.truth("source_region"), ds.truth("source_weight")
    act = region_activity(r["components"], np.asarray(r["comp_region"]),
                          int(label.max()) + 1)  # (n_regions, n_times)
    sources = weight[:, None] * act[label]
    erp = convolve_hrf(sources, ds.truth("erp_kernel"))
    drive = act
    if cfg.bold_drive == "envelope":
        from ..physics.envelope import envelope

        drive = envelope(act, axis=-1)
    bold = sample_bold(drive, cfg.sfreq, cfg.tr, ds.truth("slice_offsets"), cfg.hrf)
    z = np.unravel_index(ds.truth("source_voxels"), tuple(ds.manifest["grid"]["shape"]))[2]
    fmri = weight[:, None] * bold[z, label]  # (n_sources, n_trs)
    return {"sources": sources, "erp": erp, "eeg": ds.truth("leadfield") @ erp, "fmri": fmri}


def _fmri_rows(ds, fmri, name="fmri"):
    """Predicted fMRI as (n_sources, n_trs): accepts that or the grid (n_x, n_y, n_z, n_trs)."""
    fmri = np.asarray(fmri)
    n_src = int(ds.manifest["n_sources"])
    if fmri.ndim == 4:
        return fmri.reshape(-1, fmri.shape[-1])[ds.truth("source_voxels")]
    if fmri.ndim != 2 or fmri.shape[0] != n_src:
        raise ValueError(f"'{name}' must have shape (n_sources, n_trs) = ({n_src}, n_trs) or "
                         f"the grid's (n_x, n_y, n_z, n_trs), got {fmri.shape}.")
    return fmri


def _check_shape(name, arr, shape):
    if tuple(np.shape(arr)) != tuple(shape):
        raise ValueError(f"'{name}' must have shape {tuple(shape)}, got {np.shape(arr)}.")


def _source_scores(est, truth, kinds):
    r = pearson_r(est, truth)  # (n_sources,)
    return {k: float(np.nanmean(r[kinds == k])) if np.any(kinds == k) else None
            for k in SOURCE_KINDS}


def score_run(ds, run, *, fmri=None, eeg=None, sources=None, against="clean",
              source_truth="latent", truth=None):
    """Scores of one run's predictions (means over voxels, channels, sources of a kind).

    Parameters
    ----------
    ds : EEGfMRIDataset
    run : int | str
    fmri : array, shape (n_sources, n_trs) or (n_x, n_y, n_z, n_trs) | None
        Predicted (transcoded) fMRI.
    eeg : array, shape (n_channels, n_times) | None
        Predicted (transcoded) EEG.
    sources : array, shape (n_sources, n_times) | dict of str to such arrays | None
        Source estimates at the EEG rate; a dict keys them by pathway (``'eeg'``,
        ``'fmri'``); an array counts as ``'eeg'``.
    against : 'clean' | 'observed'
        Truth of the fMRI and EEG (see the module docstring).
    source_truth : 'latent' | 'erp'
        ``X`` or ``X * d``.
    truth : dict | None
        From :func:`true_signals` (computed when None).

    Returns
    -------
    scores : dict
        ``fmri_r`` and ``eeg_r`` (float or None), ``source_r`` dict pathway -> kind -> r.
    """
    _check_option("against", against, ["clean", "observed"])
    _check_option("source_truth", source_truth, ["latent", "erp"])
    truth = true_signals(ds, run) if truth is None else truth
    out = {"fmri_r": None, "eeg_r": None, "source_r": {}}
    observed = ds.read_run(run) if against == "observed" else None
    if fmri is not None:
        pred = _fmri_rows(ds, fmri)
        ref = truth["fmri"] if observed is None else _fmri_rows(ds, observed["fmri"])
        _check_shape("fmri", pred, ref.shape)
        out["fmri_r"] = float(np.nanmean(pearson_r(pred, ref)))
    if eeg is not None:
        ref = truth["eeg"] if observed is None else np.asarray(observed["eeg"])
        _check_shape("eeg", eeg, ref.shape)
        out["eeg_r"] = float(np.nanmean(pearson_r(eeg, ref)))
    if sources is not None:
        if not isinstance(sources, dict):
            sources = {"eeg": sources}
        ref = truth["sources" if source_truth == "latent" else "erp"]
        kinds = ds.source_kind()
        for path, est in sources.items():
            _check_option("sources (pathway)", path, ["eeg", "fmri"])
            _check_shape(f"sources[{path!r}]", est, ref.shape)
            out["source_r"][path] = _source_scores(est, ref, kinds)
    return out


def fisher_interval(values, level=0.95):
    """Interval of the mean correlation from Fisher's z over independent units (runs).

    Parameters
    ----------
    values : array, shape (n,)
        One r per run (NaN ignored).
    level : float

    Returns
    -------
    low, high : float | None
        ``tanh(mean(z) ± t_{n-1} sd(z) / √n)``, ``z = arctanh(r)``; None when fewer than 2
        finite values.
    """
    from scipy import stats

    v = np.asarray([x for x in values if x is not None], float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return None, None
    z = np.arctanh(np.clip(v, -0.999999, 0.999999))
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * z.std(ddof=1) / math.sqrt(len(v))
    return float(np.tanh(z.mean() - half)), float(np.tanh(z.mean() + half))


def _mean_ci(values, level):
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return None, [None, None]
    return float(np.mean(v)), list(fisher_interval(v, level))


def summarize_scores(scores, *, scenario, method, level=0.95):
    """Benchmark rows from per-run scores (:func:`score_run`).

    Parameters
    ----------
    scores : list of dict
        One per held-out run.
    scenario, method : str
    level : float
        Of the intervals.

    Returns
    -------
    rows : list of dict
        ``scenario, method, fmri_r, eeg_r, source_r, source_kind, source_from, fmri_r_ci,
        eeg_r_ci, source_r_ci, n_runs``; one row per pathway and source kind (one row with
        ``source_r`` None when no source estimate was scored).
    """
    base = {"scenario": scenario, "method": method}
    fm, fm_ci = _mean_ci([s["fmri_r"] for s in scores], level)
    ee, ee_ci = _mean_ci([s["eeg_r"] for s in scores], level)
    common = {"fmri_r": fm, "eeg_r": ee}
    extra = {"fmri_r_ci": fm_ci, "eeg_r_ci": ee_ci, "n_runs": len(scores)}
    paths = sorted({p for s in scores for p in s["source_r"]})
    if not paths:
        return [{**base, **common, "source_r": None, "source_kind": None, "source_from": None,
                 **extra, "source_r_ci": [None, None]}]
    rows = []
    for path in paths:
        for kind in SOURCE_KINDS:
            sr, sr_ci = _mean_ci([s["source_r"].get(path, {}).get(kind) for s in scores], level)
            rows.append({**base, **common, "source_r": sr, "source_kind": kind,
                         "source_from": path, **extra, "source_r_ci": sr_ci})
    return rows


def _scenario_name(config):
    from ..simulation.eeg_fmri.config import SCENARIOS

    for name, preset in SCENARIOS.items():
        if all(getattr(config, k) == v for k, v in preset.items()):
            return name
    return "custom"


def _baseline_predictions(ds, run, method, inverse):
    from ..systems.transcoder import baselines as B

    if method == "physics":
        e2f = B.physics_eeg_to_fmri(ds, run, inverse=inverse)
        f2e = B.physics_fmri_to_eeg(ds, run)
        return {"fmri": e2f["fmri"], "eeg": f2e["eeg"],
                "sources": {"eeg": e2f["sources"], "fmri": f2e["sources"]}}
    est = B.classical_inverses(ds, run, methods=[method], inverse=inverse)[method]
    return {"sources": {"eeg": est}}


@verbose
def evaluate_transcoder(ds, *, transcoder=None, methods=BASELINES, runs=None, scenario=None,
                        against="clean", source_truth="latent", level=0.95, verbose=None):
    """Score the transcoder and the baselines on the held-out runs (paper Fig. 4-5).

    Parameters
    ----------
    ds : EEGfMRIDataset
    transcoder : callable | None
        ``transcoder(ds, run) -> dict`` with any of ``fmri`` (EEG→fMRI transcoded),
        ``eeg`` (fMRI→EEG transcoded), ``sources`` (dict ``'eeg'`` / ``'fmri'`` -> (n_sources,
        n_times): the EEG-decoded and fMRI-decoded sources at the EEG rate); scored as method
        ``'transcoder'``. None: baselines only.
    methods : sequence of str
        Baselines among ``('physics', 'MNE', 'dSPM', 'eLORETA')``.
    runs : list of str | None
        None: the data set's test split.
    scenario : str | None
        Row label; None: the scenario preset the configuration matches (else ``'custom'``).
    against : 'clean' | 'observed'
        See :func:`score_run`.
    source_truth : 'latent' | 'erp' | sequence of them
        See :func:`score_run`; several truths score the same predictions against each (one
        set of rows per truth).
    level : float
        Of the intervals.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    rows : list of dict
        :func:`summarize_scores` rows of every method, plus ``source_truth``, ``against``
        and ``seconds`` (wall time of the method's predictions over the runs).
    """
    from ..systems.transcoder import baselines as B

    methods = [methods] if isinstance(methods, str) else list(methods)
    for m in methods:
        _check_option("methods", m, BASELINES)
    runs = [r for r in ds.manifest["split"]["test"] if r in ds.runs] if runs is None \
        else list(runs)
    if not runs:
        raise ValueError("No held-out run to score: the data set's test split is empty; pass "
                         "runs=[...].")
    truths = [source_truth] if isinstance(source_truth, str) else list(source_truth)
    for st in truths:
        _check_option("source_truth", st, ["latent", "erp"])
    scenario = _scenario_name(ds.config) if scenario is None else scenario
    inverse = B.make_eeg_inverse(ds) if methods else None
    predictors = {m: (lambda ds_, run_, m=m: _baseline_predictions(ds_, run_, m, inverse))
                  for m in methods}
    if transcoder is not None:
        predictors = {"transcoder": transcoder, **predictors}
    scores = {(m, st): [] for m in predictors for st in truths}
    seconds = dict.fromkeys(predictors, 0.0)
    for run in runs:
        truth = true_signals(ds, run)
        for m, predict in predictors.items():
            t0 = time.perf_counter()
            pred = predict(ds, run)
            seconds[m] += time.perf_counter() - t0
            for st in truths:
                scores[m, st].append(score_run(ds, run, truth=truth, against=against,
                                               source_truth=st, **pred))
                logger.info("%s %s %s (%s): %s", scenario, run, m, st, scores[m, st][-1])
    rows = []
    for st in truths:
        for m in predictors:
            for row in summarize_scores(scores[m, st], scenario=scenario, method=m,
                                        level=level):
                rows.append({**row, "source_truth": st, "against": against,
                             "seconds": round(seconds[m], 2)})
    return rows


def write_source_estimate(estimate, ds, fname=None, *, tmin=0.0, kind="stc"):
    """A source estimate as ``mne.VolSourceEstimate`` or NIfTI (the grid's affine).

    Parameters
    ----------
    estimate : array, shape (n_sources, n_times)
        At ``ds.config.sfreq``.
    ds : EEGfMRIDataset
    fname : path-like | None
        Where to write (``kind='stc'``: MNE adds ``-vl.stc``; ``'nifti'``: ``.nii.gz``);
        None: only return the object.
    tmin : float
        Time of the first sample, s.
    kind : 'stc' | 'nifti'

    Returns
    -------
    obj : mne.VolSourceEstimate | nibabel.Nifti1Image
        See :func:`~neurofuse.baselines.inverse.volume.make_volume_stc` and
        :func:`~neurofuse.baselines.inverse.volume.estimate_to_nifti`.
    """
    from ..baselines.inverse.volume import estimate_to_nifti, make_volume_stc

    _check_option("kind", kind, ["stc", "nifti"])
    grid = ds.manifest["grid"]
    if kind == "stc":
        return make_volume_stc(estimate, ds.config.sfreq, tmin=tmin, fname=fname)
    return estimate_to_nifti(estimate, ds.truth("source_voxels"), grid["shape"],
                             np.asarray(grid["affine"]), tr=1.0 / ds.config.sfreq, fname=fname)
