"""What System B's generator must beat: the physics transfer and a lagged ridge, EEG → MEG.

Both map epoch arrays ``eeg`` (n_epochs, n_eeg, n_times) to ``meg`` (n_epochs, n_meg,
n_times) and are linear (issue 12, item 3; the paper has no baseline):

:class:`PhysicsTransfer`
    EEG → minimum-norm source estimate (MNE-Python's fixed-orientation, depth-weighted
    operator on the subject's or the template's EEG forward; MNE / dSPM / sLORETA / eLORETA)
    → the MEG forward of the same source space → MEG. Nothing is learnt from MEG except,
    optionally, the regularisation ``lambda2`` (chosen on validation pairs by the mean MEG
    correlation) and one amplitude gain per MEG channel type (:meth:`PhysicsTransfer.fit`);
    otherwise ``lambda2 = 1 / snr**2`` (MNE's rule). The whole chain is one (n_meg, n_eeg) matrix
    (:func:`~neurofuse.baselines.inverse.transfer.make_transfer_operator`). It can only
    predict the MEG of sources the EEG sees: tangential sources the EEG under-weights and
    radial ones the MEG cannot see are where it should fail.
:class:`EEGMEGRidge`
    Each MEG channel at time ``t`` from every EEG channel at ``t - lag``, ``lag`` in
    ``-L .. L`` samples (default ``L = 5``: ±20 ms at 250 Hz), with inputs standardised on
    the training epochs and one ridge penalty per MEG channel chosen by cross-validation
    over whole epochs (:class:`~neurofuse.baselines.ridge.lagged.LaggedRidge`). Learns
    everything from paired data; no physics.
"""

from __future__ import annotations

import numpy as np

from ..._checks import _check_option, _check_positive, _check_type
from ..._logging import logger, verbose
from ...baselines.inverse import METHODS, make_inverse
from ...baselines.inverse.transfer import check_same_source_space, make_transfer_operator
from ...baselines.ridge import DEFAULT_ALPHAS
from ...baselines.ridge.lagged import LaggedRidge, check_epochs

#: Candidate regularisations of :meth:`PhysicsTransfer.fit` (SNR 100 down to 0.01: single
#: trials with a prior that spreads activity over the whole cortex can want strong ones).
LAMBDA2_GRID = np.logspace(-4, 4, 17)
#: Default ridge lags: -5 .. 5 samples (±20 ms at 250 Hz).
RIDGE_LAGS = 5

__all__ = ["LAMBDA2_GRID", "RIDGE_LAGS", "EEGMEGRidge", "PhysicsTransfer", "eeg_inverse_info",
           "mean_channel_r"]


def mean_channel_r(pred, true):
    """Pearson r per channel over all samples of all epochs, averaged over channels.

    Parameters
    ----------
    pred, true : array, shape (n_epochs, n_channels, n_times)

    Returns
    -------
    r : float
        Channels with zero variance in either array count as r = 0.
    """
    pred = check_epochs("pred", pred)
    true = check_epochs("true", true, n_channels=pred.shape[1], n_times=pred.shape[2])
    if pred.shape != true.shape:
        raise ValueError(f"'pred' and 'true' must have the same shape, got {pred.shape} and "
                         f"{true.shape}.")
    p = np.asarray(pred, np.float64).transpose(1, 0, 2).reshape(pred.shape[1], -1)
    t = np.asarray(true, np.float64).transpose(1, 0, 2).reshape(true.shape[1], -1)
    p = p - p.mean(axis=1, keepdims=True)
    t = t - t.mean(axis=1, keepdims=True)
    den = np.sqrt((p**2).sum(axis=1) * (t**2).sum(axis=1))
    r = np.divide((p * t).sum(axis=1), den, out=np.zeros(len(den)), where=den > 0)
    return float(r.mean())


def _has_average_ref_proj(info):
    """Whether ``info`` holds a projector that is constant over all good EEG channels."""
    import mne

    good = {info["ch_names"][i] for i in mne.pick_types(info, meg=False, eeg=True)}
    for proj in info["projs"]:
        vec = np.asarray(proj["data"]["data"], np.float64).ravel()
        if len(vec) and np.allclose(vec, vec[0]) and good <= set(proj["data"]["col_names"]):
            return True
    return False


