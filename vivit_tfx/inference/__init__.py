"""Inference tools on a pushed model: predict, timeline, attention maps."""
