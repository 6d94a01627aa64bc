"""Data-side building blocks: video files → clip `tf.Example`s (ingestion, custom ExampleGen)."""
