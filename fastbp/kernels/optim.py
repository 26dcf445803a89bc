"""In-place optimizer updates over one flat parameter buffer, plus the gradient
post-processing every trainer shares (L2 weight decay, global-norm clipping).

``opt_hyper`` is a float64 array owned by the optimizer object:
``[kind, lr, a, b, eps, t]`` where for SGD a = momentum, b = nesterov (0/1)
and for Adam a = beta1, b = beta2; ``t`` counts the updates applied.
``state`` is (n_slots, n_params): velocity for SGD with momentum, first and
second moments for Adam, nothing for plain SGD.
"""
from collections import namedtuple

import numpy as np
from numba import njit

from .codes import (ADAM, KERNEL, NONFINITE_GRADIENT, NONFINITE_LOSS, NONFINITE_UPDATE, OK,
                    REDUCTION, ZERO)

KIND, LR, A, B, EPS, T = 0, 1, 2, 3, 4, 5
# train_hyper: [loss code, weight decay lambda, clip norm (0 = off)]
LOSS, DECAY, CLIP = 0, 1, 2

#: One parameter set as the step kernels see it: its flat values, gradient
#: buffer, optimizer state and hyper-parameters, and its train vector
#: (``[loss code, weight decay, clip norm]``). Built by
#: :meth:`fastbp.Trainer.step_arrays` and :attr:`fastbp.ParameterSet.step_arrays`.
StepArrays = namedtuple("StepArrays", "params grads state opt_hyper train_hyper")


@njit(**REDUCTION)
def sum_squares(x):
    """Sum of squares of a 1-D array, squared and accumulated in float64 (a
    float32 entry above ~1.8e19 would overflow if squared in float32)."""
    s = 0.0
    for i in range(x.shape[0]):
        v = np.float64(x[i])
        s += v * v
    return s


@njit(inline="always", **KERNEL)
def _adam_constants(params, opt_hyper, t):
    """Adam's per-step constants for update number t, in the parameters' dtype:
    float32 Adam then runs in float32 vector lanes (as torch does), 4x faster
    than promoting to float64."""
    f = params.dtype.type
    b1 = opt_hyper[A]
    b2 = opt_hyper[B]
    return (f(b1), f(b2), f(1.0 - b1), f(1.0 - b2),
            f(opt_hyper[LR] / (1.0 - b1 ** t)), f(1.0 / (1.0 - b2 ** t)), f(opt_hyper[EPS]))


@njit(inline="always", **KERNEL)
def _adam_element(p, g, m, v, c):
    """New (p, m, v) of one entry (Kingma & Ba 2015, Algorithm 1, with the bias
    corrections folded into the step size c[4] and the factor c[5])."""
    mi = c[0] * m + c[2] * g
    vi = c[1] * v + c[3] * g * g
    return p - c[4] * mi / (np.sqrt(vi * c[5]) + c[6]), mi, vi


@njit(inline="always", **KERNEL)
def _momentum_element(p, g, v, lr, mu, nesterov):
    """New (p, v) of one entry: v = mu v + g; p - lr v, or p - lr (g + mu v)."""
    vi = mu * v + g
    if nesterov:
        return p - lr * (g + mu * vi), vi
    return p - lr * vi, vi


