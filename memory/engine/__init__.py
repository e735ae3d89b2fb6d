"""The memory itself: snapshots and keys, the three tiers, their orchestration, coherence
across processes, counters, locks and product identifiers."""
