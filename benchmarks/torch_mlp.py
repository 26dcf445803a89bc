"""The PyTorch version of the NumPy baseline's training step (optional: the
benchmarks import this only after ``pytest.importorskip("torch")``).

Eager mode, library-default threads, parameters as leaf tensors, the same
loss definitions and plain SGD as :mod:`numpy_mlp`.
"""
import numpy as np
import torch
import torch.nn.functional as F

_HIDDEN = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


def sgd_step(params, loss, lr):
    """Backpropagate ``loss`` into the leaf tensors ``params`` and take one
    plain SGD step on them; returns the loss as a float."""
    for p in params:
        p.grad = None
    loss.backward()
    with torch.no_grad():
        for p in params:
            p.add_(p.grad, alpha=-lr)
    return loss.item()


class TorchMLP:
    """Same constructor and ``step(X, y)`` as :class:`numpy_mlp.NumpyMLP`;
    X and y are NumPy arrays (wrapped without copying)."""

    def __init__(self, params, activation, output, loss, lr):
        if (output, loss) not in (("softmax", "cross_entropy"), ("sigmoid", "squared_error")):
            raise ValueError(f"unsupported output/loss pair {output!r}/{loss!r}")
        self.params = [torch.tensor(np.array(p), requires_grad=True) for p in params]
        self.f = _HIDDEN[activation]
        self.loss = loss
        self.lr = lr

    def step(self, X, y):
        X = torch.from_numpy(X)
        y = torch.from_numpy(y)
        Ws, bs = self.params[0::2], self.params[1::2]
        h = X
        for W, b in zip(Ws[:-1], bs[:-1]):
            h = self.f(F.linear(h, W, b))
        a = F.linear(h, Ws[-1], bs[-1])
        if self.loss == "cross_entropy":
            loss = F.cross_entropy(a, y)
        else:
            err = torch.sigmoid(a) - y
            loss = 0.5 * (err * err).sum() / X.shape[0]
        return sgd_step(self.params, loss, self.lr)
