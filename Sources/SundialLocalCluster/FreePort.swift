#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Finds a TCP port on 127.0.0.1 that is free right now, for local servers started by tests
/// and `sundial dev`. Another process could take it before it is used; callers that bind it
/// later retry with a new port when that happens.
public enum FreePort {
    public static func allocate() throws -> Int {
        try bindLoopback(port: 0)
    }

    /// Whether `port` on 127.0.0.1 can be bound right now (to reuse a previous run's port).
    public static func isFree(_ port: Int) -> Bool {
        (try? bindLoopback(port: port)) != nil
    }

    /// Binds a socket to 127.0.0.1:`port` (0 = the kernel picks), returns the bound port, closes.
    private static func bindLoopback(port: Int) throws -> Int {
        #if canImport(Glibc)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
            let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw FreePortError(operation: "socket", code: errno) }
        defer { close(fd) }

        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw FreePortError(operation: "bind", code: errno) }

        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw FreePortError(operation: "getsockname", code: errno) }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

public struct FreePortError: Error, Sendable, CustomStringConvertible {
    public let operation: String
    public let code: Int32

    public var description: String {
        "FreePort: \(operation) failed: \(String(cString: strerror(code))) (errno \(code))"
    }
}
