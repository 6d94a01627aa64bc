"""Model-side code: features, Transform `preprocessing_fn`, ViViT, Trainer `run_fn`."""
