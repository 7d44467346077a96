import Foundation

/// An import's copies to tokens.db, made on a thread of their own one batch
/// behind keeper.db: a million sellers' import spends about a sixth of the
/// store's time copying, which then overlaps with writing the next batch.
///
/// Only the tokens.db connection is used on the copy's thread, and only while
/// a copy is in flight: the vault's own thread writes keeper.db meanwhile
/// (the copy reads the committed batch through its own attached read-only
/// view, a WAL snapshot) and touches tokens.db again only after
/// ``wait()``, which also hands the copy's outcome to the vault (the
/// critical log and the repair of ``AccountVault/readersCopied(_:_:)``).
final class ImportReadersCopy {
    private let vault: AccountVault
    private let queue = DispatchQueue(label: "tokenkeeper.import.tokens-db")
    private let done = DispatchSemaphore(value: 0)
    private let box = OutcomeBox()
    private var inFlight: Int?

    init(vault: AccountVault) {
        self.vault = vault
    }

    /// Waits for the copy in flight, then starts copying the sellers that
    /// keeper.db's transaction `changeSequence` wrote (`count` of them).
    func start(writtenWith changeSequence: Int64, count: Int) {
        wait()
        nonisolated(unsafe) let vault = self.vault
        let (box, done) = (self.box, self.done)
        inFlight = count
        queue.async {
            box.outcome = Result { try vault.copyToReaders(writtenWith: changeSequence) }
            done.signal()
        }
    }

    /// Waits for the copy in flight, if any, and reports its outcome to the vault.
    func wait() {
        guard let count = inFlight else { return }
        done.wait()
        inFlight = nil
        vault.readersCopied(count, box.outcome ?? .success(()))
    }

    /// The outcome of the copy in flight: written on the copy's thread before
    /// the semaphore's signal, read on the vault's after its wait.
    private final class OutcomeBox: @unchecked Sendable {
        var outcome: Result<Void, any Error>?
    }
}
