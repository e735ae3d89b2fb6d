"""The compressor of L2 values (django-redis ``COMPRESSOR``)."""
from __future__ import annotations

from backports import zstd
from django_redis.compressors.lz4 import Lz4Compressor
from django_redis.exceptions import CompressorError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class Lz4ReadingZstdCompressor(Lz4Compressor):
    """LZ4 frames, which also reads the zstd frames that earlier releases wrote.

    Every L2 read decompresses, every L2 write compresses: LZ4 does both several times
    faster than zstd, for values about half as large again (docs/benchmarks.md). Values
    already in Redis stay readable until their TTL ends or they are rewritten.
    """

    def decompress(self, value: bytes) -> bytes:
        if value[:4] == ZSTD_MAGIC:
            try:
                return zstd.decompress(value)
            except zstd.ZstdError as exc:
                raise CompressorError from exc
        return super().decompress(value)