def eeg_inverse_info(eeg_forward, info=None):
    """The EEG ``Info`` an inverse needs: the forward's EEG channels + average reference.

    Parameters
    ----------
    eeg_forward : mne.Forward
        EEG forward model (other channel types are ignored).
    info : mne.Info | None
        The recording's info (its EEG channels are kept, bads included); None: a minimal
        info with the forward's EEG channels and positions.

    Returns
    -------
    info : mne.Info
        EEG channels only, with an average reference projector: MNE requires one
        for EEG inverses. It is added when missing (a log message says so); it makes the
        transfer independent of the EEG's reference.
    """
    import mne

    _check_type("eeg_forward", eeg_forward, mne.Forward, "mne.Forward")
    if info is None:
        fwd_info = eeg_forward["info"]
        picks = mne.pick_types(fwd_info, meg=False, eeg=True, exclude=[])
        info = mne.create_info([fwd_info["ch_names"][i] for i in picks], 1000.0, "eeg")
        with info._unlock():
            for ch, i in zip(info["chs"], picks):
                ch["loc"] = fwd_info["chs"][i]["loc"].copy()
    else:
        _check_type("info", info, mne.Info, "mne.Info")
        picks = mne.pick_types(info, meg=False, eeg=True, exclude=[])
        info = mne.pick_info(info, picks, verbose=False)
    if not len(info["ch_names"]):
        raise ValueError("No EEG channels: 'eeg_forward' (or 'info') has none. Build the EEG "
                         "forward with make_forward(subject, meg=False, eeg=True).")
    if not _has_average_ref_proj(info):
        logger.info("Adding an average EEG reference projector (MNE needs one for EEG "
                    "inverses).")
        raw = mne.io.RawArray(np.zeros((len(info["ch_names"]), 1)), info, verbose="error")
        raw.set_eeg_reference(projection=True, verbose="error")
        info = raw.info
    return info


