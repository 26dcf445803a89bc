"""The JAX version of the NumPy baseline's training step (optional: the
benchmarks import this only after ``pytest.importorskip("jax")``).

The whole step (forward, loss, ``value_and_grad``, SGD update) is one
``jax.jit`` function; float64 needs ``jax_enable_x64``, which is switched on
here (float32 arrays stay float32). ``JaxMLP.fit`` is JAX's fused training
loop, the peer of fastbp's ``fit``: every epoch of a call in one ``jax.jit``
function, ``lax.fori_loop`` over the batches of each epoch's permutation.
"""
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

jax.config.update("jax_enable_x64", True)

_HIDDEN = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}


def cross_entropy(a, y):
    """Mean softmax cross-entropy of the logits ``a`` (n, o), integer labels ``y``."""
    picked = jnp.take_along_axis(a, y[:, None], axis=1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(a, axis=1) - picked)


def sgd(params, grads, lr):
    """One plain SGD update of the parameter tree."""
    return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)


def make_sgd_step(objective, lr):
    """``step(params, X, y) -> (params, loss)``: ``objective`` and its gradient,
    then one SGD update, as one ``jax.jit`` function."""
    @jax.jit
    def step(params, X, y):
        value, grads = jax.value_and_grad(objective)(params, X, y)
        return sgd(params, grads, lr), value

    return step


def _make_objective(activation, loss):
    f = _HIDDEN[activation]

    def objective(params, X, y):
        h = X
        for W, b in params[:-1]:
            h = f(h @ W.T + b)
        W, b = params[-1]
        a = h @ W.T + b
        if loss == "cross_entropy":
            return cross_entropy(a, y)
        err = jax.nn.sigmoid(a) - y
        return 0.5 * jnp.sum(err * err) / X.shape[0]

    return objective


def _make_fit(activation, loss, lr, batch_size):
    """Whole epochs in one ``jax.jit`` call: ``lax.fori_loop`` over the
    epochs, and inside it over the batches of that epoch's permutation (each
    batch a ``lax.dynamic_slice`` of the permuted data), one SGD update per
    batch; JAX's fastest form of a training loop (no Python per step)."""
    objective = _make_objective(activation, loss)
    grad_fn = jax.value_and_grad(objective)

    @jax.jit
    def fit(params, X, y, perms):
        n = X.shape[0]
        steps = n // batch_size

        def epoch(e, carry):
            params, _ = carry
            Xp = X[perms[e]]
            yp = y[perms[e]]

            def update(i, inner):
                params, total = inner
                xb = lax.dynamic_slice_in_dim(Xp, i * batch_size, batch_size)
                yb = lax.dynamic_slice_in_dim(yp, i * batch_size, batch_size)
                value, grads = grad_fn(params, xb, yb)
                return sgd(params, grads, lr), total + value * batch_size

            params, total = lax.fori_loop(0, steps, update, (params, jnp.zeros((), X.dtype)))
            return params, total / (steps * batch_size)

        return lax.fori_loop(0, perms.shape[0], epoch, (params, jnp.zeros((), X.dtype)))

    return fit


class JaxMLP:
    """Same constructor and ``step(X, y)`` as :class:`numpy_mlp.NumpyMLP`.
    The first call compiles; the benchmarks make it in their warm-up."""

    def __init__(self, params, activation, output, loss, lr):
        if (output, loss) not in (("softmax", "cross_entropy"), ("sigmoid", "squared_error")):
            raise ValueError(f"unsupported output/loss pair {output!r}/{loss!r}")
        self.params = [(jnp.asarray(np.array(W)), jnp.asarray(np.array(b)))
                       for W, b in zip(params[0::2], params[1::2])]
        self._step = make_sgd_step(_make_objective(activation, loss), lr)
        self._fit = {}
        self._spec = (activation, loss, lr)

    def step(self, X, y):
        self.params, value = self._step(self.params, X, y)
        return float(value)  # waits for the result, as the other steps do

    def fit(self, X, y, epochs, batch_size, rng):
        """``epochs`` epochs of SGD over (X, y) in batches of ``batch_size`` (which
        must divide len(X)), each epoch in the order of a fresh permutation from
        ``rng``, all in one compiled call. Returns (mean loss of the last epoch,
        number of updates)."""
        n = X.shape[0]
        if n % batch_size:
            raise ValueError(f"batch_size={batch_size} must divide the {n} samples")
        if batch_size not in self._fit:
            self._fit[batch_size] = _make_fit(*self._spec, batch_size)
        perms = np.stack([rng.permutation(n) for _ in range(epochs)]).astype(np.int32)
        self.params, loss = self._fit[batch_size](self.params, X, y, perms)
        return float(loss), epochs * (n // batch_size)
