"""The learning-rate schedules (``learning_rate``, ``warmup_iter``): the rates
the optimizer actually receives, the plateau rule, and that the parameters
behave like every other scikit-learn parameter."""

import math
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

import skattention
from skattention import (
    AttentionClassifier,
    AttentionRegressor,
    TextAttentionClassifier,
    TextAttentionRegressor,
)
from skattention._nn._training import LearningRateSchedule, Optimizer

from blas_probe import BATCH_DEPENDENT_CHECKS

TINY = dict(d_model=8, n_heads=2, d_ff=16, n_jobs=1, random_state=0, learning_rate_init=1e-2)


def data(n=40, T=6, F=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, T, F))
    return X, (X[:, :, 0].sum(axis=1) > 0).astype(int)


def fit_recording_rates(estimator, X, y, monkeypatch, method="fit"):
    """Fit and return the learning rate of every optimizer update."""
    rates = []
    step = Optimizer.step

    def recording_step(self, params, grads):
        rates.append(self.learning_rate)
        return step(self, params, grads)

    monkeypatch.setattr(Optimizer, "step", recording_step)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        getattr(estimator, method)(X, y)
    monkeypatch.setattr(Optimizer, "step", step)
    return np.array(rates)


# ------------------------------------------------------------- the schedule


def test_constant_schedule_is_the_initial_rate_throughout():
    schedule = LearningRateSchedule("constant", 0.01, steps_per_epoch=3, max_epochs=4)
    assert [schedule(s) for s in range(12)] == [0.01] * 12
    assert not schedule.reduce_on_plateau() and schedule.learning_rate == 0.01


def test_cosine_schedule_follows_half_a_cosine_per_update():
    schedule = LearningRateSchedule("cosine", 0.1, steps_per_epoch=4, max_epochs=5)
    rates = np.array([schedule(s) for s in range(20)])
    expected = 0.05 * (1 + np.cos(np.pi * np.arange(20) / 20))
    np.testing.assert_allclose(rates, expected, rtol=1e-12)
    assert rates[0] == 0.1 and np.all(np.diff(rates) < 0) and rates[-1] > 0
    assert schedule(10) == pytest.approx(0.05)


def test_cosine_schedule_matches_torch_cosine_annealing_stepped_per_batch():
    torch = pytest.importorskip("torch")
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=3e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=6 * 7)
    ours = LearningRateSchedule("cosine", 3e-3, steps_per_epoch=6, max_epochs=7)
    for step in range(6 * 7):
        assert ours(step) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9, abs=1e-15)
        optimizer.step()
        scheduler.step()


def test_warmup_ramps_linearly_then_hands_over_to_the_schedule():
    schedule = LearningRateSchedule("cosine", 0.1, steps_per_epoch=2, max_epochs=6,
                                    warmup_epochs=2)
    rates = [schedule(s) for s in range(12)]
    np.testing.assert_allclose(rates[:4], [0.025, 0.05, 0.075, 0.1], rtol=1e-12)
    # The cosine runs over the 8 updates after the warm-up, from the peak.
    np.testing.assert_allclose(rates[4:], 0.05 * (1 + np.cos(np.pi * np.arange(8) / 8)),
                               rtol=1e-12)
    constant = LearningRateSchedule("constant", 0.1, 2, 6, warmup_epochs=1)
    assert [constant(s) for s in range(4)] == [0.05, 0.1, 0.1, 0.1]


def test_warmup_longer_than_the_fit_leaves_the_last_update_at_the_full_rate():
    schedule = LearningRateSchedule("constant", 0.1, steps_per_epoch=2, max_epochs=2,
                                    warmup_epochs=10)
    assert schedule.warmup_steps == 3
    assert [schedule(s) for s in range(4)] == pytest.approx([0.1 / 3, 0.2 / 3, 0.1, 0.1])


def test_adaptive_divides_by_five_until_one_millionth():
    schedule = LearningRateSchedule("adaptive", 1e-2, steps_per_epoch=1, max_epochs=1)
    reductions = 0
    while schedule.reduce_on_plateau():
        reductions += 1
        assert schedule(0) == pytest.approx(1e-2 / 5 ** reductions)
    # 1e-2 / 5**6 = 6.4e-7 is the first rate at or below 1e-6.
    assert reductions == schedule.n_reductions == 6
    assert not schedule.reduce_on_plateau() and schedule.n_reductions == 6


def test_schedule_refuses_unknown_kinds_and_empty_fits():
    with pytest.raises(ValueError, match="learning_rate must be one of"):
        LearningRateSchedule("linear", 0.1, 1, 1)
    with pytest.raises(ValueError, match="max_epochs must be >= 1"):
        LearningRateSchedule("cosine", 0.1, 1, 0)


# ------------------------------------------------------------ in estimators


def test_fit_hands_the_scheduled_rate_to_every_update(monkeypatch):
    X, y = data(n=40)
    # 40 samples in batches of 16: 3 updates per epoch, 4 epochs.
    clf = AttentionClassifier(**TINY, batch_size=16, max_iter=4, learning_rate="cosine",
                              warmup_iter=1)
    rates = fit_recording_rates(clf, X, y, monkeypatch)
    schedule = LearningRateSchedule("cosine", 1e-2, 3, 4, warmup_epochs=1)
    np.testing.assert_allclose(rates, [schedule(s) for s in range(12)], rtol=1e-12)
    assert rates.max() == pytest.approx(1e-2) and rates[0] == pytest.approx(1e-2 / 3)

    constant = fit_recording_rates(AttentionClassifier(**TINY, batch_size=16, max_iter=4), X,
                                   y, monkeypatch)
    np.testing.assert_array_equal(constant, np.full(12, 1e-2))


