"""The plan as a Keras model, and Keras model files: initializers, .keras and .h5 reading and writing."""
