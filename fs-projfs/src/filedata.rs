//! How a file-data request is cut into `PrjWriteFileData` calls.
//!
//! ProjFS asks for a byte range of a placeholder (`byteOffset`, `length`) and accepts data
//! only from buffers allocated with `PrjAllocateAlignedBuffer`, written at offsets that are
//! multiples of the instance's `WriteAlignment` and in lengths that are multiples of it —
//! except the last write, which may end at the end of the file. It accepts more than was
//! asked, so the plan widens the range to alignment and cuts it into chunks of at most
//! `max_chunk` bytes, each written as soon as its bytes are there (streamed: a large file
//! never sits in memory whole).

/// One `PrjWriteFileData` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Offset in the file.
    pub offset: u64,
    /// Bytes to write.
    pub len: u32,
}

/// The chunks that answer a request for `length` bytes at `offset` of a `file_size`-byte
/// file, for a write alignment of `alignment` bytes (a power of two; 0 counts as 1) and
/// chunks of at most `max_chunk` bytes (rounded down to the alignment, at least one unit).
pub fn plan(
    offset: u64,
    length: u32,
    file_size: u64,
    alignment: u32,
    max_chunk: u32,
) -> Vec<Chunk> {
    let align = u64::from(alignment.max(1));
    if offset >= file_size || length == 0 {
        return Vec::new();
    }
    let start = offset / align * align;
    let want_end = offset.saturating_add(u64::from(length));
    let end = want_end
        .div_ceil(align)
        .saturating_mul(align)
        .min(file_size);
    let step = (u64::from(max_chunk) / align * align).max(align);
    let mut chunks = Vec::new();
    let mut at = start;
    while at < end {
        let len = step.min(end - at);
        chunks.push(Chunk {
            offset: at,
            len: len as u32,
        });
        at += len;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u32 = 1 << 20;

    #[test]
    fn whole_small_file_is_one_chunk_ending_at_eof() {
        assert_eq!(
            plan(0, 10_000, 10_000, 4096, MIB),
            [Chunk {
                offset: 0,
                len: 10_000
            }]
        );
    }

    #[test]
    fn unaligned_request_is_widened_to_alignment() {
        // Bytes 5000..6000 of a large file: one 4 KiB unit covers them.
        assert_eq!(
            plan(5000, 1000, 1 << 30, 4096, MIB),
            [Chunk {
                offset: 4096,
                len: 4096
            }]
        );
        // Crossing a unit boundary takes both units.
        assert_eq!(
            plan(4000, 200, 1 << 30, 4096, MIB),
            [Chunk {
                offset: 0,
                len: 8192
            }]
        );
    }

    #[test]
    fn large_request_is_cut_into_aligned_chunks_with_a_short_tail_at_eof() {
        let size = 3 * u64::from(MIB) + 100;
        let chunks = plan(0, u32::MAX, size, 4096, MIB);
        assert_eq!(
            chunks,
            [
                Chunk {
                    offset: 0,
                    len: MIB
                },
                Chunk {
                    offset: u64::from(MIB),
                    len: MIB
                },
                Chunk {
                    offset: 2 * u64::from(MIB),
                    len: MIB
                },
                Chunk {
                    offset: 3 * u64::from(MIB),
                    len: 100
                },
            ]
        );
        for c in &chunks[..chunks.len() - 1] {
            assert_eq!(c.offset % 4096, 0);
            assert_eq!(c.len % 4096, 0);
        }
        let last = chunks[chunks.len() - 1];
        assert_eq!(last.offset + u64::from(last.len), size);
    }

    #[test]
    fn odd_chunk_size_is_rounded_to_alignment() {
        let chunks = plan(0, 20_000, 20_000, 4096, 10_000);
        assert_eq!(
            chunks,
            [
                Chunk {
                    offset: 0,
                    len: 8192
                },
                Chunk {
                    offset: 8192,
                    len: 8192
                },
                Chunk {
                    offset: 16384,
                    len: 3616
                },
            ]
        );
        assert_eq!(
            plan(0, 100, 100, 512, 1),
            [Chunk {
                offset: 0,
                len: 100
            }],
            "at least one unit"
        );
    }

    #[test]
    fn nothing_past_the_end_or_for_nothing() {
        assert!(plan(100, 10, 100, 4096, MIB).is_empty());
        assert!(plan(0, 0, 100, 4096, MIB).is_empty());
        assert!(plan(0, 10, 0, 4096, MIB).is_empty());
        assert_eq!(
            plan(3, 2, 10, 0, MIB),
            [Chunk { offset: 3, len: 2 }],
            "alignment 0 is 1"
        );
    }
}
