"""The torch physics agree with the numpy physics: envelope, Hilbert transform, HRF."""

import subprocess
import sys

import numpy as np
import pytest
from scipy import signal

from neurofuse.physics import envelope, spm_hrf

torch = pytest.importorskip("torch")
from neurofuse.physics.torch_ops import (  # noqa: E402
    DoubleGammaHRF,
    analytic_envelope,
    hilbert_transform,
)


@pytest.mark.parametrize("n", [99, 100, 257])
def test_torch_envelope_equals_numpy_envelope(n):
    x = np.random.default_rng(n).standard_normal((3, n, 4))
    ours = analytic_envelope(torch.as_tensor(x), dim=1).numpy()
    np.testing.assert_allclose(ours, envelope(x, axis=1), rtol=1e-12, atol=1e-13)
    hx = hilbert_transform(torch.as_tensor(x), dim=1).numpy()
    np.testing.assert_allclose(hx, np.imag(signal.hilbert(x, axis=1)), atol=1e-12)
    x32 = x.astype(np.float32)
    np.testing.assert_allclose(analytic_envelope(torch.as_tensor(x32), dim=1).numpy(),
                               envelope(x32, axis=1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("tr", "kwargs"), [
    (2.0, {}),
    (1.5, {}),
    (1.0, {"length": 24.0, "peak": 5.0, "undershoot": 12.0, "ratio": 0.25,
           "dispersion": 0.9, "undershoot_dispersion": 1.2}),
])
def test_double_gamma_hrf_at_init_equals_spm_hrf(tr, kwargs):
    kernel = DoubleGammaHRF(tr, **kwargs).kernel().detach().double().numpy()
    ref = spm_hrf(1.0 / tr, **kwargs)
    assert kernel.shape == ref.shape
    np.testing.assert_allclose(kernel, ref, rtol=1e-5, atol=1e-6)
    # The convolution it applies is the numpy causal convolution with that kernel.
    from neurofuse.physics import convolve_hrf

    p = np.random.default_rng(0).random((2, 30, 3))
    bold = DoubleGammaHRF(tr, **kwargs).double()(torch.as_tensor(p)).detach().numpy()
    ref_bold = np.moveaxis(convolve_hrf(np.moveaxis(p, 1, -1), ref), -1, 1)
    np.testing.assert_allclose(bold, ref_bold, rtol=1e-5, atol=1e-6)


def test_physics_package_does_not_import_torch():
    code = ("import sys, neurofuse.physics, neurofuse.physics.measurement, neurofuse.stats; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
