"""``memory.product_memory``: the original design's home of ``ProductMemory``; it lives in
:mod:`memory.engine.memory`."""
from memory.engine.memory import Lookup, MemoryHit, ProductMemory, ProductRef, resolve_product

__all__ = ["Lookup", "MemoryHit", "ProductMemory", "ProductRef", "resolve_product"]
