"""Reproducible augmentation: each example's random change depends only on (seed, epoch, its index).

The Keras random layers (`pipeline.augmentation_layers`) draw from a seed generator whose state
advances in whatever order tf.data's parallel map calls them, so two runs of one spec and seed
augment differently, and a resumed run would not see the batches it would have seen. Here the
random numbers are drawn statelessly, one row per example, from a key folded from
(seed, epoch, index); the transformations themselves are the Keras layers' own (`transform_images`
with the same factors, fill mode and interpolation), given these draws in place of their own. So an
example is augmented the same whatever batch, replica slice or thread it goes through.

Kept as Keras does it: with both flips on, one draw flips an image both ways or neither; zoom
scales height and width by one factor; translation draws height then width.
"""

from __future__ import annotations

from archbuilder.spec.training import AugmentationSpec

# The columns of an example's row of draws, each uniform in [0, 1).
_FLIP, _ANGLE, _ZOOM, _SHIFT_Y, _SHIFT_X, _CONTRAST, _BRIGHTNESS = range(7)
DRAWS = 7


def example_draws(seed: int, epochs, positions):
    """[batch, DRAWS] float32 uniforms in [0, 1); row i depends only on (seed, epochs[i], positions[i])."""
    import tensorflow as tf

    positions = tf.cast(positions, tf.int64)
    pairs = tf.stack([tf.fill(tf.shape(positions), tf.constant(seed, tf.int64)),
                      tf.cast(epochs, tf.int64)], axis=1)

    def one(pair_and_position):
        pair, position = pair_and_position
        return tf.random.stateless_uniform([DRAWS], seed=tf.random.experimental.stateless_fold_in(pair, position))

    return tf.map_fn(one, (pairs, positions), fn_output_signature=tf.TensorSpec([DRAWS], tf.float32))


def _matrix(layer, transformation):
    """The transform rows a RandomZoom or RandomTranslation gives its kernel for `transformation`,
    made by the layer's own code, as its `transform_images` makes them."""
    import keras
    import tensorflow as tf

    if isinstance(layer, keras.layers.RandomZoom):
        shape = transformation["input_shape"]
        zooms = tf.cast(tf.concat([transformation["width_zoom"], transformation["height_zoom"]], axis=1), tf.float32)
        return layer._get_zoom_matrix(zooms, shape[1], shape[2])
    return layer._get_translation_matrix(transformation["translations"])


def _between(draws, column, lower, upper):
    """Column `column` of `draws` scaled to [lower, upper), as a [batch, 1] float32 tensor."""
    return lower + draws[:, column:column + 1] * (upper - lower)


class StatelessAugmentation:
    """The augmentation of `spec` on a batch of 0-255 float images, given each example's draws."""

    def __init__(self, spec: AugmentationSpec, seed: int):
        from archbuilder.data.pipeline import augmentation_layers

        self.seed = seed
        self.layers = augmentation_layers(spec, seed).layers if spec.enabled else []

    def __call__(self, images, epochs, positions):
        """`images` [batch, H, W, C] float32 0-255; `epochs`, `positions` [batch] the examples' epoch
        and index in the data. The augmented images, float32 0-255."""
        import tensorflow as tf

        from archbuilder.data.axis_resample import axis_aligned_transform, resamples_exactly

        draws = example_draws(self.seed, epochs, positions)
        for layer in self.layers:
            transformation = self._transformation(layer, images, draws)
            if resamples_exactly(layer):  # the layer's own pixels, in two 1-D passes (data.axis_resample)
                images = axis_aligned_transform(tf.cast(images, layer.compute_dtype), _matrix(layer, transformation))
            else:
                images = layer.transform_images(images, transformation, training=True)
        return tf.cast(images, tf.float32)

    @staticmethod
    def _transformation(layer, images, draws):
        """What `layer.get_random_transformation` would give, drawn from `draws` instead."""
        import keras
        import tensorflow as tf

        shape = tf.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        per_image = lambda column: tf.reshape(column, [-1, 1, 1, 1])  # noqa: E731
        if isinstance(layer, keras.layers.RandomFlip):
            return {"flips": per_image(draws[:, _FLIP] <= 0.5), "input_shape": shape}
        if isinstance(layer, keras.layers.RandomRotation):
            angle = _between(draws, _ANGLE, layer.factor[0] * 360.0, layer.factor[1] * 360.0)[:, 0]
            zeros, ones = tf.zeros_like(angle), tf.ones_like(angle)
            matrix = layer._compute_affine_matrix(center_x=0.5, center_y=0.5, angle=angle, translate_x=zeros,
                                                  translate_y=zeros, scale=ones, shear_x=zeros, shear_y=zeros,
                                                  height=height, width=width)
            return {"angle": angle, "rotation_matrix": matrix, "image_height": height, "image_width": width,
                    "batch_size": batch}
        if isinstance(layer, keras.layers.RandomZoom):
            zoom = _between(draws, _ZOOM, 1.0 + layer.height_lower, 1.0 + layer.height_upper)
            return {"height_zoom": zoom, "width_zoom": zoom, "input_shape": shape}
        if isinstance(layer, keras.layers.RandomTranslation):
            shift_y = _between(draws, _SHIFT_Y, layer.height_lower, layer.height_upper) * tf.cast(height, tf.float32)
            shift_x = _between(draws, _SHIFT_X, layer.width_lower, layer.width_upper) * tf.cast(width, tf.float32)
            return {"translations": tf.concat([shift_x, shift_y], axis=1), "input_shape": shape}
        if isinstance(layer, keras.layers.RandomContrast):
            return {"contrast_factor": per_image(_between(draws, _CONTRAST, 1.0 - layer.factor[0], 1.0 + layer.factor[1]))}
        if isinstance(layer, keras.layers.RandomBrightness):
            low, high = layer.value_range
            delta = _between(draws, _BRIGHTNESS, layer.factor[0], layer.factor[1]) * (high - low)
            return {"rgb_delta": per_image(delta)}
        raise AssertionError(f"no stateless draws for {type(layer).__name__}")  # augmentation_layers makes no other
