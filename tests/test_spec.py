"""What a run will do before it does it (charlm.training.spec): the defaults of a run that gives
no --epochs, --max-steps or --max-minutes, the line that announces them, and the dropout a
training run takes when none is given."""

import pytest

from charlm.config import ModelConfig
from charlm.errors import CharlmError
from charlm.training.spec import describe_open_ended, new_spec, open_ended_defaults


def _spec(tmp_path, **settings):
    return new_spec(tmp_path / "corpus.txt", tmp_path / "run", settings)


def test_an_open_ended_run_gets_patience_and_validates_inside_long_epochs(tmp_path):
    spec = open_ended_defaults(_spec(tmp_path), 3400)
    assert (spec.train.patience, spec.train.val_every) == (3, 1000)
    assert describe_open_ended(spec.train, 3400) == (
        "charlm: no --epochs, --max-steps or --max-minutes: training until validation loss has not improved for 3 "
        "validations (one every 1,000 steps; an epoch has 3,400), then cooling the rate down to 0 over the last "
        "fifth of the run; give --max-minutes to bound it")
    # An epoch of 1,000 steps or fewer: validation at its end.
    short = open_ended_defaults(_spec(tmp_path), 1000)
    assert (short.train.patience, short.train.val_every) == (3, None)
    assert "(one at each epoch's end), then cooling" in describe_open_ended(short.train, 1000)
    # What the user gave stays; a constant rate just stops.
    given = open_ended_defaults(_spec(tmp_path, patience=5, val_every=200, lr_schedule="constant"), 3400)
    assert (given.train.patience, given.train.val_every) == (5, 200)
    assert describe_open_ended(given.train, 3400).endswith(
        "improved for 5 validations (one every 200 steps; an epoch has 3,400), then stopping; "
        "give --max-minutes to bound it")
    assert "last 30% of the run" in describe_open_ended(_spec(tmp_path, cooldown=0.3, patience=3).train, 10)


@pytest.mark.parametrize("bound", [dict(epochs=2), dict(max_steps=500), dict(max_minutes=10.0)])
def test_a_bounded_run_keeps_its_settings(tmp_path, bound):
    spec = _spec(tmp_path, **bound)
    assert open_ended_defaults(spec, 3400) is spec and spec.train.patience is None and spec.train.val_every is None
    assert spec.train.lr_schedule == "wsd" and spec.train.wsd_cooldown == 0.2


def test_a_training_run_defaults_to_dropout_a_model_config_does_not(tmp_path):
    assert _spec(tmp_path).model.dropout == 0.2 and ModelConfig().dropout == 0.0
    assert _spec(tmp_path, dropout=0.0).model.dropout == 0.0


@pytest.mark.parametrize("settings,fragment", [
    (dict(lr_schedule="linear"), "--lr-schedule linear decays towards the run's end"),
    (dict(lr_schedule="wsd", warmup=0.05), "--warmup 0.05 is a fraction of the run"),
])
def test_what_needs_the_runs_length_is_refused_without_it(tmp_path, settings, fragment):
    with pytest.raises(CharlmError, match=fragment):
        _spec(tmp_path, **settings)
    assert _spec(tmp_path, max_minutes=5.0, **settings).train.lr_schedule == settings["lr_schedule"]
