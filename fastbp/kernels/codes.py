"""Integer codes shared by kernels and the Python registries that name them."""
import numpy as np

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
NONFINITE_UPDATE = 3

# -- compilation options shared by every kernel ---------------------------------
#: error_model="numpy": float division follows IEEE (inf/nan) instead of raising
#: ZeroDivisionError; the Python model's per-division check stops LLVM from
#: vectorizing loops such as Adam's update (measured 17 -> 3 us on 15k params).
KERNEL = {"cache": True, "error_model": "numpy"}
#: for float64 reductions: reassociation lets LLVM vectorize the sum. nnan and
#: ninf are deliberately left out, so NaN/inf still propagate and the
#: finiteness checks that follow keep working.
REDUCTION = dict(KERNEL, fastmath={"reassoc", "contract", "nsz", "arcp"})
#: for float32 elementwise loops of polynomial approximations: a * b + c may
#: become one fused multiply-add (one rounding instead of two). Like
#: REDUCTION, these flags apply to everything inlined into the function, so a
#: function compiled with them is called, never inlined into a KERNEL one.
CONTRACT = dict(KERNEL, fastmath={"contract"})

#: the offset 0 as an int64, for kernels to pass to other kernels: a literal 0
#: argument is typed Literal[int](0) and compiles the callee once more
ZERO = np.int64(0)
