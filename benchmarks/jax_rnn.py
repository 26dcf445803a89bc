"""The JAX version of the NumPy RNN baseline's training step (optional: the
benchmarks import this only after ``pytest.importorskip("jax")``).

The whole step (input projection, ``lax.scan`` over time, loss,
``value_and_grad``, SGD update) is one ``jax.jit`` function; truncated BPTT
runs the earlier windows under ``lax.stop_gradient``. float64 needs
``jax_enable_x64``, which is switched on here (float32 arrays stay float32).
"""
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax_mlp import cross_entropy, make_sgd_step

jax.config.update("jax_enable_x64", True)


def _make_objective(loss, truncate):
    def run(W_rec, h, A):
        """States over the time-major pre-activations A (T, n, h) from h."""
        def cell(h, a_t):
            h = jnp.tanh(a_t + h @ W_rec.T)
            return h, None
        return lax.scan(cell, h, A)[0]

    def objective(params, X, y):
        W_in, W_rec, b, W_out, b_out = params
        T = X.shape[1]
        A = jnp.swapaxes(X, 0, 1) @ W_in.T + b               # one product for all steps
        t0 = 0 if truncate is None else (T - 1) // truncate * truncate
        h = jnp.zeros((X.shape[0], W_rec.shape[0]), A.dtype)
        if t0 > 0:  # earlier windows only advance the state
            h = lax.stop_gradient(run(W_rec, h, A[:t0]))
        a = run(W_rec, h, A[t0:]) @ W_out.T + b_out
        if loss == "cross_entropy":
            return cross_entropy(a, y)
        err = a - y.reshape(a.shape)
        return jnp.mean(err * err)

    return objective


class JaxRNN:
    """Same constructor and ``step(X, y)`` as :class:`numpy_rnn.NumpyRNN`.
    The first call compiles; the benchmarks make it in their warm-up."""

    def __init__(self, params, loss, lr, truncate=None):
        if loss not in ("cross_entropy", "mse"):
            raise ValueError(f"unsupported loss {loss!r}; expected 'cross_entropy' or 'mse'")
        self.params = tuple(jnp.asarray(np.array(p)) for p in params)
        self._step = make_sgd_step(_make_objective(loss, truncate), lr)

    def step(self, X, y):
        self.params, value = self._step(self.params, X, y)
        return float(value)  # waits for the result, as the other steps do
