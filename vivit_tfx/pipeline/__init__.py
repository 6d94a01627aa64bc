"""The TFX pipeline: configuration, wiring and runners."""