@njit(**KERNEL)
def update_is_finite(params, grads, state, opt_hyper):
    """True when :func:`apply_update` would leave every parameter and state
    entry finite. Computes the same values without writing them: a finite
    gradient can still overflow an update (a huge learning rate, float32),
    and a NaN or inf gradient always makes a non-finite update.

    Compiled with the same flags as apply_update (no fastmath: a fused
    multiply-add here would not round where the update does). The flag is an
    or-reduction of booleans, as in the update, which LLVM vectorizes without
    fastmath; a count of the non-finite values took 1.7x as long for float32
    Adam (2.77 against 1.62 ms for 3.16 M parameters; SGD 1.00 against 0.80).
    """
    f = params.dtype.type
    n = params.shape[0]
    lr = opt_hyper[LR]
    bad = False
    if opt_hyper[KIND] == ADAM:
        c = _adam_constants(params, opt_hyper, opt_hyper[T] + 1.0)
        m = state[0]
        v = state[1]
        for i in range(n):
            p, mi, vi = _adam_element(params[i], grads[i], m[i], v[i], c)
            bad |= not (np.isfinite(p) & np.isfinite(mi) & np.isfinite(vi))
    elif opt_hyper[A] == 0.0:
        for i in range(n):
            bad |= not np.isfinite(f(params[i] - lr * grads[i]))
    else:
        nesterov = opt_hyper[B] != 0.0
        v = state[0]
        for i in range(n):
            p, vi = _momentum_element(params[i], grads[i], v[i], lr, opt_hyper[A], nesterov)
            bad |= not (np.isfinite(f(p)) & np.isfinite(f(vi)))
    return not bad


@njit(inline="always", **KERNEL)
def _update_columns(p, g, state, opt_hyper, t, start):
    """The update at count t of the parameters ``p`` and gradient ``g``, the
    columns start..start+len(p)-1 of ``state``, in place, flushed (see
    :func:`apply_update`); returns True when a value written is not finite.
    Every array is indexed as a 1-D view from 0 (state through its row
    slices), which LLVM vectorises when the rows are contiguous. Inlined:
    where the flag is unused (apply_update) it is not computed. Each value
    is cast to the dtype before its check (``_flush`` of a float32 is a
    float64), so float32 loops check in float32 vector lanes."""
    return _update_saving(p, g, state, opt_hyper, t, start, p, state, False)


@njit(inline="always", **KERNEL)
def _update_saving(p, g, state, opt_hyper, t, start, old_p, old_state, save):
    """:func:`_update_columns`, and with ``save`` (a constant at every call
    site, so the loops carry no branch) each entry's values before the
    update stored in ``old_p`` (like ``p``) and the same columns of
    ``old_state`` (like ``state``) in the same pass."""
    f = p.dtype.type
    n = p.shape[0]
    lr = opt_hyper[LR]
    tiny = _smallest_normal(p)
    bad = False
    if opt_hyper[KIND] == ADAM:
        c = _adam_constants(p, opt_hyper, t)
        m = state[0, start:start + n]
        v = state[1, start:start + n]
        old_m = old_state[0, start:start + n]
        old_v = old_state[1, start:start + n]
        for i in range(n):
            p0 = p[i]
            m0 = m[i]
            v0 = v[i]
            if save:
                old_p[i] = p0
                old_m[i] = m0
                old_v[i] = v0
            pi, mi, vi = _adam_element(p0, g[i], m0, v0, c)
            pi = f(_flush(pi, tiny))
            mi = f(_flush(mi, tiny))
            vi = f(_flush(vi, tiny))
            p[i] = pi
            m[i] = mi
            v[i] = vi
            bad |= not (np.isfinite(pi) & np.isfinite(mi) & np.isfinite(vi))
    elif opt_hyper[A] == 0.0:
        for i in range(n):
            p0 = p[i]
            if save:
                old_p[i] = p0
            pi = f(_flush(p0 - lr * g[i], tiny))
            p[i] = pi
            bad |= not np.isfinite(pi)
    else:
        mu = opt_hyper[A]
        nesterov = opt_hyper[B] != 0.0
        v = state[0, start:start + n]
        old_v = old_state[0, start:start + n]
        for i in range(n):
            p0 = p[i]
            v0 = v[i]
            if save:
                old_p[i] = p0
                old_v[i] = v0
            pi, vi = _momentum_element(p0, g[i], v0, lr, mu, nesterov)
            pi = f(_flush(pi, tiny))
            vi = f(_flush(vi, tiny))
            p[i] = pi
            v[i] = vi
            bad |= not (np.isfinite(pi) & np.isfinite(vi))
    return bad


