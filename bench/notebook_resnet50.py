"""The notebook's hand-written ResNet-50 (shared/reference/000_1f0476f30310bbb2.txt), ported
line for line to Keras 3: the baseline that archbuilder's builder is measured against."""

from __future__ import annotations

import keras
from keras.layers import (
    Activation, Add, AveragePooling2D, BatchNormalization, Conv2D, Dense, Flatten, Input, MaxPooling2D,
    ZeroPadding2D,
)


def identity_block(X, f, filters, stage, block, init):
    conv_name_base = "res" + str(stage) + block + "_branch"
    bn_name_base = "bn" + str(stage) + block + "_branch"
    F1, F2, F3 = filters
    X_shortcut = X
    X = Conv2D(filters=F1, kernel_size=(1, 1), strides=(1, 1), padding="valid", name=conv_name_base + "2a", kernel_initializer=init())(X)
    X = BatchNormalization(axis=3, name=bn_name_base + "2a")(X)
    X = Activation("relu")(X)
    X = Conv2D(filters=F2, kernel_size=(f, f), strides=(1, 1), padding="same", name=conv_name_base + "2b", kernel_initializer=init())(X)
    X = BatchNormalization(axis=3, name=bn_name_base + "2b")(X)
    X = Activation("relu")(X)
    X = Conv2D(filters=F3, kernel_size=(1, 1), strides=(1, 1), padding="valid", name=conv_name_base + "2c", kernel_initializer=init())(X)
    X = BatchNormalization(axis=3, name=bn_name_base + "2c")(X)
    X = Add()([X, X_shortcut])
    return Activation("relu")(X)


def convolutional_block(X, f, filters, stage, block, init, s=2):
    conv_name_base = "res" + str(stage) + block + "_branch"
    bn_name_base = "bn" + str(stage) + block + "_branch"
    F1, F2, F3 = filters
    X_shortcut = X
    X = Conv2D(F1, (1, 1), strides=(s, s), name=conv_name_base + "2a", kernel_initializer=init())(X)
    X = BatchNormalization(axis=3, name=bn_name_base + "2a")(X)
    X = Activation("relu")(X)
    X = Conv2D(F2, (f, f), strides=(1, 1), padding="same", name=conv_name_base + "2b", kernel_initializer=init())(X)
    X = BatchNormalization(axis=3, name=bn_name_base + "2b")(X)
    X = Activation("relu")(X)
    X = Conv2D(F3, (1, 1), strides=(1, 1), name=conv_name_base + "2c", kernel_initializer=init())(X)
    X = BatchNormalization(axis=3, name=bn_name_base + "2c")(X)
    X_shortcut = Conv2D(F3, (1, 1), strides=(s, s), name=conv_name_base + "1", kernel_initializer=init())(X_shortcut)
    X_shortcut = BatchNormalization(axis=3, name=bn_name_base + "1")(X_shortcut)
    X = Add()([X, X_shortcut])
    return Activation("relu")(X)


def ResNet50(input_shape=(64, 64, 3), classes=6, init=lambda: keras.initializers.GlorotUniform(seed=0)):
    """`init` makes one kernel initializer per layer, as the notebook's `glorot_uniform(seed=0)`."""
    X_input = Input(input_shape)
    X = ZeroPadding2D((3, 3))(X_input)
    X = Conv2D(64, (7, 7), strides=(2, 2), name="conv1", kernel_initializer=init())(X)
    X = BatchNormalization(axis=3, name="bn_conv1")(X)
    X = Activation("relu")(X)
    X = MaxPooling2D((3, 3), strides=(2, 2))(X)
    X = convolutional_block(X, f=3, filters=[64, 64, 256], stage=2, block="a", init=init, s=1)
    X = identity_block(X, 3, [64, 64, 256], stage=2, block="b", init=init)
    X = identity_block(X, 3, [64, 64, 256], stage=2, block="c", init=init)
    X = convolutional_block(X, f=3, filters=[128, 128, 512], stage=3, block="a", init=init, s=2)
    for block in "bcd":
        X = identity_block(X, 3, [128, 128, 512], stage=3, block=block, init=init)
    X = convolutional_block(X, f=3, filters=[256, 256, 1024], stage=4, block="a", init=init, s=2)
    for block in "bcdef":
        X = identity_block(X, 3, [256, 256, 1024], stage=4, block=block, init=init)
    X = convolutional_block(X, f=3, filters=[512, 512, 2048], stage=5, block="a", init=init, s=2)
    X = identity_block(X, 3, [512, 512, 2048], stage=5, block="b", init=init)
    X = identity_block(X, 3, [512, 512, 2048], stage=5, block="c", init=init)
    X = AveragePooling2D((2, 2), name="avg_pool")(X)
    X = Flatten()(X)
    X = Dense(classes, activation="softmax", name="fc" + str(classes), kernel_initializer=init())(X)
    return keras.Model(inputs=X_input, outputs=X, name="ResNet50")
