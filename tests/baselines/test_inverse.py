"""Classical inverses: equality with MNE-Python, streaming, the fMRI prior, errors."""

import math

import mne
import numpy as np
import pytest
import scipy.sparse

from neurofuse.baselines.inverse import (
    MIN_LAMBDA2,
    apply_fmne,
    apply_inverse_array,
    bold_to_subject,
    estimate_to_fsaverage,
    fmri_prior,
    fsaverage_map,
    lambda2_from_cnr,
    make_inverse,
    noise_cov_from_noise,
    run_inverses,
)
from neurofuse.data.store import read_dataset

LAMBDA2 = 1.0 / 9


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    """One BLAS thread: numpy's and scipy's OpenBLAS pools (MNE uses both) spin against each
    other on a busy 2-core machine and make 306 × 306 eigh calls take seconds."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with scikit-learn; optional here
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def study(tiny_study):
    """Tiny study: MEG subject S01, its test story and the ground-truth noise covariance."""
    ds = read_dataset(tiny_study)
    story = ds.splits["test"][0]
    info, fwd, morph = ds.info("S01"), ds.forward("S01"), ds.morph("S01")
    data = np.asarray(ds.meg("S01", story), np.float64).mean(axis=0)  # (n_ch, n_times)
    truth = np.asarray(ds.ground_truth(f"sources/{story}"), np.float64)  # (n_fs, n_times)
    gain_fs = (scipy.sparse.csr_array(morph).T @ np.asarray(ds.leadfield("S01"), np.float64).T).T
    cov = noise_cov_from_noise(data - gain_fs @ truth, info)  # the ground-truth noise
    raw = mne.io.RawArray(data, info, verbose=False)
    return {"ds": ds, "story": story, "info": info, "fwd": fwd, "morph": morph, "data": data,
            "truth": truth, "cov": cov, "raw": raw}


@pytest.fixture(scope="module")
def full(study):
    """Our operator and MNE-Python's own one for the full 8196-source forward."""
    fwd_free = mne.convert_forward_solution(study["fwd"], surf_ori=True, force_fixed=False,
                                            verbose=False)
    ref = mne.minimum_norm.make_inverse_operator(study["info"], fwd_free, study["cov"],
                                                 loose=0.0, depth=0.8, fixed=True, verbose=False)
    return {"inverse": make_inverse(study["fwd"], study["info"], study["cov"], depth=0.8),
            "mne_inverse": ref}


@pytest.fixture(scope="module")
def small(study):
    """Every 8th source (1026): the same problem, small enough for many inverses."""
    fwd = study["fwd"]
    verts = [s["vertno"][::8] for s in fwd["src"]]
    stc = mne.SourceEstimate(np.zeros((sum(len(v) for v in verts), 1)), verts, 0.0, 1.0)
    fwd_small = mne.forward.restrict_forward_to_stc(fwd, stc)
    n_lh = len(fwd["src"][0]["vertno"])
    rows = np.r_[np.arange(0, n_lh, 8), n_lh + np.arange(0, len(fwd["src"][1]["vertno"]), 8)]
    return {"fwd": fwd_small, "inverse": make_inverse(fwd_small, study["info"], study["cov"]),
            "morph": scipy.sparse.csr_array(study["morph"])[rows]}


def _mne(study, inverse, method="MNE", lambda2=LAMBDA2, **kw):
    return mne.minimum_norm.apply_inverse_raw(study["raw"], inverse, lambda2, method,
                                              verbose=False, **kw).data


def _assert_close(ours, ref, rtol=1e-6):
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=rtol * np.abs(ref).max())


def _temporal_r(est, truth):
    est = est - est.mean(axis=1, keepdims=True)
    truth = truth - truth.mean(axis=1, keepdims=True)
    return (est * truth).sum(1) / np.sqrt((est**2).sum(1) * (truth**2).sum(1))


