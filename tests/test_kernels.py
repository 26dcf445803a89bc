"""Every kernel in fastbp.kernels against its plain-NumPy twin in tests/naive.py.

Kernels are called directly with preallocated buffers, at non-zero offsets
inside larger buffers whose other entries hold a sentinel, so a kernel that
writes outside its block or reads from the wrong place fails. Inputs are
drawn in float64 and rounded to the kernel's dtype; the twins then compute
in float64 from the rounded values, so the only difference is the kernel's
own rounding: ~1e-12 relative in float64, ~1e-5 in float32.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastbp as fb
import naive
from fastbp.kernels import activations as kact
from fastbp.kernels import codes
from fastbp.kernels import epochs as kepochs
from fastbp.kernels import linalg as klin
from fastbp.kernels import losses as kloss
from fastbp.kernels import mlp as kmlp
from fastbp.kernels import optim as kopt
from fastbp.models import mlp_workspace_size

DTYPES = (np.float32, np.float64)
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}
SENTINEL = 12345.0

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

dtypes = st.sampled_from(DTYPES)
seeds = st.integers(0, 2**32 - 1)

ACT = naive.ACTIVATION_CODES
LOSS = naive.LOSS_CODES
# (loss, output activation, label form) for every valid pairing
LOSS_CASES = [(loss, out, form)
              for loss, outs in (("squared_error", ("identity", "sigmoid", "softmax")),
                                 ("mse", ("identity", "sigmoid", "softmax")),
                                 ("cross_entropy", ("softmax", "identity")),
                                 ("binary_cross_entropy", ("sigmoid", "identity")))
              for out in outs
              for form in (("labels", "rows") if loss == "cross_entropy" else ("rows",))]
EMPTY_LABELS = np.empty(0, dtype=np.int64)


def rtol(dtype):
    return RTOL[np.dtype(dtype)]


def assert_close(actual, expected, dtype, scale=1.0, factor=1.0):
    """Relative agreement at the dtype's tolerance, with an absolute floor of
    tolerance * scale for entries near zero."""
    r = rtol(dtype) * factor
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected,
                               rtol=r, atol=r * scale)


def rounded(x, dtype):
    """x rounded to dtype, and the same values in float64 for the twin."""
    a = np.asarray(x).astype(dtype)
    return a, a.astype(np.float64)


def empty_targets(dtype):
    return np.empty((0, 0), dtype=dtype)


def make_targets(rng, loss, form, rows, k, dtype, extra=0):
    """(labels, targets) kernel arguments and the float64/int y for the twin.

    ``extra`` rows are appended: kernels must only read the first ``rows``.
    """
    n = rows + extra
    if form == "labels":
        labels = rng.integers(0, k, size=n).astype(np.int64)
        return labels, empty_targets(dtype), labels[:rows]
    if loss == "cross_entropy":
        if rng.random() < 0.5:
            T = naive.one_hot(rng.integers(0, k, size=n), k)
        else:  # probability rows, and some unnormalised non-negative rows
            T = rng.dirichlet(np.ones(k), size=n) * rng.choice([1.0, 2.5], size=(n, 1))
    elif loss == "binary_cross_entropy":
        T = rng.uniform(0, 1, size=(n, k))
        T[rng.random((n, k)) < 0.3] = 0.0
        T[rng.random((n, k)) < 0.3] = 1.0
    else:
        T = rng.normal(size=(n, k))
    T, T64 = rounded(T, dtype)
    return EMPTY_LABELS, np.ascontiguousarray(T), T64[:rows]


def layout_of(sizes, acts):
    return np.array([len(sizes) - 1] + list(sizes) + [ACT[a] for a in acts], dtype=np.int64)


def n_weights_of(sizes):
    return sum(sizes[l] * sizes[l + 1] for l in range(len(sizes) - 1))


def n_params_of(sizes):
    return n_weights_of(sizes) + sum(sizes[1:])


@st.composite
def networks(draw, max_depth=3, max_width=5, outputs=naive.OUTPUTS, min_out=1):
    """(sizes, activations) with one activation per layer, output last."""
    depth = draw(st.integers(1, max_depth))
    sizes = [draw(st.integers(1, max_width)) for _ in range(depth)]
    sizes.append(draw(st.integers(min_out, max_width)))
    acts = [draw(st.sampled_from(naive.HIDDEN)) for _ in range(depth - 1)]
    acts.append(draw(st.sampled_from(outputs)))
    return sizes, acts


def random_params(rng, sizes, dtype, scale=0.8):
    return rounded(rng.normal(0.0, scale, size=n_params_of(sizes)), dtype)


# -- activations -----------------------------------------------------------------------

ALL_ACTS = tuple(ACT)


@SETTINGS
@given(code=st.sampled_from(ALL_ACTS), rows=st.integers(1, 5), cols=st.integers(1, 6),
       a0=st.integers(0, 3), h0=st.integers(0, 3), dtype=dtypes, seed=seeds,
       in_place=st.booleans())
def test_activate_matches_twin(code, rows, cols, a0, h0, dtype, seed, in_place):
    rng = np.random.default_rng(seed)
    A, A64 = rounded(rng.normal(0.0, 3.0, size=(rows, cols)), dtype)
    n = rows * cols
    buf_a = np.full(a0 + n + 2, SENTINEL, dtype=dtype)
    buf_a[a0:a0 + n] = A.ravel()
    if in_place:
        buf_h, h0 = buf_a, a0
    else:
        buf_h = np.full(h0 + n + 2, SENTINEL, dtype=dtype)
    kact.activate(buf_a, a0, buf_h, h0, rows, cols, ACT[code])
    expected = naive.activation(code, A64)
    assert buf_h.dtype == np.dtype(dtype)
    assert_close(buf_h[h0:h0 + n].reshape(rows, cols), expected, dtype)
    assert np.all(buf_h[:h0] == SENTINEL) and np.all(buf_h[h0 + n:] == SENTINEL)
    if not in_place:
        np.testing.assert_array_equal(buf_a[a0:a0 + n], A.ravel())


@SETTINGS
@given(code=st.sampled_from(ALL_ACTS), rows=st.integers(1, 5), cols=st.integers(1, 6),
       z0=st.integers(0, 3), dtype=dtypes, seed=seeds)
def test_activate_inplace_matches_twin(code, rows, cols, z0, dtype, seed):
    rng = np.random.default_rng(seed)
    A, A64 = rounded(rng.normal(0.0, 3.0, size=(rows, cols)), dtype)
    n = rows * cols
    buf = np.full(z0 + n + 2, SENTINEL, dtype=dtype)
    buf[z0:z0 + n] = A.ravel()
    kact.activate_inplace(buf, z0, rows, cols, ACT[code])
    assert_close(buf[z0:z0 + n].reshape(rows, cols), naive.activation(code, A64), dtype)
    assert np.all(buf[:z0] == SENTINEL) and np.all(buf[z0 + n:] == SENTINEL)


@pytest.mark.parametrize("dtype", DTYPES)
def test_activate_extreme_inputs_stay_finite(dtype):
    """sigmoid and softmax of huge logits: no overflow, no NaN."""
    A = np.array([[-1000.0, -50.0, 0.0, 50.0, 1000.0]], dtype=dtype)
    for code in ("sigmoid", "softmax", "tanh"):
        H = np.empty_like(A.ravel())
        kact.activate(A.ravel(), 0, H, 0, 1, 5, ACT[code])
        assert np.all(np.isfinite(H)), code
        assert_close(H, naive.activation(code, A.astype(np.float64)).ravel(), dtype,
                     scale=1e-30)
    H = np.empty(5, dtype=dtype)
    kact.activate(A.ravel(), 0, H, 0, 1, 5, ACT["sigmoid"])
    assert H[0] == 0.0 and H[-1] == 1.0 and H[2] == 0.5


@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_kernels_at_zero(dtype):
    """relu/leaky_relu at exactly 0: f(0) = 0 and the derivative taken as the
    left one (0, resp. the slope), as the twin's `a > 0` test."""
    A = np.array([-2.0, 0.0, 3.0], dtype=dtype)
    for name, f, d in (("relu", [0.0, 0.0, 3.0], [0.0, 0.0, 1.0]),
                       ("leaky_relu", [-0.02, 0.0, 3.0], [0.01, 0.01, 1.0])):
        H = np.empty_like(A)
        kact.activate(A, 0, H, 0, 1, 3, ACT[name])
        assert_close(H, f, dtype)
        D = np.ones_like(A)
        kact.backprop_activation(H, 0, D, 0, 1, 3, ACT[name])
        assert_close(D, d, dtype)
        assert_close(D, naive.activation_derivative(name, A.astype(np.float64)), dtype)


@SETTINGS
@given(code=st.sampled_from(ALL_ACTS), rows=st.integers(1, 5), cols=st.integers(1, 6),
       h0=st.integers(0, 3), d0=st.integers(0, 3), dtype=dtypes, seed=seeds)
