import Testing

/// The suites that load the machine (fifty producers, crash cycles, a client
/// flooding the broker) nest in this one and run one at a time, so that on a
/// two-core machine none of them eats the others' deadlines. Light suites still
/// run beside them.
@Suite("Heavy", .serialized)
struct HeavyTests {}
