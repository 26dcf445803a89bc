"""Activation functions and their derivatives, applied in place to a batch.

Derivatives are computed from the activation's *output* h = f(a): every
activation here has f'(a) expressible through h, so the forward pass only has
to keep outputs.
"""
import numpy as np
from numba import njit

from .codes import KERNEL, IDENTITY, LEAKY_RELU, LEAKY_SLOPE, RELU, SIGMOID, SOFTMAX, TANH


@njit(inline="always", **KERNEL)
def sigmoid_scalar(a):
    # split on the sign so exp never overflows
    if a >= 0:
        return 1.0 / (1.0 + np.exp(-a))
    e = np.exp(a)
    return e / (1.0 + e)


@njit(**KERNEL)
def softmax_rows(A, H):
    """H[i] = softmax(A[i]) with the row maximum subtracted first. (b, k) arrays."""
    b, k = A.shape
    for i in range(b):
        m = A[i, 0]
        for j in range(1, k):
            if A[i, j] > m:
                m = A[i, j]
        s = 0.0
        for j in range(k):
            e = np.exp(A[i, j] - m)
            H[i, j] = e
            s += e
        inv = 1.0 / s
        for j in range(k):
            H[i, j] *= inv


@njit(**KERNEL)
def activate(A, H, code):
    """H = f(A) elementwise (row-wise for softmax); A and H may be the same array.

    Parameters
    ----------
    A, H : ndarray of shape (batch, n), float32 or float64
    code : int, one of the activation codes
    """
    b, n = A.shape
    if code == SOFTMAX:
        softmax_rows(A, H)
    elif code == IDENTITY:
        if H is not A:
            for i in range(b):
                for j in range(n):
                    H[i, j] = A[i, j]
    elif code == SIGMOID:
        for i in range(b):
            for j in range(n):
                H[i, j] = sigmoid_scalar(A[i, j])
    elif code == TANH:
        for i in range(b):
            for j in range(n):
                H[i, j] = np.tanh(A[i, j])
    elif code == RELU:
        for i in range(b):
            for j in range(n):
                a = A[i, j]
                H[i, j] = a if a > 0 else 0.0
    elif code == LEAKY_RELU:
        for i in range(b):
            for j in range(n):
                a = A[i, j]
                H[i, j] = a if a > 0 else LEAKY_SLOPE * a


@njit(**KERNEL)
def backprop_activation(H, D, code):
    """D *= f'(a), with f'(a) computed from the output H = f(a). (batch, n) arrays.

    For softmax, D is replaced by the Jacobian-vector product
    J^T D = H * (D - sum(D * H)) row by row.
    """
    b, n = H.shape
    if code == IDENTITY:
        return
    if code == SIGMOID:
        for i in range(b):
            for j in range(n):
                h = H[i, j]
                D[i, j] *= h * (1.0 - h)
    elif code == TANH:
        for i in range(b):
            for j in range(n):
                h = H[i, j]
                D[i, j] *= 1.0 - h * h
    elif code == RELU:
        for i in range(b):
            for j in range(n):
                if H[i, j] <= 0:
                    D[i, j] = 0.0
    elif code == LEAKY_RELU:
        for i in range(b):
            for j in range(n):
                if H[i, j] <= 0:
                    D[i, j] *= LEAKY_SLOPE
    elif code == SOFTMAX:
        for i in range(b):
            s = 0.0
            for j in range(n):
                s += D[i, j] * H[i, j]
            for j in range(n):
                D[i, j] = H[i, j] * (D[i, j] - s)
