"""System B's baselines (issue 12 item 3): the EEG → MEG physics transfer and lagged ridge.

Checked against references and analytic limits:

- the physics transfer equals MNE-Python's own ``make_inverse_operator`` +
  ``apply_inverse_epochs`` followed by the MEG gain (and ``mne.apply_forward``), for all
  four methods, to float precision;
- λ² → 0 limits: transferring the EEG to its own forward gives the projector onto what the
  (average-referenced) EEG sees; noiseless EEG from a minimum-norm source (``x = G_eᵀ P c``)
  is transferred to exactly that source's MEG;
- the ridge equals scikit-learn (``GridSearchCV`` over ``StandardScaler + Ridge`` with the
  same epoch folds, which is what ``RidgeCV(cv=...)`` does with a scaler inside the folds)
  on the same lagged design; on data from a known lagged linear map plus noise it recovers
  the map.
"""

import mne
import numpy as np
import pytest

from neurofuse.anatomy import make_forward, make_template_subject
from neurofuse.baselines.inverse.transfer import check_same_source_space, make_transfer_operator
from neurofuse.baselines.ridge.lagged import check_lags, make_lagged_epochs
from neurofuse.systems.eeg2meg.baselines import (
    EEGMEGRidge,
    PhysicsTransfer,
    eeg_inverse_info,
    mean_channel_r,
)

SPACING = "oct5"  # the coarsest spacing neurofuse offers (2052 sources)


@pytest.fixture(scope="module")
def fwds():
    sub = make_template_subject(eeg="standard_1020", sfreq=250)
    eeg = make_forward(sub, spacing=SPACING, meg=False, eeg=True)
    meg = make_forward(sub, spacing=SPACING, meg=True, eeg=False)
    return {"subject": sub, "eeg": eeg, "meg": meg}


@pytest.fixture(scope="module")
def noise_cov(fwds):
    """A full-rank, non-white EEG noise covariance (so whitening matters)."""
    info = eeg_inverse_info(fwds["eeg"])
    n = len(info["ch_names"])
    rng = np.random.default_rng(7)
    a = rng.standard_normal((n, 3 * n))
    cov = (a @ a.T / (3 * n) + 0.5 * np.eye(n)) * 1e-12  # V²
    return mne.Covariance(cov, info["ch_names"], [], info["projs"], 1000, verbose=False)


def _avg_ref_projector(n):
    return np.eye(n) - np.full((n, n), 1.0 / n)


# ------------------------------------------------------------------------------------------
# Physics transfer


@pytest.mark.parametrize("method", ["MNE", "dSPM", "sLORETA", "eLORETA"])
def test_physics_equals_mne_inverse_then_forward(fwds, noise_cov, method):
    pt = PhysicsTransfer(fwds["eeg"], fwds["meg"], noise_cov, method=method, lambda2=1 / 9,
                         depth=0.8)
    info = pt.info_
    rng = np.random.default_rng(0)
    eeg = rng.standard_normal((3, len(info["ch_names"]), 25)) * 1e-6
    ours = pt.predict(eeg)
    assert ours.shape == (3, 306, 25)
    assert pt.meg_ch_names_ == fwds["meg"]["info"]["ch_names"]

    # MNE-Python's own chain: free-orientation surface forward, fixed loose=0 operator
    fwd_free = mne.convert_forward_solution(fwds["eeg"], surf_ori=True, force_fixed=False,
                                            use_cps=True, verbose=False)
    inv = mne.minimum_norm.make_inverse_operator(info, fwd_free, noise_cov, loose=0.0,
                                                 depth=0.8, fixed=True, verbose=False)
    epochs = mne.EpochsArray(eeg, info, verbose=False)
    stcs = mne.minimum_norm.apply_inverse_epochs(epochs, inv, 1 / 9, method, pick_ori=None,
                                                 verbose=False)
    gain = mne.convert_forward_solution(fwds["meg"], surf_ori=True, force_fixed=True,
                                        use_cps=True, verbose=False)["sol"]["data"]
    ref = np.stack([gain @ stc.data for stc in stcs])
    scale = np.abs(ref).max()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-10 * scale)
    if method == "MNE":  # and through mne.apply_forward (units A·m -> T, T/m)
        evoked = mne.apply_forward(fwds["meg"], stcs[1], fwds["subject"].meg_info,
                                   verbose=False)
        np.testing.assert_allclose(ours[1], evoked.data, rtol=0, atol=1e-10 * scale)


