"""Worlds of the simulator (issue 15, item 2): each option has the property it states."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize
from scipy.spatial import cKDTree

from neurofuse.physics.hrf import make_bold, spm_hrf
from neurofuse.simulation.encoding import make_encoding_model
from neurofuse.simulation.encoding.source_world import SourceWorld, hrf_for_peak
from neurofuse.simulation.encoding.spatial import make_parcels, region_labels
from neurofuse.simulation.encoding.world import WORLDS, WorldConfig, resolve_world
from neurofuse.simulation.stimuli import StimulusGenerator

SFREQ = 50.0


@pytest.fixture(scope="module")
def surf():
    """2000 real fsaverage5 white-surface vertices (m) and their hemispheres."""
    nib = pytest.importorskip("nibabel")
    import nilearn

    folder = Path(nilearn.__file__).parent / "datasets" / "data" / "fsaverage5"
    pos = [nib.load(folder / f"white_{h}.gii.gz").darrays[0].data for h in ("left", "right")]
    hemi = np.repeat([0, 1], [len(p) for p in pos])
    pos = np.concatenate(pos).astype(float) * 1e-3
    keep = np.sort(np.random.default_rng(0).choice(len(pos), 2000, replace=False))
    return pos[keep], hemi[keep]


@pytest.fixture(scope="module")
def gen():
    return StimulusGenerator(dims=(32, 44, 16), sfreq=SFREQ, n_vocabulary=300, seed=0)


@pytest.fixture(scope="module")
def calib(gen):
    return gen.make_story(120.0, seed=1).features


@pytest.fixture(scope="module")
def story(gen):
    return gen.make_story(200.0, seed=5).features


def _model(surf, calib, gen, world=None, seed=0):
    pos, hemi = surf
    sw = None if world is None else SourceWorld(world, pos, hemi, sfreq=SFREQ, seed=seed)
    model = make_encoding_model(pos, calib, stream_slices=gen.stream_slices, seed=seed,
                                hemi=hemi, n_components=4,
                                **({} if sw is None else sw.model_kwargs()))
    if sw is not None:
        sw.calibrate(model, calib)
    return model, sw


def _background_fields(model):
    """(n_sources, n) columns of the loadings that are pure random fields (whole cortex)."""
    cols = []
    for s in model.stream_names:
        start = model.latent_slices[s].start
        i = model.latent_regions[s].index("background")
        k = model.n_components
        cols.append(model.spatial_loadings[:, start + i * k:start + (i + 1) * k])
    return np.concatenate(cols, axis=1)


def _fitted_length(pos, fields, r_max):
    """Length l of the Gaussian exp(-d^2 / (2 l^2)) fitted to the empirical spatial correlation."""
    fields = fields - fields.mean(axis=0)
    fields = fields / fields.std(axis=0)
    pairs = cKDTree(pos).query_pairs(r_max, output_type="ndarray")
    d = np.linalg.norm(pos[pairs[:, 0]] - pos[pairs[:, 1]], axis=1)
    prod = (fields[pairs[:, 0]] * fields[pairs[:, 1]]).mean(axis=1)
    edges = np.linspace(0, r_max, 16)
    idx = np.digitize(d, edges) - 1
    centre, corr = [], []
    for b in range(len(edges) - 1):
        sel = idx == b
        if sel.sum() >= 20:
            centre.append(d[sel].mean())
            corr.append(prod[sel].mean())
    centre, corr = np.array(centre), np.array(corr)
    res = optimize.minimize_scalar(lambda ln: np.sum((np.exp(-centre**2 / (2 * np.exp(ln)**2))
                                                      - corr) ** 2),
                                   bounds=(np.log(r_max / 30), np.log(r_max)), method="bounded")
    return float(np.exp(res.x))


@pytest.mark.parametrize("length_mm", [5.0, 10.0, 15.0, 20.0])
def test_field_length_scale_measured_from_spatial_correlation(surf, calib, gen, length_mm):
    world = {"name": "linear15", "field_length_mm": length_mm}
    model, _ = _model(surf, calib, gen, world)
    fitted = _fitted_length(surf[0], _background_fields(model), 3 * length_mm * 1e-3)
    assert fitted == pytest.approx(length_mm * 1e-3, rel=0.25)
    # and the presets ask for what they say
    assert resolve_world("short5").field_length_mm == 5.0
    assert resolve_world("long20").field_length_mm == 20.0


def test_patches_are_piecewise_constant_region_sized_parcels(surf, calib, gen):
    pos, hemi = surf
    model, sw = _model(surf, calib, gen, "patches")
    parcels = sw.parcels
    size = resolve_world("patches").field_length_mm * 1e-3
    # Every loading column is constant within each parcel, and parcels never cross hemispheres.
    for p in np.unique(parcels):
        rows = model.spatial_loadings[parcels == p]
        np.testing.assert_array_equal(rows, np.broadcast_to(rows[0], rows.shape))
        assert len(np.unique(hemi[parcels == p])) == 1
    # Parcels are region-sized: their seeds at least `size` apart, every source within
    # ~2 size of its parcel's centroid, and the fields differ between parcels.
    cents = np.array([pos[parcels == p].mean(axis=0) for p in np.unique(parcels)])
    dist = np.linalg.norm(pos - cents[parcels], axis=1)
    assert np.percentile(dist, 95) < 2 * size
    assert 0.4 * size < np.median(dist)
    n_parcels = parcels.max() + 1
    assert 20 < n_parcels < 300
    bg = _background_fields(model)
    assert len(np.unique(bg[:, 0])) >= 0.9 * n_parcels
    # Another draw is another parcellation of about as many parcels.
    again = make_parcels(pos, hemi, size, np.random.default_rng(3))
    assert not np.array_equal(again, parcels)
    assert abs(again.max() + 1 - n_parcels) < 0.3 * n_parcels


def test_region_labels_follow_profiles(surf):
    pos, hemi = surf
    labels, names = region_labels(pos, hemi)
    assert names[-1] == "background" and len(names) == 13
    # A source at a region centre is in that region.
    centre = np.array([45.0, -22.0, 8.0]) * 1e-3  # auditory, right hemisphere
    i = np.argmin(np.linalg.norm(pos - centre, axis=1) + 1.0 * (hemi != 1))
    assert names[labels[i]] == "auditory-rh"
    assert (labels == len(names) - 1).mean() > 0.3  # most of cortex is background


@pytest.fixture(scope="module")
def nonlinear(surf, calib, gen, story):
    model, sw = _model(surf, calib, gen, "nonlinear")
    x = model.transform(story)
    draw = sw.draw_story(np.random.default_rng(9), x.shape[1])
    y = sw.apply(x.copy(), 0, x.shape[1], draw)
    return model, sw, x, y, draw


def _rows(sw, kind):
    idx = [i for i, r in enumerate(sw.region_names) if sw.kinds[r] == kind]
    return np.flatnonzero(np.isin(sw.labels, idx))


def test_rectifying_regions_never_below_baseline(nonlinear):
    _, sw, x, y, _ = nonlinear
    rows = _rows(sw, "rectifying")
    assert rows.size > 10
    assert y[rows].min() >= 0.0  # the baseline: the drive's calibration mean, 0
    np.testing.assert_array_equal(y[rows], np.maximum(x[rows], 0))
    assert (x[rows] < 0).mean() > 0.3  # the linear drive did go below it


def test_saturating_regions_are_bounded_and_linear_for_small_drive(nonlinear):
    _, sw, x, y, _ = nonlinear
    rows = _rows(sw, "saturating")
    assert rows.size > 10
    c = (sw.world.saturation * sw.scale[rows])[:, None]
    assert np.all(np.abs(y[rows]) <= c * (1 + 1e-6))
    assert np.abs(x[rows]).max() > 2 * c.min()  # the drive exceeds the bound somewhere
    np.testing.assert_allclose(y[rows], c * np.tanh(x[rows] / c), rtol=1e-5, atol=1e-20)
    small = np.abs(x[rows]) < 0.1 * c  # analytic limit: tanh(u) = u (1 - u^2 / 3 + ...)
    np.testing.assert_allclose(y[rows][small], x[rows][small], rtol=0.004)
    # scale is each source's linear s.d.
    np.testing.assert_allclose(sw.scale[rows], x[rows].std(axis=1), rtol=0.3)


def test_gain_regions_are_the_drive_times_a_slow_positive_gain(nonlinear):
    _, sw, x, y, draw = nonlinear
    assert sw.gain_regions
    for j, region in enumerate(sw.gain_regions):
        rows = np.flatnonzero(sw.labels == sw.region_names.index(region))
        if not rows.size:
            continue
        g = draw["gain"][j]
        np.testing.assert_allclose(y[rows], x[rows] * g.astype(np.float32), rtol=1e-6)
        assert g.min() > 0
        # slow: correlation of g at a 1-s lag near exp(-1 / tau)
        lag = int(SFREQ)
        r = np.corrcoef(np.log(g[:-lag]), np.log(g[lag:]))[0, 1]
        assert r == pytest.approx(math.exp(-1 / sw.world.gain_tau), abs=0.15)
    lin = _rows(sw, "linear")
    np.testing.assert_array_equal(y[lin], x[lin])


@pytest.mark.parametrize("spectrum,ratio", [("pink", 1.0), ("ar1", 0.5)])
def test_spontaneous_activity_at_ratio_and_uncorrelated_with_stimulus(surf, calib, gen, story,
                                                                     spectrum, ratio):
    world = {"name": "spontaneous", "spontaneous_spectrum": spectrum, "spontaneous_ratio": ratio}
    model, sw = _model(surf, calib, gen, world)
    x = model.transform(story).astype(float)
    draw = sw.draw_story(np.random.default_rng(4), x.shape[1])
    y = sw.apply(x.astype(np.float32), 0, x.shape[1], draw).astype(float)
    spont = y - x
    measured = np.mean(spont.var(axis=1)) / np.mean(x.var(axis=1))
    assert measured == pytest.approx(ratio, rel=0.15)
    # Uncorrelated with the stimulus: its latent time courses against every feature column,
    # and each source's spontaneous against its driven activity.
    z = draw["spontaneous"]
    feats = story - story.mean(axis=0)
    keep = feats.std(axis=0) > 0
    r = (z / z.std(axis=1, keepdims=True)) @ (feats[:, keep] / feats[:, keep].std(axis=0))
    r /= z.shape[1]
    assert np.abs(r).mean() < 0.06
    xs = x - x.mean(axis=1, keepdims=True)
    ss = spont - spont.mean(axis=1, keepdims=True)
    r_src = (xs * ss).sum(axis=1) / np.sqrt((xs**2).sum(axis=1) * (ss**2).sum(axis=1))
    assert abs(r_src.mean()) < 0.05 and np.abs(r_src).mean() < 0.15
    # Spatially smooth at the world's length scale
    fitted = _fitted_length(surf[0], sw.spontaneous_loadings, 45e-3)
    assert fitted == pytest.approx(15e-3, rel=0.25)


def test_hrf_for_peak_peaks_where_asked():
    t_fine = 1000.0
    for ttp in (4.5, 5.0, 6.2, 7.0):
        h = spm_hrf(t_fine, **hrf_for_peak(ttp))
        assert np.argmax(h) / t_fine == pytest.approx(ttp, abs=0.02)
    assert hrf_for_peak(5.0) == {"peak": 6.0, "undershoot": 16.0}  # the canonical HRF


def test_labelled_bold_uses_each_sources_hrf(rng=np.random.default_rng(0)):
    src = rng.standard_normal((6, 2000)).astype(np.float32)
    kw = [hrf_for_peak(4.5), hrf_for_peak(7.0)]
    labels = np.array([0, 1, 0, 1, 1, 0])
    bold = make_bold(src, SFREQ, 2.0, hrf_kwargs=kw, hrf_labels=labels)
    for i, lab in enumerate(labels):
        np.testing.assert_array_equal(bold[i], make_bold(src[i:i + 1], SFREQ, 2.0,
                                                         hrf_kwargs=kw[lab])[0])
    with pytest.raises(ValueError, match="hrf_labels"):
        make_bold(src, SFREQ, 2.0, hrf_kwargs=kw, hrf_labels=labels + 1)


def test_region_latency_delays_region_responses_exactly(surf, calib, gen, story):
    pos, hemi = surf
    story = story[:1500]  # 30 s
    kw = dict(stream_slices=gen.stream_slices, seed=0, hemi=hemi, n_components=4)
    base = make_encoding_model(pos, calib, **kw)
    delays = {"auditory-lh": 0.08, "ifg-rh": 0.02}
    late = make_encoding_model(pos, calib, region_delays=delays, **kw)
    u0 = np.concatenate([u[: b - a] for a, b, u in base._iter_latent(story)])
    u1 = np.concatenate([u[: b - a] for a, b, u in late._iter_latent(story)])
    for s in base.stream_names:
        # the same weights, up to the stream's scale (recalibrated on the delayed responses)
        scale = late.mixing[s][0, 0] / base.mixing[s][0, 0]
        np.testing.assert_allclose(late.mixing[s], scale * base.mixing[s], rtol=1e-12)
        assert scale == pytest.approx(1.0, abs=0.01)
        for i, region in enumerate(base.latent_regions[s]):
            cols = slice(base.latent_slices[s].start + i * 4, base.latent_slices[s].start + i * 4 + 4)
            shift = int(round(delays.get(region, 0.0) * SFREQ))
            np.testing.assert_allclose(u1[shift:, cols] / scale, u0[:u0.shape[0] - shift, cols],
                                       rtol=1e-9, atol=1e-12 * np.abs(u0).max())
            assert np.all(u1[:shift, cols] == 0)
    # zero delays take the grouped code path and give bit-identical sources
    zero = make_encoding_model(pos, calib, region_delays={"auditory-lh": 0.0}, **kw)
    assert zero.region_delays == {"auditory-lh": 0.0}
    np.testing.assert_array_equal(zero.transform(story), base.transform(story))


def test_world_config_validation_and_presets():
    assert WorldConfig().is_default and resolve_world("linear15").is_default
    for name in WORLDS:
        w = resolve_world(name)
        assert w.name == name and (w.is_default == (name == "linear15"))
        assert resolve_world(w.to_dict()) == w  # round trip
    with pytest.raises(ValueError, match="world"):
        resolve_world("nonexistent")
    with pytest.raises(ValueError, match="nonlinearity"):
        WorldConfig(nonlinearity={"auditory": "cubic"})
    with pytest.raises(ValueError, match="Unknown"):
        WorldConfig(nonlinearity={"visual": "gain"})
    with pytest.raises(ValueError, match="hrf_peak_range"):
        WorldConfig(hrf_peak_range=(7.0, 4.5))
    with pytest.raises(ValueError, match="field_length_mm"):
        WorldConfig(field_length_mm=15000.0)
    assert WorldConfig(nonlinearity={"auditory-lh": "gain", "stg": "rectifying"}).kind_of(
        "auditory-rh") == "linear"


# ----------------------------------------------------------------------------- studies
@pytest.fixture(scope="module")
def study_factory(tmp_path_factory):
    from neurofuse.data.store import read_dataset
    from neurofuse.simulation.study import StudyConfig, simulate_study

    def make(name, **kw):
        out = tmp_path_factory.mktemp("worlds") / name
        simulate_study(StudyConfig.preset("tiny", spacing="oct5", **kw), out)
        return read_dataset(out)

    return make


def test_default_world_is_not_in_the_config():
    from neurofuse.simulation.study import StudyConfig

    assert "world" not in StudyConfig.preset("tiny").to_dict()
    assert "world" not in StudyConfig.preset("tiny", world={"name": "linear15"}).to_dict()
    cfg = StudyConfig.preset("tiny", world="hrf_vary")
    assert cfg.to_dict()["world"] == "hrf_vary"
    assert StudyConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="paired"):
        StudyConfig.preset("meg2fmri-tiny", world="hrf_vary")


def test_neutral_world_options_reproduce_the_default_study(study_factory):
    """HRFs all canonical (time to peak 5 s) and zero latencies go through the per-region
    code paths and give the default world's sources and fMRI bit for bit."""
    base = study_factory("base", fmri_cnr="inf")
    neutral = study_factory("neutral", fmri_cnr="inf",
                            world={"hrf_peak_range": (5.0, 5.0), "latency_range": (0.0, 0.0)})
    story = base.splits["test"][0]
    np.testing.assert_array_equal(neutral.ground_truth(f"sources/{story}"),
                                  base.ground_truth(f"sources/{story}"))
    np.testing.assert_array_equal(neutral.fmri("S02", story), base.fmri("S02", story))
    assert "world" in neutral.metadata and "world" not in base.metadata


