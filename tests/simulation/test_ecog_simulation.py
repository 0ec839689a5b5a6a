"""Simulated ECoG: same ground-truth world as the study, Gaussian spread, noise, the format."""

import json

import numpy as np
import pytest
import scipy.sparse

from neurofuse.data.ecog import (
    ECOG_MANIFEST,
    ECOG_SCHEMA_VERSION,
    EcogElectrodes,
    read_ecog_dataset,
    write_ecog_dataset,
)
from neurofuse.simulation.ecog import (
    electrodes_to_fsaverage,
    make_spread_weights,
    simulate_ecog,
)

LAYOUT = (
    {"prefix": "G", "kind": "grid", "shape": (3, 3), "target_mm": (58.0, -22.0, 6.0)},
    {"prefix": "S", "kind": "strip", "shape": (1, 4), "target_mm": (50.0, 22.0, 12.0),
     "angle": 60.0},
)


@pytest.fixture(scope="module")
def noiseless(tiny_study, tmp_path_factory):
    out = tmp_path_factory.mktemp("ecog") / "clean"
    simulate_ecog(tiny_study, out, n_subjects=1, story_minutes=0.5, cnr="inf", layout=LAYOUT,
                  seed=1)
    return read_ecog_dataset(out)


def _brute_weights(el_pos, src_pos, sigma):
    d2 = ((el_pos[:, None] - src_pos[None]) ** 2).sum(-1)
    w = np.exp(-0.5 * d2 / sigma**2) * (d2 < (3 * sigma) ** 2)
    return w / w.sum(axis=1, keepdims=True)


def test_spread_weights_match_brute_force():
    rng = np.random.default_rng(0)
    src = rng.uniform(-0.03, 0.03, (400, 3))
    src_hemi = np.where(np.arange(400) < 200, "lh", "rh")
    el = src[[5, 50, 250, 390]] + 0.001
    el_hemi = np.array(["lh", "lh", "rh", "rh"])
    W = make_spread_weights(el, el_hemi, src, src_hemi, spread_mm=5.0).toarray()
    ref = np.zeros_like(W)
    for h in ("lh", "rh"):
        e, s = el_hemi == h, src_hemi == h
        ref[np.ix_(e, s)] = _brute_weights(el[e], src[s], 0.005)
    np.testing.assert_allclose(W, ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(W.sum(axis=1), 1.0)
    assert (W > 0).sum(axis=1).min() > 1  # a spread, not one vertex
    with pytest.raises(ValueError, match="farther than 3 x spread_mm"):
        make_spread_weights(el + 0.05, el_hemi, src, src_hemi, spread_mm=1.0)


def test_noiseless_electrode_is_the_weighted_sum_of_the_ground_truth(tiny_study, noiseless):
    """Recompute an electrode's signal from the study's ground truth, independently."""
    import nibabel as nib

    from neurofuse.anatomy import get_source_space, make_morph, make_simulated_subject
    from neurofuse.data.store import read_dataset
    from neurofuse.simulation.encoding import SourceEncodingModel

    ds = noiseless
    (sub,) = ds.subjects
    (story,) = ds.stories
    anatomy = ds.anatomy(sub)
    params = anatomy["params"]
    study = read_dataset(tiny_study)
    subject = make_simulated_subject(params["index"], seed=params["seed"],
                                     deformation_mm=params["deformation_mm"],
                                     registration_deg=params["registration_deg"], meg=False)
    assert subject.name == anatomy["name"]
    assert subject.name not in json.dumps([study.anatomy(s) for s in study.subjects])
    src = get_source_space(subject, "oct6")
    pial = np.concatenate([nib.freesurfer.read_geometry(subject.surface_path("pial", h))[0]
                           [s["vertno"]] * 1e-3 for h, s in zip(("lh", "rh"), src)])
    n_lh = src[0]["nuse"]
    el = ds.electrodes(sub)
    lh = el.hemi[0] == "lh"
    assert set(el.hemi) == {el.hemi[0]}
    part = slice(0, n_lh) if lh else slice(n_lh, None)
    W = np.zeros((len(el), len(pial)))
    W[:, part] = _brute_weights(el.pos_mri, pial[part], 0.005)
    encoder = SourceEncodingModel.load(study.ground_truth_dir("encoding"))
    truth = encoder.transform(np.asarray(ds.features(story)))  # fsaverage sources
    expected = W @ (make_morph(subject, src_to=src) @ truth.astype(np.float64))
    got = np.asarray(ds.ecog(sub, story), np.float64)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, atol=1e-5 * scale)
    np.testing.assert_array_equal(got, ds.ground_truth(f"{sub}/{story}-clean"))
    # The electrodes lie on the subject's pial surface (1 mm above it).
    surf = nib.freesurfer.read_geometry(subject.surface_path("pial", el.hemi[0]))[0] * 1e-3
    d = np.linalg.norm(el.pos_mri[:, None] - surf[None], axis=2).min(axis=1)
    assert np.all(d < 0.003) and np.median(d) > 0.0003