class PhysicsTransfer:
    """EEG → minimum-norm inverse → MEG forward, one (n_meg, n_eeg) linear operator.

    Parameters
    ----------
    eeg_forward : mne.Forward
        The EEG forward model (subject's or template's; e.g.
        ``make_forward(subject, meg=False, eeg=True)``). Only its EEG channels are used.
    meg_forward : mne.Forward
        The MEG forward model on the same source space (e.g. ``make_forward(subject,
        meg=True)``); only its MEG channels are used; fixed, surface-normal orientation
        (the orientations the inverse estimates).
    noise_cov : mne.Covariance | None
        EEG noise covariance (e.g. from pre-stimulus data, or
        :func:`~neurofuse.baselines.inverse.noise_cov_from_noise`); None: white
        (:func:`mne.make_ad_hoc_cov`), which for the MNE method does not depend on its scale.
    method : 'MNE' | 'dSPM' | 'sLORETA' | 'eLORETA'
        Inverse method. dSPM and sLORETA estimates are noise-normalised, not A·m: their MEG
        is distorted in scale (see :mod:`neurofuse.baselines.inverse.transfer`).
    lambda2 : float | None
        Regularisation; None: ``1 / snr**2`` until :meth:`fit` chooses one.
    snr : float
        The SNR of the ``1 / snr**2`` rule (MNE's default 3 for averaged data; single
        trials are closer to 1).
    depth : float | None
        Depth-weighting exponent (0.8, MNE's default); None: none.
    info : mne.Info | None
        The EEG recording's info (see :func:`eeg_inverse_info`); None: from the forward.
    method_params : dict | None
        eLORETA options passed to MNE.
    verbose : bool | str | None
        Log level while building the operator.

    Attributes
    ----------
    inverse_ : mne.minimum_norm.InverseOperator
        The EEG inverse operator.
    info_ : mne.Info
        EEG info of the inverse (with the average reference projector).
    eeg_ch_names_ : list of str
        The order of the EEG rows ``predict`` expects.
    meg_ch_names_ : list of str
        The order of the MEG rows ``predict`` returns.
    lambda2_ : float
        The regularisation in use.
    operator_ : array, shape (n_meg, n_eeg)
        The map ``predict`` applies: ``diag(scale) @ G_meg @ K_eeg`` (scale 1 unless
        :meth:`fit` rescaled).
    lambda2s_, scores_ : array, shape (n_candidates,)
        After :meth:`fit`: the candidates and their mean validation MEG r.
    scales_ : dict of str to float
        Gain per MEG channel type (``"grad"``, ``"mag"``); 1.0 unless :meth:`fit` rescaled.
    """

    @verbose
    def __init__(self, eeg_forward, meg_forward, noise_cov=None, *, method="MNE", lambda2=None,
                 snr=3.0, depth=0.8, info=None, method_params=None, verbose=None):
        import mne

        _check_type("eeg_forward", eeg_forward, mne.Forward, "mne.Forward")
        _check_type("meg_forward", meg_forward, mne.Forward, "mne.Forward")
        self.method = _check_option("method", method, METHODS)
        self.snr = _check_positive("snr", snr)
        self.lambda2 = None if lambda2 is None else _check_positive("lambda2", lambda2)
        self.depth = depth
        self.method_params = method_params
        eeg_fwd = _pick_forward(eeg_forward, "eeg_forward", eeg=True)
        meg_fwd = _pick_forward(meg_forward, "meg_forward", eeg=False)
        check_same_source_space(eeg_fwd, meg_fwd, names=("eeg_forward", "meg_forward"))
        self.info_ = eeg_inverse_info(eeg_fwd, info)
        if noise_cov is None:
            noise_cov = mne.make_ad_hoc_cov(self.info_, verbose=False)
        _check_type("noise_cov", noise_cov, mne.Covariance, "mne.Covariance or None")
        self.inverse_ = make_inverse(eeg_fwd, self.info_, noise_cov, depth=depth)
        self.eeg_ch_names_ = list(self.inverse_["noise_cov"].ch_names)
        self._meg_fwd = meg_fwd
        self._meg_types = np.array([mne.channel_type(meg_fwd["info"], i)
                                    for i in range(meg_fwd["nchan"])])
        self._set_lambda2(1.0 / self.snr**2 if self.lambda2 is None else self.lambda2)

    def _set_lambda2(self, lambda2):
        self._physics, self.meg_ch_names_ = make_transfer_operator(
            self.inverse_, self._meg_fwd, lambda2=lambda2, method=self.method,
            method_params=self.method_params)  # (n_meg, n_eeg)
        self.lambda2_ = float(lambda2)
        self._set_scales({})

    def _set_scales(self, scales):
        self.scales_ = {str(k): float(scales.get(str(k), 1.0))
                        for k in np.unique(self._meg_types)}
        gain = np.array([self.scales_[k] for k in self._meg_types])
        self.operator_ = gain[:, None] * self._physics  # (n_meg, n_eeg)

    def _check_eeg(self, eeg, name="eeg"):
        return check_epochs(name, eeg, n_channels=len(self.eeg_ch_names_), what="n_eeg")

    @verbose
    def fit(self, eeg, meg, *, lambda2s=None, rescale=True, verbose=None):
        """Choose ``lambda2`` (and a gain per MEG channel type) on validation pairs.

        ``lambda2`` maximises the mean over MEG channels of the Pearson r between transferred
        and real MEG (all samples of all epochs); r is blind to amplitude, and minimum-norm
        estimates shrink with ``lambda2``, so with ``rescale`` one least-squares gain per
        channel type (gradiometers, magnetometers) then restores the amplitude. Neither
        changes the spatial pattern the physics gives.

        Parameters
        ----------
        eeg : array, shape (n_epochs, n_eeg, n_times)
            Validation EEG (rows in the order of ``eeg_ch_names_``), V.
        meg : array, shape (n_epochs, n_meg, n_times)
            The paired MEG (rows in the order of ``meg_ch_names_``).
        lambda2s : array, shape (n_candidates,) | None
            Candidates (> 0); None: ``[lambda2]`` if given at construction, else
            :data:`LAMBDA2_GRID`.
        rescale : bool
            Fit the per-type gains ``scales_`` (least squares through the origin on the
            validation pairs); False keeps 1.0.
        verbose : bool | str | None
            Log level for this call.

        Returns
        -------
        self
        """
        eeg = self._check_eeg(eeg)
        meg = check_epochs("meg", meg, n_channels=len(self.meg_ch_names_),
                            n_times=eeg.shape[2], what="n_meg")
        if meg.shape[0] != eeg.shape[0]:
            raise ValueError(f"'eeg' and 'meg' must hold the same epochs, got {eeg.shape[0]} "
                             f"and {meg.shape[0]}.")
        if lambda2s is None:
            lambda2s = LAMBDA2_GRID if self.lambda2 is None else [self.lambda2]
        lambda2s = np.atleast_1d(np.asarray(lambda2s, np.float64))
        if lambda2s.ndim != 1 or not lambda2s.size:
            raise ValueError(f"'lambda2s' must be a non-empty 1-D sequence of values > 0, got "
                             f"shape {lambda2s.shape}.")
        for lam in lambda2s:
            _check_positive("lambda2s", float(lam))
        scores = np.empty(len(lambda2s))
        for i, lam in enumerate(lambda2s):
            self._set_lambda2(lam)
            scores[i] = mean_channel_r(self.predict(eeg), meg)
        best = int(np.argmax(scores))
        order = np.argsort(lambda2s)
        rank = int(np.flatnonzero(order == best)[0])
        if len(lambda2s) > 1 and rank in (0, len(lambda2s) - 1):
            gain = scores[best] - scores[order[1 if rank == 0 else -2]]
            if rank == len(lambda2s) - 1 and gain < 1e-3:
                # large lambda2: K -> R G~' W / lambda2, a fixed map up to scale (plateau)
                logger.info("PhysicsTransfer.fit: the validation r plateaus at the largest "
                            "lambda2 (%g): the strongly regularised limit, a depth-weighted "
                            "matched filter.", lambda2s[best])
            else:
                logger.warning("PhysicsTransfer.fit chose lambda2=%g, the edge of the "
                               "candidates (%g..%g): widen 'lambda2s'.", lambda2s[best],
                               lambda2s.min(), lambda2s.max())
        self._set_lambda2(lambda2s[best])
        if rescale:
            pred = self.predict(eeg)
            scales = {}
            for kind in self.scales_:
                sel = self._meg_types == kind
                den = float(np.sum(pred[:, sel] ** 2))
                scales[kind] = float(np.sum(pred[:, sel] * meg[:, sel]) / den) if den > 0 \
                    else 1.0
            self._set_scales(scales)
        self.lambda2s_, self.scores_ = lambda2s, scores
        logger.info("PhysicsTransfer (%s): lambda2=%g, validation MEG r=%.3f, gains %s.",
                    self.method, self.lambda2_, scores[best], self.scales_)
        return self

    def predict(self, eeg):
        """Transfer EEG epochs to MEG.

        Parameters
        ----------
        eeg : array, shape (n_epochs, n_eeg, n_times)
            EEG in V, rows in the order of ``eeg_ch_names_`` (any reference: the operator
            applies the average reference).

        Returns
        -------
        meg : array, shape (n_epochs, n_meg, n_times)
            float64, rows in the order of ``meg_ch_names_`` (T/m gradiometers, T
            magnetometers for MNE / eLORETA).
        """
        eeg = self._check_eeg(eeg)
        out = np.empty((eeg.shape[0], self.operator_.shape[0], eeg.shape[2]))
        for e in range(eeg.shape[0]):  # (n_meg, n_eeg) @ (n_eeg, T)
            out[e] = self.operator_ @ np.asarray(eeg[e], np.float64)
        return out


