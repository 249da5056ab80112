"""The Keras fallback's forward pass in NumPy (``service.engine.fallback``): the arithmetic a folder
without ``model.onnx`` runs when Keras is installed."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine.fallback import ACTIVATIONS, Dense, KerasRuntime, Normalize, NumpyNetwork


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def dense(rng: np.random.Generator, inputs: int, outputs: int, activation: str) -> Dense:
    kernel = rng.standard_normal((inputs, outputs)).astype(np.float32)
    bias = rng.standard_normal(outputs).astype(np.float32)
    return Dense(kernel, bias, ACTIVATIONS[activation])


def multi_hot(positions: list[np.ndarray], width: int) -> np.ndarray:
    rows = np.zeros((len(positions), width), dtype=np.float32)
    for row, hot in zip(rows, positions):
        row[hot] = 1.0
    return rows


def test_a_sum_of_kernel_rows_equals_the_product_with_the_multi_hot_row(rng):
    layer = dense(rng, 50, 4, "relu")
    positions = [np.array([1, 3, 49]), np.array([1]), np.arange(1, 50)]
    by_sum = layer.from_positions(positions)
    by_product = layer(multi_hot(positions, 50))
    np.testing.assert_allclose(by_sum, by_product, rtol=1e-5, atol=1e-5)


def test_normalize_is_the_feature_wise_standard_score():
    step = Normalize(np.array([1.0, 10.0], np.float32), np.array([2.0, 5.0], np.float32))
    assert step(np.array([[3.0, 0.0]], np.float32)).tolist() == [[1.0, -2.0]]


def test_softmax_rows_sum_to_one_and_keep_the_order(rng):
    scores = rng.standard_normal((3, 46)).astype(np.float32) * 20
    probabilities = ACTIVATIONS["softmax"](scores)
    # float32 exp and sum are SIMD kernels that differ by CPU: a few ulps of 1, not an exact 1e-6
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=16 * np.finfo(np.float32).eps)
    assert (probabilities.argmax(axis=1) == scores.argmax(axis=1)).all()


def test_sigmoid_of_zero_is_one_half():
    assert ACTIVATIONS["sigmoid"](np.zeros(1, np.float32))[0] == np.float32(0.5)


def test_a_network_chains_its_steps_in_order(rng):
    first, second = dense(rng, 6, 3, "tanh"), dense(rng, 3, 1, "linear")
    x = rng.standard_normal((5, 6)).astype(np.float32)
    network = NumpyNetwork((first, second))
    np.testing.assert_array_equal(network(x), second(first(x)))
    assert network.reads_positions


def test_a_network_that_starts_with_normalize_does_not_read_positions(rng):
    network = NumpyNetwork((Normalize(np.zeros(3, np.float32), np.ones(3, np.float32)), dense(rng, 3, 1, "linear")))
    assert not network.reads_positions


def test_the_runtime_builds_rows_when_its_network_cannot_read_positions(rng):
    layer = dense(rng, 20, 2, "sigmoid")
    calls: list[tuple[int, ...]] = []

    def keras_like(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape)
        return layer(x)

    runtime = KerasRuntime(keras_like, keras_like, network=None)
    positions = [np.array([1, 5]), np.array([1, 2, 19])]
    np.testing.assert_array_equal(runtime.from_positions(positions, 20), layer(multi_hot(positions, 20)))
    assert calls == [(2, 20)]
    assert runtime.description == "Keras call (Keras fallback, no model.onnx)"


def test_the_runtime_feeds_float32_rows_whatever_it_is_given(rng):
    seen: list[np.dtype] = []
    runtime = KerasRuntime(lambda x: seen.append(x.dtype) or x, lambda x: x)
    runtime(np.array([[1, 2]], dtype=np.int64))
    assert seen == [np.float32]
