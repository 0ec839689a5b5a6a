"""himalaya's backend for the ridge solvers, and float64 array helpers.

Statistics and solves are float64 (sums over ~1e6 samples lose too much in float32); the heavy
products and eigendecompositions run on himalaya's backend: ``torch_cuda`` when a CUDA device
is present, else ``numpy``. The backend is set once per public call and restored afterwards
(:func:`use_ridge_backend`).
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..._checks import _check_option

#: Symmetric matrices up to this size are decomposed without thread-pool limits (one BLAS
#: thread or not makes no difference at this size, and setting the limit costs milliseconds).
_SMALL_EIGH = 64


def _import_himalaya():
    try:
        import himalaya.backend as hb
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("The ridge baselines need himalaya and scikit-learn: install them "
                          "with pip install 'neurofuse[ridge]'.") from err
    return hb


def _auto_backend() -> str:
    try:
        import torch
    except ImportError:
        return "numpy"
    return "torch_cuda" if torch.cuda.is_available() else "numpy"


@contextlib.contextmanager
def use_ridge_backend(backend=None):
    """Set himalaya's backend for the duration of a ``with`` block, then restore it.

    Parameters
    ----------
    backend : None | "numpy" | "torch" | "torch_cuda"
        ``None`` picks ``"torch_cuda"`` when PyTorch sees a CUDA device, else ``"numpy"``.

    Yields
    ------
    module : the himalaya backend module (``asarray``, ``to_numpy``, ``eigh``...).
    """
    hb = _import_himalaya()
    name = _auto_backend() if backend is None else _check_option(
        "backend", backend, ("numpy", "torch", "torch_cuda"))
    previous = hb.get_backend()
    module = hb.set_backend(name, on_error="raise")
    try:
        yield module
    finally:
        hb.set_backend(previous)


def _b(bk, x):
    """A float64 backend array from a numpy or backend array (read-only arrays are copied)."""
    if isinstance(x, np.ndarray):
        x = np.asarray(x, dtype=np.float64)
        if not x.flags.writeable:
            x = x.copy()
    return bk.asarray(x, dtype="float64")


def _eigh(bk, C):
    """Eigendecomposition of a symmetric matrix (ascending eigenvalues, eigenvectors).

    On the numpy backend, matrices up to 4096 columns are decomposed with one BLAS thread:
    the tridiagonal reduction is memory-bound and OpenBLAS threads slow it down (measured on
    2 busy cores: p = 3408, 5.5 s on one thread vs 18.7 s on two; p = 368, 9 ms vs 1-4 s).
    """
    if bk.name != "numpy":
        return bk.eigh(C)
    import scipy.linalg

    if C.shape[0] <= _SMALL_EIGH:
        return scipy.linalg.eigh(C, driver="evd", check_finite=False, overwrite_a=True)

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(limits=1 if C.shape[0] <= 4096 else None, user_api="blas")
    with limits:
        return scipy.linalg.eigh(C, driver="evd", check_finite=False, overwrite_a=True)


def _np(bk, x) -> np.ndarray:
    return np.asarray(bk.to_numpy(x), dtype=np.float64)



__all__ = ["use_ridge_backend"]