def test_physics_lambda2_limit_self_transfer_is_projector(fwds):
    """EEG → inverse → the EEG forward itself: λ² → 0 gives the projector onto range(P G)."""
    pt = PhysicsTransfer(fwds["eeg"], fwds["meg"], None, depth=0.8)
    gain = fwds["eeg"]["sol"]["data"]  # (n_eeg, n_sources)
    n = gain.shape[0]
    P = _avg_ref_projector(n)
    u, s, _ = np.linalg.svd(P @ gain, full_matrices=False)
    q = u[:, s > s[0] * 1e-10]  # what the average-referenced EEG can see
    errs = []
    for lam in (1e-4, 1e-8, 1e-12):
        op, _ = make_transfer_operator(pt.inverse_, fwds["eeg"], lambda2=lam)
        errs.append(np.abs(P @ op - q @ q.T).max())
    assert errs[-1] < 1e-6
    assert errs[0] > errs[1] > errs[2]  # converges as lambda2 -> 0


def test_physics_lambda2_limit_minimum_norm_source(fwds):
    """Noiseless EEG from a minimum-norm source (x in the row space of P G_e): λ² → 0
    reproduces that source's MEG; a generic source's MEG is not reproduced."""
    pt = PhysicsTransfer(fwds["eeg"], fwds["meg"], None, depth=None, lambda2=1e-10)
    g_eeg = fwds["eeg"]["sol"]["data"]
    g_meg = fwds["meg"]["sol"]["data"]
    P = _avg_ref_projector(g_eeg.shape[0])
    rng = np.random.default_rng(1)
    x = g_eeg.T @ P @ rng.standard_normal((g_eeg.shape[0], 4))  # (n_sources, n_times)
    ref = g_meg @ x
    pred = pt.predict((g_eeg @ x)[None])[0]
    assert np.abs(pred - ref).max() < 1e-5 * np.abs(ref).max()
    x_any = rng.standard_normal(x.shape)  # outside the EEG's row space: blurred, not exact
    ref_any = g_meg @ x_any
    assert np.abs(pt.predict((g_eeg @ x_any)[None])[0] - ref_any).max() > \
        0.1 * np.abs(ref_any).max()


def test_physics_reference_free_and_combined_forward(fwds):
    """The operator applies the average reference: adding a constant to every EEG channel
    changes nothing."""
    pt = PhysicsTransfer(fwds["eeg"], fwds["meg"], None)
    rng = np.random.default_rng(2)
    eeg = rng.standard_normal((2, len(pt.eeg_ch_names_), 10)) * 1e-6
    shifted = eeg + rng.standard_normal((2, 1, 10)) * 1e-5
    np.testing.assert_allclose(pt.predict(shifted), pt.predict(eeg), rtol=0,
                               atol=1e-9 * np.abs(pt.predict(eeg)).max())
    assert pt.lambda2_ == pytest.approx(1 / 9)  # 1 / snr**2, snr=3