def test_backprop_activation_matches_twin(code, rows, cols, h0, d0, dtype, seed):
    rng = np.random.default_rng(seed)
    A64 = rng.normal(0.0, 1.5, size=(rows, cols))
    H, _ = rounded(naive.activation(code, A64), dtype)
    D, D64 = rounded(rng.normal(size=(rows, cols)), dtype)
    n = rows * cols
    buf_h = np.full(h0 + n + 2, SENTINEL, dtype=dtype)
    buf_h[h0:h0 + n] = H.ravel()
    buf_d = np.full(d0 + n + 2, SENTINEL, dtype=dtype)
    buf_d[d0:d0 + n] = D.ravel()
    kact.backprop_activation(buf_h, h0, buf_d, d0, rows, cols, ACT[code])
    expected = naive.backprop_through(code, A64, D64)
    # in float32 the derivative is taken from the rounded output h: the
    # absolute error of h(1 - h) etc. is ~1e-7, not relative
    assert_close(buf_d[d0:d0 + n].reshape(rows, cols), expected, dtype,
                 scale=np.abs(D64).max() * (10 if dtype == np.float32 else 1))
    assert np.all(buf_d[:d0] == SENTINEL) and np.all(buf_d[d0 + n:] == SENTINEL)
    np.testing.assert_array_equal(buf_h[h0:h0 + n], H.ravel())


@SETTINGS
@given(rows=st.integers(1, 5), cols=st.integers(1, 7), a0=st.integers(0, 3),
       h0=st.integers(0, 3), dtype=dtypes, seed=seeds, big=st.booleans())
def test_softmax_rows_matches_twin(rows, cols, a0, h0, dtype, seed, big):
    rng = np.random.default_rng(seed)
    scale = 300.0 if big else 2.0  # big logits: exp would overflow without the max shift
    A, A64 = rounded(rng.normal(0.0, scale, size=(rows, cols)), dtype)
    n = rows * cols
    buf_a = np.full(a0 + n + 1, SENTINEL, dtype=dtype)
    buf_a[a0:a0 + n] = A.ravel()
    buf_h = np.full(h0 + n + 1, SENTINEL, dtype=dtype)
    kact.softmax_rows(buf_a, a0, buf_h, h0, rows, cols)
    H = buf_h[h0:h0 + n].reshape(rows, cols)
    assert np.all(np.isfinite(H))
    assert_close(H, naive.softmax(A64), dtype, scale=1e-30 if big else 1.0)
    assert_close(H.astype(np.float64).sum(axis=1), np.ones(rows), dtype, factor=cols)
    assert np.all(buf_h[:h0] == SENTINEL) and np.all(buf_h[h0 + n:] == SENTINEL)


# -- matrix products ---------------------------------------------------------------------

GEMMS = {
    # name: (A shape, B shape, C shape, twin) for C = op(A, B) with (m, n, k)
    "nt": (lambda m, n, k: ((m, k), (n, k), (m, n)), lambda A, B: A @ B.T),
    "tn": (lambda m, n, k: ((m, n), (m, k), (n, k)), lambda A, B: A.T @ B),
    "nn": (lambda m, n, k: ((m, k), (k, n), (m, n)), lambda A, B: A @ B),
}
GEMM_KERNELS = {"nt": klin.gemm_nt, "tn": klin.gemm_tn, "nn": klin.gemm_nn}


def run_gemm(kind, m, n, k, offsets, dtype, seed, blas):
    rng = np.random.default_rng(seed)
    shape_a, shape_b, shape_c = GEMMS[kind][0](m, n, k)
    A, A64 = rounded(rng.normal(size=shape_a), dtype)
    B, B64 = rounded(rng.normal(size=shape_b), dtype)
    a0, b0, c0 = offsets
    buf_a = np.full(a0 + A.size + 3, SENTINEL, dtype=dtype)
    buf_a[a0:a0 + A.size] = A.ravel()
    buf_b = np.full(b0 + B.size + 3, SENTINEL, dtype=dtype)
    buf_b[b0:b0 + B.size] = B.ravel()
    size_c = shape_c[0] * shape_c[1]
    buf_c = np.full(c0 + size_c + 3, SENTINEL, dtype=dtype)
    buf_c[c0:c0 + size_c] = np.nan  # must be overwritten, not accumulated into
    GEMM_KERNELS[kind](buf_a, a0, buf_b, b0, buf_c, c0, m, n, k, blas)
    expected = GEMMS[kind][1](A64, B64)
    inner = {"nt": k, "tn": m, "nn": k}[kind]
    assert_close(buf_c[c0:c0 + size_c].reshape(shape_c), expected, dtype,
                 scale=np.sqrt(inner) * 4)
    assert np.all(buf_c[:c0] == SENTINEL) and np.all(buf_c[c0 + size_c:] == SENTINEL)
    np.testing.assert_array_equal(buf_a[a0:a0 + A.size], A.ravel())
    np.testing.assert_array_equal(buf_b[b0:b0 + B.size], B.ravel())


@SETTINGS
@given(kind=st.sampled_from(sorted(GEMMS)), m=st.integers(1, 7), n=st.integers(1, 7),
       k=st.integers(1, 7), offsets=st.tuples(*[st.integers(0, 4)] * 3), dtype=dtypes,
       seed=seeds, blas=st.sampled_from([None, 1]))
def test_gemm_small_loop_path(kind, m, n, k, offsets, dtype, seed, blas):
    """Below SMALL_GEMM both specializations run the loops."""
    assert m * n * k < klin.SMALL_GEMM
    run_gemm(kind, m, n, k, offsets, dtype, seed, blas)


# (m, n, k) with m * n * k >= SMALL_GEMM, including degenerate 1-wide shapes
BIG_SHAPES = [(16, 16, 16), (33, 17, 9), (1, 64, 64), (64, 1, 64), (64, 64, 1),
              (20, 30, 7), (128, 32, 1)]


