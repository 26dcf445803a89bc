"""The JAX version of the NumPy baseline's training step (optional: the
benchmarks import this only after ``pytest.importorskip("jax")``).

The whole step (forward, loss, ``value_and_grad``, SGD update) is one
``jax.jit`` function; float64 needs ``jax_enable_x64``, which is switched on
here (float32 arrays stay float32).
"""
import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

_HIDDEN = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}


def _make_step(activation, loss, lr):
    f = _HIDDEN[activation]

    def objective(params, X, y):
        h = X
        for W, b in params[:-1]:
            h = f(h @ W.T + b)
        W, b = params[-1]
        a = h @ W.T + b
        if loss == "cross_entropy":
            picked = jnp.take_along_axis(a, y[:, None], axis=1)[:, 0]
            return jnp.mean(jax.nn.logsumexp(a, axis=1) - picked)
        err = jax.nn.sigmoid(a) - y
        return 0.5 * jnp.sum(err * err) / X.shape[0]

    @jax.jit
    def step(params, X, y):
        value, grads = jax.value_and_grad(objective)(params, X, y)
        params = jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)
        return params, value

    return step


class JaxMLP:
    """Same constructor and ``step(X, y)`` as :class:`numpy_mlp.NumpyMLP`.
    The first call compiles; the benchmarks make it in their warm-up."""

    def __init__(self, params, activation, output, loss, lr):
        if (output, loss) not in (("softmax", "cross_entropy"), ("sigmoid", "squared_error")):
            raise ValueError(f"unsupported output/loss pair {output!r}/{loss!r}")
        self.params = [(jnp.asarray(np.array(W)), jnp.asarray(np.array(b)))
                       for W, b in zip(params[0::2], params[1::2])]
        self._step = _make_step(activation, loss, lr)

    def step(self, X, y):
        self.params, value = self._step(self.params, X, y)
        return float(value)  # waits for the result, as the other steps do
