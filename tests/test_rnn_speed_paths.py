"""The Elman kernels' two ways of running a time step, against the NumPy twin
in naive_rnn.py: the recurrent product by BLAS through the Z block (rows * h
* h >= SMALL_GEMM, with BLAS allowed) and as loops that accumulate straight
into the state or DELTA block; the W_in gradient of scalar inputs (its own
loop); windows that start from a zero state (the first step's product and its
dW_rec rows left out) and from a carried state; and no allocation per time
step. Training goes through ``fit`` on one whole batch, the fused epoch
kernel the learning tests compile for these dtypes anyway.

test_rnn.py covers the loop path with tiny sizes (no BLAS at all); the sizes
here are the smallest that reach the BLAS path: h = 32, 4 sequences."""
import naive
import naive_rnn
import numpy as np
import pytest

import fastbp as fb
from fastbp.kernels.linalg import SMALL_GEMM

READOUTS = ("last", "all")


def data(rng, n, T, i, o, readout):
    X = rng.normal(size=(n, T, i))
    y = rng.normal(size=(n, o) if readout == "last" else (n, T, o))
    return X, y


def blas_model(readout, dtype=np.float64, i=2, h=32, o=3):
    rnn = fb.ElmanRNN(i, h, o, readout=readout, dtype=dtype, seed=0)
    rnn.params[2][...] = np.linspace(-0.2, 0.2, h)     # a bias that shows up in every step
    return rnn


def test_the_sizes_here_reach_both_paths():
    rows, h = 4, 32
    assert rows * h * h >= SMALL_GEMM > 1 * h * h
    assert blas_model("last").blas(rows, 6) is not None


def one_update(rnn, X, y, truncate, lr):
    """One SGD update on the whole batch through ``fit`` (the fused epoch
    kernel, the specialization test_rnn_learning compiles too), against the
    twin's window-by-window SGD from the same start."""
    start = [p.copy() for p in rnn.params]
    trainer = fb.BackpropTrainer(rnn, loss="mse", optimizer=fb.SGD(lr), truncate=truncate)
    trainer.fit(X, y, epochs=1, batch_size=X.shape[0], shuffle=False)
    expected, _ = naive_rnn.truncated_sgd(start, X, y, "tanh", rnn.readout, "mse", "identity",
                                          truncate or X.shape[1], lr)
    return expected


@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize("truncate", [None, 3])
@pytest.mark.parametrize("rows", [4, 1])
def test_blas_and_loop_steps_match_the_twins_sgd(readout, truncate, rows):
    """rows 4: every step's product by BLAS; rows 1: the same kernel
    specialization (BLAS allowed) with the per-step products as loops. With
    truncate=3 the windows after the first start from the carried, non-zero
    state: their first product is computed, and W_rec's gradient has every
    row."""
    rng = np.random.default_rng(0)
    rnn = blas_model(readout)
    X, y = data(rng, rows, 7, 2, 3, readout)
    expected = one_update(rnn, X, y, truncate, 0.3)
    for name, p, e in zip(["W_in", "W_rec", "b", "W_out", "b_out"], rnn.params, expected):
        np.testing.assert_allclose(p, e, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize("truncate", [None, 3])
def test_scalar_inputs_give_the_twins_gradients(readout, truncate):
    """input_size 1 takes the W_in gradient's own loop (tiny sizes: no BLAS)."""
    rng = np.random.default_rng(2)
    rnn = fb.ElmanRNN(1, 5, 2, readout=readout, dtype=np.float64, seed=1)
    X, y = data(rng, 3, 7, 1, 2, readout)
    trainer = fb.BackpropTrainer(rnn, loss="mse", optimizer=fb.SGD(0.1), truncate=truncate)
    got = trainer.gradients(X, y)
    expected = naive_rnn.gradients(rnn.params, X, y, "tanh", readout, "mse", "identity",
                                   truncate)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-13)


def test_float32_blas_path_follows_the_float64_twin():
    rng = np.random.default_rng(3)
    rnn = blas_model("all", dtype=np.float32)
    X, y = data(rng, 4, 6, 2, 3, "all")
    expected = one_update(rnn, X.astype(np.float32), y.astype(np.float32), None, 0.3)
    for p, e in zip(rnn.params, expected):
        assert p.dtype == np.float32
        np.testing.assert_allclose(p, e, rtol=1e-4, atol=1e-5)


