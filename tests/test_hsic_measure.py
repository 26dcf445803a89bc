"""HSIC, normalised HSIC and the HSIC-bottleneck layer gradient, checked
against their definitions: NumPy twins (tests/naive_hsic.py), eigenvalues,
invariances and central finite differences."""
import numpy as np
import pytest
from numba import njit

import naive_hsic as nv
from alternatives import _hsic_kernels as hk
from alternatives.hsic_measure import hsic, nhsic

SIGMA = 1.3


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """OpenBLAS threads dpotri even for 10 x 10 matrices: with two threads on a
    busy machine each call can wait milliseconds for the second one (the
    finite-difference tests then take ~1 s instead of ~0.05 s)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@njit(cache=True)
def exp_all(x, out):
    for i in range(x.size):
        out[i] = hk.exp_nonpositive(x[i])


def data(m=10, seed=0, dx=6, dz=4, classes=3):
    """X (m, dx), a Z that depends on X (m, dz), one-hot Y (m, classes)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, dx))
    Z = np.tanh(X @ rng.standard_normal((dx, dz)) / np.sqrt(dx))
    Z += 0.1 * rng.standard_normal((m, dz))
    Y = np.eye(classes)[rng.integers(0, classes, m)]
    return X, Z, Y


def flat_square(buffer, m):
    return buffer[:m * m].reshape(m, m)


def target(X, Y, beta, epsilon, ws, m):
    """(S from the kernels, S from the twins) for R_X - beta R_Y."""
    RX, RY, S = np.zeros(m * m), np.zeros(m * m), np.zeros(m * m)
    assert hk.normalized_r(X, SIGMA, epsilon, ws, RX) == 0
    assert hk.normalized_r(Y, SIGMA, epsilon, ws, RY) == 0
    hk.target_matrix(RX, RY, beta, m, S)
    twin = nv.target_matrix(nv.normalized_r(X, SIGMA, epsilon), nv.normalized_r(Y, SIGMA, epsilon),
                            beta)
    return S, twin


# -- kernels against their twins -----------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gram_center_hsic_match_twins(dtype):
    # float32 inputs are copied exactly into float64, so even they agree tightly
    tol = 1e-13
    X, Z, _ = data()
    X, Z = X.astype(dtype), Z.astype(dtype)
    m = X.shape[0]
    ws = hk.hsic_workspace(m, X.shape[1])
    K = np.zeros(m * m)
    hk.gaussian_gram(Z, SIGMA, ws, K)
    np.testing.assert_allclose(flat_square(K, m), nv.gaussian_gram(Z, SIGMA), rtol=0, atol=tol)
    assert np.array_equal(flat_square(K, m), flat_square(K, m).T)
    A = np.random.default_rng(3).standard_normal(m * m)  # not symmetric on purpose
    out = np.zeros(m * m)
    hk.center(A, m, out, ws.v)
    np.testing.assert_allclose(flat_square(out, m), nv.center(flat_square(A, m)), atol=1e-13)
    hk.center(A, m, A, ws.v)  # in place
    np.testing.assert_array_equal(A, out)
    assert hk.hsic_value(X, Z, SIGMA, ws) == pytest.approx(nv.hsic(X, Z, SIGMA), rel=1e-12)
    assert hsic(X, Z, SIGMA) == pytest.approx(nv.hsic(X, Z, SIGMA), rel=1e-12)


