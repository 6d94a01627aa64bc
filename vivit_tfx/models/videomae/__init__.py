"""VideoMAE: masked-autoencoder pre-training of the encoder, and the PretrainTrainer's run_fn."""
