"""Name -> kernel code registries for activation functions."""
from .kernels import codes

#: activations allowed on hidden layers
HIDDEN_ACTIVATIONS = {
    "identity": codes.IDENTITY,
    "sigmoid": codes.SIGMOID,
    "tanh": codes.TANH,
    "relu": codes.RELU,
    "leaky_relu": codes.LEAKY_RELU,
}

#: activations allowed on the output layer
OUTPUT_ACTIVATIONS = {
    "identity": codes.IDENTITY,
    "sigmoid": codes.SIGMOID,
    "softmax": codes.SOFTMAX,
}


def _code(registry, kind, name, argument):
    try:
        return registry[name]
    except (KeyError, TypeError):
        raise ValueError(f"{argument}={name!r} is not {kind}; expected one of "
                         f"{sorted(registry)}") from None


def hidden_code(name, argument="activation"):
    """Kernel code of a hidden activation, or ValueError naming the choices."""
    return _code(HIDDEN_ACTIVATIONS, "a hidden activation", name, argument)


def output_code(name, argument="output"):
    """Kernel code of an output activation, or ValueError naming the choices."""
    return _code(OUTPUT_ACTIVATIONS, "an output activation", name, argument)