@njit(**KERNEL)
def apply_update(params, grads, state, opt_hyper):
    """params -= update(grads), the rule chosen by opt_hyper[0]; advances t.

    SGD (torch.optim.SGD convention): v = mu v + g; p -= lr v, or with Nesterov
    p -= lr (g + mu v). Adam (Kingma & Ba 2015, Algorithm 1) with bias
    correction folded into the step size.

    Every new parameter and state value below the dtype's smallest normal
    number (1.2e-38 in float32) is stored as 0, as a CPU in flush-to-zero
    mode would. Weight decay shrinks unused weights (dead ReLU units) and
    their Adam moments geometrically; once subnormal, each arithmetic
    operation on them takes ~100 cycles, and a 40-100-100-10 epoch went from
    5 to 50-150 ms after 200 epochs. The values flushed are far below any
    gradient a step can produce.
    """
    opt_hyper[T] += 1.0
    _update_columns(params, grads, state, opt_hyper, opt_hyper[T], 0)


@njit(**KERNEL)
def update_columns(params, grads, state, opt_hyper, start, n):
    """The update :func:`apply_update` would make, restricted to the entries
    start..start+n-1, in place, at update count t = opt_hyper[5] + 1, without
    advancing the count: a parameter set updated in several ranges (one layer
    at a time, or in chunks) gets bit for bit the values of one apply_update
    over the whole set.

    Parameters
    ----------
    params, grads : (N,) float32 or float64
        The whole parameter set and its gradient; only [start, start + n)
        is read or written.
    state : (n_slots, N), params' dtype
        The optimizer state, as for apply_update (its rows contiguous for
        speed).
    opt_hyper : (6,) float64
        Not modified.
    start, n : int
        The range; start + n <= N.

    Returns
    -------
    finite : bool
        True when every parameter and state value written is finite (a
        non-finite or overflowing update is still written: the caller
        restores the range).
    """
    return not _update_columns(params[start:start + n], grads[start:start + n], state,
                               opt_hyper, opt_hyper[T] + 1.0, start)


@njit(**KERNEL)
def update_columns_saving(params, grads, state, opt_hyper, start, n, old_params, old_state):
    """:func:`update_columns`, storing each entry's values from before the
    update in ``old_params`` and ``old_state`` (same columns) in the same
    pass: a caller that may have to undo the update keeps its backup at
    about the cost of the update alone, instead of a separate copy (whose
    memory traffic measured as much as the update's in float64). Whatever
    the result, every entry of the range is updated and saved.

    Parameters
    ----------
    params, grads, state, opt_hyper, start, n
        As for :func:`update_columns`.
    old_params : (N,) params' dtype
        Receives params[start:start + n] from before the update, at the same
        offsets.
    old_state : (n_slots, N) params' dtype, contiguous rows
        Receives state[:, start:start + n] from before the update, at the
        same columns.

    Returns
    -------
    finite : bool
        As for :func:`update_columns`.
    """
    return not _update_saving(params[start:start + n], grads[start:start + n], state,
                              opt_hyper, opt_hyper[T] + 1.0, start,
                              old_params[start:start + n], old_state, True)


@njit(inline="always", **KERNEL)
def _smallest_normal(params):
    """The smallest positive normal number of params' dtype."""
    f = params.dtype.type
    return f(1.1754943508222875e-38) if params.itemsize == 4 else f(2.2250738585072014e-308)


@njit(inline="always", **KERNEL)
def _flush(x, tiny):
    """x, or 0 when |x| is subnormal (NaN and inf pass through)."""
    return x if not abs(x) < tiny else x * 0


@njit(**KERNEL)
def add_weight_decay(params, grads, n_weights, lam):
    """grads[:n_weights] += lam * params[:n_weights] and return the penalty
    lam/2 * sum(params[:n_weights]^2).

    Models store every weight matrix before every bias in their flat buffer, so
    "weights, not biases" is the prefix of length ``n_weights``.
    """
    pen = 0.0
    for i in range(n_weights):
        p = params[i]
        grads[i] += lam * p
        pen += p * p
    return 0.5 * lam * pen