def test_warm_start_reruns_the_schedule_and_partial_fit_steps_at_the_initial_rate(monkeypatch):
    X, y = data(n=40)
    clf = AttentionClassifier(**TINY, batch_size=20, max_iter=3, learning_rate="cosine",
                              warm_start=True)
    first = fit_recording_rates(clf, X, y, monkeypatch)
    second = fit_recording_rates(clf, X, y, monkeypatch)
    np.testing.assert_array_equal(first, second)
    assert clf.n_iter_ == 6
    partial = fit_recording_rates(clf, X, y, monkeypatch, method="partial_fit")
    np.testing.assert_array_equal(partial, [1e-2, 1e-2])


def test_adaptive_divides_the_rate_on_plateaus_instead_of_stopping(monkeypatch):
    X, y = data(n=40)
    # tol so large that no epoch after the first (which improves on an
    # infinite best loss) counts as an improvement: a plateau every epoch.
    params = dict(**TINY, batch_size=40, max_iter=50, tol=1e9, n_iter_no_change=1)
    adaptive = AttentionClassifier(**params, learning_rate="adaptive")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)   # it stops before max_iter
        rates = fit_recording_rates(adaptive, X, y, monkeypatch)
    np.testing.assert_allclose(rates, [1e-2, *(1e-2 / 5.0 ** np.arange(7))], rtol=1e-12)
    assert adaptive.n_iter_ == 8
    constant = AttentionClassifier(**params)
    assert len(fit_recording_rates(constant, X, y, monkeypatch)) == 2
    assert constant.n_iter_ == 2


def test_adaptive_reduces_on_validation_plateaus_with_early_stopping():
    X, y = data(n=60)
    clf = AttentionClassifier(**TINY, batch_size=54, max_iter=200, tol=1e9, n_iter_no_change=2,
                              early_stopping=True, validation_fraction=0.1,
                              learning_rate="adaptive")
    clf.fit(X, y)
    # The first epoch improves on -inf; then two epochs per plateau, six
    # reductions, and the seventh plateau stops.
    assert clf.n_iter_ == 15 and len(clf.validation_scores_) == 15


@pytest.mark.parametrize("kind", ["cosine", "adaptive"])
def test_same_random_state_gives_identical_models(kind):
    X, y = data(n=40)
    params = dict(**TINY, batch_size=16, max_iter=6, learning_rate=kind, warmup_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one = AttentionClassifier(**params).fit(X, y)
        two = clone(one).fit(X, y)
        constant = AttentionClassifier(**{**params, "learning_rate": "constant",
                                          "warmup_iter": 0}).fit(X, y)
    np.testing.assert_array_equal(one.params_, two.params_)
    assert one.loss_curve_ == two.loss_curve_
    if kind == "cosine":   # a different run from the constant rate
        assert not np.array_equal(one.params_, constant.params_)


@pytest.mark.parametrize("cls", [AttentionClassifier, AttentionRegressor,
                                 TextAttentionClassifier, TextAttentionRegressor])
def test_parameters_are_flat_cloneable_and_validated(cls):
    estimator = cls(learning_rate="cosine", warmup_iter=3)
    params = estimator.get_params()
    assert params["learning_rate"] == "cosine" and params["warmup_iter"] == 3
    assert cls().get_params()["learning_rate"] == "constant"
    assert cls().get_params()["warmup_iter"] == 0
    copy = clone(estimator)
    assert copy.get_params() == params
    X, y = data(n=20)
    if cls.__name__.startswith("Text"):
        X = ["a b c", "b c d", "c d e", "d e f"] * 5
    for bad, message in [({"learning_rate": "linear"}, "'learning_rate' parameter"),
                         ({"warmup_iter": -1}, "'warmup_iter' parameter"),
                         ({"warmup_iter": 1.5}, "'warmup_iter' parameter")]:
        with pytest.raises(InvalidParameterError, match=message):
            cls(**bad).fit(X, y)


def test_save_and_load_keep_the_schedule(tmp_path):
    X, y = data(n=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = AttentionClassifier(**TINY, max_iter=3, learning_rate="cosine",
                                  warmup_iter=1).fit(X, y)
    skattention.save(clf, tmp_path / "model.skat")
    loaded = skattention.load(tmp_path / "model.skat")
    assert loaded.learning_rate == "cosine" and loaded.warmup_iter == 1
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


@parametrize_with_checks(
    [AttentionClassifier(d_model=8, n_heads=2, d_ff=16, max_iter=40, batch_size=32,
                         learning_rate_init=1e-2, random_state=0, learning_rate="cosine",
                         warmup_iter=2),
     AttentionRegressor(d_model=8, n_heads=2, d_ff=16, max_iter=40, batch_size=32,
                        learning_rate_init=1e-2, random_state=0, learning_rate="adaptive")],
    expected_failed_checks=lambda estimator: {
        # As in test_sklearn_compat.py: float32 training agrees to ~1e-6 only.
        "check_sample_weight_equivalence_on_dense_data": (
            "float32 training agrees only to ~1e-6 relative"),
        **BATCH_DEPENDENT_CHECKS},
)
def test_sklearn_checks_pass_with_a_schedule(estimator, check):
    check(estimator)


def test_cosine_rates_are_finite_and_positive_for_one_update():
    schedule = LearningRateSchedule("cosine", 0.1, steps_per_epoch=1, max_epochs=1,
                                    warmup_epochs=3)
    assert schedule.warmup_steps == 0 and schedule(0) == 0.1
    assert math.isfinite(schedule(5)) and schedule(5) == pytest.approx(0.0, abs=1e-12)
