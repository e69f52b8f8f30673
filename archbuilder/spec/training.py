"""The optional `training:` section of a spec. Defaults are the notebook's choices.

The notebook compiles with `optimizer='adam'` (learning rate 1e-3), categorical cross-entropy,
and fits with batch size 32 on images divided by 255, without augmentation. A spec that says
nothing about training gets exactly that:

    training:
      optimizer: adam
      learning_rate: 0.001
      schedule: cosine          # decays to 0 over all epochs; 'constant' is the default
      epochs: 25
      augmentation:
        rotation: 0.06          # fraction of a full turn, as keras.layers.RandomRotation
        zoom: 0.1
        translation: 0.08
        contrast: 0.2

This module imports no TensorFlow: `validate` must stay instant.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from archbuilder.spec.base import StrictModel

# The largest seed: Keras's random layers keep their seeds in 32-bit integers (and NumPy takes
# none below 0). `training.seed` and `data pack --seed` are held to it.
MAX_SEED = 2**31 - 1
# The largest count a run takes (epochs, batch size; the API's and the commands' sizes too): TensorFlow
# holds batch sizes and shapes in 32-bit integers and epoch x step counters in 64; 2**64 epochs
# reached tf.data as an overflow traceback after the run folder was written.
MAX_COUNT = 2**31 - 1


class AugmentationSpec(StrictModel):
    """Random changes applied to training images only; every one is off (0 / false) by default.

    Factors follow the Keras preprocessing layers of the same names: `rotation` is a fraction of
    2π, `zoom` and `translation` fractions of the image size, `contrast` and `brightness` the
    largest relative change.
    """

    rotation: float = Field(0.0, ge=0, le=0.5)
    zoom: float = Field(0.0, ge=0, lt=1)
    translation: float = Field(0.0, ge=0, lt=1)
    contrast: float = Field(0.0, ge=0, lt=1)
    brightness: float = Field(0.0, ge=0, lt=1)
    horizontal_flip: bool = False
    vertical_flip: bool = False

    @property
    def enabled(self) -> bool:
        return any(
            (self.rotation, self.zoom, self.translation, self.contrast, self.brightness,
             self.horizontal_flip, self.vertical_flip)
        )


class TrainingSpec(StrictModel):
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(1e-3, gt=0)
    # Only used by sgd (momentum) and adamw (weight_decay).
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    # 'cosine' decays the learning rate to 0 over all training steps (after `warmup_epochs`).
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_epochs: int = Field(0, ge=0, le=MAX_COUNT)
    loss: Literal["categorical_crossentropy"] = "categorical_crossentropy"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    batch_size: int = Field(32, gt=0, le=MAX_COUNT)
    epochs: int = Field(2, gt=0, le=MAX_COUNT)
    # Seeds NumPy's splits, TensorFlow's stateless shuffles and Keras's random layers (MAX_SEED).
    seed: int = Field(0, ge=0, le=MAX_SEED)
    # Fraction of the training images held out (seeded, per class) to pick the best epoch.
    validation_split: float = Field(0.0, ge=0, lt=1)
    augmentation: AugmentationSpec = AugmentationSpec()
    # At each epoch's end, BatchNorm's moving mean and variance are recomputed from this many
    # batches of un-augmented training images (a seeded sample) with the epoch's final weights,
    # instead of trailing behind as momentum averages (training/callbacks/batch_norm_recompute.py).
    # The weights train exactly as without it; what is evaluated and saved is what changes. 0 = off.
    # Single-device training only.
    batch_norm_recompute_batches: int = Field(0, ge=0, le=10_000)
    # On CPU, compute the kernel gradient of convolutions that oneDNN may handle slowly (a kernel
    # larger than its input) as one matrix product, where that measured faster on this machine: the
    # same math, 1.12-1.18x faster training of the documented ResNet-50 on Zen 3
    # (training/cpu_kernels.py, kernel_choice.py); and run grouped convolutions (ConvNeXt, ResNeXt)
    # with TensorFlow's CPU kernels instead of Keras's XLA-compiled op (training/grouped_conv.py).
    # `false` keeps Keras's and TensorFlow's own kernels.
    fast_cpu_kernels: bool = True
    # Where to train (train --distribute overrides): `auto` is `mirrored` on a machine with several
    # GPUs, else `none`; `multi-worker` joins the machines TF_CONFIG names. `batch_size` is always
    # the global batch, split across the replicas; the learning rate is never rescaled.
    distribute: Literal["none", "mirrored", "multi-worker", "auto"] = "auto"
    # Keras's dtype policy: `mixed_bfloat16` / `mixed_float16` compute in 16 bits and keep the weights
    # and the final softmax in float32; float16 also scales the loss. float32 is the default:
    # on CPUs without AVX512_BF16 bfloat16 is emulated and slower (bench/RESULTS.md).
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16"] = "float32"

    @model_validator(mode="after")
    def _warmup_needs_a_schedule(self) -> "TrainingSpec":
        # A constant rate has no warmup in Keras; ignoring the setting silently would mislead.
        if self.warmup_epochs and self.schedule != "cosine":
            raise PydanticCustomError(
                "spec", "warmup_epochs applies to schedule: cosine; the constant schedule has no warmup",
                {"field": "warmup_epochs", "received": self.warmup_epochs},
            )
        return self
