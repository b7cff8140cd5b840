"""Loss of plasticity (Dohare et al., 2024) and spectral regularization (Lewandowski et al.,
2024): the random-label task sequence of plasticity-sgd.yaml / plasticity-spectral.yaml with a
shorter budget per task and a larger step, so plain SGD's decay shows within 20 tasks."""

from __future__ import annotations

from statistics import fmean

from bench.reproduce import plasticity

SHORT = {
    "data": {"n_tasks": 20, "steps_per_task": 100},
    "optimizer": {"lr": 0.2},
    "train": {"steps": 2000, "eval_every": 100, "log_every": 100},
}


def test_sgd_loses_plasticity_and_the_spectral_regularizer_keeps_it() -> None:
    sgd = plasticity("plasticity-sgd", SHORT)
    spectral = plasticity("plasticity-spectral", SHORT)
    assert len(sgd) == len(spectral) == 20
    # tasks 6-10: after the first tasks' warm-up, before any decay; then the last three tasks
    sgd_mid, sgd_late = fmean(sgd[5:10]), fmean(sgd[-3:])
    spectral_mid, spectral_late = fmean(spectral[5:10]), fmean(spectral[-3:])
    assert sgd_late < sgd_mid - 0.3
    assert spectral_late > spectral_mid - 0.1
    assert spectral_late > sgd_late + 0.3
