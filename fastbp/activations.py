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


def hidden_code(name, argument="activation"):
    """Kernel code of a hidden activation, or ValueError naming the choices."""
    try:
        return HIDDEN_ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"{argument}={name!r} is not a hidden activation; expected one of "
            f"{sorted(HIDDEN_ACTIVATIONS)}") from None


def output_code(name, argument="output"):
    """Kernel code of an output activation, or ValueError naming the choices."""
    try:
        return OUTPUT_ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"{argument}={name!r} is not an output activation; expected one of "
            f"{sorted(OUTPUT_ACTIVATIONS)}") from None