def test_fmne_uniform_weights_equals_mne(study, full):
    """Analytic limit: a uniform fMRI prior gives MNE-Python's own inverse (rtol 1e-6)."""
    inv, ref_inv = full["inverse"], full["mne_inverse"]
    # our operator is appendix C's: MNE's fixed, depth-weighted (depth prior from free forward)
    assert inv["source_ori"] == mne.io.constants.FIFF.FIFFV_MNE_FIXED_ORI
    np.testing.assert_allclose(inv["depth_prior"]["data"], ref_inv["depth_prior"]["data"])
    np.testing.assert_allclose(inv["source_cov"]["data"], ref_inv["source_cov"]["data"])
    ref = _mne(study, ref_inv)[:, :600]  # the first 6 TRs (12 s) keep the test fast
    n_src, data = ref.shape[0], study["data"][:, :600]
    ours = apply_fmne(data, inv, np.full((n_src, 6), 3.0), lambda2=LAMBDA2, sfreq=50.0, tr=2.0)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    _assert_close(ours, ref)
    # floor=1 makes any BOLD uniform
    rng = np.random.default_rng(0)
    ours = apply_fmne(data[:, :300], inv, rng.random((n_src, 3)), lambda2=LAMBDA2,
                      sfreq=50.0, tr=2.0, floor=1.0)
    _assert_close(ours, ref[:, :300])
    # the static MNE path too
    _assert_close(apply_inverse_array(data, inv, lambda2=LAMBDA2), ref)


@pytest.mark.parametrize("method", ["MNE", "dSPM", "sLORETA", "eLORETA"])
def test_methods_equal_mne(study, small, method):
    ref = _mne(study, small["inverse"], method)
    ours = apply_inverse_array(study["data"].astype(np.float32), small["inverse"],
                               lambda2=LAMBDA2, method=method, chunk_size=500)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    _assert_close(ours, ref)


def test_streaming_does_not_change_results(study, small, tmp_path):
    data, inv, morph = study["data"], small["inverse"], small["morph"]
    full_chunk = apply_inverse_array(data, inv, lambda2=LAMBDA2, method="dSPM", chunk_size=10_000)
    small_chunk = apply_inverse_array(data, inv, lambda2=LAMBDA2, method="dSPM", chunk_size=7)
    _assert_close(small_chunk, full_chunk)
    # writing into a float32 memmap, and folding the fsaverage map into the kernel
    to_fs = fsaverage_map(morph)
    mm = np.lib.format.open_memmap(tmp_path / "est.npy", mode="w+", dtype=np.float32,
                                   shape=(to_fs.shape[0], data.shape[1]))
    ret = apply_inverse_array(data, inv, lambda2=LAMBDA2, method="dSPM", chunk_size=333,
                              to_fsaverage=to_fs, out=mm)
    assert ret is mm
    _assert_close(mm, estimate_to_fsaverage(full_chunk, morph, chunk_size=100), rtol=1e-5)
    # fMNE folds it per TR (270 samples = 2.7 TRs: the last one partial)
    bold = np.random.default_rng(1).random((inv["nsource"], 3))
    sub = apply_fmne(data[:, :270], inv, bold, lambda2=LAMBDA2, sfreq=50.0, tr=2.0)
    fs = apply_fmne(data[:, :270], inv, bold, lambda2=LAMBDA2, sfreq=50.0, tr=2.0,
                    to_fsaverage=to_fs)
    _assert_close(fs, estimate_to_fsaverage(sub, morph), rtol=1e-5)


def test_static_fmri_weights_match_constant_prior(study, small):
    """make_inverse(fmri_weights=...) with MNE's apply == apply_fmne with a constant BOLD."""
    inv = small["inverse"]
    bold = np.random.default_rng(2).random((inv["nsource"], 1)) ** 3
    weighted = make_inverse(small["fwd"], study["info"], study["cov"],
                            fmri_weights=fmri_prior(bold)[:, 0])
    ref = _mne(study, weighted)
    ours = apply_fmne(study["data"], inv, np.repeat(bold, 12, axis=1), lambda2=LAMBDA2,
                      sfreq=50.0, tr=2.0)
    _assert_close(ours, ref)
    plain = _mne(study, inv)
    assert np.abs(ref - plain).max() > 0.1 * np.abs(plain).max()  # the prior did something
    for method in ("dSPM", "eLORETA"):  # a weighted operator is a regular InverseOperator
        assert np.isfinite(_mne(study, weighted, method)).all()
    uniform = make_inverse(small["fwd"], study["info"], study["cov"],
                           fmri_weights=np.full(inv["nsource"], 0.5))
    _assert_close(_mne(study, uniform), plain)


