"""The NumPy baseline: one MLP training step written the way a user writes it.

Forward with ``X @ W.T + b``, softmax cross-entropy (integer labels) or
squared error (1/2 * sum over outputs, mean over the batch) on a sigmoid
output, backward, plain SGD update. Fresh temporaries every step, no
preallocation, no tricks: this is the honest "what would I get with NumPy"
baseline, not a tuned competitor.

Parameters are copied from a fastbp model (``W`` of shape (n_out, n_in)), so
both start from the same point and their losses can be compared step by step.
"""
import numpy as np


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


_HIDDEN = {
    "relu": (lambda a: np.maximum(a, 0.0), lambda h: h > 0),
    "sigmoid": (_sigmoid, lambda h: h * (1.0 - h)),
    "tanh": (np.tanh, lambda h: 1.0 - h * h),
}


def softmax_cross_entropy(a, y):
    """Mean softmax cross-entropy of the logits ``a`` (n, o) against the
    integer labels ``y`` (n,), and its gradient with respect to ``a``."""
    n = a.shape[0]
    a = a - a.max(axis=1, keepdims=True)
    e = np.exp(a)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = np.mean(np.log(s[:, 0]) - a[rows, y])
    delta = e / s
    delta[rows, y] -= 1.0
    delta /= n
    return loss, delta


class NumpyMLP:
    """MLP with a NumPy training step.

    Parameters
    ----------
    params : list of arrays [W_1, b_1, ..., W_L, b_L] (copied), W_l (n_l, n_{l-1})
    activation : 'relu', 'sigmoid' or 'tanh' (every hidden layer)
    output : 'softmax' or 'sigmoid'
    loss : 'cross_entropy' (softmax output, integer labels) or
        'squared_error' (sigmoid output, target rows)
    lr : SGD learning rate
    """

    def __init__(self, params, activation, output, loss, lr):
        if (output, loss) not in (("softmax", "cross_entropy"), ("sigmoid", "squared_error")):
            raise ValueError(f"unsupported output/loss pair {output!r}/{loss!r}")
        self.W = [np.array(p) for p in params[0::2]]
        self.b = [np.array(p) for p in params[1::2]]
        self.f, self.df = _HIDDEN[activation]
        self.output = output
        self.loss = loss
        self.lr = lr

    def step(self, X, y):
        """One SGD step on the batch (X, y); returns the batch loss before it."""
        n = X.shape[0]
        L = len(self.W)
        # forward: hs[l] is the input of layer l
        hs = [X]
        for l in range(L - 1):
            hs.append(self.f(hs[-1] @ self.W[l].T + self.b[l]))
        a = hs[-1] @ self.W[-1].T + self.b[-1]
        # loss and dLoss/da of the output layer (mean over the batch)
        if self.loss == "cross_entropy":
            loss, delta = softmax_cross_entropy(a, y)
        else:
            h = _sigmoid(a)
            err = h - y
            loss = 0.5 * np.sum(err * err) / n
            delta = err * h * (1.0 - h) / n
        # backward
        grads = [None] * L
        for l in range(L - 1, -1, -1):
            dW = delta.T @ hs[l]
            db = delta.sum(axis=0)
            grads[l] = (dW, db)
            if l > 0:
                delta = (delta @ self.W[l]) * self.df(hs[l])
        # SGD update
        for l in range(L):
            self.W[l] -= self.lr * grads[l][0]
            self.b[l] -= self.lr * grads[l][1]
        return float(loss)
