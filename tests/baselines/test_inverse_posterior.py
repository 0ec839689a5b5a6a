"""MNE and fMNE with a prior mean, ``m + K (y − G m)``: the classical inverse at ``m = 0``
(against MNE-Python), ``m`` itself when ``m`` explains the data, a smaller residual, the
gain ``G = L M`` against the simulator's data and explicit matrices, names in
``run_inverses`` and ``source_recovery``."""

import mne
import numpy as np
import pytest
import scipy.sparse

from neurofuse.anatomy.forward import get_leadfield
from neurofuse.baselines.inverse import (
    apply_fmne,
    apply_posterior,
    fit_prior_scale,
    fsaverage_map,
    make_inverse,
    noise_cov_from_noise,
    posterior_name,
    prior_gain,
    run_inverses,
)
from neurofuse.data.store import read_dataset

LAMBDA2 = 1.0 / 9


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def study(tiny_study):
    """S01's test story, its ground truth and noise covariance, and an operator on every 8th
    source (the same problem, small enough for many inverses)."""
    ds = read_dataset(tiny_study)
    story = ds.splits["test"][0]
    info, fwd, morph = ds.info("S01"), ds.forward("S01"), ds.morph("S01")
    data = np.asarray(ds.meg("S01", story), np.float64).mean(axis=0)  # (n_ch, n_times)
    truth = np.asarray(ds.ground_truth(f"sources/{story}"), np.float64)  # (n_fs, n_times)
    leadfield = np.asarray(ds.leadfield("S01"), np.float64)
    gain = prior_gain(leadfield, morph)
    cov = noise_cov_from_noise(data - gain @ truth, info)
    verts = [s["vertno"][::8] for s in fwd["src"]]
    stc = mne.SourceEstimate(np.zeros((sum(len(v) for v in verts), 1)), verts, 0.0, 1.0)
    fwd_small = mne.forward.restrict_forward_to_stc(fwd, stc)
    n_lh = len(fwd["src"][0]["vertno"])
    rows = np.r_[np.arange(0, n_lh, 8), n_lh + np.arange(0, len(fwd["src"][1]["vertno"]), 8)]
    morph_small = scipy.sparse.csr_array(morph)[rows]
    return {"ds": ds, "story": story, "info": info, "data": data, "truth": truth,
            "leadfield": leadfield, "morph": morph, "gain": gain, "cov": cov,
            "inverse": make_inverse(fwd_small, info, cov), "morph_small": morph_small,
            "leadfield_small": np.asarray(get_leadfield(fwd_small), np.float64), "rows": rows}


def _small(study):
    """The small operator's gain on fsaverage, its subject → fsaverage map and fMNE's BOLD."""
    ds = study["ds"]
    g = prior_gain(study["leadfield_small"], study["morph_small"])
    to_fs = fsaverage_map(study["morph_small"])
    bold = study["morph_small"] @ (fsaverage_map(ds.morph("S02"))
                                   @ np.asarray(ds.fmri("S02", study["story"], average=True)))
    return g, to_fs, np.asarray(bold)


def test_gain_maps_fsaverage_sources_to_the_sensors(study):
    """``G = L M``: fsaverage sources morphed to the subject, then projected; it reproduces
    the simulator's signal (the data minus G s is noise, uncorrelated with G s)."""
    g, morph = study["gain"], scipy.sparse.csc_array(study["morph"])
    cols = np.random.default_rng(0).choice(g.shape[1], 40, replace=False)
    for j in cols:  # column j: the sensor pattern of a unit source at fsaverage source j
        unit_on_subject = morph[:, [j]].toarray()[:, 0]  # the morph takes it to the subject
        explicit = study["leadfield"] @ unit_on_subject
        np.testing.assert_allclose(g[:, j], explicit, rtol=1e-10,
                                   atol=1e-12 * np.abs(g).max())
    assert g.shape == (study["data"].shape[0], morph.shape[1])
    clean = g @ study["truth"]
    slope = np.sum(study["data"] * clean) / np.sum(clean**2)
    assert slope == pytest.approx(1.0, abs=0.05)
    # the small operator's lead field is the store's, on its subset of sources (so the small
    # problem's G = L[:, rows] M[rows] is consistent with the operator it is used with)
    np.testing.assert_allclose(study["leadfield_small"], study["leadfield"][:, study["rows"]],
                               rtol=1e-6, atol=1e-6 * np.abs(study["leadfield"]).max())


