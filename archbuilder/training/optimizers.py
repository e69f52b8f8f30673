"""The optimizer and learning-rate schedule a spec's `training:` section names, and compiling."""

from __future__ import annotations

import keras

from archbuilder.spec.training import TrainingSpec


def make_optimizer(training: TrainingSpec, steps_per_epoch: int):
    rate = training.learning_rate
    if training.schedule == "cosine":
        warmup = training.warmup_epochs * steps_per_epoch
        decay = max(1, training.epochs * steps_per_epoch - warmup)
        if warmup:
            rate = keras.optimizers.schedules.CosineDecay(0.0, decay, warmup_target=rate, warmup_steps=warmup)
        else:
            rate = keras.optimizers.schedules.CosineDecay(rate, decay)
    if training.optimizer == "adam":
        return keras.optimizers.Adam(rate)
    if training.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=training.weight_decay)
    if training.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=training.momentum)
    return keras.optimizers.RMSprop(rate)


def compile_model(model, training: TrainingSpec, steps_per_epoch: int) -> None:
    """The loss follows the head: cross-entropy on probabilities, or from_logits for a linear head."""
    from archbuilder.training.head_output import classification_loss

    model.compile(
        optimizer=make_optimizer(training, steps_per_epoch),
        loss=classification_loss(model, training.label_smoothing),
        metrics=["accuracy"],
    )
