import numpy as np
import pytest

from training import synthetic
from training.config import ConfigError, SyntheticDataConfig, build_config


def small_config(**overrides) -> SyntheticDataConfig:
    sizes = {"train_size": 2000, "validation_size": 10, "test_size": 10}
    return SyntheticDataConfig(**(sizes | overrides))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("p", [1.0, 0.9, 0.5, 0.0, -0.3, -1.0])
def test_task_weight_vectors_have_cosine_p_and_norm_c(p):
    data = synthetic.generate(small_config(correlation=p, scale=2.5))
    w1, w2 = data.weights.task_weights
    assert cosine(w1, w2) == pytest.approx(p, abs=1e-9)
    assert np.linalg.norm(w1) == pytest.approx(2.5, abs=1e-9)
    assert np.linalg.norm(w2) == pytest.approx(2.5, abs=1e-9)


def test_basis_vectors_are_orthogonal_unit_vectors():
    basis = synthetic.generate(small_config()).weights.basis
    u1, u2 = basis.T
    assert u1 @ u2 == pytest.approx(0.0, abs=1e-12)
    assert np.linalg.norm(u1) == pytest.approx(1.0, abs=1e-12)
    assert np.linalg.norm(u2) == pytest.approx(1.0, abs=1e-12)


def test_two_tasks_follow_the_papers_construction_exactly():
    p, c = 0.3, 1.7
    data = synthetic.generate(small_config(correlation=p, scale=c))
    u1, u2 = data.weights.basis.T
    w1, w2 = data.weights.task_weights
    np.testing.assert_allclose(w1, c * u1, atol=1e-12)
    np.testing.assert_allclose(w2, c * (p * u1 + np.sqrt(1 - p**2) * u2), atol=1e-12)


def test_labels_follow_the_formula_up_to_the_noise():
    config = small_config(noise_std=0.0, num_sinusoids=3, alphas=[0.5, -1, 2], betas=[0, 1, -2])
    data = synthetic.generate(config)
    x, y = data.train.features.astype(np.float64), data.train.labels
    for k, w in enumerate(data.weights.task_weights):
        projection = x @ w
        expected = projection + sum(
            np.sin(a * projection + b) for a, b in zip([0.5, -1, 2], [0, 1, -2], strict=True)
        )
        np.testing.assert_allclose(y[:, k], expected, rtol=1e-5, atol=1e-5)


def test_noise_has_the_configured_standard_deviation():
    clean = synthetic.generate(small_config(noise_std=0.0, train_size=20000))
    noisy = synthetic.generate(small_config(noise_std=0.1, train_size=20000))
    np.testing.assert_array_equal(clean.train.features, noisy.train.features)
    residual = noisy.train.labels - clean.train.labels
    assert residual.std() == pytest.approx(0.1, rel=0.02)


def test_label_correlation_falls_as_p_falls():
    correlations = []
    for p in [1.0, 0.8, 0.5, 0.2, 0.0]:
        labels = synthetic.generate(small_config(correlation=p, train_size=20000)).train.labels
        correlations.append(np.corrcoef(labels.T)[0, 1])
    assert correlations == sorted(correlations, reverse=True)
    assert correlations[0] > 0.99
    assert abs(correlations[-1]) < 0.1


def test_same_seed_gives_same_data_and_another_seed_does_not():
    first = synthetic.generate(small_config(seed=7))
    again = synthetic.generate(small_config(seed=7))
    other = synthetic.generate(small_config(seed=8))
    np.testing.assert_array_equal(first.train.features, again.train.features)
    np.testing.assert_array_equal(first.test.labels, again.test.labels)
    assert not np.array_equal(first.train.features, other.train.features)


def test_sinusoid_parameters_are_shared_by_seeds_and_recorded():
    config = small_config(num_sinusoids=4)
    first, second = (
        synthetic.generate(config),
        synthetic.generate(config.model_copy(update={"seed": 3})),
    )
    np.testing.assert_array_equal(first.weights.alphas, second.weights.alphas)
    description = first.description()
    assert description["alphas"] == first.weights.alphas.tolist()
    assert description["betas"] == first.weights.betas.tolist()
    assert description["correlation"] == config.correlation


def test_many_tasks_are_pairwise_correlated_by_p():
    data = synthetic.generate(small_config(num_tasks=4, correlation=0.4))
    weights = data.weights.task_weights
    for i in range(4):
        for j in range(i + 1, 4):
            assert cosine(weights[i], weights[j]) == pytest.approx(0.4, abs=1e-9)


def test_impossible_correlation_for_many_tasks_is_rejected():
    with pytest.raises(ConfigError) as error:
        build_config({"data": {"num_tasks": 3, "correlation": -0.9}})
    assert str(error.value) == (
        "invalid config: data: correlation -0.9 is impossible for 3 tasks "
        "(every pair needs p >= -0.5)"
    )


@pytest.mark.parametrize(
    ("scale", "num_sinusoids", "sinusoid_seed"),
    [(3.0, 5, 0), (3.0, 5, 5), (1.0, 10, 3), (1.0, 0, 0)],
)
def test_linear_unexplained_share_matches_a_least_squares_fit(scale, num_sinusoids, sinusoid_seed):
    """The closed form equals 1 - R² of an ordinary least-squares fit on many generated rows."""
    config = small_config(
        input_dim=8,
        scale=scale,
        num_sinusoids=num_sinusoids,
        sinusoid_seed=sinusoid_seed,
        train_size=200_000,
    )
    data = synthetic.generate(config)
    design = np.hstack([data.train.features, np.ones((config.train_size, 1), np.float32)])
    for task in range(config.num_tasks):
        labels = data.train.labels[:, task].astype(np.float64)
        coefficients, *_ = np.linalg.lstsq(design.astype(np.float64), labels, rcond=None)
        residual = labels - design @ coefficients
        fitted_share = residual.var() / labels.var()
        assert data.description()["linear_unexplained_share"] == pytest.approx(
            fitted_share, rel=0.03, abs=2e-4
        )


def test_default_sinusoids_leave_little_to_the_nonlinearity():
    """sinusoid_seed 0 draws small α: a linear fit explains all but 0.6 % of the label variance."""
    assert synthetic.generate(small_config()).description()["linear_unexplained_share"] == 0.0061
