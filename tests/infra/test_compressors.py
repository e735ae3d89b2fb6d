"""The L2 compressor inflates at most the largest entry a save accepts, whatever the frame claims."""
import lz4.frame
import pytest
from backports import zstd
from django_redis.exceptions import CompressorError

from memory.infra.compressors import Lz4ReadingZstdCompressor, ValueTooLarge, max_value_bytes


@pytest.fixture
def compressor():
    return Lz4ReadingZstdCompressor({})


def test_the_limit_is_three_escaped_payloads_and_an_envelope(settings):
    settings.MEMORY_MAX_PAYLOAD_BYTES = 1000
    assert max_value_bytes() == 3 * 1000 + 16 * 1024


@pytest.mark.parametrize("compress", [lz4.frame.compress, zstd.compress], ids=["lz4", "zstd"])
def test_a_value_at_the_limit_inflates_and_one_byte_more_does_not(compressor, compress, settings):
    settings.MEMORY_MAX_PAYLOAD_BYTES = 10_000
    at_limit = b"x" * max_value_bytes()
    assert compressor.decompress(compress(at_limit)) == at_limit
    with pytest.raises(ValueTooLarge):
        compressor.decompress(compress(at_limit + b"x"))


def test_an_lz4_frame_claiming_a_huge_content_is_stopped_at_the_limit(compressor):
    bomb = lz4.frame.compress(bytes(256 << 20), store_size=True)  # 256 MiB of zeros, ~1 MB compressed
    with pytest.raises(ValueTooLarge):
        compressor.decompress(bomb)


@pytest.mark.parametrize("value", [b"\x04\x22\x4d\x18broken", b"\x28\xb5\x2f\xfdbroken", b"plain text"])
def test_a_broken_or_truncated_frame_is_a_compressor_error(compressor, value):
    with pytest.raises(CompressorError):
        compressor.decompress(value)
    with pytest.raises(CompressorError):
        compressor.decompress(lz4.frame.compress(b"y" * 1000)[:-4])
