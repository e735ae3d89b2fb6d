"""What the memory runs on: the one Redis owner, metrics, health probes, compressors, cache
backends, and how a number reads to a person. Nothing here knows about products."""