@njit(**KERNEL)
def clip_by_global_norm(grads, sq_norm, clip_norm):
    """Scale grads so that their global L2 norm (sqrt(sq_norm)) is at most
    clip_norm; no pass over grads when it already is."""
    norm = np.sqrt(sq_norm)
    if norm > clip_norm:
        scale = clip_norm / (norm + 1e-12)
        for i in range(grads.shape[0]):
            grads[i] *= scale


@njit(**KERNEL)
def check_step(params, grads, state, opt_hyper, train_hyper, n_weights, data_loss):
    """Everything of a training step's tail but the update itself: weight decay
    and clipping applied to ``grads``, then the loss, the gradient and the
    update they would give checked for finiteness. ``params`` and the optimizer
    state are not touched. Trainers that update two parameter sets at once
    check both before applying either.

    The update check also catches a NaN or inf gradient, so the gradient norm
    is computed only for clipping (or to name the cause after a failed check):
    with :func:`apply_update`, two passes over the parameters instead of three.

    Returns
    -------
    objective : float
        data_loss + lambda/2 * sum ||W||_F^2 (the penalty only when lambda > 0).
    status : int
        OK, NONFINITE_LOSS, NONFINITE_GRADIENT or NONFINITE_UPDATE.
    """
    if not np.isfinite(data_loss):
        return data_loss, NONFINITE_LOSS
    lam = train_hyper[DECAY]
    objective = data_loss
    if lam > 0.0:
        objective += add_weight_decay(params, grads, n_weights, lam)
    clip = train_hyper[CLIP]
    if clip > 0.0:
        sq = sum_squares(grads)
        if not np.isfinite(sq):
            return objective, NONFINITE_GRADIENT
        clip_by_global_norm(grads, sq, clip)
    if not update_is_finite(params, grads, state, opt_hyper):
        if not np.isfinite(sum_squares(grads)):
            return objective, NONFINITE_GRADIENT
        return objective, NONFINITE_UPDATE
    return objective, OK


@njit(**KERNEL)
def finish_step(params, grads, state, opt_hyper, train_hyper, n_weights, data_loss):
    """Shared tail of every training step: :func:`check_step`, then the update
    when everything is finite, so a diverging step leaves the model as it was.

    Returns
    -------
    objective : float
        data_loss + lambda/2 * sum ||W||_F^2 (the penalty only when lambda > 0).
    status : int
        OK, NONFINITE_LOSS, NONFINITE_GRADIENT or NONFINITE_UPDATE (then
        nothing was updated).
    """
    objective, status = check_step(params, grads, state, opt_hyper, train_hyper, n_weights,
                                   data_loss)
    if status == OK:
        apply_update(params, grads, state, opt_hyper)
    return objective, status


@njit(**KERNEL)
def finish_steps(main, n_weights, data_loss, aux, aux_loss, with_aux=True):
    """The tail of a step that updates the model (``main``, a
    :data:`StepArrays`) and one extra parameter set (``aux``) together: both
    are checked (:func:`check_step`) before either is updated, so a diverging
    step leaves both as they were. ``aux`` gets no weight decay and no
    clipping unless its own train vector asks for them. With ``with_aux``
    False (e.g. a set that is empty, or not trained on this step) it is
    :func:`finish_step` of the model alone.

    Returns
    -------
    objective : float
        The model's objective (see :func:`check_step`).
    status : int
        OK, or the first failure (the extra set's is checked first); then
        nothing was updated.
    """
    if with_aux:
        _, aux_status = check_step(aux.params, aux.grads, aux.state, aux.opt_hyper,
                                   aux.train_hyper, ZERO, aux_loss)
        if aux_status != OK:
            return data_loss, aux_status
    objective, status = finish_step(main.params, main.grads, main.state, main.opt_hyper,
                                    main.train_hyper, n_weights, data_loss)
    if status == OK and with_aux:
        apply_update(aux.params, aux.grads, aux.state, aux.opt_hyper)
    return objective, status
