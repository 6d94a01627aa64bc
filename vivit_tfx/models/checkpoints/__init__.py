"""Checkpoints: image ViT `.npz` (inflated to tubelets), Hugging Face families (ViT, ViViT,
VideoMAE, TimeSformer), their pixel preprocessing, hub presets, the checks before a run, the
weights loaded into a built network (`initialise`), and a checkpoint exported as a SavedModel."""
