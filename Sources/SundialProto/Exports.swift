// Users of the generated messages also need SwiftProtobuf's runtime types
// (Google_Protobuf_Timestamp, serializedBytes, JSON); re-export it with them.
@_exported import SwiftProtobuf
