"""Step 3 of the MEG preprocessing: ICA removal of ocular, cardiac and audio-locked components."""

from __future__ import annotations

import numpy as np

from ..._logging import logger, verbose
from ...physics.envelope import envelope
from ...stats import pearson_r
from .settings import MEGPreprocessing, _check_raw

__all__ = ["apply_ica"]


def _frontal_magnetometers(raw, n=2):
    """The ``n`` frontal magnetometers that look most like blinks, an EOG proxy.

    Among the most anterior fifth of the magnetometers (head frame), those whose 1-10 Hz
    signal has the largest kurtosis: blinks and saccades are rare, large, slow deflections
    (heavy tails), cortical rhythms are not. Where they peak over the frontal sensors depends
    on the head position, hence the data-driven choice.
    """
    import mne
    from mne.filter import filter_data
    from mne.transforms import apply_trans
    from scipy.stats import kurtosis

    info = raw.info
    picks = mne.pick_types(info, meg="mag", exclude="bads")
    if len(picks) == 0:
        picks = mne.pick_types(info, meg=True, exclude="bads")
    pos = np.array([info["chs"][p]["loc"][:3] for p in picks])
    if info["dev_head_t"] is not None:
        pos = apply_trans(info["dev_head_t"], pos)
    front = picks[pos[:, 1] >= np.quantile(pos[:, 1], 0.8)]
    slow = filter_data(raw.get_data(picks=front), info["sfreq"], 1.0, 10.0, verbose="error")
    order = np.argsort(-kurtosis(slow, axis=1))
    return [info["ch_names"][front[k]] for k in order[:n]]


def _top(indices, scores, n):
    """The ``n`` best of ``indices`` by |score| (scores may be a list of arrays)."""
    if not len(indices):
        return []
    s = np.max(np.abs(np.atleast_2d(np.asarray(scores, float))), axis=0)
    return sorted(int(i) for i in sorted(indices, key=lambda i: -s[i])[:n])


def _audio_scores(sources, reference, sfreq, config):
    """|Pearson r| of each component with the audio reference where it is defined."""
    from mne.filter import filter_data

    ref = np.asarray(reference, float)
    mask = np.isfinite(ref)
    ref = np.where(mask, ref, 0.0)
    h_freq = min(config.h_freq, sfreq / 2 - 1.0)
    ref = filter_data(ref[None], sfreq, config.l_freq, h_freq, verbose="error")[0]
    if config.audio_reference == "envelope":
        ref = filter_data(envelope(ref)[None], sfreq, None, 10.0, verbose="error")[0]
        sources = filter_data(sources, sfreq, None, 10.0, verbose="error")
    a = sources[:, mask]  # (n_components, n_valid)
    r = pearson_r(a, np.broadcast_to(ref[mask], a.shape), axis=-1)
    return np.abs(np.nan_to_num(r, nan=0.0))  # a constant component or reference scores 0


