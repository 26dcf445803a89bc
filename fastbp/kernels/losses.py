"""Losses of a batch and their gradient with respect to the output layer's
pre-activation ``A`` (the logits), in one pass.

All losses are averaged over the batch; per sample:

* squared_error: 1/2 * sum_j (y_j - h_j)^2
* mse: 1/k * sum_j (y_j - h_j)^2
* cross_entropy: -sum_j y_j log softmax(a)_j, with log-softmax computed as
  a_j - logsumexp(a) (stable for any logits); integer labels or target rows
* binary_cross_entropy: sum_j softplus(a_j) - y_j a_j, i.e. the sigmoid
  cross-entropy written in logits (stable for any logits)

The delta written to ``D`` is d(loss)/dA, already divided by the batch size.
"""
import numpy as np
from numba import njit

from .activations import backprop_activation
from .codes import KERNEL, BINARY_CROSS_ENTROPY, CROSS_ENTROPY, SQUARED_ERROR


@njit(**KERNEL)
def loss_and_delta(ws, a0, h0, d0, rows, k, labels, targets, loss_code, out_code):
    """Batch loss and output delta; A, H and D are (rows, k) blocks of ``ws``.

    Parameters
    ----------
    ws : 1-D float array
        Holds A (output logits) at ``a0``, H = f_out(A) at ``h0``, and receives
        D = d(mean loss)/dA at ``d0``.
    rows, k : int
        Batch size and number of outputs.
    labels : int64 array of >= rows entries, or (0,)
        Integer class labels (cross_entropy only); empty when ``targets`` is used.
    targets : 2-D array of >= rows rows and k columns, or (0, 0)
        Target rows; empty when ``labels`` is used.
    loss_code, out_code : int
        Loss and output activation codes.

    Returns
    -------
    loss_sum : float
        Sum over the batch of the per-sample loss (divide by rows for the mean).
    n_correct : float
        Correct predictions: argmax matches for cross_entropy, elements on the
        right side of 0.5 for binary_cross_entropy, 0 otherwise.
    """
    inv_b = 1.0 / rows
    use_labels = labels.shape[0] > 0
    loss = 0.0
    correct = 0.0
    if loss_code == CROSS_ENTROPY:
        for i in range(rows):
            ai = a0 + i * k
            di = d0 + i * k
            m = ws[ai]
            am = 0
            for j in range(1, k):
                if ws[ai + j] > m:
                    m = ws[ai + j]
                    am = j
            s = 0.0
            for j in range(k):
                e = np.exp(ws[ai + j] - m)
                ws[di + j] = e
                s += e
            lse = m + np.log(s)
            inv_s = 1.0 / s
            if use_labels:
                c = labels[i]
                loss += lse - ws[ai + c]
                for j in range(k):
                    ws[di + j] = ws[di + j] * inv_s * inv_b
                ws[di + c] -= inv_b
                if am == c:
                    correct += 1.0
            else:
                tsum = 0.0
                tm = targets[i, 0]
                tc = 0
                for j in range(k):
                    t = targets[i, j]
                    tsum += t
                    if t > tm:
                        tm = t
                        tc = j
                    if t != 0.0:
                        loss -= t * (ws[ai + j] - lse)
                # d/da of -sum_j t_j log p_j is p * sum(t) - t
                for j in range(k):
                    ws[di + j] = (ws[di + j] * inv_s * tsum - targets[i, j]) * inv_b
                if am == tc:
                    correct += 1.0
    elif loss_code == BINARY_CROSS_ENTROPY:
        for i in range(rows):
            for j in range(k):
                a = ws[a0 + i * k + j]
                t = targets[i, j]
                # softplus(a) - t*a = max(a, 0) - t*a + log1p(exp(-|a|))
                loss += max(a, 0.0) - t * a + np.log1p(np.exp(-abs(a)))
                if a >= 0:
                    p = 1.0 / (1.0 + np.exp(-a))
                else:
                    e = np.exp(a)
                    p = e / (1.0 + e)
                ws[d0 + i * k + j] = (p - t) * inv_b
                if (a > 0) == (t > 0.5):
                    correct += 1.0
    else:
        scale = 1.0 if loss_code == SQUARED_ERROR else 2.0 / k
        half = 0.5 if loss_code == SQUARED_ERROR else 1.0 / k
        for i in range(rows):
            for j in range(k):
                r = ws[h0 + i * k + j] - targets[i, j]
                loss += half * r * r
                ws[d0 + i * k + j] = scale * r * inv_b
        backprop_activation(ws, h0, ws, d0, rows, k, out_code)
    return loss, correct