def test_physics_fit_chooses_lambda2_on_validation(fwds):
    """fit picks the candidate with the best validation MEG r (computed here with
    np.corrcoef); with noisy EEG the best regularisation is interior."""
    g_eeg = fwds["eeg"]["sol"]["data"]
    g_meg = fwds["meg"]["sol"]["data"]
    rng = np.random.default_rng(3)
    n_src = g_eeg.shape[1]
    # a few active patches of sources (sparse, smooth in time)
    x = np.zeros((6, n_src, 40))
    t = np.linspace(0, 1, 40)
    for e in range(6):
        for idx in rng.choice(n_src, 5, replace=False):
            x[e, idx] = np.sin(2 * np.pi * rng.uniform(2, 6) * t + rng.uniform(0, 6)) * 1e-8
    eeg_clean = np.einsum("cs,nst->nct", g_eeg, x)
    eeg = eeg_clean + rng.standard_normal(eeg_clean.shape) * eeg_clean.std()
    meg = np.einsum("cs,nst->nct", g_meg, x)
    cands = np.logspace(-4, 2, 7)
    pt = PhysicsTransfer(fwds["eeg"], fwds["meg"], None).fit(eeg, meg, lambda2s=cands,
                                                             rescale=False)

    def r(pred):
        return np.mean([np.corrcoef(pred[:, c].ravel(), meg[:, c].ravel())[0, 1]
                        for c in range(meg.shape[1])])

    expected = [r(np.einsum("mc,nct->nmt", make_transfer_operator(
        pt.inverse_, fwds["meg"], lambda2=lam)[0], eeg)) for lam in cands]
    np.testing.assert_allclose(pt.scores_, expected, rtol=1e-9)
    best = int(np.argmax(expected))
    assert pt.lambda2_ == cands[best]
    assert 0 < best < len(cands) - 1
    np.testing.assert_allclose(pt.predict(eeg), PhysicsTransfer(
        fwds["eeg"], fwds["meg"], None, lambda2=cands[best]).predict(eeg), rtol=1e-12)
    assert pt.scales_ == {"grad": 1.0, "mag": 1.0}


def test_physics_fit_rescales_each_channel_type(fwds):
    """MEG equal to gradiometer/magnetometer multiples of the transfer: the per-type gains
    are recovered exactly, and they are the least-squares optimum."""
    pt = PhysicsTransfer(fwds["eeg"], fwds["meg"], None, lambda2=0.1)
    rng = np.random.default_rng(10)
    eeg = rng.standard_normal((4, len(pt.eeg_ch_names_), 20)) * 1e-6
    base = pt.predict(eeg)
    kinds = np.array([mne.channel_type(fwds["meg"]["info"], i) for i in range(306)])
    assert set(kinds) == {"grad", "mag"}
    meg = base * np.where(kinds == "mag", 3.0, 0.5)[None, :, None]
    pt.fit(eeg, meg)  # one candidate: the lambda2 given
    assert pt.lambda2_ == 0.1
    assert pt.scales_["mag"] == pytest.approx(3.0, rel=1e-10)
    assert pt.scales_["grad"] == pytest.approx(0.5, rel=1e-10)
    np.testing.assert_allclose(pt.predict(eeg), meg, rtol=1e-9)
    noisy = meg + rng.standard_normal(meg.shape) * meg.std()
    pt.fit(eeg, noisy)
    pred = pt.predict(eeg)
    sse = np.sum((pred - noisy) ** 2)
    for factor in (0.99, 1.01):  # any other gain fits worse
        assert np.sum((pred * factor - noisy) ** 2) > sse


