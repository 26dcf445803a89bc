"""The NumPy baseline: one Elman RNN training step written the way a user writes it.

Model (the same equations as ``fb.ElmanRNN`` with ``readout="last"`` and an
identity output)::

    h_0 = 0;  h_t = tanh(W_in x_t + W_rec h_{t-1} + b)   t = 1..T;  a = W_out h_T + b_out

Loss, mean over the batch: softmax cross-entropy of the logits ``a``
(integer labels), or ``mse`` = 1/o * sum_j (a_j - y_j)^2 per sequence.

Forward: the input projection of all T steps is one matrix product before the
time loop; the loop does one (batch, h) x (h, h) product and a tanh per step,
vectorised over the batch. Backward: BPTT through the stored states, then the
W_in and W_rec gradients as one product each over all steps. Plain SGD.
Fresh temporaries every step, no preallocation, no tricks: the honest "what
would I get with NumPy" baseline, not a tuned competitor.

``truncate=k`` is truncated BPTT as fastbp defines it for readout "last":
windows [1..k], [k+1..2k], ...; only the last window has a loss term, so the
earlier windows only advance the state and the gradient stops at the state
entering the last window (one update per step).

Parameters are copied from a fastbp model (``rnn.params`` = [W_in (h, i),
W_rec (h, h), b (h,), W_out (o, h), b_out (o,)]), so both start from the same
point and their losses can be compared step by step.
"""
import numpy as np
from numpy_mlp import softmax_cross_entropy


class NumpyRNN:
    """Elman RNN (tanh, last-state readout) with a NumPy training step.

    Parameters
    ----------
    params : [W_in, W_rec, b, W_out, b_out] (copied), as ``fb.ElmanRNN.params``
    loss : 'cross_entropy' (integer labels (n,)) or 'mse' (targets (n, o), or
        (n,) when o == 1)
    lr : SGD learning rate
    truncate : int >= 1 or None (full BPTT)
    """

    def __init__(self, params, loss, lr, truncate=None):
        if loss not in ("cross_entropy", "mse"):
            raise ValueError(f"unsupported loss {loss!r}; expected 'cross_entropy' or 'mse'")
        if truncate is not None and truncate < 1:
            raise ValueError(f"truncate must be None or >= 1, got {truncate}")
        self.W_in, self.W_rec, self.b, self.W_out, self.b_out = [np.array(p) for p in params]
        self.loss = loss
        self.lr = lr
        self.truncate = truncate

    @property
    def params(self):
        """[W_in, W_rec, b, W_out, b_out], the arrays being trained."""
        return [self.W_in, self.W_rec, self.b, self.W_out, self.b_out]

    def step(self, X, y):
        """One SGD step on the batch X (n, T, i), y; returns the batch loss before it."""
        n, T, _ = X.shape
        W_in, W_rec, W_out = self.W_in, self.W_rec, self.W_out
        # forward: time-major, input projection of every step in one product
        Xt = X.transpose(1, 0, 2).reshape(T * n, -1)              # (T*n, i)
        A = (Xt @ W_in.T + self.b).reshape(T, n, -1)              # (T, n, h)
        H = np.empty((T + 1, n, W_rec.shape[0]), dtype=A.dtype)   # h_0..h_T
        H[0] = 0.0
        for t in range(T):
            H[t + 1] = np.tanh(A[t] + H[t] @ W_rec.T)
        a = H[T] @ W_out.T + self.b_out
        # loss and dLoss/da (mean over the batch)
        if self.loss == "cross_entropy":
            loss, delta = softmax_cross_entropy(a, y)
        else:
            err = a - y.reshape(a.shape)
            loss = np.mean(err * err)
            delta = err * (2.0 / err.size)
        # backward through time, down to the state entering the last window
        t0 = 0 if self.truncate is None else (T - 1) // self.truncate * self.truncate
        dW_out = delta.T @ H[T]
        db_out = delta.sum(axis=0)
        D = np.empty((T - t0,) + H.shape[1:], dtype=A.dtype)      # dJ/d(pre-activation)
        dh = delta @ W_out
        for t in range(T, t0, -1):
            D[t - 1 - t0] = d = dh * (1.0 - H[t] * H[t])
            dh = d @ W_rec
        Dm = D.reshape((T - t0) * n, -1)
        dW_in = Dm.T @ Xt[t0 * n:]
        dW_rec = Dm.T @ H[t0:T].reshape((T - t0) * n, -1)
        db = Dm.sum(axis=0)
        # SGD update
        for p, g in zip(self.params, (dW_in, dW_rec, db, dW_out, db_out)):
            p -= self.lr * g
        return float(loss)
