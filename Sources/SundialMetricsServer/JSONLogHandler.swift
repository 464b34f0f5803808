import Foundation
import Logging

/// One JSON object per line on stderr: `time` (RFC 3339, ms), `level`, `service`, `instance`,
/// `logger` (the label), `message`, `source`, and the event's metadata under `metadata`.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let service: String
    let instance: String

    public init(label: String, service: String, instance: String) {
        self.label = label
        self.service = service
        self.instance = instance
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        FileHandle.standardError.write(Data(Self.line(
            time: Date(), level: event.level, service: service, instance: instance, logger: label,
            message: "\(event.message)", source: event.source, metadata: merged).utf8))
    }

    /// The JSON line (pure, for tests), ending in a newline.
    public static func line(
        time: Date, level: Logger.Level, service: String, instance: String, logger: String, message: String,
        source: String, metadata: Logger.Metadata
    ) -> String {
        func json(_ value: Logger.Metadata.Value) -> Any {
            switch value {
            case .string(let s): s
            case .stringConvertible(let c): "\(c)"
            case .array(let a): a.map(json)
            case .dictionary(let d): d.mapValues(json)
            }
        }
        var object: [String: Any] = [
            "time": Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(time), "level": level.rawValue, "service": service,
            "instance": instance, "logger": logger, "message": message, "source": source,
        ]
        if !metadata.isEmpty { object["metadata"] = metadata.mapValues(json) }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
            ?? Data("{\"message\":\"unencodable log event\"}".utf8)
        return String(decoding: data, as: UTF8.self) + "\n"
    }

}