def test_exp_mirror_and_inner_product_match_numpy():
    x = -np.concatenate([np.linspace(0.0, 720.0, 20001), np.geomspace(1e-300, 1e3, 2001), [np.nan]])
    out = np.empty_like(x)
    exp_all(x, out)
    ref = np.exp(x)
    ok = x > -708
    assert np.all(np.abs(out[ok] - ref[ok]) <= np.spacing(ref[ok]))  # within 1 ulp
    assert np.all(out[x <= -708] == 0.0) and np.isnan(out[-1])
    # compiled, in the Gram's loop: exact symmetry, unit diagonal, NaN propagates
    A = np.random.default_rng(8).standard_normal((13, 2))  # 13: not a multiple of the 8 x 8 tiles
    ws = hk.hsic_workspace(13, 2)
    K = np.zeros(169)
    hk.gaussian_gram(A * 30.0, 0.05, ws, K)  # distances far beyond exp's range too
    np.testing.assert_allclose(flat_square(K, 13), nv.gaussian_gram(A * 30.0, 0.05), rtol=1e-15,
                               atol=1e-300)
    A[4, 1] = np.nan
    hk.gaussian_gram(A, SIGMA, ws, K)
    K = flat_square(K, 13)
    assert np.isnan(K[4, np.arange(13) != 4]).all() and np.isnan(K[:, 4][np.arange(13) != 4]).all()
    assert np.isfinite(np.delete(np.delete(K, 4, 0), 4, 1)).all()
    B = np.random.default_rng(9).standard_normal(169)
    hk.mirror_upper(B, 13)
    np.testing.assert_array_equal(flat_square(B, 13), flat_square(B, 13).T)
    C = np.random.default_rng(10).standard_normal(169)
    assert hk.inner_product(B, C, 13) == pytest.approx(
        nv.inner_product(flat_square(B, 13), flat_square(C, 13)), rel=1e-13)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_normalized_r_and_nhsic_match_twins(dtype):
    X, Z, _ = data()
    X, Z = X.astype(dtype), Z.astype(dtype)
    m = X.shape[0]
    ws = hk.hsic_workspace(m, X.shape[1])
    for epsilon in (1e-5, 1e-2):
        R = np.zeros(m * m)
        assert hk.normalized_r(X, SIGMA, epsilon, ws, R) == 0
        R = flat_square(R, m)
        np.testing.assert_allclose(R, nv.normalized_r(X, SIGMA, epsilon), atol=1e-10)
        np.testing.assert_allclose(R, R.T, atol=1e-13)
        np.testing.assert_allclose(R.sum(axis=1), 0.0, atol=1e-12)  # R 1 = 0
        assert nhsic(X, Z, SIGMA, epsilon) == pytest.approx(nv.nhsic(X, Z, SIGMA, epsilon),
                                                            rel=1e-9)


def test_nhsic_of_a_variable_with_itself_from_eigenvalues():
    X, _, _ = data(m=12)
    m = X.shape[0]
    for epsilon in (1e-5, 1e-3, 0.1):
        mu = np.linalg.eigvalsh(nv.center(nv.gaussian_gram(X, SIGMA)))
        expected = np.sum((mu / (mu + epsilon * m)) ** 2)
        assert nhsic(X, X, SIGMA, epsilon) == pytest.approx(expected, rel=1e-9)
    assert nhsic(X, X, SIGMA) < m - 1


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layer_value_and_gradient_match_twins(dtype):
    X, Z, Y = data()
    m, d = Z.shape
    ws = hk.hsic_workspace(m, X.shape[1])
    epsilon, beta = 1e-5, 3.0
    S, S_twin = target(X, Y, beta, epsilon, ws, m)
    np.testing.assert_allclose(flat_square(S, m), S_twin, atol=1e-9)
    Zt = Z.astype(dtype)
    J_twin = nv.layer_value(Zt, S_twin, SIGMA, epsilon)
    G_twin = nv.layer_gradient(Zt, S_twin, SIGMA, epsilon)
    assert hk.layer_value(Zt, S, SIGMA, epsilon, ws) == pytest.approx(J_twin, rel=1e-9)
    dZ = np.full((m, d), np.nan, dtype=dtype)
    J = hk.layer_gradient(Zt, S, SIGMA, epsilon, ws, dZ)
    assert J == pytest.approx(J_twin, rel=1e-9)
    assert dZ.dtype == dtype
    # the float32 output is the float64 result rounded once
    rtol = 1e-7 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(dZ, G_twin, rtol=0, atol=rtol * np.abs(G_twin).max())
    # M_Z^-1 stays in the workspace: each term of J at O(m^2)
    RX, RY = np.zeros(m * m), np.zeros(m * m)
    hk.normalized_r(X, SIGMA, epsilon, ws, RX)
    hk.normalized_r(Y, SIGMA, epsilon, ws, RY)
    hk.layer_gradient(Zt, S, SIGMA, epsilon, ws, dZ)  # normalized_r reused ws.k only
    x_term = hk.layer_nhsic(RX, m, epsilon, ws)
    y_term = hk.layer_nhsic(RY, m, epsilon, ws)
    assert x_term == pytest.approx(nv.nhsic(Zt, X, SIGMA, epsilon), rel=1e-9)
    assert y_term == pytest.approx(nv.nhsic(Zt, Y, SIGMA, epsilon), rel=1e-9)
    assert x_term - beta * y_term == pytest.approx(J, rel=1e-9)


def test_a_smaller_batch_in_a_larger_workspace():
    ws = hk.hsic_workspace(16, 8)
    X, Z, Y = data(m=16, seed=1)
    S16, _ = target(X, Y, 2.0, 1e-5, ws, 16)
    hk.layer_gradient(Z, S16, SIGMA, 1e-5, ws, np.zeros(Z.shape))  # fill the workspace
    X, Z, Y = data(m=7, seed=2)
    S, S_twin = target(X, Y, 2.0, 1e-5, ws, 7)
    dZ = np.zeros(Z.shape)
    J = hk.layer_gradient(Z, S, SIGMA, 1e-5, ws, dZ)
    assert J == pytest.approx(nv.layer_value(Z, S_twin, SIGMA, 1e-5), rel=1e-9)
    G = nv.layer_gradient(Z, S_twin, SIGMA, 1e-5)
    np.testing.assert_allclose(dZ, G, atol=1e-7 * np.abs(G).max())