def test_physics_errors(fwds):
    with pytest.raises(ValueError, match="'method'"):
        PhysicsTransfer(fwds["eeg"], fwds["meg"], None, method="LCMV")
    with pytest.raises(ValueError, match="no MEG channels"):
        PhysicsTransfer(fwds["eeg"], fwds["eeg"], None)
    with pytest.raises(TypeError, match="'meg_forward'"):
        PhysicsTransfer(fwds["eeg"], np.zeros((306, 2052)), None)
    with pytest.raises(ValueError, match="lambda2"):
        PhysicsTransfer(fwds["eeg"], fwds["meg"], None, lambda2=0.0)
    # another source space: the first 100 sources of the left hemisphere dropped
    lh = fwds["meg"]["src"][0]["vertno"]
    stc = mne.SourceEstimate(np.zeros((fwds["meg"]["nsource"] - 100, 1)),
                             [lh[100:], fwds["meg"]["src"][1]["vertno"]], 0, 1)
    with mne.utils.use_log_level("error"):
        small = mne.forward.restrict_forward_to_stc(fwds["meg"], stc)
    with pytest.raises(ValueError, match="Source space mismatch.*'eeg_forward'.*'meg_forward'"):
        PhysicsTransfer(fwds["eeg"], small, None)
    with pytest.raises(ValueError, match="Source space mismatch"):
        check_same_source_space(fwds["eeg"], small)
    pt = PhysicsTransfer(fwds["eeg"], fwds["meg"], None)
    n_eeg = len(pt.eeg_ch_names_)
    with pytest.raises(ValueError, match=r"'eeg' must have shape \(n_epochs, n_eeg, n_times\)"):
        pt.predict(np.zeros((n_eeg, 10)))
    with pytest.raises(ValueError, match=f"'eeg' has {n_eeg - 1} channels but {n_eeg}"):
        pt.predict(np.zeros((1, n_eeg - 1, 10)))
    with pytest.raises(ValueError, match="'meg' has 300 channels but 306"):
        pt.fit(np.zeros((1, n_eeg, 10)), np.zeros((1, 300, 10)))
    with pytest.raises(ValueError, match="'eeg' contains 1 NaN"):
        bad = np.zeros((1, n_eeg, 10))
        bad[0, 0, 0] = np.nan
        pt.predict(bad)


def test_eeg_inverse_info_adds_reference_once(fwds):
    info = eeg_inverse_info(fwds["eeg"])
    assert info["ch_names"] == fwds["eeg"]["info"]["ch_names"]
    assert len(info["projs"]) == 1
    assert len(eeg_inverse_info(fwds["eeg"], info)["projs"]) == 1  # not added twice


def test_mean_channel_r_matches_corrcoef():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((2, 3, 4, 50))
    b = b + a
    expected = np.mean([np.corrcoef(a[:, c].ravel(), b[:, c].ravel())[0, 1] for c in range(4)])
    assert mean_channel_r(a, b) == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------------------------------------------
# Lagged ridge


def _lagged_map(x, kernel, lags):
    """y[o, t] = sum_{c, l} kernel[o, c, l] x[c, t - lags[l]] (0 outside the epoch), loops."""
    n, _, T = x.shape
    y = np.zeros((n, kernel.shape[0], T))
    for li, lag in enumerate(lags):
        for t in range(T):
            if 0 <= t - lag < T:
                y[:, :, t] += x[:, :, t - lag] @ kernel[:, :, li].T
    return y


def test_lagged_design_stays_in_its_epoch():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6))
    lags = check_lags(2)
    np.testing.assert_array_equal(lags, [-2, -1, 0, 1, 2])
    d = make_lagged_epochs(x, lags)
    assert d.shape == (12, 15)
    for e in range(2):
        for t in range(6):
            for li, lag in enumerate(lags):
                expect = x[e, :, t - lag] if 0 <= t - lag < 6 else np.zeros(3)
                np.testing.assert_array_equal(d[e * 6 + t, li * 3:(li + 1) * 3], expect)


def test_ridge_equals_sklearn_on_the_same_lagged_design():
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, PredefinedSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(6)
    n, n_eeg, n_meg, T = 16, 4, 3, 30
    eeg = rng.standard_normal((n, n_eeg, T)) * 1e-5
    eeg[:, 1] *= 30  # unequal channel scales: standardisation matters
    kernel = rng.standard_normal((n_meg, n_eeg, 3)) * 1e-8
    meg = _lagged_map(eeg, kernel, [-1, 0, 1]) + rng.standard_normal((n, n_meg, T)) * 3e-13
    meg[:, 2] = rng.standard_normal((n, T)) * 1e-12  # pure noise: wants a large alpha
    alphas = np.logspace(-2, 6, 9)
    model = EEGMEGRidge(lags=[-2, -1, 0, 1, 3], alphas=alphas, cv=4).fit(eeg, meg)
    design = make_lagged_epochs(eeg, [-2, -1, 0, 1, 3])
    fold = np.empty(n, int)
    for f, epochs in enumerate(model.folds_):
        fold[epochs] = f
    pred = model.predict(eeg)
    assert pred.shape == (n, n_meg, T)
    for o in range(n_meg):
        ref = GridSearchCV(make_pipeline(StandardScaler(), Ridge()), {"ridge__alpha": alphas},
                           cv=PredefinedSplit(np.repeat(fold, T)),
                           scoring="neg_mean_squared_error").fit(design, meg[:, o].ravel())
        assert model.alphas_[o] == ref.best_params_["ridge__alpha"]
        sk = ref.predict(design).reshape(n, T)
        np.testing.assert_allclose(pred[:, o], sk, rtol=0, atol=1e-9 * np.abs(sk).max())
    assert model.alphas_[2] > model.alphas_[0]


