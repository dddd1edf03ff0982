"""model/model.keras holds the best epoch by validation loss (trainer.best), and --lr-schedule
(trainer.schedule).

The reproduction of issue 12: the quickstart exported the last epoch although an earlier one was
better. Here a real tiny job trains two good epochs, is started again with a learning rate far too
high (its later epochs get worse), and the exported model, evaluated on the validation windows, must
have the best epoch's validation loss, not the last one's. The best epoch came before the restart,
so this also covers a job killed and resumed (the weights come from the val-improvement file).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import synthetic
from helpers import TINY, scalars

from trainer import best, schedule, task

# --------------------------------------------------------------------------- pure parts


def test_pick_checkpoint_prefers_the_file_with_the_backups_best_loss():
    names = [
        "val-improvement-01-3.0000.keras",
        "val-improvement-02-2.5000.keras",
        "weights-improvement-02-2.1000.keras",
        "val-improvement-03-2.4000.keras",
        "reference.txt",
    ]
    assert best.pick_checkpoint(names, 3, 2.4) == (3, "val-improvement-03-2.4000.keras")
    # epoch 3's file was written, then the job was killed before its backup: epoch 3 trains again
    assert best.pick_checkpoint(names, 2, 2.5) == (2, "val-improvement-02-2.5000.keras")
    # a loss that no name shows (rounded differently): the latest improvement is the best
    assert best.pick_checkpoint(names, 3, 2.39999) == (3, "val-improvement-03-2.4000.keras")
    assert best.pick_checkpoint(names, 3, 2.41) == (3, "val-improvement-03-2.4000.keras")
    assert best.pick_checkpoint(["weights-improvement-01-1.0000.keras"], 5, 1.0) is None
    assert best.pick_checkpoint(names, 0, math.inf) is None


def test_pick_checkpoint_takes_the_matching_file_of_a_rerun_epoch():
    """Epoch 2 ran twice (killed after its file, then again): the backup's loss says which run
    counts."""
    names = ["val-improvement-02-2.5000.keras", "val-improvement-02-2.6000.keras"]
    assert best.pick_checkpoint(names, 2, 2.6) == (2, "val-improvement-02-2.6000.keras")
    assert best.val_checkpoint_name(2, 2.6) == "val-improvement-02-2.6000.keras"


def test_constant_schedule_is_the_learning_rate():
    assert {schedule.learning_rate_at("constant", 0.003, step, 100) for step in range(100)} == {
        0.003
    }


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    total, base = 200, 0.01
    rates = [schedule.learning_rate_at("cosine", base, step, total) for step in range(total)]
    warmup = math.ceil(schedule.WARMUP_SHARE * total)
    assert rates[0] == pytest.approx(base / warmup)
    assert rates[warmup - 1] == pytest.approx(base) and rates[warmup] == pytest.approx(base)
    assert all(a < b for a, b in zip(rates[:warmup], rates[1:warmup]))
    assert all(a >= b for a, b in zip(rates[warmup:], rates[warmup + 1 :]))
    assert rates[-1] == pytest.approx(schedule.FLOOR * base)
    assert rates[warmup + (total - warmup) // 2] == pytest.approx(
        base * (1 + schedule.FLOOR) / 2, rel=0.02
    )
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        schedule.learning_rate_at("step", base, 0, total)


def test_best_epoch_puts_the_kept_weights_back():
    import keras

    from trainer import model as model_lib

    model = model_lib.fast(
        8, 20, units=8, num_layers=1, dense_units=8, embedding_dim=4, mixed_precision=False
    )
    kept = [w.copy() for w in model.get_weights()]
    epoch = best.BestEpoch()
    epoch.keep(model, 2, {"val_loss": 1.5})
    model.set_weights([w + 1.0 for w in kept])
    assert epoch.restore(
        model, last_epoch=4, checkpoints_dir="/nonexistent", best_val_loss=1.5, log=print
    ) == (2, True)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), kept))
    assert isinstance(model, keras.Model)


# --------------------------------------------------------------------------- a real job


def validation_loss(model_path, data_dir) -> float:
    """The mean cross-entropy of the saved model over every validation window."""
    import keras

    from preprocessing.records import VALIDATION
    from trainer import data as data_lib

    inputs, targets = data_lib.numpy_windows(data_lib.load(str(data_dir)), VALIDATION)
    probabilities = keras.saving.load_model(model_path, compile=False).predict(inputs, verbose=0)
    return float(np.mean(keras.losses.sparse_categorical_crossentropy(targets, probabilities)))


@pytest.mark.slow
def test_a_worse_later_epoch_is_not_exported(tmp_path, capsys):
    data, job = tmp_path / "data", tmp_path / "job"
    synthetic.write_dataset(str(data), train_pieces=4, validation_pieces=2, piece_length=30)
    argv = [
        "--data-dir",
        str(data),
        "--job-dir",
        str(job),
        "--batch-size",
        "16",
        "--sample-every",
        "0",
        *TINY,
    ]
    assert (
        task.main([*argv, "--epochs", "2", "--learning-rate", "0.02", "--lr-schedule", "cosine"])
        == 0
    )
    rates = [v for _, v in scalars(str(job / "logs"))["epoch/learning_rate"]]
    assert rates[1] < rates[0] < 0.02, rates  # cosine: each epoch ends lower
    capsys.readouterr()
    # Started again with a learning rate far too high: epochs 3 and 4 are worse than 1 and 2.
    assert task.main([*argv, "--epochs", "4", "--learning-rate", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "--lr-schedule cosine → constant (changed on resume)" in out, out
    val_losses = dict(scalars(str(job / "logs"))["epoch/val_loss"])
    best_epoch = min(val_losses, key=val_losses.get)
    assert best_epoch <= 2 and min(val_losses[3], val_losses[4]) > val_losses[best_epoch] + 0.1, (
        val_losses
    )
    assert f"exported epoch {best_epoch} of 4 (the lowest val_loss)" in out, out
    exported = validation_loss(job / "model" / "model.keras", data)
    assert exported == pytest.approx(val_losses[best_epoch], rel=1e-4), (exported, val_losses)
