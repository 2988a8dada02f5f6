"""Inference: top-k recommendation and batch jobs in Personalize's format."""