def test_hrf_vary_study_saves_region_hrfs_it_uses(study_factory):
    ds = study_factory("hrf", fmri_cnr="inf", world="hrf_vary")
    info = json.loads((ds.ground_truth_dir("world") / "world.json").read_text())
    assert info == ds.metadata["world"]
    peaks = info["hrf_time_to_peak"]
    assert set(peaks) == set(info["regions"])
    assert all(4.5 <= p <= 7.0 for p in peaks.values())
    assert np.ptp(list(peaks.values())) > 0.5
    for region, p in peaks.items():
        h = spm_hrf(1000.0, **info["hrf_kwargs"][region])
        assert np.argmax(h) / 1000.0 == pytest.approx(p, abs=0.02)
    delays = info["region_delays"]
    assert all(0 <= d <= 0.1 for d in delays.values())
    # The noiseless fMRI is each subject source's BOLD with its region's HRF.
    from neurofuse.simulation.encoding import SourceEncodingModel

    model = SourceEncodingModel.load(ds.ground_truth_dir("encoding"))
    assert model.region_delays == delays
    story = ds.splits["test"][0]
    src = np.asarray(ds.ground_truth(f"sources/{story}"), np.float32)
    morph = ds.morph("S02")
    fsavg_labels = np.load(ds.ground_truth_dir("world") / "region_labels.npy")
    onehot = np.eye(len(info["regions"]))[fsavg_labels]
    sub_labels = np.asarray(morph @ onehot).argmax(axis=1)
    kw = [info["hrf_kwargs"][r] for r in info["regions"]]
    expect = make_bold(morph.astype(np.float32) @ src, ds.sfreq, ds.tr, hrf_kwargs=kw,
                       hrf_labels=sub_labels)
    got = np.asarray(ds.fmri("S02", story), float)[0]
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-6 * np.abs(expect).max())
    canonical = make_bold(morph.astype(np.float32) @ src, ds.sfreq, ds.tr)
    assert np.abs(got - canonical).max() > 0.05 * np.abs(canonical).max()