def _pick_forward(fwd, name, *, eeg):
    import mne

    picks = mne.pick_types(fwd["info"], meg=not eeg, eeg=eeg, ref_meg=False, exclude=[])
    if len(picks) == 0:
        kind = "EEG" if eeg else "MEG"
        raise ValueError(f"'{name}' has no {kind} channels ({fwd['nchan']} channels of other "
                         f"types). Build it with make_forward(subject, meg={not eeg}, "
                         f"eeg={eeg}).")
    if len(picks) == fwd["nchan"]:
        return fwd
    return mne.pick_channels_forward(fwd, [fwd["info"]["ch_names"][i] for i in picks],
                                     ordered=True, verbose=False)


class EEGMEGRidge(LaggedRidge):
    """Linear spatio-temporal ridge EEG → MEG, penalty per MEG channel by CV over epochs.

    ``meg[o, t] = b[o] + sum_{c, l} kernel_[o, c, l] * eeg[c, t - lags_[l]]`` (EEG taken as 0
    outside its epoch); EEG columns standardised with training statistics; one penalty per
    MEG channel chosen by ``cv``-fold cross-validation over whole epochs (or groups).

    Parameters
    ----------
    lags : int | array-like of int, shape (n_lags,)
        EEG lags in samples; an int ``L`` means ``-L .. L`` (default 5: ±20 ms at 250 Hz).
    alphas : array, shape (n_alphas,)
        Candidate penalties (> 0) on standardised EEG.
    cv : int
        Folds of contiguous whole epochs (or groups).
    n_targets_batch : int | None
        MEG channels solved at once.
    backend : None | "numpy" | "torch" | "torch_cuda"
        himalaya backend (None: CUDA if present, else numpy).

    Attributes
    ----------
    coef_, intercept_, alphas_, cv_scores_, folds_, lags_, kernel_
        As in :class:`~neurofuse.baselines.ridge.lagged.LaggedRidge` (inputs = EEG,
        outputs = MEG).
    """

    _in, _out = "eeg", "meg"

    def __init__(self, lags=RIDGE_LAGS, alphas=DEFAULT_ALPHAS, *, cv=5, n_targets_batch=None,
                 backend=None):
        super().__init__(lags, alphas, cv=cv, n_targets_batch=n_targets_batch,
                         backend=backend)

    def fit(self, eeg, meg, *, groups=None, verbose=None):
        """Fit on paired training epochs.

        Parameters
        ----------
        eeg : array, shape (n_epochs, n_eeg, n_times)
        meg : array, shape (n_epochs, n_meg, n_times)
        groups : array, shape (n_epochs,) | None
            A label per epoch (run, subject): folds hold whole groups. None: epochs.
        verbose : bool | str | None
            Log level for this call.

        Returns
        -------
        self
        """
        return super().fit(eeg, meg, groups=groups, verbose=verbose)

    def predict(self, eeg):
        """Predict MEG epochs.

        Parameters
        ----------
        eeg : array, shape (n_epochs, n_eeg, n_times)

        Returns
        -------
        meg : array, shape (n_epochs, n_meg, n_times)
            float64.
        """
        return super().predict(eeg)
