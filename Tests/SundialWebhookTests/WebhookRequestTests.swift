import Testing

@testable import SundialWebhook

@Suite("Unit: webhook signing and verdicts")
struct WebhookRequestTests {
    @Test("SHA-256 matches the FIPS 180-4 vectors")
    func sha256Vectors() {
        #expect(WebhookRequest.hex(SHA256.hash([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(WebhookRequest.hex(SHA256.hash(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            WebhookRequest.hex(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // A million 'a': many blocks.
        #expect(
            WebhookRequest.hex(SHA256.hash([UInt8](repeating: 0x61, count: 1_000_000)))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test("HMAC-SHA256 matches the RFC 4231 vectors (short key, long key)")
    func hmacVectors() {
        #expect(
            WebhookRequest.hex(HMACSHA256.authenticationCode(key: [UInt8](repeating: 0x0b, count: 20), message: Array("Hi There".utf8)))
                == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        #expect(
            WebhookRequest.hex(HMACSHA256.authenticationCode(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8)))
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(
            WebhookRequest.hex(
                HMACSHA256.authenticationCode(
                    key: [UInt8](repeating: 0xaa, count: 131),
                    message: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)))
                == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    @Test("a signature verifies for its timestamp and body only")
    func signatures() {
        let secret = Array("0123456789abcdef0123".utf8)
        let body = Array("{\"order\":42}".utf8)
        let header = WebhookRequest.signature(secret: secret, timestamp: 1_800_000_000, body: body)
        #expect(header.hasPrefix("v1=") && header.count == 67)
        #expect(WebhookRequest.verify(header: header, secret: secret, timestamp: 1_800_000_000, body: body))
        #expect(!WebhookRequest.verify(header: header, secret: secret, timestamp: 1_800_000_001, body: body))
        #expect(!WebhookRequest.verify(header: header, secret: secret, timestamp: 1_800_000_000, body: body + [0x20]))
        #expect(!WebhookRequest.verify(header: header, secret: Array("another secret, same length".utf8), timestamp: 1_800_000_000, body: body))
    }

    @Test("2xx completes; 408, 429, 5xx and no answer retry as the endpoint's failure; other 4xx fail without retry")
    func verdicts() {
        for status in [200, 201, 204, 299] { #expect(WebhookRequest.verdict(status: status) == .succeeded) }
        for status in [408, 429, 500, 502, 503, 504, 599, 302, 101] {
            guard case .failed(_, let retryable, let downstream) = WebhookRequest.verdict(status: status) else {
                Issue.record("\(status) succeeded")
                continue
            }
            #expect(retryable && downstream, "\(status)")
        }
        for status in [400, 401, 403, 404, 409, 410, 422] {
            #expect(WebhookRequest.verdict(status: status) == .failed(reason: "HTTP \(status)", retryable: false, downstream: false))
        }
        guard case .failed(let reason, true, true) = WebhookRequest.verdict(status: nil, transportError: "timed out") else {
            Issue.record("no answer did not fail with retry")
            return
        }
        #expect(reason.contains("timed out"))
    }
}
