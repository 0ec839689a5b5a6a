"""System B's decoding: no leakage across folds, known accuracies on simulated classes, and
agreement with scikit-learn's own cross-validation."""

import numpy as np
import pytest
from scipy.signal import welch
from scipy.stats import binomtest
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict, cross_validate

from neurofuse.evaluation.eeg2meg.decoding import (
    CONDITIONS,
    binomial_p_value,
    block_weights,
    compare_decoding,
    cross_validate_svm,
    extract_features,
    make_decoder,
)
from neurofuse.evaluation.eeg2meg.signal_metrics import BANDS

SFREQ = 250.0


def _trials(effect, *, n=60, n_ch=8, n_times=250, seed=0, n_classes=2):
    """Noise epochs; class k adds ``effect * k`` to the first 4 channels in 0.2-0.3 s."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    x = rng.standard_normal((n, n_ch, n_times))
    x[:, :4, 50:75] += effect * y[:, None, None]
    return x, y


def test_features_by_hand():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 500)) * 1e-6  # units do not matter
    f = extract_features(x, SFREQ, n_windows=4)
    assert f.shape == (3, 2 * (len(BANDS) + 4))
    freqs, psd = welch(x, fs=SFREQ, nperseg=250, axis=-1)
    lo, hi = BANDS["alpha"]
    alpha = np.log10(psd[..., (freqs >= lo) & (freqs < hi)].mean(-1))  # (3, 2)
    gamma = np.log10(psd[..., (freqs >= 30) & (freqs <= 100)].mean(-1))
    power = f[:, :2 * len(BANDS)].reshape(3, 2, len(BANDS))  # channel-major
    np.testing.assert_allclose(power[..., 2], alpha)
    np.testing.assert_allclose(power[..., 4], gamma)
    means = f[:, 2 * len(BANDS):].reshape(3, 2, 4)
    np.testing.assert_allclose(means[..., 1], x[..., 125:250].mean(-1))
    # a 20 Hz oscillation raises beta power above the others
    t = np.arange(500) / SFREQ
    sine = np.sin(2 * np.pi * 20 * t)[None, None] + 0.01 * x[:1, :1] * 1e6
    p = extract_features(sine, SFREQ, n_windows=0)[0]
    assert np.argmax(p) == list(BANDS).index("beta")
    # default windows: window_seconds long (12 ms: 3 samples at 250 Hz), channel-major
    f = extract_features(x, SFREQ, bands={})
    assert f.shape == (3, 2 * round(500 / 3))
    np.testing.assert_allclose(f.reshape(3, 2, -1)[..., 0], x[..., :3].mean(-1))
    assert extract_features(x, SFREQ, bands={}, window_seconds=0.1).shape == (3, 2 * 20)
    with pytest.raises(ValueError, match="no Welch frequency bin"):
        extract_features(x[..., :50], SFREQ)  # 5 Hz bins: none in delta (0.5-4 Hz)
    with pytest.raises(ValueError, match="shape"):
        extract_features(x[0], SFREQ)


def test_cv_never_tests_a_trained_trial():
    x, y = _trials(1.0)
    res = cross_validate_svm(extract_features(x, SFREQ), y, n_runs=3, n_splits=5)
    assert res.accuracy.shape == (3, 5)
    for run in res.folds:
        tested = np.concatenate([test for _, test in run])
        assert np.array_equal(np.sort(tested), np.arange(len(y)))  # each trial once per run
        for train, test in run:
            assert not np.intersect1d(train, test).size
            assert len(train) + len(test) == len(y)
            # stratified: both classes in every test fold, in proportion
            assert np.bincount(y[test]).tolist() == [len(test) // 2] * 2
    # new shuffle each run
    assert not np.array_equal(res.folds[0][0][1], res.folds[1][0][1])


def test_separable_classes_decode_perfectly_and_shuffled_labels_at_chance():
    x, y = _trials(3.0)
    feats = extract_features(x, SFREQ)
    res = cross_validate_svm(feats, y, n_runs=3)
    assert res.median()["accuracy"] == 1.0 and res.median()["f1"] == 1.0
    shuffled = np.random.default_rng(5).permutation(y)
    res = cross_validate_svm(feats, shuffled, n_runs=5)
    assert abs(np.mean(res.accuracy) - 0.5) < 0.12
    # three classes: chance is 1/3
    x3, y3 = _trials(0.0, n=90, n_classes=3, seed=2)
    res = cross_validate_svm(extract_features(x3, SFREQ), y3, n_runs=3)
    assert abs(np.mean(res.accuracy) - 1 / 3) < 0.1
    assert np.all((res.f1 >= 0) & (res.f1 <= 1))


def test_noise_modality_does_not_help_and_an_informative_one_does():
    eeg, y = _trials(0.35, n=80, seed=3)
    informative, _ = _trials(1.0, n=80, n_ch=30, seed=4)  # same labels (same n, n_classes)
    noise = np.random.default_rng(6).standard_normal((80, 30, 250))
    res = compare_decoding(eeg, y, SFREQ, synthetic_meg=noise, real_meg=informative, n_runs=3)
    assert list(res) == list(CONDITIONS)
    acc = {k: np.mean(v.accuracy) for k, v in res.items()}
    assert 0.6 < acc["eeg"] < 0.97  # the EEG effect is there but imperfect
    assert acc["eeg+synthetic_meg"] < acc["eeg"] + 0.05
    assert acc["eeg+real_meg"] > acc["eeg"] + 0.05
    # the conditions use the same folds (paired comparison)
    for a, b in zip(res["eeg"].folds[1], res["eeg+real_meg"].folds[1]):
        assert np.array_equal(a[1], b[1])
    # EEG-only datasets: conditions without MEG are skipped
    assert list(compare_decoding(eeg, y, SFREQ, synthetic_meg=noise, n_runs=1)) == \
        ["eeg", "eeg+synthetic_meg"]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_agrees_with_sklearn_cross_validate():
    x, y = _trials(0.5, n=50, seed=7, n_classes=2)
    feats = extract_features(x, SFREQ)
    ours = cross_validate_svm(feats, y, n_runs=2, n_splits=10, seed=0)
    for run in range(2):
        ref = cross_validate(make_decoder(), feats, y,
                             cv=StratifiedKFold(10, shuffle=True, random_state=run),
                             scoring={"accuracy": "accuracy", "precision": "precision_macro",
                                      "recall": "recall_macro", "f1": "f1_macro"})
        for s in ("accuracy", "precision", "recall", "f1"):
            np.testing.assert_allclose(getattr(ours, s)[run], ref[f"test_{s}"], atol=1e-12)
    # the summary pools each run's predictions: sklearn's cross_val_predict on the same folds
    acc, f1 = [], []
    for run in range(2):
        pred = cross_val_predict(make_decoder(), feats, y,
                                 cv=StratifiedKFold(10, shuffle=True, random_state=run))
        np.testing.assert_array_equal(ours.predictions[run], pred)
        acc.append(np.mean(pred == y))
        f1.append(f1_score(y, pred, average="macro"))
    summ = ours.summary()
    assert summ["accuracy"] == pytest.approx(np.mean(acc))
    assert summ["f1"] == pytest.approx(np.mean(f1))
    assert summ["n_trials"] == 50 and summ["chance"] == 0.5
    n_correct = int(np.floor(np.median(ours.run_scores()["n_correct"])))
    assert summ["n_correct"] == n_correct
    assert summ["p_value"] == pytest.approx(
        binomtest(n_correct, 50, 0.5, alternative="greater").pvalue, rel=1e-9)
    d = ours.to_dict()
    assert d["summary"] == summ
    assert d["median"]["accuracy"] == pytest.approx(np.median(ours.accuracy))
    assert np.array(d["f1"]).shape == (2, 10)


def test_linear_decoder_is_sklearns_linear_svc():
    # the Gram-matrix SVM is SVC(kernel="linear") (same dual problem), only faster
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    x, y = _trials(0.4, n=60, n_classes=3, seed=8)
    f = extract_features(x, SFREQ)
    ours = clone(make_decoder(C=0.5)).fit(f[:45], y[:45])
    ref = make_pipeline(StandardScaler(), SVC(kernel="linear", C=0.5)).fit(f[:45], y[:45])
    np.testing.assert_allclose(ours.decision_function(f[45:]), ref.decision_function(f[45:]),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(ours.predict(f[45:]), ref.predict(f[45:]))
    assert ours.get_params()["linearkernelsvc__C"] == 0.5


def test_block_weights_give_every_block_the_same_kernel_weight():
    x, y = _trials(0.4, n=40, seed=9)
    f, groups = extract_features(x, SFREQ, return_groups=True)
    assert groups.tolist() == ["power"] * 8 * len(BANDS) + ["window"] * (f.shape[1] - 40)
    w = block_weights(groups)
    for g in ("power", "window"):  # sum of squared weights per block: 1
        assert np.sum(w[groups == g] ** 2) == pytest.approx(1.0)
    # the decoder's linear kernel is the sum of one per-block kernel of standardised columns
    from sklearn.preprocessing import StandardScaler

    dec = make_decoder(groups=groups).fit(f, y)
    z = StandardScaler().fit_transform(f)
    want = sum(z[:, groups == g] @ z[:, groups == g].T / np.sum(groups == g)
               for g in ("power", "window"))
    k = dec[:-1].transform(f)
    np.testing.assert_allclose(k @ k.T, want, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="one label per feature"):
        cross_validate_svm(f, y, groups=groups[:-1])


def test_binomial_p_value_matches_scipy_binomtest():
    # hand case: 38 of 60 right at chance 1/2, P(K >= 38) = sum_{k>=38} C(60, k) / 2^60
    from math import comb

    hand = sum(comb(60, k) for k in range(38, 61)) / 2**60
    assert binomial_p_value(38, 60, 0.5) == pytest.approx(hand, rel=1e-12)
    for k, n, p in ((38, 60, 0.5), (14, 30, 1 / 3), (0, 10, 0.5), (10, 10, 0.25),
                    (130, 360, 1 / 3)):
        ref = binomtest(k, n, p, alternative="greater").pvalue
        assert binomial_p_value(k, n, p) == pytest.approx(ref, rel=1e-9)
    assert binomial_p_value(0, 10, 0.5) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="must not exceed"):
        binomial_p_value(11, 10, 0.5)
    with pytest.raises(ValueError, match="'chance'"):
        binomial_p_value(5, 10, 1.0)


def test_chance_and_significance_on_known_effects():
    # a clear effect is significant, shuffled labels are not; chance follows the classes
    x, y = _trials(1.0, n=60, seed=11)
    strong = cross_validate_svm(extract_features(x, SFREQ), y, n_runs=2).summary()
    assert strong["accuracy"] > 0.9 and strong["p_value"] < 1e-6
    shuffled = np.random.default_rng(3).permutation(y)
    null = cross_validate_svm(extract_features(x, SFREQ), shuffled, n_runs=2).summary()
    assert null["p_value"] > 0.01
    x3, y3 = _trials(0.0, n=45, n_classes=3, seed=2)
    assert cross_validate_svm(extract_features(x3, SFREQ), y3, n_runs=1,
                              n_splits=5).chance == pytest.approx(1 / 3)
    y_unbalanced = np.r_[np.zeros(30, int), np.ones(15, int)]
    res = cross_validate_svm(extract_features(x3, SFREQ), y_unbalanced, n_runs=1, n_splits=5)
    assert res.chance == pytest.approx(30 / 45)  # the majority class's share


def test_input_errors():
    x, y = _trials(1.0, n=20)
    f = extract_features(x, SFREQ)
    with pytest.raises(ValueError, match="fewer than n_splits"):
        cross_validate_svm(f, y, n_splits=20)
    with pytest.raises(ValueError, match="'y' must have shape"):
        cross_validate_svm(f, y[:-1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        cross_validate_svm(f, np.zeros(20))
    with pytest.raises(ValueError, match="aligned with 'eeg'"):
        compare_decoding(x, y, SFREQ, real_meg=x[:10])
    with pytest.raises(ValueError, match="kernel"):
        make_decoder(kernel="tree")
    with pytest.raises(ValueError, match="window_seconds"):
        extract_features(x, SFREQ, window_seconds=0)


def test_scores_without_per_trial_predictions_say_what_is_missing():
    """DecodingScores built from fold scores alone (its public constructor) keep their medians
    and JSON; the pooled summary needs the per-trial predictions and says so."""
    from neurofuse.evaluation.eeg2meg.decoding import SCORES, DecodingScores

    folds = {s: np.array([[0.5, 1.0], [0.75, 0.25]]) for s in SCORES}
    scores = DecodingScores(**folds, folds=[])
    assert scores.median()["accuracy"] == pytest.approx(0.625)
    assert "summary" not in scores.to_dict() and scores.to_dict()["median"] == scores.median()
    with pytest.raises(ValueError, match="no per-trial 'predictions'"):
        scores.summary()
    with pytest.raises(ValueError, match="no per-trial 'predictions'"):
        scores.chance