def test_zero_prior_mean_is_the_classical_inverse(study):
    """m = 0 gives MNE-Python's own estimate (then mapped to fsaverage) and our fMNE."""
    g, to_fs, bold = _small(study)
    data, inv = study["data"], study["inverse"]
    zeros = np.zeros((g.shape[1], data.shape[1]), np.float32)
    ours = apply_posterior(data, inv, zeros, g, lambda2=LAMBDA2, method="MNE",
                           to_fsaverage=to_fs, chunk_size=97)
    raw = mne.io.RawArray(data, study["info"], verbose=False)
    ref = to_fs @ mne.minimum_norm.apply_inverse_raw(raw, inv, LAMBDA2, "MNE",
                                                     verbose=False).data
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())
    ds = study["ds"]
    kw = dict(lambda2=LAMBDA2, sfreq=ds.sfreq, tr=ds.tr, to_fsaverage=to_fs)
    fm = apply_posterior(data, inv, zeros, g, method="fMNE", bold=bold, **kw)
    np.testing.assert_array_equal(fm, apply_fmne(data, inv, bold, **kw))


@pytest.mark.parametrize("method", ["MNE", "fMNE"])
def test_a_prior_mean_that_explains_the_data_is_returned(study, method):
    """Noiseless data y = G m: the update is 0 and the estimate is m, on fsaverage and on the
    subject's own sources, for any kernel."""
    g, to_fs, bold = _small(study)
    ds, inv = study["ds"], study["inverse"]
    fmne = dict(bold=bold, sfreq=ds.sfreq, tr=ds.tr) if method == "fMNE" else {}
    m = study["truth"].astype(np.float32)
    y = g @ m.astype(np.float64)
    est = apply_posterior(y, inv, m, g, lambda2=LAMBDA2, method=method, to_fsaverage=to_fs,
                          **fmne)
    np.testing.assert_allclose(est, m, rtol=1e-5, atol=1e-5 * np.abs(m).max())
    # the classical estimate of the same data is far from m: the test can fail
    classical = apply_posterior(y, inv, np.zeros_like(m), g, lambda2=LAMBDA2, method=method,
                                to_fsaverage=to_fs, **fmne)
    assert np.abs(classical - m).max() > 0.1 * np.abs(m).max()
    # on the subject's own sources, with the lead field as the gain
    m_sub = (study["morph_small"] @ study["truth"]).astype(np.float32)
    y_sub = study["leadfield_small"] @ m_sub.astype(np.float64)
    est_sub = apply_posterior(y_sub, inv, m_sub, study["leadfield_small"], lambda2=LAMBDA2,
                              method=method, **fmne)
    np.testing.assert_allclose(est_sub, m_sub, rtol=1e-5, atol=1e-5 * np.abs(m_sub).max())


@pytest.mark.parametrize("method", ["MNE", "fMNE"])
def test_posterior_explains_the_data_better_than_its_prior_mean(study, method):
    """||W (G ŝ − y)|| < ||W (G m − y)|| in the whitened norm on the subject's sources (the
    minimum-norm update shrinks the whitened residual by (G R Gᵀ + λ I)⁻¹ λ); on fsaverage,
    too, for this recording."""
    g, to_fs, bold = _small(study)
    ds, inv, data = study["ds"], study["inverse"], study["data"]
    fmne = dict(bold=bold, sfreq=ds.sfreq, tr=ds.tr) if method == "fMNE" else {}
    rng = np.random.default_rng(0)
    truth = study["truth"]
    m = (0.5 * np.roll(truth, 7, axis=1)
         + 0.5 * truth.std() * rng.standard_normal(truth.shape)).astype(np.float32)
    whitener = mne.minimum_norm.prepare_inverse_operator(inv, 1, LAMBDA2, "MNE",
                                                         verbose=False)["whitener"]
    lf = study["leadfield_small"]
    m_sub = (study["morph_small"] @ m).astype(np.float32)
    est_sub = apply_posterior(data, inv, m_sub, lf, lambda2=LAMBDA2, method=method,
                              prior_scale=1.0, **fmne)
    before = np.linalg.norm(whitener @ (lf @ m_sub - data))
    after = np.linalg.norm(whitener @ (lf @ est_sub - data))
    assert after < 0.9 * before
    est = apply_posterior(data, inv, m, g, lambda2=LAMBDA2, method=method, to_fsaverage=to_fs,
                          prior_scale=1.0, **fmne)
    assert np.linalg.norm(g @ est - data) < np.linalg.norm(g @ m - data)