def test_story_comes_from_the_study_world_but_is_new(tiny_study, noiseless):
    from neurofuse.data.store import read_dataset

    study = read_dataset(tiny_study)
    feats = np.asarray(noiseless.features(noiseless.stories[0]))
    assert noiseless.feature_streams == study.feature_streams
    assert noiseless.sfreq == study.sfreq and feats.shape == (1500, study.n_features)
    for s in study.stories:
        f = np.asarray(study.features(s))
        n = min(len(f), len(feats))
        assert not np.allclose(f[:n], feats[:n])
    # Same world: the ground truth responds to the new story where it responds to the study's
    # (per-source s.d. maps agree).
    from neurofuse.simulation.encoding import SourceEncodingModel

    encoder = SourceEncodingModel.load(study.ground_truth_dir("encoding"))
    (test_story,) = study.splits["test"]
    sd_new = encoder.transform(feats).std(axis=1)
    sd_study = np.asarray(study.ground_truth(f"sources/{test_story}")).std(axis=1)
    assert np.corrcoef(sd_new, sd_study)[0, 1] > 0.9


def test_noise_level_and_determinism(tiny_study, noiseless, tmp_path):
    out = simulate_ecog(tiny_study, tmp_path / "noisy", n_subjects=1, story_minutes=0.5, cnr=0.5,
                        layout=LAYOUT, seed=1)
    ds = read_ecog_dataset(out)
    (sub,) = ds.subjects
    story = ds.stories[0]
    clean = np.asarray(noiseless.ecog(sub, story), np.float64)
    noise = np.asarray(ds.ecog(sub, story), np.float64) - clean
    np.testing.assert_array_equal(ds.ground_truth(f"{sub}/{story}-clean"), clean)
    # Same s.d. on every electrode: source_amplitude / cnr.
    sd = noise.std(axis=1)
    target = ds.metadata["source_amplitude"] / 0.5
    assert ds.metadata["noise_sd"] == pytest.approx(target)
    assert np.all(np.abs(sd / target - 1) < 0.1)
    assert np.abs(np.corrcoef(noise.ravel(), clean.ravel())[0, 1]) < 0.05
    # Same seed -> identical; another seed -> another story and other subjects.
    again = simulate_ecog(tiny_study, tmp_path / "again", n_subjects=1, story_minutes=0.5,
                          cnr=0.5, layout=LAYOUT, seed=1)
    np.testing.assert_array_equal(read_ecog_dataset(again).ecog(sub, story), ds.ecog(sub, story))
    other = read_ecog_dataset(simulate_ecog(tiny_study, tmp_path / "other", n_subjects=1,
                                            story_minutes=0.5, cnr=0.5, layout=LAYOUT, seed=2))
    assert other.anatomy(sub)["name"] != ds.anatomy(sub)["name"]
    assert not np.array_equal(other.features(story), ds.features(story))
    with pytest.raises(FileExistsError):
        simulate_ecog(tiny_study, out, n_subjects=1)


def test_electrodes_to_fsaverage_follows_the_registration():
    """With an unperturbed registration a subject's vertex v maps to fsaverage's vertex v."""
    import nibabel as nib

    from neurofuse.anatomy import make_simulated_subject, make_template_subject

    sub = make_simulated_subject(999, seed=5, registration_deg=0.0, meg=False)
    warped = make_simulated_subject(998, seed=5, registration_deg=8.0, meg=False)
    fs = make_template_subject(meg=False)
    v = np.array([10, 500, 4000, 9000])
    for h in ("lh", "rh"):
        pial = nib.freesurfer.read_geometry(sub.surface_path("pial", h))[0] * 1e-3
        fs_pial = nib.freesurfer.read_geometry(fs.surface_path("pial", h))[0] * 1e-3
        got = electrodes_to_fsaverage(sub, pial[v], [h] * len(v))
        np.testing.assert_allclose(got, fs_pial[v])
        assert np.linalg.norm(pial[v] - fs_pial[v], axis=1).max() > 0.001  # anatomy differs
        wpial = nib.freesurfer.read_geometry(warped.surface_path("pial", h))[0] * 1e-3
        moved = electrodes_to_fsaverage(warped, wpial[v], [h] * len(v))
        assert np.linalg.norm(moved - fs_pial[v], axis=1).max() > 0.002  # registration moved