def test_ridge_recovers_a_known_lagged_map():
    rng = np.random.default_rng(8)
    n, n_eeg, n_meg, T = 40, 5, 4, 60
    lags = np.arange(-3, 4)
    eeg = rng.standard_normal((n, n_eeg, T)) * 1e-5
    kernel = rng.standard_normal((n_meg, n_eeg, len(lags))) * 1e-8
    intercept = rng.standard_normal(n_meg) * 1e-13
    clean = _lagged_map(eeg, kernel, lags) + intercept[None, :, None]
    meg = clean + rng.standard_normal(clean.shape) * 0.01 * clean.std()
    model = EEGMEGRidge(lags=3, cv=5).fit(eeg, meg)
    np.testing.assert_array_equal(model.lags_, lags)
    assert model.kernel_.shape == kernel.shape
    np.testing.assert_allclose(model.kernel_, kernel, rtol=0, atol=0.01 * np.abs(kernel).max())
    np.testing.assert_allclose(model.intercept_, intercept, rtol=0,
                               atol=0.05 * np.abs(clean).std())
    test = rng.standard_normal((3, n_eeg, T)) * 1e-5
    truth = _lagged_map(test, kernel, lags) + intercept[None, :, None]
    assert mean_channel_r(model.predict(test), truth) > 0.999


def test_ridge_folds_hold_whole_groups_and_errors():
    rng = np.random.default_rng(9)
    eeg = rng.standard_normal((12, 3, 10))
    meg = rng.standard_normal((12, 2, 10))
    groups = np.repeat(["run1", "run2", "run3", "run4"], 3)[rng.permutation(12)]
    model = EEGMEGRidge(lags=1, cv=4).fit(eeg, meg, groups=groups)
    assert sorted(np.concatenate(model.folds_).tolist()) == list(range(12))
    for epochs in model.folds_:
        assert len(set(groups[epochs])) == 1  # a fold is a whole run, never part of one
    with pytest.raises(ValueError, match="'cv' \\(5\\) must not exceed .* groups \\(4\\)"):
        EEGMEGRidge(cv=5).fit(eeg, meg, groups=groups)
    with pytest.raises(ValueError, match="'meg' has 5 time samples but 10"):
        EEGMEGRidge().fit(eeg, meg[..., :5])
    with pytest.raises(ValueError, match="same epochs"):
        EEGMEGRidge().fit(eeg, meg[:6])
    with pytest.raises(ValueError, match=r"'eeg' must have shape \(n_epochs"):
        EEGMEGRidge().fit(eeg[0], meg)
    with pytest.raises(ValueError, match="'groups' must have shape"):
        EEGMEGRidge().fit(eeg, meg, groups=groups[:5])
    with pytest.raises(ValueError, match="'lags' must not repeat"):
        EEGMEGRidge(lags=[0, 1, 1]).fit(eeg, meg)
    with pytest.raises(RuntimeError, match="not fitted"):
        EEGMEGRidge().predict(eeg)
    with pytest.raises(ValueError, match="'eeg' has 2 channels but 3"):
        model.predict(eeg[:, :2])
