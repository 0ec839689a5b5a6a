"""A BIDS simultaneous EEG–fMRI study (the layout of OpenNeuro ds000116) into a dataset store.

:func:`prepare_eeg_fmri_bids` pairs every EEG run with the BOLD run recorded with it
(:mod:`~neurofuse.data.datasets.ds000116.layout`), refuses EEG that still carries the MR
gradient artefact (:func:`neurofuse.preprocessing.mr_artifacts.check_gradient_artifact`),
aligns the EEG with the first volume, resamples it, and writes per run one continuous
"story" holding the EEG (``eeg``, volts) and the BOLD volumes (``fmri-volume``), the run's
events (per trial type) and, optionally, EEG epochs around the events with their labels.
``docs/real-data.md`` (§ "Simultaneous EEG–fMRI") says what the EEG must have been through.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ...._checks import _check_positive, _check_type
from ...._docs import fill_doc
from ...._logging import logger, progress_enabled, verbose
from ....preprocessing.mr_artifacts import GRADIENT_THRESHOLD
from ..._prepare import check_out, resolve_splits
from .._bids import channel_bads
from .layout import find_eeg_fmri_runs, read_tr
from .mask import bold_brain_mask, mask_name, write_brain_mask
from .run import read_run


def _check_epochs(epochs):
    if epochs is None:
        return None
    if not isinstance(epochs, (list, tuple)) or len(epochs) != 2:
        raise ValueError(f"'epochs' must be (tmin, tmax) in s around each event, or None; got "
                         f"{epochs!r}.")
    tmin, tmax = float(epochs[0]), float(epochs[1])
    if not tmax > tmin:
        raise ValueError(f"'epochs' = ({tmin:g}, {tmax:g}): tmax must exceed tmin.")
    return tmin, tmax


def cut_epochs(eeg, sfreq, events, tmin, tmax):
    """EEG epochs around the events of a run, with integer labels.

    Parameters
    ----------
    eeg : array, shape (n_channels, n_times)
    sfreq : float
    events : dict of str to array
        Onsets (s) per event kind.
    tmin, tmax : float
        Epoch window around each event, s.

    Returns
    -------
    data : array, shape (n_epochs, n_channels, n_samples)
        ``n_samples = round((tmax - tmin) * sfreq)``; epochs that do not fit are left out.
    onsets : array, shape (n_epochs,)
    labels : array of int64, shape (n_epochs,)
    event_id : dict of str to int
        ``{kind: label}``, kinds sorted, labels from 1.
    """
    event_id = {k: i + 1 for i, k in enumerate(sorted(events))}
    n = int(round((tmax - tmin) * sfreq))
    rows = sorted((float(t), event_id[k]) for k, ts in events.items() for t in ts)
    data, onsets, labels = [], [], []
    for t, lab in rows:
        start = int(round((t + tmin) * sfreq))
        if start < 0 or start + n > eeg.shape[1]:
            continue
        data.append(eeg[:, start:start + n])
        onsets.append(t)
        labels.append(lab)
    shape = (0, eeg.shape[0], n)
    return (np.stack(data) if data else np.empty(shape, np.float32), np.asarray(onsets),
            np.asarray(labels, np.int64), event_id)


@verbose
@fill_doc
def prepare_eeg_fmri_bids(bids_root, out, *, subjects=None, task=None, sfreq=100.0,
                          volume_event="auto", gradient_threshold=GRADIENT_THRESHOLD,
                          l_freq=None, h_freq=None, epochs=None, splits=None,
                          overwrite=False, verbose=None) -> Path:
    """Turn a BIDS simultaneous EEG–fMRI study (OpenNeuro ds000116's layout) into a store.

    Parameters
    ----------
    bids_root : path-like
        The BIDS dataset (read with mne-bids and nibabel).
    %(out)s
    subjects : list of str | None
        Subject labels (``"01"`` or ``"sub-01"``); default every subject with EEG.
    task : str | list of str | None
        Only runs of this task (ds000116: the auditory and the visual oddball).
    sfreq : float
        Rate of the stored EEG, Hz (MNE's resampling, with its anti-alias filter). Choose it
        so that ``tr * sfreq`` is an integer if the EEG is to be cut per volume.
    volume_event : 'auto' | str | None
        The EEG event marking each scanner volume (its first one is the first volume's
        onset): ``'auto'`` looks for ``R128``, ``TR``, ``volume``... (and, if none, takes
        the EEG's first sample, as in ds000116); None: always the first sample.
    gradient_threshold : float
        Runs whose TR-harmonic contrast
        (:func:`~neurofuse.preprocessing.mr_artifacts.gradient_artifact_score`, about 1 for
        clean EEG) exceeds it are refused; ``inf`` turns the check off. A run shorter than
        4 TRs cannot be scored: it is refused unless the check is off.
    l_freq, h_freq : float | None
        Band-pass of the EEG before resampling (None: none).
    epochs : tuple of (float, float) | None
        ``(tmin, tmax)``, s: also store EEG epochs around every event of each run (epoch set
        named as the run, labels per trial type, ``event_id`` kept).
    %(splits)s
        Here the stories are the runs (``sub-01_task-..._run-1``).
    %(overwrite)s
    %(verbose_loader)s

    Returns
    -------
    %(returns_store)s

    Raises
    ------
    FileNotFoundError
        No EEG, or an EEG run without its BOLD run.
    ValueError
        EEG still carrying the gradient artefact (the message names the file, the score and
        the fix), runs with different TRs, a subject's runs with different channels or voxel
        grids, volume markers that do not come once per TR. Nothing is written at ``out``.

    Notes
    -----
    Each run is a story of ``n_trs`` volumes, the volumes both recordings cover from the
    first one, and ``n_times = floor(n_trs * tr * sfreq)`` EEG samples; story time 0 is the
    first volume's onset. EEG channels marked bad in any run of a subject (``_channels.tsv``)
    are left out of all its runs. The events are the EEG's (``_events.tsv`` of the EEG,
    volume markers and ``BAD``/``EDGE`` annotations left out), else the BOLD's
    ``_events.tsv``. ``metadata["eeg_fmri_bids"]`` records per run the files, the alignment,
    the gradient score and the events' origin. Each subject's brain mask (nilearn's EPI mask
    of its mean BOLD, :mod:`~neurofuse.data.datasets.ds000116.mask`) is stored as the
    ground-truth array ``brain_mask/<subject>.npy`` (described in
    ``metadata["eeg_fmri_bids"]["brain_mask"]``): scores of the fMRI are computed inside it.
    """
    from tqdm.auto import tqdm

    from ...store import DatasetWriter, _check_name

    t_start = time.perf_counter()
    out = check_out(out, overwrite)
    sfreq = _check_positive("sfreq", sfreq)
    gradient_threshold = _check_positive("gradient_threshold", gradient_threshold,
                                         allow_inf=True)
    epochs = _check_epochs(epochs)
    if volume_event is not None:
        _check_type("volume_event", volume_event, str)
    bids_root = Path(bids_root).expanduser()
    runs = find_eeg_fmri_runs(bids_root, subjects=subjects, task=task)

    # ------------------------------------------------------------ check what headers can tell
    trs = {}
    for sub, pairs in runs.items():
        _check_name("subject name", sub)
        for bp, bold in pairs:
            trs[bold] = read_tr(bold, bids_root, bp.task)
    values = sorted(set(round(v, 6) for v in trs.values()))
    if len(values) > 1:
        raise ValueError(f"The BOLD runs have different repetition times {values} s; a store "
                         "has one TR. Prepare each TR separately ('task', 'subjects').")
    tr = values[0]
    if abs(tr * sfreq - round(tr * sfreq)) > 1e-6:
        logger.warning("tr * sfreq = %g is not an integer: the EEG samples do not split evenly "
                       "into volumes (choose 'sfreq' so that they do).", tr * sfreq)
    story_names = [Path(bp.fpath).name.rsplit("_eeg", 1)[0] for p in runs.values()
                   for bp, _ in p]
    for name in story_names:
        _check_name("run (story) name", name)
    story_splits = resolve_splits(splits, story_names)
    drops = {sub: sorted(set().union(*(channel_bads(bp) for bp, _ in pairs)))
             for sub, pairs in runs.items()}
    for sub, bad in drops.items():
        if bad:
            logger.info("%s: channels bad in some run, left out of all: %s", sub, bad)

    # ------------------------------------------------------------ read, check, write
    report = {}
    bar = {"disable": not progress_enabled(), "leave": False}
    metadata = {"generator": "neurofuse.data.datasets.ds000116.prepare_eeg_fmri_bids",
                "eeg_fmri_bids": {"bids_root": str(bids_root), "tr": tr,
                                  "gradient_threshold": gradient_threshold,
                                  "volume_event": volume_event, "l_freq": l_freq,
                                  "h_freq": h_freq, "epochs": epochs, "bads": drops,
                                  "runs": report, "brain_mask": {}}}
    with DatasetWriter(out, sfreq=sfreq, tr=tr, feature_streams=None, overwrite=overwrite,
                       metadata=metadata) as writer:
        for sub, pairs in tqdm(runs.items(), desc="EEG-fMRI runs", **bar):
            names, affine, mean_sum, n_vols = None, None, None, 0
            for bp, bold in pairs:
                run = read_run(bp, bold, tr=tr, sfreq=sfreq, volume_event=volume_event,
                               gradient_threshold=gradient_threshold, l_freq=l_freq,
                               h_freq=h_freq, drop=drops[sub], bids_root=bids_root)
                if names is None:
                    names, affine = run.info["ch_names"], run.affine
                    writer.add_subject(sub, modalities=["eeg", "fmri-volume"])
                    writer.add_sensors(sub, "eeg", info=run.info, units="V",
                                       signal="EEG after MR gradient and ballistocardiogram "
                                       "removal (by the data's provider)")
                    writer.add_grid(sub, "fmri-volume", affine=affine)
                elif run.info["ch_names"] != names:
                    raise ValueError(f"The EEG runs of {sub} have different channels "
                                     f"('{run.report['eeg']}': {run.info['ch_names']} vs "
                                     f"{names}); mark the extra ones bad in _channels.tsv.")
                elif not np.allclose(run.affine, affine, atol=1e-3):
                    raise ValueError(f"The BOLD runs of {sub} have different voxel grids "
                                     f"('{run.report['bold']}'); resample them onto one grid.")
                n_times = run.eeg.shape[1]
                writer.add_story(run.name, split=story_splits[run.name], n_times=n_times)
                writer.write(sub, "eeg", run.name, run.eeg[None])
                writer.write(sub, "fmri-volume", run.name, run.bold[None])
                for kind, onsets in sorted(run.events.items()):
                    writer.write_events(run.name, kind, onsets)
                if epochs is not None and run.events:
                    data, onsets, labels, event_id = cut_epochs(run.eeg, sfreq, run.events,
                                                                *epochs)
                    if len(onsets):
                        writer.write_epochs(sub, "eeg", run.name, data, events=onsets,
                                            labels=labels, event_id=event_id, tmin=epochs[0],
                                            story=run.name)
                    run.report["n_epochs"] = int(len(onsets))
                report[run.name] = run.report
                total = run.bold.sum(-1, dtype=np.float64)
                mean_sum = total if mean_sum is None else mean_sum + total
                n_vols += run.bold.shape[-1]
            mask, how = bold_brain_mask(mean_sum / max(n_vols, 1), affine)
            write_brain_mask(writer, sub, mask)
            metadata["eeg_fmri_bids"]["brain_mask"][sub] = {
                "ground_truth": mask_name(sub), "method": how, "n_voxels": int(mask.sum()),
                "of": int(mask.size), "derived_from": "the mean BOLD of all its runs"}
            logger.info("%s: brain mask of %d of %d voxels (%s).", sub, int(mask.sum()),
                        mask.size, how)
    logger.info("EEG-fMRI store '%s': %d subjects, %d runs, TR %g s, EEG at %g Hz (%.1f s).",
                out, len(runs), len(report), tr, sfreq, time.perf_counter() - t_start)
    if math.isinf(gradient_threshold):
        logger.warning("The gradient-artefact check was off (gradient_threshold=inf).")
    return out
