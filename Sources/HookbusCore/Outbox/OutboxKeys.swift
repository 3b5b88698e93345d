import CSQLiteSetup

/// The outbox's idempotency index, in memory: which `seq` may hold a given
/// `(source, id)`.
///
/// The rule (PROTOCOL.md, section 6) is that a `(source, id)` already stored
/// is answered with its `seq` and written again nowhere. SQLite could enforce
/// it with a unique index on the two text columns, but that index was a third
/// of the cost of every insert, and with ids in random order (UUIDs) each
/// event dirtied an index page of its own. Here each stored event has one
/// 8-byte slot instead: 28 bits of a hash of its `(source, id)` (the *tag*)
/// and its `seq`. A tag match is only a candidate: the caller compares the
/// stored row's bytes (`Store`), so a collision costs a lookup by `seq`,
/// never a false duplicate.
///
/// Open addressing with linear probing; an entry's home slot is computed
/// from its tag alone, so entries can be moved (backward-shift deletion,
/// growth) without the row. The hash is Swift's `Hasher` (SipHash, seeded at
/// random for each process): the table is rebuilt from the outbox at every
/// start and never stored, and a producer cannot choose ids that collide.
///
/// An entry that names a `seq` no longer stored (pruned, or of a transaction
/// that did not commit) is harmless: its candidate fails the comparison. A
/// missing entry is not: it would let a duplicate in. So entries are added
/// before the transaction that stores their rows commits, and removed only
/// after a delete has committed, or after a transaction failed without
/// storing the row (`rollback`).
///
/// It also holds `lastSeq`, the highest `seq` handed out: the outbox has no
/// AUTOINCREMENT (SQLite rewrote `sqlite_sequence`, a page more in every
/// commit's fsync), so the next `seq` comes from here, and a transaction
/// that does not commit takes back its seqs and its entries together.
///
/// Not thread-safe; `Store` keeps it in a `Mutex` and uses it on the writer.
struct OutboxKeys {
    /// Hashes a key's bytes (`source`, then `id`) to its tag (`0..<2^tagBits`).
    typealias TagFunction = @Sendable (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> UInt32

    /// 28 bits: a new event's key meets about one other entry's tag for
    /// every 2^28 (268 million) stored events, each a read of that row.
    static let tagBits = 28
    /// A slot holds `tag << seqBits | (seq - base + 1)`; 0 is an empty slot.
    static let seqBits = 64 - tagBits
    static let offsetMask: UInt64 = (1 << seqBits) - 1
    static let minimumCapacity = 1024

    /// The production tag: SipHash of the two keys' bytes, its top `tagBits` bits.
    static let sipHashTag: TagFunction = { source, id in
        var hasher = Hasher()
        hasher.combine(source.count)
        hasher.combine(bytes: source)
        hasher.combine(bytes: id)
        return UInt32(truncatingIfNeeded: UInt64(UInt(bitPattern: hasher.finalize())) >> (64 - tagBits))
    }

    private let tagFunction: TagFunction
    private(set) var slots: [UInt64]
    private(set) var count = 0
    /// `seq` of offset 1 (see `slot`).
    private var base: Int64 = 1
    /// Entries added since `begin()`, while a transaction is open.
    private var journal: [(tag: UInt32, seq: Int64)] = []
    private var journaling = false
    /// Entries dropped because the stored `seq`s spanned more than 2^35.
    private(set) var dropped = 0
    /// The highest `seq` handed out: every `insert` raises it, and so does
    /// `handedOut(through:)` (a `seq` given to an event since pruned). The
    /// next event gets `lastSeq + 1`; 0 before the first.
    private(set) var lastSeq: Int64 = 0
    /// `lastSeq` at `begin()`.
    private var lastSeqAtBegin: Int64 = 0

    init(tag: @escaping TagFunction = Self.sipHashTag, capacity: Int = Self.minimumCapacity) {
        tagFunction = tag
        slots = Array(repeating: 0, count: max(Self.minimumCapacity, capacity))
    }

    /// The tag of the key `(source, id)` given as UTF-8 bytes (not by Unicode
    /// equivalence: SQLite compares text byte by byte, and so does `Store`).
    func tag(source: UnsafeRawBufferPointer, id: UnsafeRawBufferPointer) -> UInt32 {
        tagFunction(source, id) & ((1 << Self.tagBits) - 1)
    }

    // MARK: Lookup

    /// Brings the home slot of `tag` into the cache ahead of `first` and
    /// `insert`: the table is megabytes, and a slot read at random is a cache
    /// miss, most of what a lookup costs. Prefetching a batch's slots first
    /// lets the misses overlap.
    func prefetch(tag: UInt32) {
        slots.withUnsafeBufferPointer { slots in
            if let base = slots.baseAddress { hookbus_prefetch(base + home(tag)) }
        }
    }

    /// The first candidate `seq` under `tag` for which `matches` is true, in
    /// no particular order; nil if none is.
    func first(tag: UInt32, where matches: (Int64) throws -> Bool) rethrows -> Int64? {
        let capacity = slots.count
        var index = home(tag)
        while true {
            let slot = slots[index]
            if slot == 0 { return nil }
            if UInt32(truncatingIfNeeded: slot >> Self.seqBits) == tag, try matches(seq(of: slot)) {
                return seq(of: slot)
            }
            index += 1
            if index == capacity { index = 0 }
        }
    }

    // MARK: Changes

    /// Adds `seq` under `tag`. While journaling, `rollback` can take it back.
    mutating func insert(tag: UInt32, seq: Int64) {
        lastSeq = max(lastSeq, seq)
        // Journaled even if dropped below: `rollback` also restores `lastSeq`.
        if journaling { journal.append((tag, seq)) }
        if count == 0 { base = seq }
        if seq < base || UInt64(seq - base) >= Self.offsetMask {
            guard rebase(including: seq) else { return }
        }
        if (count + 1) * 4 > slots.count * 3 {
            rebuild(capacity: slots.count + slots.count / 2)
        }
        place(slot(tag: tag, seq: seq))
        count += 1
    }

    /// Removes the entry for `seq` under `tag`, if there is one.
    @discardableResult
    mutating func remove(tag: UInt32, seq: Int64) -> Bool {
        guard seq >= base, UInt64(seq - base) < Self.offsetMask else { return false }
        let wanted = slot(tag: tag, seq: seq)
        let capacity = slots.count
        var index = home(tag)
        while slots[index] != wanted {
            if slots[index] == 0 { return false }
            index += 1
            if index == capacity { index = 0 }
        }
        // Backward shift: pull later entries of the cluster into the hole
        // unless their home lies cyclically in (hole, their slot].
        var hole = index
        var next = index
        while true {
            next += 1
            if next == capacity { next = 0 }
            let slot = slots[next]
            if slot == 0 { break }
            let home = home(UInt32(truncatingIfNeeded: slot >> Self.seqBits))
            let stays = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next)
            if stays { continue }
            slots[hole] = slot
            hole = next
        }
        slots[hole] = 0
        count -= 1
        if slots.count > Self.minimumCapacity && count * 8 < slots.count {
            rebuild(capacity: max(Self.minimumCapacity, count * 2))
        }
        return true
    }

