"""What the memory runs on: the one Redis owner, metrics, health probes, compressors and
cache backends. Nothing here knows about products."""