def test_format_round_trip_and_atomicity(tmp_path):
    rng = np.random.default_rng(3)
    el = EcogElectrodes(names=["A1", "A2", "B1"], hemi=["lh", "lh", "rh"],
                        pos_fsaverage=[[-0.05, 0.0, 0.01], [-0.05, 0.01, 0.01], [0.05, 0.0, 0.0]],
                        group=["A", "A", "B"])
    feats = rng.standard_normal((200, 5)).astype(np.float32)
    ecog = rng.standard_normal((3, 200)).astype(np.float32)
    out = write_ecog_dataset(tmp_path / "ds", sfreq=50.0, feature_streams={"a": (0, 2), "b": (2, 5)},
                             stories={"s1": feats},
                             subjects={"P1": {"electrodes": el, "ecog": {"s1": ecog}, "units": "z",
                                              "signal": "high-gamma envelope"}})
    ds = read_ecog_dataset(out)
    assert ds.subjects == ["P1"] and ds.stories == ["s1"] and ds.n_times("s1") == 200
    np.testing.assert_array_equal(ds.features("s1"), feats)
    np.testing.assert_array_equal(ds.ecog("P1", "s1"), ecog)
    got = ds.electrodes("P1")
    assert got.names == el.names and got.hemi == el.hemi and got.pos_mri is None
    np.testing.assert_allclose(got.pos_fsaverage, el.pos_fsaverage)
    assert ds.units("P1") == "z" and "envelope" in ds.signal("P1")
    manifest = json.loads((out / ECOG_MANIFEST).read_text())
    assert manifest["schema_version"] == ECOG_SCHEMA_VERSION == 2
    assert manifest["n_features"] == 5
    # A failed write leaves nothing behind (wrong ECoG shape) ...
    with pytest.raises(ValueError, match="must have shape"):
        write_ecog_dataset(tmp_path / "bad", sfreq=50.0, feature_streams={"a": (0, 5)},
                           stories={"s1": feats},
                           subjects={"P1": {"electrodes": el, "ecog": {"s1": ecog[:, :100]}}})
    assert not (tmp_path / "bad").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    # ... and positions in millimetres are refused.
    with pytest.raises(ValueError, match="millimetres"):
        EcogElectrodes(names=["A"], hemi=["lh"], pos_fsaverage=[[-50.0, 0.0, 10.0]])
    (out / "subjects" / "P1" / "ecog" / "s1.npy").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        read_ecog_dataset(out)


def test_format_still_importable_from_simulation():
    # The format moved to neurofuse.data.ecog; the old path re-exports the very same objects.
    import neurofuse.data.ecog as fmt
    import neurofuse.simulation.ecog as sim
    from neurofuse import data

    moved = ["ECOG_MANIFEST", "ECOG_FORMAT", "ECOG_SCHEMA_VERSION", "EcogElectrodes",
             "EcogDataset", "read_ecog_dataset", "write_ecog_dataset"]
    for name in moved:
        assert getattr(sim, name) is getattr(fmt, name), name
        assert name in sim.__all__, name
    for name in ["EcogElectrodes", "EcogDataset", "read_ecog_dataset", "write_ecog_dataset"]:
        assert getattr(data, name) is getattr(fmt, name), name


def test_simulation_checks(tiny_study, tmp_path):
    with pytest.raises(ValueError, match="prefixes must be unique"):
        simulate_ecog(tiny_study, tmp_path / "x", layout=[LAYOUT[0], LAYOUT[0]])
    with pytest.raises(ValueError, match="cnr"):
        simulate_ecog(tiny_study, tmp_path / "x", cnr=-1.0)
    with pytest.raises(FileNotFoundError, match="not a neurofuse dataset"):
        simulate_ecog(tmp_path, tmp_path / "x")
    one = make_spread_weights(np.zeros((1, 3)), ["lh"], np.array([[0.0, 0.0, 0.001]] * 2),
                              ["lh", "rh"])
    assert scipy.sparse.issparse(one) and one.toarray().tolist() == [[1.0, 0.0]]
