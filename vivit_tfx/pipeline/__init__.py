"""The TFX pipeline: configuration, wiring, runners and the `vivit-tfx` command."""
