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
from .codes import KERNEL, BINARY_CROSS_ENTROPY, CROSS_ENTROPY, MSE, SQUARED_ERROR


@njit(**KERNEL)
def loss_and_delta(A, H, labels, targets, loss_code, out_code, D):
    """Batch loss and output delta.

    Parameters
    ----------
    A : ndarray (b, k)
        Output pre-activations (logits).
    H : ndarray (b, k)
        Output activations, H = f_out(A).
    labels : int64 ndarray (b,) or (0,)
        Integer class labels (cross_entropy only); empty when ``targets`` is used.
    targets : ndarray (b, k) or (0, 0)
        Target rows; empty when ``labels`` is used.
    loss_code, out_code : int
        Loss and output activation codes.
    D : ndarray (b, k)
        Receives d(mean loss)/dA.

    Returns
    -------
    loss_sum : float
        Sum over the batch of the per-sample loss (divide by b for the mean).
    n_correct : float
        Correct predictions: argmax matches for cross_entropy, elements on the
        right side of 0.5 for binary_cross_entropy, 0 otherwise.
    """
    b, k = A.shape
    inv_b = 1.0 / b
    use_labels = labels.shape[0] > 0
    loss = 0.0
    correct = 0.0
    if loss_code == CROSS_ENTROPY:
        for i in range(b):
            m = A[i, 0]
            am = 0
            for j in range(1, k):
                if A[i, j] > m:
                    m = A[i, j]
                    am = j
            s = 0.0
            for j in range(k):
                e = np.exp(A[i, j] - m)
                D[i, j] = e
                s += e
            lse = m + np.log(s)
            inv_s = 1.0 / s
            if use_labels:
                c = labels[i]
                loss += lse - A[i, c]
                for j in range(k):
                    D[i, j] = D[i, j] * inv_s * inv_b
                D[i, c] -= inv_b
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
                        loss -= t * (A[i, j] - lse)
                # d/da of -sum_j t_j log p_j is p * sum(t) - t
                for j in range(k):
                    D[i, j] = (D[i, j] * inv_s * tsum - targets[i, j]) * inv_b
                if am == tc:
                    correct += 1.0
    elif loss_code == BINARY_CROSS_ENTROPY:
        for i in range(b):
            for j in range(k):
                a = A[i, j]
                t = targets[i, j]
                # softplus(a) - t*a = max(a, 0) - t*a + log1p(exp(-|a|))
                loss += max(a, 0.0) - t * a + np.log1p(np.exp(-abs(a)))
                if a >= 0:
                    p = 1.0 / (1.0 + np.exp(-a))
                else:
                    e = np.exp(a)
                    p = e / (1.0 + e)
                D[i, j] = (p - t) * inv_b
                if (a > 0) == (t > 0.5):
                    correct += 1.0
    else:
        scale = 1.0 if loss_code == SQUARED_ERROR else 2.0 / k
        half = 0.5 if loss_code == SQUARED_ERROR else 1.0 / k
        for i in range(b):
            for j in range(k):
                r = H[i, j] - targets[i, j]
                loss += half * r * r
                D[i, j] = scale * r * inv_b
        backprop_activation(H, D, out_code)
    return loss, correct
