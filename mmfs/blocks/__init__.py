"""Ranges -> cached bytes: block arithmetic, the block store, the downloads that fill it, prefetch."""