    /// Records that every `seq` up to `seq` was handed out (the outbox's
    /// `outbox_seq` at open: events since pruned), so none is handed out again.
    mutating func handedOut(through seq: Int64) {
        lastSeq = max(lastSeq, seq)
    }

    /// Starts recording what is added, for `rollback`.
    mutating func begin() {
        journal.removeAll(keepingCapacity: true)
        journaling = true
        lastSeqAtBegin = lastSeq
    }

    /// What was added since `begin()` stays.
    mutating func commit() {
        journal.removeAll(keepingCapacity: true)
        journaling = false
    }

    /// Removes what was added since `begin()`, but the entries for which
    /// `isStored` says the row is there after all (or cannot say: a throw
    /// keeps the entry, which is always safe). `lastSeq` goes back to what
    /// it was, or to the highest `seq` kept (a `seq` is never handed out
    /// twice while its row may be stored).
    mutating func rollback(isStored: (Int64) throws -> Bool) {
        guard journaling else { return }
        let added = journal
        journal.removeAll(keepingCapacity: true)
        journaling = false
        lastSeq = lastSeqAtBegin
        for (tag, seq) in added.reversed() {
            if (try? isStored(seq)) ?? true {
                lastSeq = max(lastSeq, seq)
            } else {
                remove(tag: tag, seq: seq)
            }
        }
    }

    // MARK: Slots

    private func home(_ tag: UInt32) -> Int {
        Int(truncatingIfNeeded: (UInt64(tag) &* UInt64(slots.count)) >> Self.tagBits)
    }

    private func slot(tag: UInt32, seq: Int64) -> UInt64 {
        UInt64(tag) << Self.seqBits | UInt64(seq - base + 1)
    }

    private func seq(of slot: UInt64) -> Int64 {
        Int64(slot & Self.offsetMask) - 1 + base
    }

    private mutating func place(_ slot: UInt64) {
        let capacity = slots.count
        var index = home(UInt32(truncatingIfNeeded: slot >> Self.seqBits))
        while slots[index] != 0 {
            index += 1
            if index == capacity { index = 0 }
        }
        slots[index] = slot
    }

    /// Every entry, as `(tag, seq)`.
    private var entries: [(tag: UInt32, seq: Int64)] {
        slots.compactMap { $0 == 0 ? nil : (UInt32(truncatingIfNeeded: $0 >> Self.seqBits), seq(of: $0)) }
    }

    /// Moves every entry to a table of `capacity` slots (the base stays, so
    /// slots move as they are).
    private mutating func rebuild(capacity: Int) {
        let old = slots
        slots = Array(repeating: 0, count: max(capacity, Self.minimumCapacity, count * 2))
        for slot in old where slot != 0 { place(slot) }
    }

    /// Makes room for `seq` in a slot's 36 bits of `seq`: the lowest stored
    /// `seq` becomes the base. Only if the stored `seq`s span more than 2^35
    /// (an outbox holding an event while 34 billion newer ones passed: at
    /// 300,000 events a second, 32 hours)
    /// are the oldest entries dropped; a duplicate of one of those would then
    /// be stored again.
    /// - Returns: false if `seq` itself is among the oldest (then it is
    ///   dropped, not added).
    private mutating func rebase(including seq: Int64) -> Bool {
        var kept = entries
        let newest = max(seq, kept.map(\.seq).max() ?? seq)
        let floor = newest - Int64(1 << (Self.seqBits - 1))
        let before = kept.count
        kept.removeAll { $0.seq < floor }
        dropped += before - kept.count
        count = kept.count
        let fits = seq >= floor
        if !fits { dropped += 1 }
        base = min(fits ? seq : .max, kept.map(\.seq).min() ?? seq)
        slots = Array(repeating: 0, count: slots.count)
        for (tag, seq) in kept { place(slot(tag: tag, seq: seq)) }
        return fits
    }
}
