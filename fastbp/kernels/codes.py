"""Integer codes shared by kernels and the Python registries that name them."""

# activations (hidden and output)
IDENTITY = 0
SIGMOID = 1
TANH = 2
RELU = 3
LEAKY_RELU = 4
SOFTMAX = 5

#: slope of leaky_relu for negative inputs (as torch.nn.LeakyReLU's default)
LEAKY_SLOPE = 0.01

# losses
SQUARED_ERROR = 0
MSE = 1
CROSS_ENTROPY = 2
BINARY_CROSS_ENTROPY = 3

# optimizers
SGD = 0
ADAM = 1

# step status returned by training kernels
OK = 0
NONFINITE_LOSS = 1
NONFINITE_GRADIENT = 2