@pytest.mark.parametrize("shape", BIG_SHAPES)
@pytest.mark.parametrize("kind", sorted(GEMMS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_blas_path(kind, shape, dtype):
    m, n, k = shape
    assert m * n * k >= klin.SMALL_GEMM
    run_gemm(kind, m, n, k, (3, 1, 2), dtype, hash(shape) % 1000, 1)
    run_gemm(kind, m, n, k, (0, 0, 0), dtype, 7, 1)


# (kind, m, n, k, blas) for the row-block products: what each one splits into
BLOCK_CASES = [
    ("nn", 100, 8, 4, 32 * 8 * 4),      # rows 32, 32, 32 by BLAS, the last 4 by loops
    ("nn", 130, 16, 16, 40 * 16 * 16),  # 40, 40, 40, 10 rows, all by BLAS
    ("nn", 100, 8, 4, 31 * 8 * 4),      # blocks under MIN_BLOCK_ROWS: one product
    ("nn", 100, 8, 4, 1),               # 1: one product
    ("nn", 100, 8, 4, None),            # None: loops
    ("tn", 100, 8, 4, 32 * 8 * 4),
    ("tn", 130, 16, 16, 40 * 16 * 16),
    ("tn", 100, 8, 4, 31 * 8 * 4),
    ("tn", 100, 8, 4, 1),
    ("tn", 100, 8, 4, None),
]


@pytest.mark.parametrize("kind, m, n, k, blas", BLOCK_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_row_block_products_match_the_twin(kind, m, n, k, blas, dtype):
    """gemm_nn_blocks and gemm_tn_blocks against NumPy, at offsets: C is
    overwritten (it starts NaN), nothing outside C or the scratch block
    changes, the operands are left alone."""
    rng = np.random.default_rng(m + n + k)
    shape_a, shape_b, shape_c = GEMMS[kind][0](m, n, k)
    A, A64 = rounded(rng.normal(size=shape_a), dtype)
    B, B64 = rounded(rng.normal(size=shape_b), dtype)
    buf_a = np.concatenate([np.full(3, SENTINEL), A.ravel()]).astype(dtype)
    buf_b = np.concatenate([np.full(1, SENTINEL), B.ravel()]).astype(dtype)
    size_c = shape_c[0] * shape_c[1]
    buf_c = np.full(2 + size_c + 3, SENTINEL, dtype=dtype)
    buf_c[2:2 + size_c] = np.nan
    if kind == "nn":
        klin.gemm_nn_blocks(buf_a, 3, buf_b, 1, buf_c, 2, m, n, k, blas)
    else:
        scratch = np.full(5 + n * k + 2, SENTINEL, dtype=dtype)
        klin.gemm_tn_blocks(buf_a, 3, buf_b, 1, buf_c, 2, m, n, k, scratch, 5, blas)
        assert np.all(scratch[:5] == SENTINEL) and np.all(scratch[5 + n * k:] == SENTINEL)
    inner = {"tn": m, "nn": k}[kind]
    assert_close(buf_c[2:2 + size_c].reshape(shape_c), GEMMS[kind][1](A64, B64), dtype,
                 scale=np.sqrt(inner) * 4)
    assert np.all(buf_c[:2] == SENTINEL) and np.all(buf_c[2 + size_c:] == SENTINEL)
    np.testing.assert_array_equal(buf_a[3:], A.ravel())
    np.testing.assert_array_equal(buf_b[1:], B.ravel())


def test_block_rows():
    """One block (m rows) unless the limit is above 1, the product above it,
    and blocks of at least MIN_BLOCK_ROWS rows fit under it."""
    rows = klin.MIN_BLOCK_ROWS
    assert klin.block_rows(1280, 128, 8, klin.SMALL_KERNEL_MNK) == 976
    assert klin.block_rows(1248, 128, 128, klin.SMALL_KERNEL_MNK) == 61
    assert klin.block_rows(1280, 128, 8, 1) == 1280
    assert klin.block_rows(1280, 128, 8, None) == 1280
    assert klin.block_rows(900, 128, 8, klin.SMALL_KERNEL_MNK) == 900      # under the limit
    assert klin.block_rows(1000, 100, 100, rows * 10_000) == rows
    assert klin.block_rows(1000, 100, 100, rows * 10_000 - 1) == 1000     # blocks too thin


@pytest.mark.parametrize("kind", sorted(GEMMS))
def test_gemm_large_without_blas_flag_runs_loops(kind):
    """blas=None promises loops at every size; they must still be right."""
    run_gemm(kind, 20, 30, 10, (1, 2, 3), np.float64, 3, None)


def test_blas_flag():
    assert klin.blas_flag(1, 4) is None
    assert klin.blas_flag(1, klin.SMALL_GEMM - 1) is None
    assert klin.blas_flag(1, klin.SMALL_GEMM) == 1
    assert klin.blas_flag(64, 64) == 1
    assert klin.blas_flag(63, 64) is None


# -- losses ------------------------------------------------------------------------------

def run_loss(loss, out, form, rows, k, dtype, seed, logit_scale=2.0, extra=2):
    rng = np.random.default_rng(seed)
    A, A64 = rounded(rng.normal(0.0, logit_scale, size=(rows, k)), dtype)
    H, _ = rounded(naive.activation(out, A64), dtype)
    labels, targets, y = make_targets(rng, loss, form, rows, k, dtype, extra=extra)
    n = rows * k
    # H, a gap, A, a gap, D: the order of the MLP workspace, with gaps
    h0 = 1
    a0 = h0 + n + 2
    d0 = a0 + n + 1
    ws = np.full(d0 + n + 2, SENTINEL, dtype=dtype)
    ws[h0:h0 + n] = H.ravel()
    ws[a0:a0 + n] = A.ravel()
    ws[d0:d0 + n] = np.nan
    before = ws.copy()
    loss_sum, correct = kloss.loss_and_delta(ws, a0, h0, d0, rows, k, labels, targets,
                                             LOSS[loss], ACT[out])
    assert_close(loss_sum, rows * naive.loss_value(loss, A64, y, out), dtype, scale=rows)
    assert correct == naive.n_correct(loss, A64, y)
    D = ws[d0:d0 + n].reshape(rows, k)
    assert_close(D, naive.loss_delta(loss, A64, y, out), dtype,
                 scale=(10 if dtype == np.float32 else 1) / rows)
    untouched = np.ones(ws.shape, dtype=bool)
    untouched[d0:d0 + n] = False
    np.testing.assert_array_equal(ws[untouched], before[untouched])
    return loss_sum


def test_loss_cases_cover_every_valid_pairing():
    """LOSS_CASES lists exactly the (loss, output) pairs the library accepts."""
    from fastbp.losses import COMPATIBLE_OUTPUTS, LOSSES
    assert {(l, o) for l, o, _ in LOSS_CASES} == \
        {(l, o) for l, outs in COMPATIBLE_OUTPUTS.items() for o in outs}
    assert {l: LOSSES[l] for l in LOSS} == LOSS  # the codes the twin assumes
    from fastbp.activations import OUTPUT_ACTIVATIONS
    assert all(ACT[a] == c for a, c in OUTPUT_ACTIVATIONS.items())


@SETTINGS
@given(case=st.sampled_from(LOSS_CASES), rows=st.integers(1, 5), k=st.integers(1, 5),
       dtype=dtypes, seed=seeds)
def test_loss_and_delta_matches_twin(case, rows, k, dtype, seed):
    loss, out, form = case
    run_loss(loss, out, form, rows, k, dtype, seed)


@pytest.mark.parametrize("case", LOSS_CASES, ids=["-".join(c) for c in LOSS_CASES])
@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_and_delta_every_case(case, dtype):
    """Every (loss, output, label form) at least once, whatever hypothesis draws."""
    loss, out, form = case
    run_loss(loss, out, form, 4, 3, dtype, 11)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropies_are_stable_for_huge_logits(dtype):
    """Computed from logits: finite and exact where probabilities would round to 0."""
    ws = np.zeros(12, dtype=dtype)
    ws[2:4] = [1000.0, -1000.0]  # A at 2, H (unused) at 0, D at 4
    lab = np.array([1], dtype=np.int64)
    loss_sum, _ = kloss.loss_and_delta(ws, 2, 0, 4, 1, 2, lab, empty_targets(dtype),
                                       LOSS["cross_entropy"], ACT["softmax"])
    assert_close(loss_sum, 2000.0, dtype)
    assert_close(ws[4:6], [1.0, -1.0], dtype)
    T = np.array([[0.0, 1.0]], dtype=dtype)
    loss_sum, _ = kloss.loss_and_delta(ws, 2, 0, 4, 1, 2, EMPTY_LABELS, T,
                                       LOSS["binary_cross_entropy"], ACT["sigmoid"])
    # softplus(1000) - 0 + softplus(-1000) - (-1000) = 1000 + 1000
    assert_close(loss_sum, 2000.0, dtype)
    assert_close(ws[4:6], [1.0, -1.0], dtype)


# -- optimizers --------------------------------------------------------------------------

OPTIMIZERS = {
    "sgd": ("sgd", 0.1, 0.0, False),
    "momentum": ("sgd", 0.05, 0.9, False),
    "nesterov": ("sgd", 0.05, 0.8, True),
    "adam": ("adam", 0.01, 0.9, 0.999, 1e-8),
    "adam-odd": ("adam", 0.003, 0.5, 0.9, 1e-3),
}


def opt_hyper_of(cfg):
    """[kind, lr, a, b, eps, t] as documented in fastbp.kernels.optim."""
    if cfg[0] == "sgd":
        _, lr, mu, nesterov = cfg
        return np.array([codes.SGD, lr, mu, 1.0 if nesterov else 0.0, 0.0, 0.0])
    _, lr, b1, b2, eps = cfg
    return np.array([codes.ADAM, lr, b1, b2, eps, 0.0])


def opt_state_of(cfg, n, dtype):
    slots = 2 if cfg[0] == "adam" else (1 if cfg[2] > 0 else 0)
    return np.zeros((slots, n), dtype=dtype)


def check_state(state, naive_state, cfg, dtype, scale):
    if cfg[0] == "adam":
        assert_close(state[0], naive_state["m"], dtype, scale=scale)
        assert_close(state[1], naive_state["v"], dtype, scale=scale ** 2)
    elif cfg[2] > 0:
        assert_close(state[0], naive_state["v"], dtype, scale=scale)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_apply_update_matches_twin_over_steps(name, dtype):
    cfg = OPTIMIZERS[name]
    rng = np.random.default_rng(5)
    n = 23
    params, p64 = rounded(rng.normal(size=n), dtype)
    state = opt_state_of(cfg, n, dtype)
    hyper = opt_hyper_of(cfg)
    nstate = {}
    for step in range(1, 7):
        g, g64 = rounded(rng.normal(size=n) * (1 + step), dtype)
        kopt.apply_update(params, g, state, hyper)
        p64 = naive.training_step(p64, g64, 0, 0.0, 0.0, cfg, nstate)
        assert hyper[kopt.T] == step
        assert params.dtype == np.dtype(dtype)
        assert_close(params, p64, dtype, factor=step)
        check_state(state, nstate, cfg, dtype, scale=10.0)
        np.testing.assert_array_equal(g, g64.astype(dtype))  # gradient not modified


def test_sgd_momentum_first_steps_by_hand():
    """v1 = g1, p1 = p0 - lr g1; v2 = mu g1 + g2, p2 = p1 - lr v2 (nesterov:
    p2 = p1 - lr (g2 + mu v2)), so the twin's convention is checked too."""
    for nesterov in (False, True):
        p = np.array([1.0])
        state = np.zeros((1, 1))
        hyper = opt_hyper_of(("sgd", 0.5, 0.9, nesterov))
        kopt.apply_update(p, np.array([2.0]), state, hyper)
        first = 1.0 - 0.5 * (2.0 + 0.9 * 2.0 if nesterov else 2.0)
        assert p[0] == pytest.approx(first, abs=1e-15)
        kopt.apply_update(p, np.array([1.0]), state, hyper)
        v2 = 0.9 * 2.0 + 1.0
        assert state[0, 0] == pytest.approx(v2, abs=1e-15)
        assert p[0] == pytest.approx(first - 0.5 * ((1.0 + 0.9 * v2) if nesterov else v2),
                                     abs=1e-15)


def test_adam_first_step_is_lr_times_sign():
    """With bias correction the first Adam step is lr * g / (|g| + eps)."""
    p = np.array([1.0, 1.0, 1.0])
    g = np.array([3.0, -0.2, 1e-3])
    hyper = opt_hyper_of(("adam", 0.1, 0.9, 0.999, 1e-8))
    kopt.apply_update(p, g, np.zeros((2, 3)), hyper)
    np.testing.assert_allclose(p, 1.0 - 0.1 * g / (np.abs(g) + 1e-8), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_weight_decay_matches_twin(dtype):
    rng = np.random.default_rng(1)
    n, nw, lam = 19, 13, 0.3
    params, p64 = rounded(rng.normal(size=n), dtype)
    grads, g64 = rounded(rng.normal(size=n), dtype)
    pen = kopt.add_weight_decay(params, grads, nw, lam)
    assert_close(pen, naive.weight_decay_penalty([p64[:nw]], lam), dtype)
    assert_close(grads[:nw], g64[:nw] + naive.weight_decay_gradient([p64[:nw]], lam)[0],
                 dtype)
    np.testing.assert_array_equal(grads[nw:], g64[nw:].astype(dtype))  # biases not decayed
    np.testing.assert_array_equal(params, p64.astype(dtype))


@pytest.mark.parametrize("clip", [0.01, 1.0, 3.0, 100.0])
@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_by_global_norm_matches_twin(clip, dtype):
    rng = np.random.default_rng(2)
    grads, g64 = rounded(rng.normal(size=17), dtype)
    sq = float(np.sum(g64 ** 2))
    kopt.clip_by_global_norm(grads, sq, clip)
    expected = naive.clip_global_norm([g64], clip)[0]
    assert_close(grads, expected, dtype)
    assert np.sqrt(np.sum(grads.astype(np.float64) ** 2)) <= clip * (1 + 2 * rtol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_squares_matches_twin(dtype):
    x, x64 = rounded(np.random.default_rng(3).normal(size=1001) * 100, dtype)
    assert_close(kopt.sum_squares(x), np.sum(x64 ** 2), dtype)
    assert kopt.sum_squares(x[:0]) == 0.0


def finish_case(name, lam, clip, dtype, seed=4):
    cfg = OPTIMIZERS[name]
    rng = np.random.default_rng(seed)
    n, nw = 15, 10
    params, p64 = rounded(rng.normal(size=n), dtype)
    grads, g64 = rounded(rng.normal(size=n), dtype)
    state = opt_state_of(cfg, n, dtype)
    if state.shape[0]:
        state[...] = np.abs(rng.normal(size=state.shape)).astype(dtype)
    hyper = opt_hyper_of(cfg)
    hyper[kopt.T] = 2.0
    train_hyper = np.array([LOSS["mse"], lam, clip])
    return cfg, params, p64, grads, g64, state, hyper, train_hyper, nw


@pytest.mark.parametrize("clip", [0.0, 0.5, 1e3])
@pytest.mark.parametrize("lam", [0.0, 0.2])
@pytest.mark.parametrize("name", ["sgd", "nesterov", "adam"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_finish_step_matches_twin(name, lam, clip, dtype):
    cfg, params, p64, grads, g64, state, hyper, train_hyper, nw = finish_case(
        name, lam, clip, dtype)
    nstate = {"t": 2}
    if cfg[0] == "adam":
        nstate["m"], nstate["v"] = state[0].astype(np.float64), state[1].astype(np.float64)
    elif state.shape[0]:
        nstate["v"] = state[0].astype(np.float64)
    objective, status = kopt.finish_step(params, grads, state, hyper, train_hyper, nw, 0.75)
    assert status == codes.OK
    assert_close(objective, 0.75 + naive.weight_decay_penalty([p64[:nw]], lam), dtype)
    expected = naive.training_step(p64, g64, nw, lam, clip, cfg, nstate)
    assert_close(params, expected, dtype)
    check_state(state, nstate, cfg, dtype, scale=10.0)
    assert hyper[kopt.T] == 3


@pytest.mark.parametrize("bad", ["nan_loss", "inf_loss", "nan_grad", "inf_grad",
                                 "nan_grad_bias"])
@pytest.mark.parametrize("lam", [0.0, 0.2])
@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_finish_step_nonfinite_leaves_everything_untouched(bad, lam, name, dtype):
    cfg, params, p64, grads, g64, state, hyper, train_hyper, nw = finish_case(
        name, lam, 1.0, dtype)
    loss = 0.5
    if bad == "nan_loss":
        loss = np.nan
    elif bad == "inf_loss":
        loss = np.inf
    elif bad == "nan_grad":
        grads[3] = np.nan
    elif bad == "inf_grad":
        grads[0] = -np.inf
    else:
        grads[-1] = np.nan  # a bias entry: not touched by weight decay
    p_before, s_before, h_before = params.copy(), state.copy(), hyper.copy()
    objective, status = kopt.finish_step(params, grads, state, hyper, train_hyper, nw, loss)
    expected = codes.NONFINITE_LOSS if bad.endswith("loss") else codes.NONFINITE_GRADIENT
    assert status == expected
    assert codes.NONFINITE_LOSS != codes.NONFINITE_GRADIENT != codes.OK
    np.testing.assert_array_equal(params, p_before)
    np.testing.assert_array_equal(state, s_before)
    np.testing.assert_array_equal(hyper, h_before)  # t not advanced either
    if bad.endswith("loss"):
        assert not np.isfinite(objective)


HUGE = {np.dtype(np.float32): 1e38, np.dtype(np.float64): 1e308}


def overflow_case(name, dtype, overflow):
    """Parameters, gradients, state and hyper-parameters whose next update
    does (overflow=True) or does not overflow ``dtype``."""
    cfg = OPTIMIZERS[name]
    big = HUGE[np.dtype(dtype)]
    rng = np.random.default_rng(6)
    n = 9
    params, p64 = rounded(rng.normal(size=n), dtype)
    grads, g64 = rounded(rng.normal(size=n), dtype)
    state = opt_state_of(cfg, n, dtype)
    hyper = opt_hyper_of(cfg)
    if overflow:
        # a parameter near the dtype's maximum pushed further out by its step
        params[4] = -0.9 * np.finfo(dtype).max
        p64[4] = params[4]
        grads[4] = g64[4] = 4.0
        hyper[kopt.LR] = big  # finite, and the step of size >= lr overflows
    nstate = {"t": 0}
    if cfg[0] == "adam":
        nstate["m"], nstate["v"] = np.zeros(n), np.zeros(n)
    elif cfg[2] > 0:
        nstate["v"] = np.zeros(n)
    ncfg = (cfg[0], hyper[kopt.LR]) + cfg[2:]
    return cfg, ncfg, params, p64, grads, g64, state, nstate, hyper


@pytest.mark.parametrize("overflow", [False, True])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_update_is_finite_matches_twin(name, dtype, overflow):
    cfg, ncfg, params, p64, grads, g64, state, nstate, hyper = overflow_case(
        name, dtype, overflow)
    expected = naive.update_stays_finite(p64, g64, ncfg, nstate, dtype)
    assert expected == (not overflow)  # the case is what it claims to be
    before = (params.copy(), grads.copy(), state.copy(), hyper.copy())
    assert bool(kopt.update_is_finite(params, grads, state, hyper)) == expected
    for a, b in zip((params, grads, state, hyper), before):
        np.testing.assert_array_equal(a, b)  # computes, never writes


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_finish_step_overflowing_update_leaves_everything_untouched(name, dtype):
    cfg, ncfg, params, p64, grads, g64, state, nstate, hyper = overflow_case(
        name, dtype, True)
    p_before, s_before, h_before = params.copy(), state.copy(), hyper.copy()
    objective, status = kopt.finish_step(params, grads, state, hyper,
                                         np.array([LOSS["mse"], 0.0, 0.0]), 5, 0.25)
    assert status == codes.NONFINITE_UPDATE
    assert len({codes.OK, codes.NONFINITE_LOSS, codes.NONFINITE_GRADIENT,
                codes.NONFINITE_UPDATE}) == 4
    assert objective == pytest.approx(0.25)
    np.testing.assert_array_equal(params, p_before)
    np.testing.assert_array_equal(state, s_before)
    np.testing.assert_array_equal(hyper, h_before)


def boundary_case(name, big):
    """(optimizer config, p0, g0, starting velocity, update stays finite?) for
    an update of the first entry that lands just inside or just outside the
    dtype's range (``big`` is its maximum); no intermediate product overflows."""
    inside = name.endswith("inside")
    if name.startswith("sgd"):
        lr = (0.45 if inside else 0.55) * big / 4
        return ("sgd", lr, 0.0, False), -0.5 * big, 4.0, 0.0, inside
    if name.startswith("momentum"):
        # v = mu v + g with the velocity near the maximum, a small learning rate
        return ("sgd", 1e-3, 0.9, False), 0.0, (0.05 if inside else 0.3) * big, 0.9 * big, inside
    # beta1 = 0 makes the first Adam step lr * g / |g| = lr exactly (with the
    # bias correction of update 2 instead of 1 it would be 1.22 lr)
    lr = (0.45 if inside else 0.55) * big
    return ("adam", lr, 0.0, 0.5, 1e-8), -0.5 * big, 1.0, 0.0, inside


@pytest.mark.parametrize("name", ["sgd-inside", "sgd-outside", "momentum-inside",
                                  "momentum-outside", "adam-inside", "adam-outside"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_update_is_finite_near_the_boundary(name, dtype):
    cfg, p0, g0, v0, finite = boundary_case(name, float(np.finfo(dtype).max))
    params = np.array([p0, 1.0, -1.0], dtype=dtype)
    grads = np.array([g0, 0.5, 0.25], dtype=dtype)
    state = opt_state_of(cfg, 3, dtype)
    nstate = {"t": 0}
    if cfg[0] == "adam":
        nstate["m"], nstate["v"] = np.zeros(3), np.zeros(3)
    elif cfg[2] > 0:
        state[0, 0] = v0
        nstate["v"] = state[0].astype(np.float64)
    assert naive.update_stays_finite(params, grads, cfg, nstate, dtype) is finite
    assert bool(kopt.update_is_finite(params, grads, state, opt_hyper_of(cfg))) is finite


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_update_columns_is_apply_update_on_the_range(name, dtype):
    """update_columns over ranges that cover the set, t held, gives bit for
    bit apply_update's parameters and state; a single range leaves the other
    columns untouched; neither changes t."""
    cfg = OPTIMIZERS[name]
    rng = np.random.default_rng(8)
    n = 37
    params = rng.normal(size=n).astype(dtype)
    state = opt_state_of(cfg, n, dtype)
    hyper = opt_hyper_of(cfg)
    for _ in range(2):    # non-zero state and t
        kopt.apply_update(params, rng.normal(size=n).astype(dtype), state, hyper)
    for step in range(3):
        grads = (rng.normal(size=n) * (1 + step)).astype(dtype)
        whole, whole_state, whole_hyper = params.copy(), state.copy(), hyper.copy()
        kopt.apply_update(whole, grads, whole_state, whole_hyper)
        part, part_state = params.copy(), state.copy()
        before = hyper.copy()
        kopt.update_columns(part, grads, part_state, hyper, 7, 12)
        np.testing.assert_array_equal(hyper, before)
        np.testing.assert_array_equal(part[7:19], whole[7:19])
        np.testing.assert_array_equal(part_state[:, 7:19], whole_state[:, 7:19])
        for cols in (slice(0, 7), slice(19, n)):
            np.testing.assert_array_equal(part[cols], params[cols])
            np.testing.assert_array_equal(part_state[:, cols], state[:, cols])
        for start, stop in ((0, 7), (19, 30), (30, n)):
            assert kopt.update_columns(part, grads, part_state, hyper, start, stop - start)
        np.testing.assert_array_equal(hyper, before)
        np.testing.assert_array_equal(part, whole)
        np.testing.assert_array_equal(part_state, whole_state)
        params, state, hyper = part, part_state, whole_hyper


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_update_columns_reports_a_nonfinite_update(name, dtype):
    """False for a range with an overflowing update (the overflow case's
    entry 4) or a NaN gradient, True for a range without."""
    _, _, params, _, grads, _, state, _, hyper = overflow_case(name, dtype, False)
    grads[6] = np.nan
    assert kopt.update_columns(params, grads, state, hyper, 0, 6)
    assert kopt.update_columns(params, grads, state, hyper, 7, 2)
    assert not kopt.update_columns(params, grads, state, hyper, 6, 1)
    _, _, params, _, grads, _, state, _, hyper = overflow_case(name, dtype, True)
    assert not kopt.update_columns(params, grads, state, hyper, 2, 3)
    assert not (np.isfinite(params[4]) and np.isfinite(state[:, 4]).all())
    assert hyper[kopt.T] == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_update_is_finite_sees_adam_state_overflow(dtype):
    """A gradient whose square overflows v while the step itself stays finite
    (m / sqrt(inf) = 0): the second moment would become inf."""
    g = np.array([1e30 if dtype == np.float32 else 1e160, 1.0], dtype=dtype)
    params = np.array([0.5, 0.5], dtype=dtype)
    cfg = OPTIMIZERS["adam"]
    nstate = {"t": 0, "m": np.zeros(2), "v": np.zeros(2)}
    assert naive.update_stays_finite(params, g, cfg, nstate, dtype) is False
    state = opt_state_of(cfg, 2, dtype)
    assert not kopt.update_is_finite(params, g, state, opt_hyper_of(cfg))




def test_sum_squares_float32_large_entries():
    x = np.array([2e19, 3e19, 1.0], dtype=np.float32)
    assert kopt.sum_squares(x) == pytest.approx(np.sum(x.astype(np.float64) ** 2), rel=1e-6)


def test_finish_step_clips_a_large_finite_float32_gradient():
    params = np.array([1.0, 2.0], dtype=np.float32)
    grads = np.array([2e19, -1e19], dtype=np.float32)
    g64 = grads.astype(np.float64)
    cfg = OPTIMIZERS["sgd"]
    _, status = kopt.finish_step(params, grads, opt_state_of(cfg, 2, np.float32),
                                 opt_hyper_of(cfg), np.array([LOSS["mse"], 0.0, 1.0]), 1, 0.5)
    assert status == codes.OK
    expected = naive.training_step([1.0, 2.0], g64, 1, 0.0, 1.0, cfg, {})
    assert_close(params, expected, np.float32)


def test_public_float32_step_with_large_finite_gradient_is_clipped():
    """The same through the API: y = 1e20 gives a finite loss (1e40, summed in
    float64) and finite float32 gradients (-2e20); with clip_norm the float64
    model takes a clipped step, the float32 one raises DivergenceError."""
    model = fb.MLP([1, 1], output="identity", dtype=np.float32, seed=0)
    trainer = fb.BackpropTrainer(model, loss="mse", optimizer=fb.SGD(0.1), clip_norm=1.0)
    X = np.ones((1, 1), np.float32)
    y = np.full((1, 1), 1e20, np.float32)
    grads = trainer.gradients(X, y)
    assert all(np.all(np.isfinite(g)) for g in grads)
    before = model.flat_params.astype(np.float64)
    trainer.step(X, y)
    g = np.concatenate([g.ravel() for g in grads]).astype(np.float64)
    assert_close(model.flat_params, before - 0.1 * g / np.linalg.norm(g), np.float32)




@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_update_is_finite_when_only_the_product_overflows(momentum):
    """p = 1.5e308, g = 2, lr = 1.5e308: lr*g overflows although p - lr*g
    (exactly -1.5e308) would not; the update as applied is -inf."""
    p = np.array([1.5e308])
    g = np.array([2.0])
    cfg = ("sgd", 1.5e308, momentum, False)
    nstate = {"v": np.zeros(1)} if momentum else {}
    assert naive.update_stays_finite(p, g, cfg, nstate, np.float64) is False
    state = opt_state_of(cfg, 1, np.float64)
    assert not kopt.update_is_finite(p, g, state, opt_hyper_of(cfg))


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_finish_step_never_writes_a_nonfinite_parameter(momentum):
    p = np.array([1.5e308, 0.5])
    g = np.array([2.0, 0.1])
    cfg = ("sgd", 1.5e308, momentum, False)
    state = opt_state_of(cfg, 2, np.float64)
    _, status = kopt.finish_step(p, g, state, opt_hyper_of(cfg),
                                 np.array([LOSS["mse"], 0.0, 0.0]), 1, 0.5)
    assert status == codes.OK and np.all(np.isfinite(p)) or \
        status == codes.NONFINITE_UPDATE and p[0] == 1.5e308


# -- the MLP kernels ---------------------------------------------------------------------

def split_ws(ws, sizes, rows):
    """(H_1..H_L, A_L) read from the workspace layout documented in kernels/mlp.py."""
    Hs, off = [], 0
    for n in sizes[1:]:
        Hs.append(ws[off:off + rows * n].reshape(rows, n))
        off += rows * n
    return Hs, ws[off:off + rows * sizes[-1]].reshape(rows, sizes[-1])


def assert_grads_close(flat, expected_layers, sizes, dtype):
    got = naive.unflatten(flat, sizes)
    for (gW, gb), (eW, eb) in zip(got, expected_layers):
        scale = max(1.0, np.abs(eW).max(), np.abs(eb).max())
        factor = 10 if dtype == np.float32 else 1
        assert_close(gW, eW, dtype, scale=scale * factor)
        assert_close(gb, eb, dtype, scale=scale * factor)


@SETTINGS
@given(net=networks(), rows=st.integers(1, 4), extra_capacity=st.integers(0, 3),
       dtype=dtypes, seed=seeds, blas=st.sampled_from([None, 1]))
def test_forward_matches_twin(net, rows, extra_capacity, dtype, seed, blas):
    """blas=1 on small layers: the slice-based elementwise path with loop products."""
    sizes, acts = net
    rng = np.random.default_rng(seed)
    params, p64 = random_params(rng, sizes, dtype)
    X, X64 = rounded(rng.normal(size=(rows, sizes[0])), dtype)
    ws = np.full(mlp_workspace_size(sizes, rows + extra_capacity), np.nan, dtype=dtype)
    kmlp.forward(X.ravel(), rows, params, layout_of(sizes, acts), ws, blas)
    As, Hs = naive.mlp_forward(naive.unflatten(p64, sizes), acts, X64)
    got_H, got_A = split_ws(ws, sizes, rows)
    for l, (h, e) in enumerate(zip(got_H, Hs)):
        assert_close(h, e, dtype, scale=max(1.0, np.abs(e).max()) * 4, factor=l + 1)
    assert_close(got_A, As[-1], dtype, scale=max(1.0, np.abs(As[-1]).max()) * 4,
                 factor=len(sizes))
    np.testing.assert_array_equal(params, p64.astype(dtype))


@pytest.mark.parametrize("sizes", [[30, 40, 20], [30, 40, 3], [70, 8, 64, 5]])
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_and_gradients_blas_sizes(sizes, dtype):
    """Layers large enough for the BLAS path (mixed with small ones)."""
    rows = 8
    acts = ["tanh"] * (len(sizes) - 2) + ["softmax"]
    rng = np.random.default_rng(9)
    params, p64 = random_params(rng, sizes, dtype, scale=0.3)
    X, X64 = rounded(rng.normal(size=(rows, sizes[0])), dtype)
    labels = rng.integers(0, sizes[-1], size=rows).astype(np.int64)
    layout = layout_of(sizes, acts)
    ws = np.empty(mlp_workspace_size(sizes, rows), dtype=dtype)
    grads = np.full(params.shape, np.nan, dtype=dtype)
    loss_sum, correct = kmlp.loss_gradients(X.ravel(), labels, empty_targets(dtype), rows,
                                            params, grads, ws, layout,
                                            LOSS["cross_entropy"], 1)
    value, nc, expected = naive.mlp_loss_gradients(naive.unflatten(p64, sizes), acts, X64,
                                                   labels, "cross_entropy")
    assert_close(loss_sum, rows * value, dtype, scale=rows)
    assert correct == nc
    assert_grads_close(grads, expected, sizes, dtype)
    ws2 = np.empty_like(ws)
    kmlp.forward(X.ravel(), rows, params, layout, ws2, 1)
    _, Hs = naive.mlp_forward(naive.unflatten(p64, sizes), acts, X64)
    assert_close(split_ws(ws2, sizes, rows)[0][-1], Hs[-1], dtype, scale=1.0)


@SETTINGS
@given(net=networks(), rows=st.integers(1, 4), dtype=dtypes, seed=seeds,
       blas=st.sampled_from([None, 1]))
def test_backward_matches_twin(net, rows, dtype, seed, blas):
    """backward alone: any output delta written at the documented offset."""
    sizes, acts = net
    rng = np.random.default_rng(seed)
    params, p64 = random_params(rng, sizes, dtype)
    X, X64 = rounded(rng.normal(size=(rows, sizes[0])), dtype)
    layout = layout_of(sizes, acts)
    ws = np.full(mlp_workspace_size(sizes, rows), np.nan, dtype=dtype)
    kmlp.forward(X.ravel(), rows, params, layout, ws, blas)
    dA, dA64 = rounded(rng.normal(size=(rows, sizes[-1])), dtype)
    d_off = rows * (sum(sizes[1:]) + sizes[-1])
    ws[d_off:d_off + dA.size] = dA.ravel()
    grads = np.full(params.shape, np.nan, dtype=dtype)
    kmlp.backward(X.ravel(), rows, params, grads, layout, ws, blas)
    layers = naive.unflatten(p64, sizes)
    As, Hs = naive.mlp_forward(layers, acts, X64)
    expected = naive.mlp_backward(layers, acts, X64, As, Hs, dA64)
    assert_grads_close(grads, expected, sizes, dtype)


@st.composite
def loss_problems(draw, max_depth=3):
    loss, out, form = draw(st.sampled_from(LOSS_CASES))
    sizes, acts = draw(networks(max_depth=max_depth, outputs=(out,)))
    return sizes, acts, loss, form


@SETTINGS
@given(problem=loss_problems(), rows=st.integers(1, 4), dtype=dtypes, seed=seeds,
       blas=st.sampled_from([None, 1]))
def test_loss_gradients_matches_twin(problem, rows, dtype, seed, blas):
    sizes, acts, loss, form = problem
    rng = np.random.default_rng(seed)
    params, p64 = random_params(rng, sizes, dtype)
    X, X64 = rounded(rng.normal(size=(rows, sizes[0])), dtype)
    labels, targets, y = make_targets(rng, loss, form, rows, sizes[-1], dtype, extra=0)
    ws = np.full(mlp_workspace_size(sizes, rows), np.nan, dtype=dtype)
    grads = np.full(params.shape, np.nan, dtype=dtype)  # must be overwritten
    loss_sum, correct = kmlp.loss_gradients(X.ravel(), labels, targets, rows, params, grads,
                                            ws, layout_of(sizes, acts), LOSS[loss], blas)
    value, nc, expected = naive.mlp_loss_gradients(naive.unflatten(p64, sizes), acts, X64, y,
                                                   loss)
    assert_close(loss_sum, rows * value, dtype, scale=rows * 10)
    assert correct == nc
    assert_grads_close(grads, expected, sizes, dtype)
    np.testing.assert_array_equal(params, p64.astype(dtype))


@SETTINGS
@given(rows=st.integers(1, 5), cols=st.integers(1, 6), z0=st.integers(0, 3),
       b0=st.integers(0, 3), dtype=dtypes, seed=seeds)
def test_add_bias_and_bias_gradient_match_twin(rows, cols, z0, b0, dtype, seed):
    rng = np.random.default_rng(seed)
    Z, Z64 = rounded(rng.normal(size=(rows, cols)), dtype)
    b, b64 = rounded(rng.normal(size=cols), dtype)
    n = rows * cols
    buf = np.full(z0 + n + 2, SENTINEL, dtype=dtype)
    buf[z0:z0 + n] = Z.ravel()
    params = np.full(b0 + cols + 2, SENTINEL, dtype=dtype)
    params[b0:b0 + cols] = b
    kmlp.add_bias(buf, z0, params, b0, rows, cols)
    assert_close(buf[z0:z0 + n].reshape(rows, cols), Z64 + b64, dtype, scale=4)
    assert np.all(buf[:z0] == SENTINEL) and np.all(buf[z0 + n:] == SENTINEL)
    # bias gradient: column sums of a delta block, overwriting the output
    buf[z0:z0 + n] = Z.ravel()
    grads = np.full(b0 + cols + 2, np.nan, dtype=dtype)
    kmlp.bias_gradient(buf, z0, grads, b0, rows, cols)
    assert_close(grads[b0:b0 + cols], Z64.sum(axis=0), dtype, scale=rows)
    assert np.all(np.isnan(grads[:b0])) and np.all(np.isnan(grads[b0 + cols:]))


def test_n_weights_and_output_offsets():
    sizes, acts = [3, 5, 4, 2], ["tanh", "relu", "identity"]
    layout = layout_of(sizes, acts)
    assert kmlp.n_weights(layout) == 3 * 5 + 5 * 4 + 4 * 2
    rows = 7
    h, a, d = kmlp.output_offsets(layout, rows)
    assert (h, a, d) == (rows * (5 + 4), rows * (5 + 4 + 2), rows * (5 + 4 + 2 + 2))
    assert mlp_workspace_size(sizes, rows) == rows * (5 + 4 + 2 + 2 + 2 * 5)


@st.composite
def train_configs(draw):
    name = draw(st.sampled_from(sorted(OPTIMIZERS)))
    lam = draw(st.sampled_from([0.0, 0.05]))
    clip = draw(st.sampled_from([0.0, 0.3, 100.0]))
    return name, lam, clip


@SETTINGS
@given(problem=loss_problems(max_depth=2), config=train_configs(), rows=st.integers(1, 4),
       dtype=dtypes, seed=seeds, blas=st.sampled_from([None, 1]))
def test_train_step_matches_twin(problem, config, rows, dtype, seed, blas):
    sizes, acts, loss, form = problem
    name, lam, clip = config
    # a softmax over one class is constant: its exact gradient is zero, and
    # Adam's m / sqrt(v) turns the rounding noise left in its place (float32
    # kernel, float64 twin) into steps of size lr with unrelated signs
    assume(not (sizes[-1] == 1 and acts[-1] == "softmax" and name.startswith("adam")))
    cfg = OPTIMIZERS[name]
    rng = np.random.default_rng(seed)
    params, p64 = random_params(rng, sizes, dtype)
    layout = layout_of(sizes, acts)
    nw = n_weights_of(sizes)
    state = opt_state_of(cfg, params.size, dtype)
    hyper = opt_hyper_of(cfg)
    train_hyper = np.array([LOSS[loss], lam, clip])
    grads = np.empty_like(params)
    ws = np.empty(mlp_workspace_size(sizes, rows), dtype=dtype)
    nstate = {}
    for step in range(1, 4):
        X, X64 = rounded(rng.normal(size=(rows, sizes[0])), dtype)
        labels, targets, y = make_targets(rng, loss, form, rows, sizes[-1], dtype)
        layers = naive.unflatten(p64, sizes)
        value, nc, g = naive.mlp_loss_gradients(layers, acts, X64, y, loss)
        objective, correct, status = kmlp.train_step(X.ravel(), labels, targets, rows, params,
                                                     grads, state, hyper, train_hyper, ws,
                                                     layout, blas)
        assert status == codes.OK
        expected_obj = value + naive.weight_decay_penalty([W for W, _ in layers], lam)
        assert_close(objective, expected_obj, dtype, scale=10, factor=step)
        assert correct == nc
        p64 = naive.training_step(p64, naive.flatten(g), nw, lam, clip, cfg, nstate)
        assert_close(params, p64, dtype, scale=10, factor=10 * step)
        assert hyper[kopt.T] == step


# -- whole epochs ------------------------------------------------------------------------

def epoch_problem(dtype, form, n=12, sizes=(3, 4, 3), seed=0, opt="momentum", lam=0.01,
                  clip=5.0):
    rng = np.random.default_rng(seed)
    sizes = list(sizes)
    acts = ["tanh"] * (len(sizes) - 2) + ["softmax"]
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    loss = "cross_entropy" if form != "mse" else "mse"
    labels, targets, _ = make_targets(rng, loss, "rows" if form == "mse" else form, n,
                                      sizes[-1], dtype)
    params = rng.normal(0.0, 0.5, size=n_params_of(sizes)).astype(dtype)
    cfg = OPTIMIZERS[opt]
    return dict(X=X, labels=labels, targets=targets, params=params, sizes=sizes,
                layout=layout_of(sizes, acts), cfg=cfg,
                train_hyper=np.array([LOSS[loss], lam, clip]), dtype=dtype)


def fresh_state(p):
    return (p["params"].copy(), opt_state_of(p["cfg"], p["params"].size, p["dtype"]),
            opt_hyper_of(p["cfg"]))


def run_epochs(p, order, n_epochs, shuffle, seed, batch_size, blas=None, first_epoch=0,
               carry=None):
    """One train_epochs call from fresh parameters/state, or from ``carry``
    (params, state, hyper), which are then updated in place."""
    params, state, hyper = fresh_state(p) if carry is None else carry
    dtype, sizes = p["dtype"], p["sizes"]
    use_labels = p["labels"].shape[0] > 0
    lb = np.empty(batch_size if use_labels else 0, dtype=np.int64)
    tb = np.empty((0, 0) if use_labels else (batch_size, sizes[-1]), dtype=dtype)
    stats = np.zeros((n_epochs, 4))
    # keywords: a reordered bundle must fail loudly, not misalign
    args = kmlp.BackpropArgs(
        params=params, grads=np.empty_like(params), state=state, opt_hyper=hyper,
        train_hyper=p["train_hyper"],
        ws=np.empty(mlp_workspace_size(sizes, batch_size), dtype=dtype), layout=p["layout"],
        blas=blas)
    data = kepochs.EpochData(X=p["X"], labels=p["labels"], targets=p["targets"], order=order,
                             xb=np.empty(batch_size * sizes[0], dtype=dtype), lb=lb, tb=tb)
    plan = kepochs.EpochPlan(n_epochs=n_epochs, shuffle=shuffle, seed=np.uint64(seed),
                             first_epoch=first_epoch, batch_size=batch_size, passes=1)
    status, done = kmlp.train_epochs(args, data, plan, stats)
    assert np.isnan(stats[:min(done + 1, n_epochs), 3]).all()   # no second statistic
    stats = stats[:, :3]
    return params, state, hyper, stats, status, done


def run_steps(p, orders, batch_size, stop_on_failure=False, blas=None):
    """Sequential train_step calls over the batches of each epoch's order."""
    params, state, hyper = fresh_state(p)
    dtype, sizes = p["dtype"], p["sizes"]
    n = p["X"].shape[0]
    use_labels = p["labels"].shape[0] > 0
    grads = np.empty_like(params)
    ws = np.empty(mlp_workspace_size(sizes, batch_size), dtype=dtype)
    stats = []
    for order in orders:
        obj_acc = correct = 0.0
        steps = 0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            xb = np.ascontiguousarray(p["X"][idx]).ravel()
            lb = p["labels"][idx] if use_labels else p["labels"]
            tb = p["targets"] if use_labels else np.ascontiguousarray(p["targets"][idx])
            obj, c, status = kmlp.train_step(xb, lb, tb, len(idx), params, grads, state,
                                             hyper, p["train_hyper"], ws, p["layout"], blas)
            if status != codes.OK:
                assert stop_on_failure
                return params, state, hyper, stats, status
            obj_acc += obj * len(idx)
            correct += c
            steps += 1
        stats.append((obj_acc / n, correct, steps))
    return params, state, hyper, np.array(stats), codes.OK


def assert_same_run(a, b, dtype):
    r = 1e-13 if dtype == np.float64 else 1e-6
    for x, y in zip(a[:3], b[:3]):
        np.testing.assert_allclose(x, y, rtol=r, atol=r)


@pytest.mark.parametrize("batch_size", [1, 4, 5, 12])
@pytest.mark.parametrize("form", ["labels", "rows", "mse"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_train_epochs_equals_sequential_steps(dtype, form, batch_size):
    """shuffle=False: the fused epoch kernel is exactly train_step over the
    batches of ``order`` (a fixed, non-identity permutation here); batch 5
    leaves a partial last batch of 2."""
    p = epoch_problem(dtype, form)
    n = p["X"].shape[0]
    order = np.random.default_rng(1).permutation(n).astype(np.int64)
    order_in = order.copy()
    params, state, hyper, stats, status, done = run_epochs(p, order, 3, False, 0, batch_size)
    assert (status, done) == (codes.OK, 3)
    np.testing.assert_array_equal(order, order_in)  # not shuffled
    ref = run_steps(p, [order_in] * 3, batch_size)
    assert_same_run((params, state, hyper), ref[:3], dtype)
    steps = -(-n // batch_size)
    assert hyper[kopt.T] == 3 * steps
    np.testing.assert_array_equal(stats[:, 2], steps)
    np.testing.assert_allclose(stats, ref[3], rtol=1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("form", ["labels", "rows"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_train_epochs_equals_sequential_steps_blas_sizes(dtype, form):
    """The same with layers large enough for BLAS (batch 8 of 20-64-10) and a
    partial last batch of 4 (loops again)."""
    p = epoch_problem(dtype, form, n=20, sizes=(20, 64, 10), opt="adam")
    order = np.arange(20, dtype=np.int64)
    run = run_epochs(p, order, 2, False, 0, 8, blas=1)
    assert run[4:] == (codes.OK, 2)
    ref = run_steps(p, [order] * 2, 8, blas=1)
    assert_same_run(run[:3], ref[:3], dtype)
    np.testing.assert_allclose(run[3], ref[3], rtol=1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_train_epochs_first_epoch_matches_twin(dtype):
    """Independent of train_step: one full-batch epoch is one naive step."""
    p = epoch_problem(dtype, "labels", opt="nesterov", lam=0.02, clip=0.0)
    n = p["X"].shape[0]
    params, *_ , stats, status, done = run_epochs(p, np.arange(n), 1, False, 0, n)
    layers = naive.unflatten(p["params"], p["sizes"])
    acts = ["tanh", "softmax"]
    value, nc, g = naive.mlp_loss_gradients(layers, acts, p["X"].astype(np.float64),
                                            p["labels"], "cross_entropy")
    expected = naive.training_step(p["params"], naive.flatten(g), n_weights_of(p["sizes"]),
                                   0.02, 0.0, p["cfg"], {})
    assert_close(params, expected, dtype, scale=10)
    pen = naive.weight_decay_penalty([W for W, _ in layers], 0.02)
    assert_close(stats[0], [value + pen, nc, 1], dtype, scale=10)


@pytest.mark.parametrize("form", ["labels", "rows"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_train_epochs_shuffle_is_replayable_and_deterministic(dtype, form):
    p = epoch_problem(dtype, form, n=11)
    n = p["X"].shape[0]
    order = np.arange(n, dtype=np.int64)
    run = run_epochs(p, order, 1, True, 42, 3)
    assert sorted(order) == list(range(n))
    assert not np.array_equal(order, np.arange(n))
    # after one epoch ``order`` holds the permutation it used
    ref = run_steps(p, [order.copy()], 3)
    assert_same_run(run[:3], ref[:3], dtype)
    order2 = np.arange(n, dtype=np.int64)
    run2 = run_epochs(p, order2, 1, True, 42, 3)
    np.testing.assert_array_equal(order2, order)
    for a, b in zip(run[:4], run2[:4]):
        np.testing.assert_array_equal(a, b)
    order3 = np.arange(n, dtype=np.int64)
    run_epochs(p, order3, 1, True, 43, 3)
    assert not np.array_equal(order3, order)


def epoch_orders(n, seed, n_epochs, first_epoch=0):
    """The order of each epoch of a shuffled run, from the documented rule:
    epoch e shuffles the previous order in place from epoch_seed(seed, e)."""
    order = np.arange(n, dtype=np.int64)
    orders = []
    for e in range(first_epoch, first_epoch + n_epochs):
        kepochs.shuffle_in_place(order, np.uint64(kepochs.epoch_seed(np.uint64(seed), e)))
        orders.append(order.copy())
    return orders


@pytest.mark.parametrize("dtype", DTYPES)
def test_train_epochs_shuffled_epochs_equal_sequential_steps(dtype):
    p = epoch_problem(dtype, "rows", n=10, opt="adam")
    order = np.arange(10, dtype=np.int64)
    run = run_epochs(p, order, 4, True, 2024, 4)
    orders = epoch_orders(10, 2024, 4)
    np.testing.assert_array_equal(order, orders[-1])
    # every epoch has its own order
    assert len({tuple(o) for o in orders}) == 4
    ref = run_steps(p, orders, 4)
    assert_same_run(run[:3], ref[:3], dtype)
    np.testing.assert_allclose(run[3], ref[3], rtol=1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_train_epochs_split_into_calls_equals_one_call(dtype):
    """first_epoch: epochs 0..4 in one call == epoch 0, then epochs 1..4."""
    p = epoch_problem(dtype, "labels", n=9, opt="momentum")
    order1 = np.arange(9, dtype=np.int64)
    one = run_epochs(p, order1, 5, True, 77, 2)
    order2 = np.arange(9, dtype=np.int64)
    first = run_epochs(p, order2, 1, True, 77, 2)
    second = run_epochs(p, order2, 4, True, 77, 2, first_epoch=1, carry=first[:3])
    np.testing.assert_array_equal(order1, order2)
    for a, b in zip(one[:3], second[:3]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(one[3], np.vstack([first[3], second[3]]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_train_epochs_stops_at_divergence_like_steps(dtype):
    """A diverging run stops at the first non-finite step with the parameters
    from before it, as the sequential steps do."""
    p = epoch_problem(dtype, "mse", n=8, opt="sgd", lam=0.0, clip=0.0)
    p["cfg"] = ("sgd", 1e3, 0.0, False)
    p["layout"] = layout_of(p["sizes"], ["identity", "identity"])
    p["targets"] = (p["targets"] * 100).astype(dtype)
    order = np.arange(8, dtype=np.int64)
    params, state, hyper, stats, status, done = run_epochs(p, order, 40, False, 0, 4)
    assert status in (codes.NONFINITE_LOSS, codes.NONFINITE_GRADIENT, codes.NONFINITE_UPDATE)
    assert done < 40
    ref = run_steps(p, [order] * 40, 4, stop_on_failure=True)
    assert ref[4] == status
    assert np.all(np.isfinite(params))
    np.testing.assert_array_equal(params, ref[0])
    assert hyper[kopt.T] == ref[2][kopt.T]
    assert stats[done, 2] == hyper[kopt.T] - 2 * done


def test_shuffle_in_place_is_a_seeded_permutation():
    base = np.arange(50, dtype=np.int64)
    a = base.copy()
    kepochs.shuffle_in_place(a, np.uint64(7))
    assert sorted(a) == list(range(50))
    assert not np.array_equal(a, base)
    b = base.copy()
    kepochs.shuffle_in_place(b, np.uint64(7))
    np.testing.assert_array_equal(a, b)
    c = base.copy()
    kepochs.shuffle_in_place(c, np.uint64(8))
    assert not np.array_equal(a, c)
    # permutes the values it is given, not indices
    d = base * 3 + 1
    kepochs.shuffle_in_place(d, np.uint64(7))
    np.testing.assert_array_equal(d, (base * 3 + 1)[a])
    for n in (0, 1):
        e = np.arange(n, dtype=np.int64)
        kepochs.shuffle_in_place(e, np.uint64(1))
        assert list(e) == list(range(n))


def test_shuffle_in_place_is_uniform():
    """Fisher-Yates draws every permutation of 3 items equally often (an
    off-by-one in the swap range would make some impossible or favoured)."""
    counts = {}
    for seed in range(6000):
        a = np.arange(3, dtype=np.int64)
        kepochs.shuffle_in_place(a, np.uint64(seed))
        counts[tuple(a)] = counts.get(tuple(a), 0) + 1
    assert len(counts) == 6
    # expected 1000 each, standard deviation ~29: 5 sigma
    assert all(850 < c < 1150 for c in counts.values()), counts


@pytest.mark.parametrize("case", [("cross_entropy", "labels"), ("cross_entropy", "rows"),
                                  ("squared_error", "rows")])
@pytest.mark.parametrize("blas", [None, 1])
@pytest.mark.parametrize("dtype", DTYPES)
def test_evaluate_and_predict_chunked_match_twin(case, dtype, blas):
    loss, form = case
    sizes, acts = [4, 6, 3], ["sigmoid", "softmax"]
    rng = np.random.default_rng(8)
    params, p64 = random_params(rng, sizes, dtype)
    n, cap = 23, 5  # chunks of 5, 5, 5, 5, 3
    X, X64 = rounded(rng.normal(size=(n, 4)), dtype)
    labels, targets, y = make_targets(rng, loss, form, n, 3, dtype)
    layout = layout_of(sizes, acts)
    ws = np.empty(mlp_workspace_size(sizes, cap), dtype=dtype)
    loss_sum, correct = kmlp.evaluate_chunked(X, labels, targets, params, ws, layout,
                                              LOSS[loss], cap, blas)
    As, Hs = naive.mlp_forward(naive.unflatten(p64, sizes), acts, X64)
    assert_close(loss_sum, n * naive.loss_value(loss, As[-1], y, "softmax"), dtype, scale=n)
    assert correct == naive.n_correct(loss, As[-1], y)
    out = np.full((n, 3), np.nan, dtype=dtype)
    kmlp.predict_chunked(X, params, ws, layout, cap, out, blas)
    assert_close(out, Hs[-1], dtype)


# -- dtypes through the public API -------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_public_api_keeps_dtype(dtype):
    model = fb.MLP([3, 4, 2], activation="tanh", output="softmax", dtype=dtype, seed=0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 3)).astype(dtype)
    y = np.array([0, 1, 1, 0, 1])
    out = model.predict(X)
    assert out.dtype == np.dtype(dtype)
    layers = naive.unflatten(model.flat_params, model.sizes)
    _, Hs = naive.mlp_forward(layers, ["tanh", "softmax"], X.astype(np.float64))
    assert_close(out, Hs[-1], dtype)
    trainer = fb.BackpropTrainer(model, loss="cross_entropy", optimizer=fb.SGD(0.1))
    grads = trainer.gradients(X, y)
    assert [g.dtype for g in grads] == [np.dtype(dtype)] * 4
    assert [g.shape for g in grads] == [p.shape for p in model.params]
    _, _, expected = naive.mlp_loss_gradients(layers, ["tanh", "softmax"],
                                              X.astype(np.float64), y, "cross_entropy")
    for g, e in zip(grads, [a for pair in expected for a in pair]):
        assert_close(g, e, dtype, scale=10)
    assert model.flat_params.dtype == np.dtype(dtype)
    # more rows than one predict chunk (1024): BLAS-sized products, a partial chunk
    X_big = rng.normal(size=(1500, 3)).astype(dtype)
    out_big = model.predict(X_big)
    assert out_big.dtype == np.dtype(dtype)
    _, Hs_big = naive.mlp_forward(layers, ["tanh", "softmax"], X_big.astype(np.float64))
    assert_close(out_big, Hs_big[-1], dtype)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_public_trainer_step_matches_twin(name, dtype):
    """fb.SGD / fb.Adam objects configure the kernels as the twin expects."""
    cfg = OPTIMIZERS[name]
    if cfg[0] == "sgd":
        opt = fb.SGD(cfg[1], momentum=cfg[2], nesterov=cfg[3])
    else:
        opt = fb.Adam(cfg[1], betas=(cfg[2], cfg[3]), eps=cfg[4])
    model = fb.MLP([3, 5, 2], activation="relu", output="identity", dtype=dtype, seed=3)
    trainer = fb.BackpropTrainer(model, loss="mse", optimizer=opt, weight_decay=0.01,
                                 clip_norm=2.0)
    rng = np.random.default_rng(4)
    p64 = model.flat_params.astype(np.float64)
    nstate = {}
    for step in range(1, 5):
        X = rng.normal(size=(6, 3)).astype(dtype)
        Y = rng.normal(size=(6, 2)).astype(dtype)
        layers = naive.unflatten(p64, model.sizes)
        value, _, g = naive.mlp_loss_gradients(layers, ["relu", "identity"],
                                               X.astype(np.float64), Y.astype(np.float64),
                                               "mse")
        obj = trainer.step(X, Y)
        assert_close(obj, value + naive.weight_decay_penalty([W for W, _ in layers], 0.01),
                     dtype, scale=10, factor=step)
        p64 = naive.training_step(p64, naive.flatten(g), model.n_weights, 0.01, 2.0, cfg,
                                  nstate)
        assert_close(model.flat_params, p64, dtype, scale=10, factor=10 * step)
    assert opt.t == 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["sgd", "momentum", "adam"])
def test_update_flushes_subnormals_to_zero(dtype, kind):
    """Values that would be stored subnormal become 0 (flush-to-zero), so
    weight decay cannot leave slow subnormal weights or moments behind; normal
    values are untouched."""
    from fastbp.kernels.optim import apply_update
    tiny = np.finfo(dtype).tiny
    opt = {"sgd": fb.SGD(0.5), "momentum": fb.SGD(0.5, momentum=0.9),
           "adam": fb.Adam(1e-3)}[kind]
    opt.bind(4, dtype)
    params = np.array([tiny * 0.25, -tiny * 0.5, 1.0, tiny * 4], dtype=dtype)
    grads = np.zeros(4, dtype=dtype)
    if kind == "adam":
        opt.state[0] = np.array([tiny * 0.1, 1.0, 1.0, 1.0], dtype=dtype)
        opt.state[1] = np.array([tiny * 0.1, 1.0, 1.0, 1.0], dtype=dtype)
    apply_update(params, grads, opt.state, opt.hyper)
    if kind != "adam":   # Adam moves even a zero-gradient entry by its moments
        assert params[0] == 0 and params[1] == 0
    assert params[2] != 0
    assert not np.any((params != 0) & (np.abs(params) < tiny))
    assert not np.any((opt.state != 0) & (np.abs(opt.state) < tiny))


# -- the reductions behind the input checks ----------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_all_finite_1d_against_numpy(dtype):
    from fastbp.kernels.checks import all_finite_1d
    rng = np.random.default_rng(11)
    x = rng.normal(size=257).astype(dtype)
    assert all_finite_1d(x) and all_finite_1d(x[:0])
    for bad in (np.nan, np.inf, -np.inf):
        for where in (0, 128, 256):
            y = x.copy()
            y[where] = bad
            assert all_finite_1d(y) == bool(np.isfinite(y).all()) is False
    big = np.full(5, np.finfo(dtype).max, dtype=dtype)
    assert all_finite_1d(big)


def test_label_range_against_numpy():
    from fastbp.kernels.checks import label_range
    rng = np.random.default_rng(12)
    for n in (1, 2, 31, 100):
        y = rng.integers(-5, 50, n)
        assert label_range(y) == (y.min(), y.max())


def test_input_checks_take_either_path_with_the_same_answer():
    """all_finite's compiled path (C-contiguous float32/float64) and NumPy's
    (other layouts and dtypes) agree; labels of another integer type or
    layout still get their range checked."""
    from fastbp.losses import prepare_targets
    from fastbp.validation import all_finite
    a = np.ones((6, 4))
    a[3, 2] = np.nan
    for arr in (a, a.astype(np.float32), a.T, a[::2], a.astype(np.float16)):
        assert all_finite(arr) is bool(np.isfinite(arr).all())
    for y in (np.array([0, 3, 4]), np.array([0, 3, 4], dtype=np.int32),
              np.array([0, 9, 3, 7, 4, 1])[::2]):
        labels, _ = prepare_targets(y, "cross_entropy", 3, 5, np.float64)
        np.testing.assert_array_equal(labels, [0, 3, 4])
        with pytest.raises(ValueError, match="the label 4, outside"):
            prepare_targets(y, "cross_entropy", 3, 4, np.float64)