def test_prior_scale_makes_the_estimate_unit_free(study, catch_logs):
    """A prior mean in arbitrary units (the joint model's) is scaled by the whitened least
    squares a: c·m gives a/c, the same estimate; noiseless data of m itself gives a = 1; an
    anti-correlated m gets 0 (the classical inverse)."""
    g, to_fs, _ = _small(study)
    inv, data, truth = study["inverse"], study["data"], study["truth"]
    m = (0.7 * truth + 0.3 * truth.std()
         * np.random.default_rng(1).standard_normal(truth.shape)).astype(np.float32)
    a = fit_prior_scale(data, inv, m, g)
    assert a > 0
    assert fit_prior_scale(data, inv, 1e9 * m, g) == pytest.approx(a * 1e-9, rel=1e-6)
    # the scale is the whitened least-squares fit: the residual is orthogonal to W G m
    w = mne.minimum_norm.prepare_inverse_operator(inv, 1, LAMBDA2, "MNE", verbose=False)
    w = w["whitener"] @ w["proj"]
    wgm = w @ g @ m.astype(np.float64)
    assert abs(np.sum(wgm * (w @ (data - a * g @ m)))) < 1e-8 * np.sum(wgm * (w @ data))
    one = apply_posterior(data, inv, m, g, lambda2=LAMBDA2, to_fsaverage=to_fs)
    big = apply_posterior(data, inv, (1e9 * m).astype(np.float32), g, lambda2=LAMBDA2,
                          to_fsaverage=to_fs)
    np.testing.assert_allclose(big, one, rtol=1e-4, atol=1e-5 * np.abs(one).max())
    fixed = apply_posterior(data, inv, m, g, lambda2=LAMBDA2, to_fsaverage=to_fs,
                            prior_scale=a)
    np.testing.assert_allclose(fixed, one, rtol=1e-6, atol=1e-7 * np.abs(one).max())
    assert fit_prior_scale(g @ truth, inv, truth, g) == pytest.approx(1.0, rel=1e-6)
    with catch_logs("warning") as log:
        assert fit_prior_scale(data, inv, -m, g) == 0.0
    assert "anti-correlated" in log.text
    classical = apply_posterior(data, inv, np.zeros_like(m), g, lambda2=LAMBDA2,
                                to_fsaverage=to_fs)
    np.testing.assert_array_equal(
        apply_posterior(data, inv, -m, g, lambda2=LAMBDA2, to_fsaverage=to_fs), classical)


def test_noise_normalised_methods_are_refused(study):
    g, to_fs, _ = _small(study)
    data = study["data"][:, :10]
    m = np.zeros((g.shape[1], 10))
    for method in ("dSPM", "sLORETA", "eLORETA"):
        with pytest.raises(ValueError, match="cannot take a prior mean"):
            apply_posterior(data, study["inverse"], m, g, lambda2=LAMBDA2, method=method,
                            to_fsaverage=to_fs)
    with pytest.raises(ValueError, match=r"'prior_mean' must have shape"):
        apply_posterior(data, study["inverse"], m[:, :5], g, lambda2=LAMBDA2,
                        to_fsaverage=to_fs)
    with pytest.raises(ValueError, match="'gain' must map the output"):
        apply_posterior(data, study["inverse"], m, g, lambda2=LAMBDA2)  # no to_fsaverage
    with pytest.raises(ValueError, match="needs 'bold'"):
        apply_posterior(data, study["inverse"], m, g, lambda2=LAMBDA2, method="fMNE",
                        to_fsaverage=to_fs)


def test_run_inverses_with_a_prior_mean(study, tmp_path):
    """run_inverses names them '<prior_name>+MNE'/'+fMNE'; m = 0 gives the classical ones,
    m = truth moves the estimate towards the truth."""
    ds, story = study["ds"], study["story"]
    zeros = np.zeros_like(study["truth"], dtype=np.float32)
    est = run_inverses(ds, "S01", story, methods=("MNE", "fMNE", "dSPM"), prior_mean=zeros,
                       prior_name="zero", out_dir=tmp_path)
    assert list(est) == ["MNE", "fMNE", "dSPM", "zero+MNE", "zero+fMNE"]
    assert posterior_name("MNE", "zero") == "zero+MNE"
    assert (tmp_path / f"S01_{story}_zero+fMNE.npy").is_file()
    for method in ("MNE", "fMNE"):
        ref = np.asarray(est[method])
        np.testing.assert_allclose(est[f"zero+{method}"], ref, rtol=1e-5,
                                   atol=1e-6 * np.abs(ref).max())
    truth = study["truth"].astype(np.float32)
    fitted = {}
    good = run_inverses(ds, "S01", story, methods=("MNE",), prior_mean=truth,
                        fitted_scale=fitted)
    assert fitted["prior"] == pytest.approx(1.0, abs=0.05)  # the truth is in A·m already
    err = lambda e: np.linalg.norm(np.asarray(e, np.float64) - truth)
    assert err(good["prior+MNE"]) < 0.5 * err(good["MNE"])
    with pytest.raises(ValueError, match="'prior_mean' must have shape"):
        run_inverses(ds, "S01", story, methods=("MNE",), prior_mean=truth[:, :10])