def test_no_allocation_per_time_step():
    """An epoch of sequences of 40 steps, in windows of 2, allocates what one
    of 4 steps does (the meminfos of the kernel's array arguments): nothing
    per time step or window. Counted by Numba's runtime, when it can count."""
    nrt = pytest.importorskip("numba.core.runtime._nrt_python")
    from numba.core.runtime import rtsys

    from fastbp.kernels.epochs import EpochPlan
    if not hasattr(nrt, "memsys_enable_stats"):
        pytest.skip("this Numba cannot count allocations at run time")
    rng = np.random.default_rng(4)
    trainer = fb.BackpropTrainer(blas_model("last"), loss="mse", optimizer=fb.SGD(0.01),
                                 truncate=2)
    counts = []
    enabled = nrt.memsys_stats_enabled()
    nrt.memsys_enable_stats()
    try:
        for T in (4, 4, 40):
            X, y = data(rng, 8, T, 2, 3, "last")
            data_ = trainer.epoch_data(*trainer.prepare(X, y), np.arange(8), 4)
            trainer.workspace(4, T)
            before = rtsys.get_allocation_stats().alloc
            status, ran = trainer.fit_epochs(data_, EpochPlan(1, True, np.uint64(0), 0, 4, 1),
                                             np.zeros((1, 4)))
            counts.append(rtsys.get_allocation_stats().alloc - before)
            assert status == 0 and ran == 1
    finally:
        if not enabled:
            nrt.memsys_disable_stats()
    assert counts[0] > 0 and counts[1] == counts[2], counts


