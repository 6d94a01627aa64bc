"""ViViT violence detection on TFX: one package, the TFX template's folders inside it."""
