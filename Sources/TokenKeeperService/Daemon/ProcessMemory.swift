#if canImport(Glibc)
import Glibc
#endif

/// Keeps a long-running daemon's resident memory near what it uses.
///
/// glibc gives each thread that meets contention an arena of its own (up to
/// eight per core) and keeps freed memory in it; after a burst of refreshes
/// across the concurrency pool, NIO's and the store's threads, that shows as
/// tens of megabytes resident that nothing uses (measured: 114 MB at READY,
/// 190 MB after draining 100,000 refreshes at a million sellers).
///
/// `mallopt` and `malloc_trim` live in `<malloc.h>`, which the Glibc module
/// does not export; they are looked up by name (absent elsewhere: nothing done).
enum ProcessMemory {
    /// `M_ARENA_MAX`, `M_MMAP_THRESHOLD` and `M_TRIM_THRESHOLD` in `<malloc.h>`.
    private static let arenaMaxOption: Int32 = -8
    private static let mmapThresholdOption: Int32 = -3
    private static let trimThresholdOption: Int32 = -1

    /// Two arenas, and fixed thresholds: blocks of 1 MiB and more come from
    /// their own mappings and go back when freed, and more than 8 MiB free
    /// at the top of a heap is given back at once. (glibc's own thresholds
    /// grow with the largest block freed: after the schedule's load freed
    /// its buffers, every temporary array up to 32 MB stayed in the arena
    /// once freed, 48 MB resident for nothing at a million sellers.) Called
    /// before the daemon starts its threads.
    static func limitArenas() {
        #if canImport(Glibc)
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
        _ = mallopt(arenaMaxOption, 2)
        _ = mallopt(mmapThresholdOption, 1 << 20)
        _ = mallopt(trimThresholdOption, 8 << 20)
        #endif
    }

    /// Returns free memory at the top of the heaps and in whole free pages to
    /// the system; called once a minute, cheap when there is nothing to give.
    static func returnFreedMemory() {
        #if canImport(Glibc)
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return }
        let trim = unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
        _ = trim(0)
        #endif
    }
}
