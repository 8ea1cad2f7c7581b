"""Readers of public synthetic data set layouts; each registers itself with the discovery."""

READERS = ("vkitti2", "tartanair", "sintel", "hypersim", "mvs_synth", "spring", "folder")
