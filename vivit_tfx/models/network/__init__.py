"""The network: ViViT (Models 1-4, linear or convolutional tokenizer) and its configuration
(presets, the architecture record). It builds the layers; loading weights is a step after
it (`models.checkpoints.initialise`)."""
