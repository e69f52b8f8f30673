"""The notebook's ResNet-50, written as its code writes it, for any Keras-2-style API module.

Tests pass `tf_keras` (the Keras 2 API on TensorFlow 2) to produce the kind of `.h5` files the
notebook's readers have, such as its pre-trained `ResNet50.h5`; benchmarks pass Keras 3 to
measure the builder against hand-written code. Layer names, layer order and
arguments follow the notebook's cells `identity_block`, `convolutional_block` and `ResNet50`.
"""

from __future__ import annotations

import numpy as np

# Deep random networks map every input to nearly the same features, so a classifier that tells
# images apart must magnify small differences, and with them float32 rounding. Small gammas on
# each residual branch's last batch norm keep each block close to its shortcut, which keeps
# more of the input's variety (Fixup and zero-init-residual reason the same way).
RESIDUAL_GAMMA = (0.05, 0.15)
GAMMA = (0.5, 1.0)
LOGIT_SPREAD = 0.5  # standard deviation of the logits between images


def notebook_resnet50(k, input_shape=(64, 64, 3), classes=6, glorot_uniform=None):
    """Build the notebook's ResNet50 with the Keras module `k` (e.g. `import tf_keras as k`).

    `glorot_uniform(seed=0)` is called once per layer, as in the notebook; by default it is
    `k`'s own. Benchmarks pass archbuilder's GlorotUniformTF1 to compare like with like.
    """
    L = k.layers
    glorot_uniform = glorot_uniform or k.initializers.glorot_uniform

    def identity_block(X, f, filters, stage, block):
        conv_name_base = "res" + str(stage) + block + "_branch"
        bn_name_base = "bn" + str(stage) + block + "_branch"
        F1, F2, F3 = filters
        X_shortcut = X
        X = L.Conv2D(filters=F1, kernel_size=(1, 1), strides=(1, 1), padding="valid",
                     name=conv_name_base + "2a", kernel_initializer=glorot_uniform(seed=0))(X)
        X = L.BatchNormalization(axis=3, name=bn_name_base + "2a")(X)
        X = L.Activation("relu")(X)
        X = L.Conv2D(filters=F2, kernel_size=(f, f), strides=(1, 1), padding="same",
                     name=conv_name_base + "2b", kernel_initializer=glorot_uniform(seed=0))(X)
        X = L.BatchNormalization(axis=3, name=bn_name_base + "2b")(X)
        X = L.Activation("relu")(X)
        X = L.Conv2D(filters=F3, kernel_size=(1, 1), strides=(1, 1), padding="valid",
                     name=conv_name_base + "2c", kernel_initializer=glorot_uniform(seed=0))(X)
        X = L.BatchNormalization(axis=3, name=bn_name_base + "2c")(X)
        X = L.Add()([X, X_shortcut])
        X = L.Activation("relu")(X)
        return X

    def convolutional_block(X, f, filters, stage, block, s=2):
        conv_name_base = "res" + str(stage) + block + "_branch"
        bn_name_base = "bn" + str(stage) + block + "_branch"
        F1, F2, F3 = filters
        X_shortcut = X
        X = L.Conv2D(F1, (1, 1), strides=(s, s), name=conv_name_base + "2a",
                     kernel_initializer=glorot_uniform(seed=0))(X)
        X = L.BatchNormalization(axis=3, name=bn_name_base + "2a")(X)
        X = L.Activation("relu")(X)
        X = L.Conv2D(F2, (f, f), strides=(1, 1), name=conv_name_base + "2b", padding="same",
                     kernel_initializer=glorot_uniform(seed=0))(X)
        X = L.BatchNormalization(axis=3, name=bn_name_base + "2b")(X)
        X = L.Activation("relu")(X)
        X = L.Conv2D(F3, (1, 1), strides=(1, 1), name=conv_name_base + "2c", padding="valid",
                     kernel_initializer=glorot_uniform(seed=0))(X)
        X = L.BatchNormalization(axis=3, name=bn_name_base + "2c")(X)
        X_shortcut = L.Conv2D(F3, (1, 1), strides=(s, s), name=conv_name_base + "1", padding="valid",
                              kernel_initializer=glorot_uniform(seed=0))(X_shortcut)
        X_shortcut = L.BatchNormalization(axis=3, name=bn_name_base + "1")(X_shortcut)
        X = L.Add()([X, X_shortcut])
        X = L.Activation("relu")(X)
        return X

    X_input = L.Input(input_shape)
    X = L.ZeroPadding2D((3, 3))(X_input)
    X = L.Conv2D(64, (7, 7), strides=(2, 2), name="conv1", kernel_initializer=glorot_uniform(seed=0))(X)
    X = L.BatchNormalization(axis=3, name="bn_conv1")(X)
    X = L.Activation("relu")(X)
    X = L.MaxPooling2D((3, 3), strides=(2, 2))(X)

    X = convolutional_block(X, f=3, filters=[64, 64, 256], stage=2, block="a", s=1)
    X = identity_block(X, 3, [64, 64, 256], stage=2, block="b")
    X = identity_block(X, 3, [64, 64, 256], stage=2, block="c")

    X = convolutional_block(X, f=3, filters=[128, 128, 512], stage=3, block="a", s=2)
    for block in "bcd":
        X = identity_block(X, 3, [128, 128, 512], stage=3, block=block)

    X = convolutional_block(X, f=3, filters=[256, 256, 1024], stage=4, block="a", s=2)
    for block in "bcdef":
        X = identity_block(X, 3, [256, 256, 1024], stage=4, block=block)

    X = convolutional_block(X, f=3, filters=[512, 512, 2048], stage=5, block="a", s=2)
    X = identity_block(X, 3, [512, 512, 2048], stage=5, block="b")
    X = identity_block(X, 3, [512, 512, 2048], stage=5, block="c")

    X = L.AveragePooling2D((2, 2), name="avg_pool")(X)
    X = L.Flatten()(X)
    X = L.Dense(classes, activation="softmax", name="fc" + str(classes),
                kernel_initializer=glorot_uniform(seed=0))(X)
    return k.Model(inputs=X_input, outputs=X, name="ResNet50")


