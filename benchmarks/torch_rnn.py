"""The PyTorch version of the NumPy RNN baseline's training step (optional: the
benchmarks import this only after ``pytest.importorskip("torch")``).

``torch.nn.RNN`` (tanh, batch_first) + ``torch.nn.Linear`` on the last state,
eager mode, library-default threads, the same losses, truncation and plain SGD
as :mod:`numpy_rnn`. ``nn.RNN`` has two biases (b_ih + b_hh); b_ih holds b
and b_hh is frozen at zero, so the model and its SGD step are fastbp's.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch_mlp import sgd_step


class TorchRNN:
    """Same constructor and ``step(X, y)`` as :class:`numpy_rnn.NumpyRNN`;
    X and y are NumPy arrays (wrapped without copying)."""

    def __init__(self, params, loss, lr, truncate=None):
        if loss not in ("cross_entropy", "mse"):
            raise ValueError(f"unsupported loss {loss!r}; expected 'cross_entropy' or 'mse'")
        W_in, W_rec, b, W_out, b_out = [torch.tensor(np.array(p)) for p in params]
        (h, i), o = W_in.shape, W_out.shape[0]
        self.rnn = torch.nn.RNN(i, h, nonlinearity="tanh", batch_first=True, dtype=W_in.dtype)
        self.out = torch.nn.Linear(h, o, dtype=W_in.dtype)
        with torch.no_grad():
            for p, v in ((self.rnn.weight_ih_l0, W_in), (self.rnn.weight_hh_l0, W_rec),
                         (self.rnn.bias_ih_l0, b), (self.rnn.bias_hh_l0, torch.zeros_like(b)),
                         (self.out.weight, W_out), (self.out.bias, b_out)):
                p.copy_(v)
        self.rnn.bias_hh_l0.requires_grad_(False)
        self.params = [p for p in (*self.rnn.parameters(), *self.out.parameters())
                       if p.requires_grad]
        self.loss = loss
        self.lr = lr
        self.truncate = truncate

    def step(self, X, y):
        X = torch.from_numpy(X)
        y = torch.from_numpy(y)
        T = X.shape[1]
        t0 = 0 if self.truncate is None else (T - 1) // self.truncate * self.truncate
        h0 = None
        if t0 > 0:  # earlier windows only advance the state
            with torch.no_grad():
                _, h0 = self.rnn(X[:, :t0])
        _, hT = self.rnn(X[:, t0:], h0)
        a = self.out(hT[0])
        if self.loss == "cross_entropy":
            loss = F.cross_entropy(a, y)
        else:
            loss = F.mse_loss(a, y.reshape(a.shape))
        return sgd_step(self.params, loss, self.lr)