def test_informative_prior_beats_mne(study, small):
    """Neighbouring sources active in alternate halves, BOLD marking them per TR.

    MNE mixes each source with its neighbour (crosstalk); the time-varying fMRI prior
    suppresses the silent one, so fMNE's temporal r is clearly higher, and a static prior
    (the same BOLD averaged over time) does not get that benefit.
    """
    inv, fwd = small["inverse"], small["fwd"]
    gain = np.asarray(fwd["sol"]["data"], np.float64)  # (n_ch, n_src)
    pos = fwd["source_rr"]
    rng = np.random.default_rng(0)
    n_src, sfreq, tr, n_trs = gain.shape[1], 50.0, 2.0, 4
    n_times = int(n_trs * tr * sfreq)
    half = n_times // 2
    first = rng.choice(n_src, 6, replace=False)
    dist = np.linalg.norm(pos[None] - pos[first][:, None], axis=2)  # (6, n_src)
    dist[dist < 1e-6] = np.inf
    second = dist.argmin(axis=1)  # each one's nearest neighbour
    src = np.zeros((n_src, n_times))
    src[first, :half] = rng.standard_normal((6, half))
    src[second, half:] = rng.standard_normal((6, n_times - half))
    clean = gain @ src
    noise = np.sqrt(study["cov"].data)[:, None] * rng.standard_normal(clean.shape)
    data = clean * (np.linalg.norm(noise) / np.linalg.norm(clean)) + noise  # CNR ~ 1
    bold = np.zeros((n_src, n_trs))
    bold[first, : n_trs // 2] = 1.0
    bold[second, n_trs // 2:] = 1.0
    active = np.r_[first, second]
    r = {}
    for name, est in (
        ("MNE", apply_inverse_array(data, inv, lambda2=1.0)),
        ("fMNE", apply_fmne(data, inv, bold, lambda2=1.0, sfreq=sfreq, tr=tr)),
        ("static", apply_fmne(data, inv, np.repeat(bold.mean(1, keepdims=True), n_trs, 1),
                              lambda2=1.0, sfreq=sfreq, tr=tr)),
    ):
        r[name] = _temporal_r(np.asarray(est, np.float64)[active], src[active]).mean()
    assert r["fMNE"] > r["MNE"] + 0.1, r
    assert r["fMNE"] > r["static"] + 0.05, r


def test_run_inverses_on_study(study, full, tmp_path):
    ds, story = study["ds"], study["story"]
    est = run_inverses(ds, "S01", story, methods=("MNE", "fMNE"), out_dir=tmp_path)
    n_fs = study["truth"].shape[0]
    for method in ("MNE", "fMNE"):
        arr = est[method]
        assert arr.shape == (n_fs, ds.n_times(story)) and arr.dtype == np.float32
        assert np.isfinite(arr).all()
        assert (tmp_path / f"S01_{story}_{method}.npy").is_file()
        r = _temporal_r(np.asarray(arr, np.float64), study["truth"])
        assert np.nanmean(r) > 0.05, method
    # the MNE estimate is our operator (lambda2 = 1 / CNR**2 = 1) applied to the repeat
    # average, moved to fsaverage
    ref = estimate_to_fsaverage(apply_inverse_array(study["data"], full["inverse"],
                                                    lambda2=1.0), study["morph"])
    _assert_close(est["MNE"], ref, rtol=1e-4)


def test_run_inverses_noiseless(study, monkeypatch):
    """CNR = inf: covariance shape from the clean signal, lambda2 floored (MNE needs > 0)."""
    ds = study["ds"]
    monkeypatch.setattr(ds, "cnr", lambda subject: {"meg": float("inf")})
    est = run_inverses(ds, "S01", study["story"], methods=("sLORETA",), repeat=0)
    assert est["sLORETA"].shape == (study["truth"].shape[0], ds.n_times(study["story"]))
    assert np.isfinite(est["sLORETA"]).all()


def test_fmri_prior_normalisation():
    bold = np.array([[0.0, 5.0, 2.0], [1.0, 5.0, -1.0], [2.0, 5.0, 4.0]])
    p = fmri_prior(bold, floor=0.1)
    np.testing.assert_allclose(p[:, 0], [0.1, 0.55, 1.0])
    np.testing.assert_allclose(p[:, 1], 1.0)  # no contrast in this TR: uniform
    np.testing.assert_allclose(p[:, 2], 0.1 + 0.9 * np.array([3, 0, 5]) / 5)
    q = fmri_prior(bold, floor=0.2, normalization="max")
    np.testing.assert_allclose(q[:, 2], 0.2 + 0.8 * np.array([0.5, 0.0, 1.0]))
    np.testing.assert_allclose(fmri_prior(bold, floor=1.0), 1.0)
    assert p.min() >= 0.1 and p.max() <= 1.0


def test_fsaverage_map_and_bold_to_subject(study):
    morph = study["morph"]
    to_fs = fsaverage_map(morph)
    assert to_fs.shape == (morph.shape[1], morph.shape[0])
    np.testing.assert_allclose(to_fs.sum(axis=1), 1.0)
    const = np.full((morph.shape[0], 3), 2.5)
    np.testing.assert_allclose(estimate_to_fsaverage(const, morph), 2.5, rtol=1e-6)
    ds = study["ds"]
    bold = ds.fmri("S02", study["story"], average=True)
    mapped = bold_to_subject([bold, bold], [ds.morph("S02")] * 2, morph)
    assert mapped.shape == (morph.shape[0], bold.shape[1])
    np.testing.assert_allclose(mapped, bold_to_subject([bold], [ds.morph("S02")], morph))


def test_lambda2_from_cnr():
    assert lambda2_from_cnr(1.0) == 1.0
    assert math.isclose(lambda2_from_cnr(0.1), 100.0)
    assert lambda2_from_cnr(float("inf")) == MIN_LAMBDA2
    assert lambda2_from_cnr("inf") == MIN_LAMBDA2
    with pytest.raises(ValueError, match="cnr"):
        lambda2_from_cnr(0.0)


def test_errors(study, small):
    data, inv, info = study["data"], small["inverse"], study["info"]
    n_src = inv["nsource"]
    with pytest.raises(ValueError, match="channel mismatch.*305 rows.*306 channels"):
        apply_inverse_array(data[:-1], inv, lambda2=LAMBDA2)
    bad = data.copy()
    bad[3, 7] = np.nan
    with pytest.raises(ValueError, match="'data' contains 1 NaN"):
        apply_inverse_array(bad, inv, lambda2=LAMBDA2)
    with pytest.raises(ValueError, match="'data' contains 1 NaN"):
        apply_fmne(bad, inv, np.ones((n_src, 12)), lambda2=LAMBDA2, sfreq=50.0, tr=2.0)
    for lam in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="lambda2.*lambda2_from_cnr"):
            apply_inverse_array(data, inv, lambda2=lam)
    with pytest.raises(ValueError, match="Invalid value for the 'method'"):
        apply_inverse_array(data, inv, lambda2=LAMBDA2, method="fMNE")
    with pytest.raises(ValueError, match="fMRI prior vs source-space mismatch.*bold_to_subject"):
        apply_fmne(data, inv, np.ones((n_src - 5, 12)), lambda2=LAMBDA2, sfreq=50.0, tr=2.0)
    with pytest.raises(ValueError, match="'bold' vs data length mismatch"):
        apply_fmne(data, inv, np.ones((n_src, 20)), lambda2=LAMBDA2, sfreq=50.0, tr=2.0)
    with pytest.raises(ValueError, match="'chunk_size' must be an int >= 1, got 0"):
        apply_inverse_array(data, inv, lambda2=LAMBDA2, chunk_size=0)
    with pytest.raises(TypeError, match="'chunk_size' must be an int, got bool"):
        estimate_to_fsaverage(np.ones((study["morph"].shape[0], 4)), study["morph"],
                              chunk_size=True)
    with pytest.raises(TypeError, match="'bold_lag' must be an int, got float"):
        apply_fmne(data, inv, np.ones((n_src, 12)), lambda2=LAMBDA2, sfreq=50.0, tr=2.0,
                   bold_lag=1.0)
    with pytest.raises(ValueError, match="'floor' must be in"):
        fmri_prior(np.ones((3, 2)), floor=2.0)
    with pytest.raises(ValueError, match="Morph vs source-space mismatch"):
        bold_to_subject([np.ones((10, 4))], [study["morph"]], study["morph"])
    with pytest.raises(ValueError, match="Morph vs source-space mismatch"):
        estimate_to_fsaverage(np.ones((10, 4)), study["morph"])
    with pytest.raises(ValueError, match="zero variance"):
        noise_cov_from_noise(np.zeros_like(data), info)
    with pytest.raises(ValueError, match="'noise' vs info channel mismatch"):
        noise_cov_from_noise(data[:-2], info)
    # forward without the first channel: lead field vs channel mismatch
    fwd = mne.pick_channels_forward(study["fwd"], exclude=[info["ch_names"][0]], verbose=False)
    with pytest.raises(ValueError, match="Lead field vs channel mismatch"):
        make_inverse(fwd, info, study["cov"])
    with pytest.raises(ValueError, match="fmri_weights' must be > 0"):
        make_inverse(small["fwd"], info, study["cov"], fmri_weights=np.zeros(n_src))
    with pytest.raises(ValueError, match="fMRI prior vs source-space mismatch"):
        make_inverse(study["fwd"], info, study["cov"], fmri_weights=np.ones(n_src))
