"""A given lead field as an ``mne.Forward`` on discrete volume sources: MNE's inverse on it
equals MNE's inverse on MNE's own forward of the same sources."""

import mne
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from neurofuse.baselines.inverse import apply_inverse_array, make_fixed_forward, make_inverse


@pytest.fixture(scope="module")
def sphere_forward():
    rng = np.random.default_rng(0)
    montage = mne.channels.make_standard_montage("biosemi64")
    names = montage.ch_names[:40]
    info = mne.create_info(names, 100.0, "eeg")
    info.set_montage(montage, on_missing="ignore", verbose="error")
    raw = mne.io.RawArray(np.zeros((len(names), 1)), info, verbose="error")
    info = raw.set_eeg_reference(projection=True, verbose="error").info
    pos = rng.uniform(-0.04, 0.04, (60, 3)) + [0, 0, 0.04]
    ori = rng.standard_normal((60, 3))
    ori /= np.linalg.norm(ori, axis=1, keepdims=True)
    src = mne.setup_volume_source_space(None, pos={"rr": pos, "nn": ori}, verbose="error")
    sphere = mne.make_sphere_model("auto", "auto", info, verbose="error")
    trans = mne.transforms.Transform("head", "mri", np.eye(4))
    fwd = mne.make_forward_solution(info, trans, src, sphere, meg=False, verbose="error")
    fixed = mne.convert_forward_solution(fwd, force_fixed=True, surf_ori=True, use_cps=True,
                                         verbose="error")
    return info, fixed, pos, ori


def test_fixed_forward_gives_mne_inverse(sphere_forward):
    info, ref_fwd, pos, ori = sphere_forward
    kept = ref_fwd["src"][0]["vertno"]
    fwd = make_fixed_forward(ref_fwd["sol"]["data"], pos[kept], ori[kept], info)
    assert_array_equal(fwd["sol"]["data"], ref_fwd["sol"]["data"])
    assert_allclose(fwd["source_nn"], ref_fwd["source_nn"], atol=1e-6)
    cov = mne.make_ad_hoc_cov(info, verbose="error")
    data = np.random.default_rng(1).standard_normal((len(info["ch_names"]), 50)) * 1e-6
    for method in ("MNE", "dSPM", "eLORETA"):
        ours = apply_inverse_array(data, make_inverse(fwd, info, cov, depth=None),
                                   lambda2=1 / 9, method=method)
        ref = mne.minimum_norm.make_inverse_operator(info, ref_fwd, cov, loose=0.0, fixed=True,
                                                     depth=None, verbose="error")
        raw = mne.io.RawArray(data, info, verbose="error")
        expect = mne.minimum_norm.apply_inverse_raw(raw, ref, 1 / 9, method,
                                                    verbose="error").data
        assert_allclose(ours, expect, rtol=1e-4, atol=1e-5 * np.abs(expect).max())


def test_fixed_forward_checks(sphere_forward):
    info, ref_fwd, pos, ori = sphere_forward
    gain = ref_fwd["sol"]["data"]
    n = gain.shape[1]
    with pytest.raises(ValueError, match="channel mismatch"):
        make_fixed_forward(gain[:-1], pos[:n], ori[:n], info)
    with pytest.raises(ValueError, match=r"'pos' must have shape \(n_sources, 3\)"):
        make_fixed_forward(gain, pos[:n - 1], ori[:n], info)
    bad = ori[:n].copy()
    bad[0] = 0
    with pytest.raises(ValueError, match="zero-length"):
        make_fixed_forward(gain, pos[:n], bad, info)
