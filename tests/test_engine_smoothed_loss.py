"""The smoothed loss people compare runs by: on a short run it is the recent mean, not mostly the first step's
loss (each step's loss swings with the noise level drawn), and a resumed run goes on with the same figure."""

from __future__ import annotations

import pytest

from trainer.engine.loop import SMOOTHING, LoopState, smoothed


def smooth_all(losses, before=None, seen=0):
    for loss in losses:
        before, seen = smoothed(before, seen, loss)
    return before, seen


def recency_mean(losses):
    weights = [SMOOTHING ** (len(losses) - 1 - index) for index in range(len(losses))]
    return sum(w * x for w, x in zip(weights, losses, strict=True)) / sum(weights)


def test_a_short_run_is_not_held_by_its_first_loss():
    losses = [1.0] + [0.2] * 9  # a first step drawn at a high noise level, then a steady run
    value, seen = smooth_all(losses)
    assert seen == 10
    assert value == pytest.approx(recency_mean(losses))
    assert value < 0.26  # seeded with the first loss, the old average read 0.51


@pytest.mark.parametrize("count", [1, 2, 5, 49, 300])
def test_it_is_the_recency_weighted_mean_of_the_losses_so_far(count):
    losses = [0.1 + (index * 7919 % 13) / 20 for index in range(count)]
    assert smooth_all(losses)[0] == pytest.approx(recency_mean(losses), rel=1e-12)


def test_a_resumed_run_goes_on_with_the_same_figure():
    losses = [0.3 + (index * 31 % 7) / 10 for index in range(40)]
    whole = smooth_all(losses)
    before, seen = smooth_all(losses[:17])
    saved = vars(LoopState(smooth_loss=before, losses_seen=seen)).copy()  # what a checkpoint holds
    state = LoopState(**{"losses_seen": None, **saved})
    assert smooth_all(losses[17:], state.smooth_loss, state.losses_seen) == whole


def test_a_checkpoint_from_before_the_count_goes_on_as_it_did():
    state = LoopState(**{"losses_seen": None, **{"step": 500, "smooth_loss": 0.4, "last_loss": 0.4,
                                                 "nan_total": 0, "nan_in_a_row": 0}})
    value, seen = smoothed(state.smooth_loss, state.losses_seen, 0.3)
    assert seen is None and value == pytest.approx(SMOOTHING * 0.4 + (1 - SMOOTHING) * 0.3)
