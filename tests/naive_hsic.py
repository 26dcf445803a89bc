"""Slow, obvious NumPy twins of alternatives._hsic_kernels, written from the
definitions of the HSIC bottleneck (Ma, Lewis & Kleijn 2020).

Nothing here imports fastbp or alternatives. Everything runs in float64 with
explicit matrices: pairwise differences for the Gram, H = I - 11^T / m as a
matrix, np.linalg.inv for every inverse.
"""
import numpy as np


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def centering_matrix(m):
    """H = I - 11^T / m."""
    return np.eye(m) - np.ones((m, m)) / m


def gaussian_gram(A, sigma):
    """K[i, j] = exp(-||a_i - a_j||^2 / (2 sigma^2 d)), d = A's width."""
    A = _f64(A)
    d = A.shape[1]
    diff = A[:, None, :] - A[None, :, :]
    return np.exp(-(diff ** 2).sum(axis=2) / (2.0 * sigma ** 2 * d))


def center(K):
    """H K H."""
    H = centering_matrix(K.shape[0])
    return H @ _f64(K) @ H


def inner_product(A, B):
    """sum_ij A_ij B_ij = tr(A^T B)."""
    return np.trace(_f64(A).T @ _f64(B))


def hsic(A, B, sigma):
    """(m - 1)^-2 tr(K_A H K_B H)."""
    m = A.shape[0]
    H = centering_matrix(m)
    return np.trace(gaussian_gram(A, sigma) @ H @ gaussian_gram(B, sigma) @ H) / (m - 1) ** 2


def normalized_r(A, sigma, epsilon):
    """R = K~ (K~ + epsilon m I)^-1, K~ = H K_A H."""
    m = A.shape[0]
    Kt = center(gaussian_gram(A, sigma))
    return Kt @ np.linalg.inv(Kt + epsilon * m * np.eye(m))


def nhsic(A, B, sigma, epsilon):
    """tr(R_A R_B)."""
    return np.trace(normalized_r(A, sigma, epsilon) @ normalized_r(B, sigma, epsilon))


def target_matrix(RX, RY, beta):
    """S = R_X - beta R_Y."""
    return _f64(RX) - beta * _f64(RY)


def layer_value(Z, S, sigma, epsilon):
    """J = tr(R_Z S)."""
    return np.trace(normalized_r(Z, sigma, epsilon) @ _f64(S))


def layer_gradient(Z, S, sigma, epsilon):
    """dJ/dZ of J = tr(R_Z S), by the chain rule through M = K~_Z + c I and
    the Gaussian kernel: G = c H M^-1 S M^-1 H, P = G * K, r = P 1,
    dJ/dZ = -(2 / (sigma^2 d)) (diag(r) Z - P Z)."""
    Z = _f64(Z)
    m, d = Z.shape
    c = epsilon * m
    H = centering_matrix(m)
    K = gaussian_gram(Z, sigma)
    Minv = np.linalg.inv(H @ K @ H + c * np.eye(m))
    G = c * H @ Minv @ _f64(S) @ Minv @ H
    P = G * K
    return -(2.0 / (sigma ** 2 * d)) * (np.diag(P.sum(axis=1)) @ Z - P @ Z)


def tanh_layer_gradient(Zprev, W, b, S, sigma, epsilon):
    """(dJ/dW, dJ/db) for Z = tanh(Zprev W^T + b), W of shape (n_out, n_in):
    delta = dJ/dZ * (1 - Z^2), dW = delta^T Zprev, db = column sums of delta."""
    Zprev = _f64(Zprev)
    Z = np.tanh(Zprev @ _f64(W).T + _f64(b))
    delta = layer_gradient(Z, S, sigma, epsilon) * (1.0 - Z ** 2)
    return delta.T @ Zprev, delta.sum(axis=0)