# -- the fused elementwise passes of a recurrent step ----------------------------------
HIDDEN = ["identity", "sigmoid", "tanh", "relu", "leaky_relu"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", HIDDEN)
def test_add_activate_is_the_sum_then_the_activation(act, dtype):
    """H = f(H + Z) in one pass: the twin's f of the sum, and bit for bit the
    sum followed by activate_inplace (so the BLAS and loop paths agree)."""
    from fastbp.activations import HIDDEN_ACTIVATIONS
    from fastbp.kernels.activations import activate_inplace, add_activate
    rng = np.random.default_rng(5)
    n, off = 37, 5                                   # odd sizes, a block at an offset
    H = (rng.normal(size=n + off + 3) * 3).astype(dtype)
    Z = (rng.normal(size=n) * 3).astype(dtype)
    code = HIDDEN_ACTIVATIONS[act]
    fused = H.copy()
    add_activate(fused, off, Z, n, code)
    split = H.copy()
    split[off:off + n] += Z
    activate_inplace(split, off, 1, n, code)
    np.testing.assert_array_equal(fused, split)
    assert np.array_equal(fused[:off], H[:off]) and np.array_equal(fused[off + n:], H[off + n:])
    expected = naive.activation(act, (H[off:off + n] + Z)[None])[0]
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(fused[off:off + n], expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", HIDDEN)
def test_add_backprop_activation_is_the_sum_then_the_derivative(act, dtype):
    from fastbp.activations import HIDDEN_ACTIVATIONS
    from fastbp.kernels.activations import add_backprop_activation, backprop_activation
    rng = np.random.default_rng(6)
    n, off = 37, 4
    A = rng.normal(size=n) * 2
    H = np.zeros(n + off, dtype)
    H[off:] = naive.activation(act, A[None])[0]
    D = rng.normal(size=n + 2 * off).astype(dtype)
    Z = rng.normal(size=n).astype(dtype)
    code = HIDDEN_ACTIVATIONS[act]
    fused = D.copy()
    add_backprop_activation(H, off, fused, 2 * off, Z, n, code)
    split = D.copy()
    split[2 * off:2 * off + n] += Z
    backprop_activation(H, off, split, 2 * off, 1, n, code)
    np.testing.assert_array_equal(fused, split)
    assert np.array_equal(fused[:2 * off], D[:2 * off])
    expected = (D[2 * off:].astype(np.float64) + Z) * naive.activation_derivative(
        act, A[None])[0]
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(fused[2 * off:], expected, rtol=tol, atol=tol)


# -- BLAS threads ---------------------------------------------------------------------
def test_small_blas_products_run_on_one_thread_and_the_setting_comes_back(monkeypatch):
    """A step whose per-step products go to BLAS runs it on one thread and
    restores the previous count afterwards, also when the kernel raises; a
    step without BLAS products leaves the count alone. (The kernel is
    replaced by a probe: nothing compiles.)"""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from fastbp import backprop
    libs = backprop._OneBlasThread.libraries()
    if not libs:
        pytest.skip("threadpoolctl finds no BLAS library to drive")
    seen = []

    def probe(*args):
        seen.append({lib.get_num_threads() for lib in libs})
        if len(seen) == 2:
            raise RuntimeError("kernel failed")
        return 0.0, 0.0, 0

    monkeypatch.setattr(backprop.rnn_kernels, "train_step", probe)
    rng = np.random.default_rng(7)
    blas_trainer = fb.BackpropTrainer(blas_model("last"), loss="mse")
    tiny = fb.BackpropTrainer(fb.ElmanRNN(2, 4, 3, seed=0), loss="mse")
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        X, y = data(rng, 4, 5, 2, 3, "last")
        blas_trainer.step(X, y)
        with pytest.raises(RuntimeError, match="kernel failed"):
            blas_trainer.step(X, y)
        after = {lib.get_num_threads() for lib in libs}
        tiny.step(X.astype(np.float32), y.astype(np.float32))
    assert seen[:2] == [{1}, {1}] and after == {2}
    assert seen[2] == {2}


def test_workspace_blocks_are_64_byte_aligned():
    """The workspace starts on a 64-byte boundary and every block of the
    Elman layout on a multiple of ALIGN entries, inside workspace_size."""
    from fastbp.kernels.rnn import ALIGN, offsets, w_rec_offset
    for dtype in (np.float32, np.float64):
        rnn = fb.ElmanRNN(3, 7, 5, readout="all", dtype=dtype, seed=0)
        trainer = fb.BackpropTrainer(rnn, loss="mse")
        for rows, T in [(1, 1), (3, 5), (2, 9)]:
            ws = trainer.workspace(rows, T)
            assert ws.ctypes.data % 64 == 0
            starts = list(offsets(rnn.layout, rows, T)) + [w_rec_offset(rnn.layout, rows, T)]
            assert all(s % ALIGN == 0 for s in starts) and starts == sorted(starts)
            assert starts[-1] + 7 * 7 <= rnn.workspace_size(rows, T) <= ws.shape[0]


# -- products of a whole window in row blocks (BLAS's small-matrix kernels) -------------
# (limit, truncate, readout): each limit with full and truncated BPTT, both
# readouts among them (3072 only splits what readout "all" adds)
BLOCK_LIMIT_CASES = [(2048, None, "last"), (2048, 10, "all"), (3072, None, "all"),
                     (3072, 10, "all"), (32768, None, "last"), (32768, 10, "all")]


@pytest.mark.parametrize("limit, truncate, readout", BLOCK_LIMIT_CASES)
def test_row_blocked_window_products_match_the_twins_sgd(monkeypatch, limit, truncate, readout):
    """Under the one-thread scope the trainer passes BLAS's small-kernel limit,
    and the window's products go to BLAS in row blocks under it. Forced here
    to limits these sizes cross: 2048 splits the input projection and dW_in
    (80 rows, n * k = 64) into blocks of 32 rows; 3072, with readout "all",
    dW_out and the outputs' gradient into the states (n * k = 96); 32768
    dW_rec (n * k = 1024). The update is still the twin's."""
    from fastbp import backprop
    from fastbp.kernels.linalg import block_rows
    monkeypatch.setattr(backprop, "small_kernel_limit", lambda: limit)
    rows, T, i, h = 4, 20, 2, 32
    if limit == 2048:
        assert block_rows(rows * T, h, i, limit) == 32
    elif limit == 3072:
        assert block_rows(rows * T, 3, h, limit) == 32 and block_rows(40, h, 3, limit) == 32
    else:
        assert block_rows(rows * (T - 1), h, h, limit) == 32 and block_rows(40, h, h, limit) == 32
    rng = np.random.default_rng(5)
    rnn = blas_model(readout)
    X, y = data(rng, rows, T, i, 3, readout)
    trainer = fb.BackpropTrainer(rnn, loss="mse", optimizer=fb.SGD(0.3), truncate=truncate)
    assert trainer._recurrent_blas(rows, T) == limit
    expected = one_update(rnn, X, y, truncate, 0.3)
    for name, p, e in zip(["W_in", "W_rec", "b", "W_out", "b_out"], rnn.params, expected):
        np.testing.assert_allclose(p, e, rtol=1e-10, atol=1e-12, err_msg=name)
    got = trainer.gradients(X, y)
    twin = naive_rnn.gradients(rnn.params, X, y, "tanh", readout, "mse", "identity", truncate)
    for g, e in zip(got, twin):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-13)


def test_the_limit_applies_only_under_the_one_thread_scope(monkeypatch):
    """Tiny steps (no BLAS) and steps whose per-step products are too large
    for one thread keep the model's flag."""
    from fastbp import backprop
    monkeypatch.setattr(backprop, "small_kernel_limit", lambda: 12345)
    assert fb.BackpropTrainer(blas_model("last"), loss="mse")._recurrent_blas(4, 6) == 12345
    tiny = fb.BackpropTrainer(fb.ElmanRNN(2, 4, 3, seed=0), loss="mse")
    assert tiny._recurrent_blas(2, 3) is None
    wide = fb.BackpropTrainer(fb.ElmanRNN(2, 512, 3, seed=0), loss="mse")
    assert 64 * 512 * 512 > backprop.ONE_THREAD_PRODUCT
    assert wide._recurrent_blas(64, 3) == 1


OPENBLAS_SKX = {"user_api": "blas", "internal_api": "openblas", "version": "0.3.30",
                "architecture": "SkylakeX"}


@pytest.mark.parametrize("libraries, expected", [
    ([OPENBLAS_SKX], "limit"),
    ([OPENBLAS_SKX, dict(OPENBLAS_SKX, version="0.3.31.188.0", architecture="SapphireRapids")],
     "limit"),
    ([dict(OPENBLAS_SKX, architecture="Haswell")], 1),
    ([dict(OPENBLAS_SKX, architecture="Zen")], 1),
    ([dict(OPENBLAS_SKX, version="0.3.13")], 1),
    ([OPENBLAS_SKX, {"user_api": "blas", "internal_api": "mkl", "version": "2024.1"}], 1),
    ([], 1),
])
def test_small_kernel_limit_needs_every_blas_to_have_the_kernels(monkeypatch, libraries,
                                                                 expected):
    from types import SimpleNamespace

    from fastbp import threads
    from fastbp.kernels.linalg import SMALL_KERNEL_MNK
    controllers = [SimpleNamespace(info=lambda lib=lib: lib) for lib in libraries]
    monkeypatch.setattr(threads, "blas_controllers", lambda: controllers)
    threads.small_kernel_limit.cache_clear()
    try:
        got = threads.small_kernel_limit()
    finally:
        threads.small_kernel_limit.cache_clear()
    assert got == (SMALL_KERNEL_MNK if expected == "limit" else 1)


@pytest.mark.parametrize("m, n", [(1, 1), (1, 40), (40, 1), (16, 16), (17, 33), (128, 128)])
def test_transpose_in_tiles(m, n):
    """The weight transposition of each forward pass, tiles of 16 and their
    remainders, at offsets, nothing written outside the block."""
    from fastbp.kernels.rnn import _transpose
    src = np.arange(3 + m * n, dtype=np.float64)
    dst = np.full(2 + m * n + 2, -1.0)
    _transpose(src, 3, dst, 2, m, n)
    np.testing.assert_array_equal(dst[2:2 + m * n].reshape(n, m), src[3:].reshape(m, n).T)
    assert np.all(dst[:2] == -1) and np.all(dst[2 + m * n:] == -1)


def test_more_outputs_than_states_keep_dw_out_in_one_product(monkeypatch):
    """With o > h the WT_rec block cannot hold dW_out's scratch: dW_out stays
    one product, the gradients still the twin's."""
    from fastbp import backprop
    monkeypatch.setattr(backprop, "small_kernel_limit", lambda: 3072)
    rng = np.random.default_rng(6)
    rnn = fb.ElmanRNN(2, 32, 40, readout="all", dtype=np.float64, seed=2)
    X, y = data(rng, 4, 20, 2, 40, "all")
    trainer = fb.BackpropTrainer(rnn, loss="mse", optimizer=fb.SGD(0.1))
    assert trainer._recurrent_blas(4, 20) == 3072
    got = trainer.gradients(X, y)
    twin = naive_rnn.gradients(rnn.params, X, y, "tanh", "all", "mse", "identity", None)
    for g, e in zip(got, twin):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-13)