def randomize_weights(model, images: np.ndarray, seed: int = 0, residual_gamma=None) -> None:
    """Give every layer seeded, non-trivial weights, batch-norm moving statistics included.

    `residual_gamma(layer)` says which batch norms end a residual branch (they get RESIDUAL_GAMMA);
    the default recognizes the notebook's names (`bn2a_branch2c`). Any Keras 3 or Keras 2 model
    works: keras.applications networks' `Normalization` gets a random positive mean and variance,
    layer norms and ConvNeXt's layer scales random gammas.

    The classifier is then scaled so that its logits on `images` vary by LOGIT_SPREAD between
    images: predictions differ from image to image and stay away from 0 and 1, so comparing two
    Kerases' predictions compares something. On the notebook's ResNet-50 the two then agree to
    ~3e-6 (Keras 2 and Keras 3 round batch norm differently, ~4e-7 a layer, which depth grows).
    """
    residual_gamma = residual_gamma or (lambda layer: layer.name.endswith("_branch2c"))
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for weight in layer.weights:
            shape = tuple(weight.shape)
            short = weight.name.rsplit("/", 1)[-1].split(":")[0]
            if short == "kernel":
                fan_in = int(np.prod(shape[:-1]))
                values.append(rng.normal(0.0, np.sqrt(1.0 / fan_in), shape))
            elif short == "gamma" and residual_gamma(layer):
                values.append(rng.uniform(*RESIDUAL_GAMMA, shape))
            elif short == "gamma":
                values.append(rng.uniform(*GAMMA, shape))
            elif short == "moving_variance":
                values.append(np.ones(shape))  # replaced below by the statistics of `images`
            elif short == "variance":  # keras.layers.Normalization: must stay positive
                values.append(rng.uniform(0.5, 2.0, shape))
            elif short == "count":  # Normalization's sample count: not used by the forward pass
                values.append(np.full(shape, 1000))
            else:  # bias, beta, moving_mean
                values.append(rng.normal(0.0, 0.1, shape))
        if values:
            layer.set_weights([v.astype("float32") for v in values])
    # Moving statistics that fit the data keep every activation near unit scale; random ones
    # would let an image-independent part dominate and amplify float32 rounding. One pass in
    # training mode with momentum 0 sets them to the statistics of `images`.
    batch_norms = [layer for layer in model.layers if "moving_mean" in str([w.name for w in layer.weights])]
    for layer in batch_norms:
        layer.momentum = 0.0
    model(images, training=True)
    for layer in batch_norms:
        layer.momentum = 0.99
        gamma, beta, mean, variance = layer.get_weights()
        # A channel almost constant over a few images would divide rounding noise by ~sqrt(eps);
        # with bare batch statistics the two Kerases drift ~1e-4 apart by stage 5. Widening
        # every variance keeps them within ~1e-6 there, as a network trained on many images is.
        layer.set_weights([gamma, beta, mean, variance + variance.mean()])
    classifier = model.layers[-1]
    features = type(model)(model.inputs, classifier.input)(images).numpy()
    kernel, _ = classifier.get_weights()
    # Random deep features share a large image-independent part; scale by the part that varies
    # between images and cancel the shared part with the bias, so predictions differ per image.
    logits = features @ kernel
    scale = (logits - logits.mean(axis=0)).std() / LOGIT_SPREAD + 1e-12
    classifier.set_weights([kernel / scale, -logits.mean(axis=0) / scale])