# -- the gradient against finite differences ------------------------------------------

@pytest.mark.parametrize("epsilon", [1e-5, 1e-2])
def test_layer_gradient_matches_central_differences(epsilon):
    X, Z, Y = data(m=8)
    m, d = Z.shape
    ws = hk.hsic_workspace(m, X.shape[1])
    S, _ = target(X, Y, 2.0, epsilon, ws, m)
    dZ = np.zeros((m, d))
    hk.layer_gradient(Z, S, SIGMA, epsilon, ws, dZ)
    h = 1e-5
    fd = np.zeros((m, d))
    for i in range(m):
        for j in range(d):
            Zp, Zm = Z.copy(), Z.copy()
            Zp[i, j] += h
            Zm[i, j] -= h
            fd[i, j] = (hk.layer_value(Zp, S, SIGMA, epsilon, ws)
                        - hk.layer_value(Zm, S, SIGMA, epsilon, ws)) / (2 * h)
    assert np.abs(dZ).max() > 1e-3  # not a trivially zero gradient
    np.testing.assert_allclose(dZ, fd, rtol=0, atol=1e-6 * np.abs(fd).max())


def test_tanh_layer_weight_gradient_matches_central_differences():
    # J(W, b) = tr(R_Z S), Z = tanh(Zprev W^T + b): the kernel's dJ/dZ through
    # f' and Zprev, as the trainer will compose it
    X, _, Y = data(m=9, seed=4)
    rng = np.random.default_rng(5)
    n_in, n_out = X.shape[1], 3
    W = rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
    b = 0.1 * rng.standard_normal(n_out)
    m = X.shape[0]
    epsilon = 1e-5
    ws = hk.hsic_workspace(m, n_in)
    S, S_twin = target(X, Y, 2.0, epsilon, ws, m)

    def J(W, b):
        return hk.layer_value(np.tanh(X @ W.T + b), S, SIGMA, epsilon, ws)

    Z = np.tanh(X @ W.T + b)
    dZ = np.zeros_like(Z)
    hk.layer_gradient(Z, S, SIGMA, epsilon, ws, dZ)
    delta = dZ * (1.0 - Z ** 2)
    dW, db = delta.T @ X, delta.sum(axis=0)
    dW_twin, db_twin = nv.tanh_layer_gradient(X, W, b, S_twin, SIGMA, epsilon)
    np.testing.assert_allclose(dW, dW_twin, atol=1e-7 * np.abs(dW_twin).max())
    np.testing.assert_allclose(db, db_twin, atol=1e-7 * np.abs(db_twin).max())
    h = 1e-5
    fd_W = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        Wp, Wm = W.copy(), W.copy()
        Wp[idx] += h
        Wm[idx] -= h
        fd_W[idx] = (J(Wp, b) - J(Wm, b)) / (2 * h)
    fd_b = np.array([(J(W, b + h * e) - J(W, b - h * e)) / (2 * h) for e in np.eye(n_out)])
    np.testing.assert_allclose(dW, fd_W, atol=1e-6 * np.abs(fd_W).max())
    np.testing.assert_allclose(db, fd_b, atol=1e-6 * np.abs(fd_b).max())


# -- properties of the measures -------------------------------------------------------

@pytest.mark.parametrize("measure, kwargs, change", [
    (hsic, {}, 1e-3),
    (nhsic, {"epsilon": 1e-2}, 1e-3),
    # with the default epsilon, nHSIC sits near m - 1 whatever the pairing (R ~ H
    # once every eigenvalue of K~ exceeds epsilon m): the change is small, not absent
    (nhsic, {}, 1e-6),
])
def test_invariances(measure, kwargs, change):
    X, Z, _ = data(m=12, seed=6)
    base = measure(Z, X, SIGMA, **kwargs)
    rng = np.random.default_rng(7)
    p = rng.permutation(12)
    assert measure(X, Z, SIGMA, **kwargs) == pytest.approx(base, rel=1e-12)
    assert measure(Z[p], X[p], SIGMA, **kwargs) == pytest.approx(base, rel=1e-10)
    Q, _ = np.linalg.qr(rng.standard_normal((Z.shape[1], Z.shape[1])))
    assert measure(Z @ Q, X, SIGMA, **kwargs) == pytest.approx(base, rel=1e-10)
    shift = rng.standard_normal(Z.shape[1])
    assert measure(Z + shift, X, SIGMA, **kwargs) == pytest.approx(base, rel=1e-10)
    # permuting one side breaks the pairing (Z depends on X)
    assert abs(measure(Z[p], X, SIGMA, **kwargs) - base) > change * base