def test_world_study_ground_truth_decomposes(study_factory):
    """Sources = nonlinearity(linear drive) + spontaneous, from what the study saved."""
    from neurofuse.simulation.encoding import SourceEncodingModel

    world = {"name": "nonlinear", "spontaneous_ratio": 0.5}
    ds = study_factory("nonlin", world=world)
    gt = ds.ground_truth_dir("world")
    info = json.loads((gt / "world.json").read_text())
    model = SourceEncodingModel.load(ds.ground_truth_dir("encoding"))
    story = ds.splits["test"][0]
    x = model.transform(np.asarray(ds.features(story)))
    labels = np.load(gt / "region_labels.npy")
    sd = np.load(gt / "linear_sd.npy")
    gains = np.load(gt / f"gain-{story}.npy")
    gain_regions = [r for r in info["regions"] if info["response_types"][r] == "gain"]
    y = x.astype(float)
    for i, region in enumerate(info["regions"]):
        rows = labels == i
        kind = info["response_types"][region]
        if kind == "saturating":
            c = sd[rows, None]
            y[rows] = c * np.tanh(y[rows] / c)
        elif kind == "rectifying":
            y[rows] = np.maximum(y[rows], 0)
        elif kind == "gain":
            y[rows] *= gains[gain_regions.index(region)]
    y += np.load(gt / "spontaneous_loadings.npy") @ np.load(gt / f"spontaneous-{story}.npy")
    truth = np.asarray(ds.ground_truth(f"sources/{story}"), float)
    np.testing.assert_allclose(truth, y, rtol=1e-4, atol=1e-5 * np.abs(truth).max())
    # The saved world, read back, applies the same transformation.
    loaded = SourceWorld.load(gt, model.src_pos, model.hemi)
    draw = {"gain": gains, "spontaneous": np.load(gt / f"spontaneous-{story}.npy")}
    again = loaded.apply(x.copy(), 0, x.shape[1], draw)
    np.testing.assert_allclose(again, truth, rtol=1e-4, atol=1e-5 * np.abs(truth).max())


def test_cli_world_option(tmp_path, capsys):
    from neurofuse.cli import main
    from neurofuse.data.store import read_dataset

    out = tmp_path / "short5"
    assert main(["simulate", "study", "tiny", "--world", "short5", "--out", str(out), "-q"]) == 0
    ds = read_dataset(out)
    assert ds.metadata["config"]["world"] == "short5"
    assert ds.metadata["world"]["config"]["field_length_mm"] == 5.0
    with pytest.raises(SystemExit):
        main(["simulate", "study", "tiny", "--world", "nope", "--out", str(tmp_path / "x")])
    assert "linear15" in capsys.readouterr().err and not (tmp_path / "x").exists()
