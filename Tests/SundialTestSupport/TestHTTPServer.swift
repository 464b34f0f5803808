import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A tiny HTTP/1.1 server on 127.0.0.1 and a free port, for tests of HTTP clients (the webhook
/// executor). One thread accepts; each connection is served on its own thread (blocking
/// calls, never on Swift's cooperative pool): the request is read (headers, then
/// `Content-Length` bytes of body), recorded, answered with the status `respond` returns
/// (after its delay), and the connection closed.
public final class TestHTTPServer: Sendable {
    public struct Request: Sendable {
        public var method: String
        public var path: String
        /// Header names lowercased.
        public var headers: [String: String]
        public var body: [UInt8]
        public var receivedAt: Date
    }

    public struct Response: Sendable {
        public var status: Int
        public var delay: Duration

        public init(status: Int, delay: Duration = .zero) {
            self.status = status
            self.delay = delay
        }
    }

    public let port: Int
    private let socket: Int32
    private let recorded = Mutex([Request]())
    private let stopped = Atomic<Bool>(false)
    private let respond: @Sendable (Request) -> Response

    public init(respond: @escaping @Sendable (Request) -> Response) throws {
        self.respond = respond
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket() failed") }
        var reuse: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            close(fd)
            throw TestFailure("bind/listen on 127.0.0.1 failed")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
        socket = fd
        let server = self
        Thread.detachNewThread { server.acceptLoop() }
    }

    deinit { stop() }

    /// Stops accepting (connections being served finish).
    public func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        shutdown(socket, Int32(SHUT_RDWR))
        close(socket)
    }

    public var requests: [Request] { recorded.withLock { $0 } }

    public func url(_ path: String) -> URL { URL(string: "http://127.0.0.1:\(port)\(path)")! }

    private func acceptLoop() {
        while !stopped.load(ordering: .relaxed) {
            let connection = accept(socket, nil, nil)
            guard connection >= 0 else {
                if stopped.load(ordering: .relaxed) { return }
                continue
            }
            Thread.detachNewThread { self.serve(connection) }
        }
    }

    private func serve(_ connection: Int32) {
        defer { close(connection) }
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        var headerEnd: Int?
        // Headers (bounded: 64 KiB), then the body.
        while headerEnd == nil, buffer.count < 65_536 {
            let n = read(connection, &chunk, chunk.count)
            guard n > 0 else { return }
            buffer += chunk[0..<n]
            headerEnd = Self.find([13, 10, 13, 10], in: buffer)
        }
        guard let headerEnd else { return }
        let head = String(decoding: buffer[0..<headerEnd], as: UTF8.self).components(separatedBy: "\r\n")
        let requestLine = head.first?.split(separator: " ") ?? []
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let length = min(Int(headers["content-length"] ?? "0") ?? 0, 16 << 20)
        var body = Array(buffer[(headerEnd + 4)...])
        while body.count < length {
            let n = read(connection, &chunk, min(chunk.count, length - body.count))
            guard n > 0 else { return }
            body += chunk[0..<n]
        }
        let request = Request(
            method: requestLine.first.map(String.init) ?? "", path: requestLine.dropFirst().first.map(String.init) ?? "",
            headers: headers, body: Array(body.prefix(length)), receivedAt: Date())
        recorded.withLock { $0.append(request) }
        let response = respond(request)
        if response.delay > .zero {
            let nanoseconds = response.delay.components.seconds * 1_000_000_000 + response.delay.components.attoseconds / 1_000_000_000
            var wait = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
            nanosleep(&wait, nil)
        }
        let reply = Array("HTTP/1.1 \(response.status) Test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8)
        _ = reply.withUnsafeBytes { write(connection, $0.baseAddress, $0.count) }
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count) where Array(haystack[start..<start + needle.count]) == needle {
            return start
        }
        return nil
    }
}