def test_constant_variable_gives_zero_value_and_gradient():
    X, _, Y = data(m=8)
    Z = np.full((8, 3), 0.7)
    assert hsic(Z, X, SIGMA) == 0.0
    assert nhsic(Z, X, SIGMA) == pytest.approx(0.0, abs=1e-12)  # R_Z = I - c (cI)^-1
    ws = hk.hsic_workspace(8, X.shape[1])
    S, _ = target(X, Y, 2.0, 1e-5, ws, 8)
    dZ = np.full(Z.shape, np.nan)
    assert hk.layer_gradient(Z, S, SIGMA, 1e-5, ws, dZ) == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(dZ, 0.0, atol=1e-12)


def test_non_finite_input_reports_nan_not_garbage():
    # the kernels do not validate (the public functions and the trainer do):
    # a NaN in Z must come out as a NaN value and gradient for the divergence check
    X, Z, Y = data(m=8)
    ws = hk.hsic_workspace(8, X.shape[1])
    S, _ = target(X, Y, 2.0, 1e-5, ws, 8)
    Z[3, 1] = np.nan
    dZ = np.zeros(Z.shape)
    assert np.isnan(hk.layer_gradient(Z, S, SIGMA, 1e-5, ws, dZ))
    assert np.isnan(dZ).all()
    assert np.isnan(hk.layer_value(Z, S, SIGMA, 1e-5, ws))
    R = np.zeros(64)
    assert hk.normalized_r(Z, SIGMA, 1e-5, ws, R) == hk.NONFINITE
    assert np.isnan(R).all()


# -- input validation ------------------------------------------------------------------

def test_validation_errors():
    X, Z, _ = data()
    cases = [
        (lambda: hsic(X[:, 0], Z, SIGMA), ValueError, r"A must be 2-D.*reshape\(-1, 1\)"),
        (lambda: nhsic(X, Z[None], SIGMA), ValueError, r"B must be 2-D.*3-D"),
        (lambda: hsic(X.astype(np.int64), Z, SIGMA), TypeError, r"A has dtype int64"),
        (lambda: nhsic(X, "abc", SIGMA), TypeError, r"B must be a numeric array"),
        (lambda: hsic(X, Z[:-1], SIGMA), ValueError, r"A has 10 rows.*B has 9"),
        (lambda: nhsic(X[:1], Z[:1], SIGMA), ValueError, r"at least two samples, got m=1"),
        (lambda: hsic(X[:, :0], Z, SIGMA), ValueError, r"A has no columns"),
        (lambda: hsic(X, Z, 0.0), ValueError, r"sigma must be a finite number > 0, got 0.0"),
        (lambda: nhsic(X, Z, float("nan")), ValueError, r"sigma must be a finite number > 0"),
        (lambda: hsic(X, Z, "1"), TypeError, r"sigma must be a real number > 0, got '1'"),
        (lambda: nhsic(X, Z, SIGMA, epsilon=-1e-5), ValueError, r"epsilon must be .*-1e-05"),
        (lambda: nhsic(X, Z, SIGMA, epsilon=None), TypeError, r"epsilon must be a real number"),
        (lambda: hk.hsic_workspace(1, 4), ValueError, r"m_max >= 2"),
    ]
    bad = Z.copy()
    bad[2, 1] = np.inf
    cases.append((lambda: nhsic(X, bad, SIGMA), ValueError, r"B contains NaN or inf.*\(2, 1\)"))
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()
    # the kernels check their buffers before LAPACK or a loop writes past them
    ws = hk.hsic_workspace(10, 4)
    S = np.zeros(100)
    with pytest.raises(ValueError, match="HSICWorkspace too small"):
        hk.layer_gradient(X, S, SIGMA, 1e-5, ws, np.zeros(X.shape))  # X is 6 wide
    with pytest.raises(ValueError, match="dZ must have Z's shape"):
        hk.layer_gradient(Z, S, SIGMA, 1e-5, ws, np.zeros((10, 3)))
    with pytest.raises(ValueError, match="smaller than m \\* m"):
        hk.normalized_r(Z, SIGMA, 1e-5, ws, np.zeros(99))
    with pytest.raises(ValueError, match="contiguous float64"):
        hk.inner_product(np.zeros(100, dtype=np.float32), np.zeros(100), 10)
    with pytest.raises(ValueError, match="contiguous float64"):
        hk.inner_product(np.zeros(200)[::2], np.zeros(100), 10)
    # lists are accepted and read as float64
    assert hsic(X.tolist(), Z.tolist(), SIGMA) == pytest.approx(hsic(X, Z, SIGMA), rel=1e-14)