@verbose
def apply_ica(raw, config=None, *, audio=None, verbose=None):
    """Remove ocular, cardiac and audio-locked independent components in place (step 3).

    Parameters
    ----------
    raw : mne.io.Raw
        Preloaded, band-passed recording, modified in place.
    config : MEGPreprocessing | dict | None
    audio : array, shape (n_times,) | str | None
        The stimulus audio aligned with ``raw`` (at ``raw.info['sfreq']``, NaN where no
        audio was playing), or the name of the channel that recorded it; ``None`` uses
        ``config.audio_channel`` if set, else skips the audio criterion (reported).

    Returns
    -------
    raw : mne.io.Raw
        The same object, without the excluded components.
    report : dict
        ``n_components``; the excluded component indices per artifact (``ocular``,
        ``cardiac``, ``audio``); the channels used; per artifact the best score; and
        ``explained_variance`` removed (fraction of MEG variance).
    """
    import mne

    config = MEGPreprocessing.resolve(config)
    _check_raw(raw)
    if not raw.preload:
        raw.load_data(verbose="error")
    ica = mne.preprocessing.ICA(
        n_components=config.ica_n_components, method=config.ica_method,
        random_state=config.ica_random_state, max_iter="auto", verbose="error")
    ica.fit(raw, picks="meg", decim=config.ica_decim, verbose="error")
    n_max = config.max_components_per_artifact
    report = {"n_components": int(ica.n_components_), "method": config.ica_method}

    # -- ocular
    types = dict(zip(raw.ch_names, raw.get_channel_types()))
    if config.eog_channels is not None:
        missing = [c for c in config.eog_channels if c not in types]
        if missing:
            raise ValueError(f"eog_channels {missing} are not in the recording; its EOG "
                             f"channels are {[c for c, t in types.items() if t == 'eog']}.")
        eog, proxy = list(config.eog_channels), False
    else:
        eog = [c for c, t in types.items() if t == "eog" and c not in raw.info["bads"]]
        proxy = not eog
        if proxy:
            eog = _frontal_magnetometers(raw)
            logger.info("No EOG channel: using the frontal magnetometers %s as a proxy.", eog)
    idx, scores = ica.find_bads_eog(raw, ch_name=eog, threshold=config.eog_threshold,
                                    verbose="error")
    report["ocular"] = _top(idx, scores, n_max)
    report["eog_channels"], report["eog_proxy"] = eog, proxy
    report["ocular_max_score"] = float(np.max(np.abs(scores))) if np.size(scores) else 0.0

    # -- cardiac
    ecg = config.ecg_channel
    if ecg is None:
        ecg = next((c for c, t in types.items() if t == "ecg" and c not in raw.info["bads"]),
                   None)
    elif ecg not in types:
        raise ValueError(f"ecg_channel {ecg!r} is not in the recording; its ECG channels are "
                         f"{[c for c, t in types.items() if t == 'ecg']}.")
    try:
        idx, scores = ica.find_bads_ecg(raw, ch_name=ecg, method=config.ecg_method,
                                        threshold=config.ecg_threshold, verbose="error")
    except (RuntimeError, ValueError) as exc:  # e.g. no heartbeat found in a short recording
        logger.warning("Cardiac components not searched: %s", exc)
        idx, scores = [], []
    report["cardiac"] = [i for i in _top(idx, scores, n_max) if i not in report["ocular"]]
    report["ecg_channel"] = ecg or "synthetic (magnetometers)"
    report["cardiac_max_score"] = float(np.max(np.abs(scores))) if np.size(scores) else 0.0

    # -- audio-locked
    if audio is None and config.audio_channel is not None:
        audio = config.audio_channel
    report["audio"], report["audio_reference"], report["audio_max_r"] = [], None, 0.0
    if audio is not None:
        if isinstance(audio, str):
            if audio not in types:
                misc = [c for c, t in types.items() if t == "misc"]
                raise ValueError(f"The audio channel {audio!r} is not in the recording (its "
                                 f"misc channels are {misc}).")
            report["audio_reference"] = audio
            audio = raw.get_data(picks=[audio])[0]
        else:
            report["audio_reference"] = "array"
            audio = np.asarray(audio, float)
            if audio.shape != (raw.n_times,):
                raise ValueError(f"'audio' must have shape (n_times,) = ({raw.n_times},), "
                                 f"aligned with raw at {raw.info['sfreq']:g} Hz, got "
                                 f"{audio.shape}.")
        if np.isfinite(audio).sum() < raw.info["sfreq"]:
            raise ValueError("'audio' is defined (finite) on less than one second of the "
                             "recording: cannot score audio-locked components.")
        sources = ica.get_sources(raw).get_data()
        r = _audio_scores(sources, audio, raw.info["sfreq"], config)
        hits = np.flatnonzero(r >= config.audio_threshold)
        report["audio"] = [i for i in _top(hits, r, n_max)
                           if i not in report["ocular"] + report["cardiac"]]
        report["audio_max_r"] = float(r.max())
    else:
        logger.info("No stimulus audio given: audio-locked components not searched.")

    exclude = sorted(set(report["ocular"] + report["cardiac"] + report["audio"]))
    kinds = {kind: mne.pick_types(raw.info, meg=kind, ref_meg=False, exclude=())
             for kind in ("mag", "grad")}

    def variance(picks):  # on every 10th sample: no full copy of a long recording
        return float(np.mean([np.var(raw._data[p, ::10]) for p in picks]))

    before = {kind: variance(picks) for kind, picks in kinds.items() if len(picks)}
    ica.exclude = exclude
    ica.apply(raw, verbose="error")
    # Variance removed, per channel type (mags and grads differ by ~1e2 in units).
    removed = [1.0 - variance(kinds[kind]) / max(v, 1e-300) for kind, v in before.items()]
    report["excluded"] = exclude
    report["explained_variance"] = float(np.mean(removed)) if removed else 0.0
    logger.info("ICA: %d components; removed ocular %s, cardiac %s, audio %s",
                report["n_components"], report["ocular"], report["cardiac"], report["audio"])
    return raw, report
