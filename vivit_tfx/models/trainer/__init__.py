"""The Trainer: its run_fn, the training recipe and loop, tf.distribute, augmentation,
FixMatch and pseudo-labels on unlabelled footage, the graph-side clip views, Transform's
preprocessing_fn and the SavedModel export."""
