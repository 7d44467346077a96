public import TokenKeeperCore

/// A small deterministic generator, so that jitter in tests is the same on every run.
public typealias SeededRandom = SplitMix64
