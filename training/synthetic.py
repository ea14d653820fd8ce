"""The synthetic multi-task regression data of Ma et al. (KDD 2018), section 5.1.

    u_1 ⟂ u_2 unit vectors in R^d,  w_1 = c·u_1,  w_2 = c·(p·u_1 + sqrt(1 - p²)·u_2)
    x ~ N(0, I_d),  y_k = w_kᵀx + Σ_{i=1..m} sin(α_i·w_kᵀx + β_i) + ε_k,  ε_k ~ N(0, σ²)

so cos(w_1, w_2) = p sets how related the tasks are. With T > 2 tasks every pair has cosine p:
the weight vectors are c·U·L, where U holds T orthonormal columns and L is the Cholesky factor of
the T×T matrix with ones on the diagonal and p elsewhere. For T = 2 that is exactly the paper's
construction. Pure numpy: the experiments and the tests share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.config import SyntheticDataConfig


@dataclass(frozen=True)
class SyntheticTaskWeights:
    """The hidden structure behind one synthetic data set."""

    basis: np.ndarray  # (d, T) orthonormal columns u_1..u_T
    task_weights: np.ndarray  # (T, d) rows w_1..w_T
    alphas: np.ndarray  # (m,)
    betas: np.ndarray  # (m,)


@dataclass(frozen=True)
class SyntheticSplit:
    features: np.ndarray  # (n, d) float32
    labels: np.ndarray  # (n, T) float32


@dataclass(frozen=True)
class SyntheticDataset:
    train: SyntheticSplit
    validation: SyntheticSplit
    test: SyntheticSplit
    weights: SyntheticTaskWeights
    config: SyntheticDataConfig

    def description(self) -> dict:
        """Everything needed to regenerate this data set, with the exact α and β used, and how
        nonlinear its tasks are (`linear_unexplained_share`)."""
        share = linear_unexplained_share(
            self.weights.alphas, self.weights.betas, self.config.scale, self.config.noise_std
        )
        return {
            "kind": "synthetic",
            **self.config.model_dump(),
            "alphas": self.weights.alphas.tolist(),
            "betas": self.weights.betas.tolist(),
            "linear_unexplained_share": round(share, 4),
        }


def linear_unexplained_share(
    alphas: np.ndarray, betas: np.ndarray, scale: float, noise_std: float
) -> float:
    """The share of a task's label variance that the best linear function of x cannot explain.

    A label depends on x only through z = wᵀx ~ N(0, c²): y = z + s(z) + ε with
    s(z) = Σ sin(α_i z + β_i). The best linear predictor is therefore a + b·z, and what it leaves,
    Var(y) - Cov(y, z)² / c², is exact from the Gaussian moments
        E[sin(αz + β)] = sin β · e^{-α²c²/2},   E[z sin(αz + β)] = α c² cos β · e^{-α²c²/2}
        E[sin(α_i z + β_i) sin(α_j z + β_j)] = ½(cos(β_i - β_j) e^{-(α_i - α_j)²c²/2}
                                                - cos(β_i + β_j) e^{-(α_i + α_j)²c²/2}).
    The same for every task and every p (each |w_k| = c); the noise ε counts as unexplained.
    """
    alphas, betas = np.asarray(alphas, dtype=np.float64), np.asarray(betas, dtype=np.float64)
    variance = scale**2

    def damping(frequency: np.ndarray) -> np.ndarray:
        return np.exp(-(frequency**2) * variance / 2)

    sine_mean = float(np.sum(np.sin(betas) * damping(alphas)))
    sine_covariance = float(np.sum(alphas * variance * np.cos(betas) * damping(alphas)))
    products = 0.5 * (
        np.cos(betas[:, None] - betas[None, :]) * damping(alphas[:, None] - alphas[None, :])
        - np.cos(betas[:, None] + betas[None, :]) * damping(alphas[:, None] + alphas[None, :])
    )  # (m, m): E[sin_i sin_j]
    sine_variance = float(products.sum()) - sine_mean**2
    label_variance = variance + 2 * sine_covariance + sine_variance + noise_std**2
    explained = (variance + sine_covariance) ** 2 / variance
    return (label_variance - explained) / label_variance


def correlated_cholesky(num_tasks: int, correlation: float) -> np.ndarray:
    """Lower-triangular L with L Lᵀ = the matrix with ones on the diagonal and `correlation` off it.

    Works for the semi-definite edge cases (p = 1, or p = -1/(T-1)), where numpy's cholesky fails.
    """
    target = np.full((num_tasks, num_tasks), correlation, dtype=np.float64)
    np.fill_diagonal(target, 1.0)
    factor = np.zeros_like(target)
    for row in range(num_tasks):
        for col in range(row + 1):
            partial = target[row, col] - factor[row, :col] @ factor[col, :col]
            if row == col:
                factor[row, col] = np.sqrt(max(partial, 0.0))
            elif factor[col, col] > 1e-12:
                factor[row, col] = partial / factor[col, col]
    return factor


def sinusoid_parameters(config: SyntheticDataConfig) -> tuple[np.ndarray, np.ndarray]:
    """α and β: given explicitly in the config, or drawn once from N(0, 1) with their own seed."""
    rng = np.random.default_rng(config.sinusoid_seed)
    alphas = rng.standard_normal(config.num_sinusoids)
    betas = rng.standard_normal(config.num_sinusoids)
    if config.alphas is not None:
        alphas = np.asarray(config.alphas, dtype=np.float64)
    if config.betas is not None:
        betas = np.asarray(config.betas, dtype=np.float64)
    return alphas, betas


def draw_task_weights(
    config: SyntheticDataConfig, rng: np.random.Generator
) -> SyntheticTaskWeights:
    gaussian = rng.standard_normal((config.input_dim, config.num_tasks))
    basis, upper = np.linalg.qr(gaussian)  # (d, T) orthonormal columns
    basis = basis * np.sign(np.diag(upper))  # make the draw unique
    mixing = correlated_cholesky(config.num_tasks, config.correlation)  # (T, T)
    task_weights = config.scale * (basis @ mixing.T).T  # (T, d): w_k = c · Σ_j L_kj u_j
    alphas, betas = sinusoid_parameters(config)
    return SyntheticTaskWeights(basis, task_weights, alphas, betas)


def synthetic_labels(
    features: np.ndarray,
    weights: SyntheticTaskWeights,
    noise_std: float,
    rng: np.random.Generator,
) -> np.ndarray:
    projections = features @ weights.task_weights.T  # (n, T): w_kᵀx
    phases = projections[..., None] * weights.alphas + weights.betas  # (n, T, m)
    labels = projections + np.sin(phases).sum(axis=-1)
    labels += noise_std * rng.standard_normal(labels.shape)
    return labels


def generate(config: SyntheticDataConfig) -> SyntheticDataset:
    """Draw weights, then train/validation/test rows, from `config.seed`: same seed, same data."""
    rng = np.random.default_rng(config.seed)
    weights = draw_task_weights(config, rng)

    def split(rows: int) -> SyntheticSplit:
        features = rng.standard_normal((rows, config.input_dim))
        labels = synthetic_labels(features, weights, config.noise_std, rng)
        return SyntheticSplit(features.astype(np.float32), labels.astype(np.float32))

    train = split(config.train_size)
    validation = split(config.validation_size)
    test = split(config.test_size)
    return SyntheticDataset(train, validation, test, weights, config)
