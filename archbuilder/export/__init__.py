"""Exported models: SavedModel folders, LiteRT (`.tflite`) and ONNX files, written from a Keras
model and run in their own runtimes. Every export takes what the Keras model takes, float32
`x / 255` of images already resized to the input size, and carries archbuilder's metadata
(class names, input shape, preprocessing) inside it."""
