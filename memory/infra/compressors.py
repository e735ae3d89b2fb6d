"""The compressor of L2 values (django-redis ``COMPRESSOR``), and the size a value may inflate to."""
from __future__ import annotations

import lz4.frame
from backports import zstd
from django.conf import settings
from django_redis.compressors.lz4 import Lz4Compressor
from django_redis.exceptions import CompressorError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# What a stored value holds besides its payload (ids, fingerprint, generator version, numbers,
# every character escaped as JSON may escape it), with room to spare.
ENVELOPE_BYTES = 16 * 1024
# The serializer escapes every non-ASCII character (``\\u00e3``, six bytes, for a two-byte
# UTF-8 ``ã``; twelve for a four-byte one): a payload within ``MEMORY_MAX_PAYLOAD_BYTES`` of
# UTF-8 JSON takes at most three times that once stored.
ESCAPE_FACTOR = 3
# A zstd frame may ask for a window of up to 2 GiB; none the memory writes needs more than 8 MiB.
ZSTD_WINDOW_LOG_MAX = 23


def max_value_bytes() -> int:
    """The most bytes a stored L2 value may take, decompressed: the largest entry a save accepts
    (``MEMORY_MAX_PAYLOAD_BYTES`` of payload, escaped, in its envelope)."""
    return ESCAPE_FACTOR * settings.MEMORY_MAX_PAYLOAD_BYTES + ENVELOPE_BYTES


class ValueTooLarge(CompressorError):
    """A value that inflates past :func:`max_value_bytes` (a decompression bomb, or not ours)."""


class Lz4ReadingZstdCompressor(Lz4Compressor):
    """LZ4 frames, which also reads the zstd frames that earlier releases wrote.

    Every L2 read decompresses, every L2 write compresses: LZ4 does both several times
    faster than zstd, for values about half as large again (docs/benchmarks.md). Values
    already in Redis stay readable until their TTL ends or they are rewritten.

    Decompression streams into at most :func:`max_value_bytes` and stops there
    (:class:`ValueTooLarge`): a few KB of compressed zeros must not inflate to a GiB in a worker.
    """

    def decompress(self, value: bytes) -> bytes:
        limit = max_value_bytes()
        if value[:4] == ZSTD_MAGIC:
            decompressor = zstd.ZstdDecompressor(options={zstd.DecompressionParameter.window_log_max: ZSTD_WINDOW_LOG_MAX})
            errors: tuple[type[BaseException], ...] = (zstd.ZstdError, EOFError)
        else:
            decompressor = lz4.frame.LZ4FrameDecompressor()
            errors = (RuntimeError, ValueError, EOFError)
        try:
            data = decompressor.decompress(value, max_length=limit + 1)
        except errors as exc:
            raise CompressorError from exc
        if len(data) > limit:
            raise ValueTooLarge(f"valor descomprimido acima de {limit} bytes")
        if not decompressor.eof:  # a truncated frame: the rest of the value never came
            raise CompressorError("quadro comprimido incompleto")
        return data
