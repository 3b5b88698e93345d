/// One unit the framer hands on: a complete line, or the notice that a line
/// was too long and is being skipped.
public enum Frame: Sendable, Equatable {
    /// A complete, non-blank line without its `\n` or `\r\n`.
    case line([UInt8])
    /// A line longer than the limit; its bytes are discarded up to the next `\n`.
    case tooLarge(limit: Int)
}

/// Splits a byte stream into NDJSON lines, as protocol/PROTOCOL.md "Framing" describes.
///
/// - Lines end with `\n`; a `\r` right before it is dropped.
/// - Blank lines (only spaces, tabs or `\r`) produce nothing.
/// - A line longer than `maxLineBytes` produces one `.tooLarge` as soon as the
///   limit is passed, and its remaining bytes are skipped up to its newline, so
///   the connection stays usable and memory stays bounded by the limit.
///
/// The framer keeps at most `maxLineBytes` bytes of an unfinished line.
public struct LineFramer: Sendable {
    public let maxLineBytes: Int
    private var partial: [UInt8] = []
    private var skipping = false

    public init(maxLineBytes: Int) {
        precondition(maxLineBytes > 0)
        self.maxLineBytes = maxLineBytes
    }

    /// Bytes of an unfinished line held right now.
    public var bufferedBytes: Int { partial.count }

    /// Consumes `chunk` and appends every frame it completes to `frames`.
    public mutating func feed(_ chunk: UnsafeRawBufferPointer, into frames: inout [Frame]) {
        var start = 0
        while start < chunk.count {
            let newline = Self.indexOfNewline(chunk, from: start)
            let end = newline ?? chunk.count
            defer { start = end + 1 }
            if skipping {
                if newline != nil { skipping = false }
                continue
            }
            let piece = UnsafeRawBufferPointer(rebasing: chunk[start..<end])
            guard newline != nil else {
                // Unterminated: keep it, unless it can no longer fit even if its
                // last byte turns out to be the `\r` of a `\r\n`.
                if partial.count + piece.count > maxLineBytes + 1 {
                    frames.append(.tooLarge(limit: maxLineBytes))
                    dropPartial()
                    skipping = true
                } else {
                    partial.append(contentsOf: piece)
                }
                continue
            }
            var length = partial.count + piece.count
            let last = piece.isEmpty ? partial.last : piece[piece.count - 1]
            if last == UInt8(ascii: "\r") { length -= 1 }
            if length > maxLineBytes {
                frames.append(.tooLarge(limit: maxLineBytes))
                dropPartial()
            } else if partial.isEmpty {
                emit(piece, into: &frames)
            } else {
                partial.append(contentsOf: piece)
                let line = partial
                dropPartial()
                line.withUnsafeBytes { emit($0, into: &frames) }
            }
        }
    }

    /// The end of the stream: an unfinished last line (no `\n`) still counts as a line.
    public mutating func finish(into frames: inout [Frame]) {
        defer { dropPartial(); skipping = false }
        guard !skipping, !partial.isEmpty else { return }
        var length = partial.count
        if partial.last == UInt8(ascii: "\r") { length -= 1 }
        guard length <= maxLineBytes else {
            frames.append(.tooLarge(limit: maxLineBytes))
            return
        }
        let line = partial
        line.withUnsafeBytes { emit($0, into: &frames) }
    }

    /// Convenience for tests and clients: feeds a byte array.
    public mutating func feed(_ bytes: [UInt8]) -> [Frame] {
        var frames: [Frame] = []
        bytes.withUnsafeBytes { feed($0, into: &frames) }
        return frames
    }

    /// Forgets the unfinished line; a large buffer is released rather than kept
    /// for the life of the connection.
    private mutating func dropPartial() {
        partial.removeAll(keepingCapacity: partial.capacity <= 64 * 1024)
    }

    private func emit(_ raw: UnsafeRawBufferPointer, into frames: inout [Frame]) {
        var length = raw.count
        if length > 0 && raw[length - 1] == UInt8(ascii: "\r") { length -= 1 }
        let line = UnsafeRawBufferPointer(rebasing: raw[0..<length])
        if Self.isBlank(line) { return }
        frames.append(.line(Array(line)))
    }

    /// A blank line (only spaces, tabs or `\r`): it produces nothing and gets
    /// no reply (clients that count replies skip it too).
    public static func isBlank(_ line: some Sequence<UInt8>) -> Bool {
        line.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
    }

    private static func indexOfNewline(_ chunk: UnsafeRawBufferPointer, from start: Int) -> Int? {
        var index = start
        while index < chunk.count {
            if chunk[index] == 0x0A { return index }
            index += 1
        }
        return nil
    }
}
