import Foundation
import SundialContract
import SundialCore
import SundialProto
import SundialSchedule
import SundialStore

/// Update, Cancel, List and History. Race semantics are in docs/lifecycle.md.
extension TimerRequestHandler {
    // MARK: Cancel

    public func cancel(tenant: String, body: [UInt8]) async throws(SundialError) -> Sundial_V1_CancelTimerResponse {
        try Self.checkTenant(tenant)
        let request: Sundial_V1_CancelTimerRequest = try Self.decode(body, "CancelTimerRequest")
        let id = try Self.timerID(request.timerID)
        let expectedVersion = try Self.expectedVersion(request.expectedVersion)
        let outcome: MutationOutcome
        do {
            outcome = try await store.cancel(
                tenant: tenant, id: id, expectedVersion: expectedVersion)
        } catch {
            throw storeFailure(error, "cancel")
        }
        var response = Sundial_V1_CancelTimerResponse()
        switch outcome {
        case .applied(let timer, let retired, _):
            // Nothing new is loaded for a cancelled timer, so one wildcard purge is safe.
            if !retired.isEmpty { await purgeSchedules(of: timer, runs: nil) }
            response.timer = TimerMapping.proto(timer)
        case .finished(let timer) where timer.state == .cancelled:
            response.timer = TimerMapping.proto(timer)  // cancel is idempotent
        default:
            throw Self.mutationError(outcome, request.timerID)
        }
        return response
    }

    // MARK: Update

    public func update(tenant: String, body: [UInt8]) async throws(SundialError) -> Sundial_V1_UpdateTimerResponse {
        try Self.checkTenant(tenant)
        let request: Sundial_V1_UpdateTimerRequest = try Self.decode(body, "UpdateTimerRequest")
        let id = try Self.timerID(request.timerID)
        let expectedVersion = try Self.expectedVersion(request.expectedVersion)
        let updatedAt = now()
        var violations: [(field: String, reason: String)] = []
        var newSchedule: TimerSchedule?
        if request.hasSchedule {
            do {
                let parsed = try TimerSchedule(proto: request.schedule)
                try parsed.validate(now: updatedAt)
                newSchedule = parsed
            } catch {
                violations += error.violations.map { ($0.field.hasPrefix("schedule") ? $0.field : "schedule.\($0.field)", $0.reason) }
            }
        }
        if request.updatePayload, request.payload.count > config.maxPayloadBytes {
            violations.append(("payload", "is \(request.payload.count) bytes; the limit is \(config.maxPayloadBytes)"))
        }
        var priority: Int?
        switch request.priority {
        case .unspecified: priority = nil
        case .high, .normal, .low: priority = request.priority.rawValue
        case .UNRECOGNIZED(let raw): violations.append(("priority", "unknown value \(raw)"))
        }
        violations += labelViolations(request.labels)
        if !request.hasSchedule && !request.updatePayload && priority == nil && request.labels.isEmpty {
            violations.append(("", "nothing to update: give a schedule, a payload (with update_payload), a priority or labels"))
        }
        guard violations.isEmpty else {
            throw SundialError(.invalidArgument, violations.map { "\($0.field): \($0.reason)" }.joined(separator: "; "), violations: violations)
        }
        let change = TimerChange(
            schedule: newSchedule, scheduleBytes: newSchedule.flatMap { try? $0.proto.serializedBytes() as [UInt8] } ?? [],
            payload: request.updatePayload ? [UInt8](request.payload) : nil, priority: priority,
            labelsJSON: request.labels.isEmpty ? nil : Self.labelsJSON(request.labels),
            at: updatedAt, horizon: config.horizon.seconds)
        let outcome: MutationOutcome
        do {
            outcome = try await store.update(tenant: tenant, id: id, expectedVersion: expectedVersion, change: change)
        } catch {
            throw storeFailure(error, "update")
        }
        guard case .applied(let timer, let retired, let armed) = outcome else {
            throw Self.mutationError(outcome, request.timerID)
        }
        // Only the retired runs' own subjects: a wildcard could also remove a schedule the
        // Planner has just published for the new version.
        if !retired.isEmpty { await purgeSchedules(of: timer, runs: retired) }
        // New-version schedules: replace the old ones on the same subjects, or load the new
        // first occurrence.
        for run in armed { await publish(run, of: timer) }
        var response = Sundial_V1_UpdateTimerResponse()
        response.timer = TimerMapping.proto(timer)
        return response
    }

    // MARK: List

    public func list(tenant: String, body: [UInt8]) async throws(SundialError) -> Sundial_V1_ListTimersResponse {
        try Self.checkTenant(tenant)
        let request: Sundial_V1_ListTimersRequest = try Self.decode(body, "ListTimersRequest")
        var violations: [(field: String, reason: String)] = []
        let pageSize = request.pageSize == 0 ? 50 : Int(request.pageSize)
        if pageSize > 1000 { violations.append(("page_size", "must be at most 1000")) }
        var states: [StoredTimerState] = []
        for state in request.states {
            if let stored = TimerMapping.storedState(state) { states.append(stored) } else {
                violations.append(("states", "unknown state \(state)"))
            }
        }
        if !request.queue.isEmpty && !SubjectToken.isValidQueue(request.queue) {
            violations.append(("queue", "is not a valid queue name"))
        }
        violations += labelViolations(request.labels)
        var after: UUID?
        if !request.pageToken.isEmpty {
            after = PageToken.decodeID(request.pageToken)
            if after == nil { violations.append(("page_token", "is not a token from a previous page")) }
        }
        guard violations.isEmpty else {
            throw SundialError(.invalidArgument, violations.map { "\($0.field): \($0.reason)" }.joined(separator: "; "), violations: violations)
        }
        let page: [StoredTimer]
        do {
            page = try await store.list(
                tenant: tenant, afterID: after, states: states, queue: request.queue.isEmpty ? nil : request.queue,
                labelsJSON: Self.labelsJSON(request.labels), limit: pageSize)
        } catch {
            throw storeFailure(error, "list")
        }
        // A page ends early when its reply would outgrow `maxReplyBytes` (payloads are up to
        // 256 KiB each; NATS refuses messages over its max_payload, and then no reply arrives).
        var response = Sundial_V1_ListTimersResponse()
        var bytes = 0
        var last: StoredTimer?
        for stored in page {
            let timer = TimerMapping.proto(stored)
            let size = (try? timer.serializedBytes() as [UInt8])?.count ?? 0
            if !response.timers.isEmpty, bytes + size + 16 > config.maxReplyBytes { break }
            bytes += size + 16
            response.timers.append(timer)
            last = stored
        }
        if let last, response.timers.count < page.count || page.count == pageSize {
            response.nextPageToken = PageToken.encode(last.id)
        }
        return response
    }

    // MARK: History

    public func history(tenant: String, body: [UInt8]) async throws(SundialError) -> Sundial_V1_TimerHistoryResponse {
        try Self.checkTenant(tenant)
        let request: Sundial_V1_TimerHistoryRequest = try Self.decode(body, "TimerHistoryRequest")
        let id = try Self.timerID(request.timerID)
        let pageSize = request.pageSize == 0 ? 100 : Int(request.pageSize)
        guard pageSize <= 1000 else { throw .invalid("page_size", "must be at most 1000") }
        var after: (Int64, Int) = (-1, 0)
        if !request.pageToken.isEmpty {
            guard let position = PageToken.decodeRun(request.pageToken) else {
                throw .invalid("page_token", "is not a token from a previous page")
            }
            after = position
        }
        let runs: [StoredRun]
        do {
            // Ownership first: another tenant's id reads as not found.
            guard try await store.get(tenant: tenant, id: id) != nil else {
                throw SundialError(.notFound, "timer \(request.timerID) not found")
            }
            runs = try await store.runs(timerID: id, after: after, limit: pageSize)
        } catch let error as SundialError {
            throw error
        } catch {
            throw storeFailure(error, "history")
        }
        var response = Sundial_V1_TimerHistoryResponse()
        response.runs = runs.map(TimerMapping.proto)
        if runs.count == pageSize, let last = runs.last {
            response.nextPageToken = PageToken.encode(occurrence: last.occurrence, attempt: last.attempt)
        }
        return response
    }

    // MARK: shared

    static func timerID(_ text: String) throws(SundialError) -> UUID {
        guard let id = TimerID.parse(text) else {
            throw .invalid("timer_id", text.isEmpty ? "is required" : "is not a timer id")
        }
        return id
    }

    /// 0 means "any version". Versions are Postgres bigints: a larger value (which no timer
    /// can have) is rejected instead of trapping in the Int64 conversion.
    static func expectedVersion(_ raw: UInt64) throws(SundialError) -> Int64? {
        guard raw != 0 else { return nil }
        guard let version = Int64(exactly: raw) else {
            throw .invalid("expected_version", "is out of range (at most \(Int64.max))")
        }
        return version
    }

    static func labelsJSON(_ labels: [String: String]) -> String {
        labels.isEmpty ? "{}" :
            (try? JSONSerialization.data(withJSONObject: labels, options: [.sortedKeys]))
            .map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    func labelViolations(_ labels: [String: String]) -> [(field: String, reason: String)] {
        var violations: [(field: String, reason: String)] = []
        if labels.count > config.maxLabels {
            violations.append(("labels", "has \(labels.count) entries; the limit is \(config.maxLabels)"))
        }
        for (key, value) in labels.sorted(by: { $0.key < $1.key }) {
            if key.isEmpty || key.utf8.count > config.maxLabelKeyBytes {
                violations.append(("labels", "key \"\(key.prefix(80))\" must be 1–\(config.maxLabelKeyBytes) bytes"))
            } else if value.utf8.count > config.maxLabelValueBytes {
                violations.append(("labels[\(key)]", "value is longer than \(config.maxLabelValueBytes) bytes"))
            } else if key.utf8.contains(0) || value.utf8.contains(0) {
                // Postgres text/jsonb cannot hold NUL: reject here rather than fail the insert.
                violations.append(("labels", "keys and values must not contain NUL characters"))
            }
        }
        return violations
    }

    static func mutationError(_ outcome: MutationOutcome, _ id: String) -> SundialError {
        switch outcome {
        case .notFound:
            return SundialError(.notFound, "timer \(id) not found")
        case .versionMismatch(let timer):
            return SundialError(
                .conflict, "version mismatch: the timer is at version \(timer.version)",
                violations: [("expected_version", "is not the current version \(timer.version)")])
        case .alreadyFired(let timer):
            return SundialError(
                .conflict,
                timer.recurring
                    ? "already fired: an occurrence is being dispatched right now; retry to change the later ones"
                    : "already fired: the timer's job was dispatched (state \(timer.state.rawValue))")
        case .finished(let timer) where !timer.recurring && (timer.state == .succeeded || timer.state == .dead):
            // A one-shot whose job already ran (and was reported) lost the race just the same.
            return SundialError(.conflict, "already fired: the timer's job ran (state \(timer.state.rawValue))")
        case .finished(let timer):
            return SundialError(.conflict, "the timer is \(timer.state.rawValue)")
        case .applied:
            return SundialError(.internal, "internal error")
        }
    }
}

/// Opaque pagination tokens (base64url of the position).
enum PageToken {
    static func encode(_ id: UUID) -> String {
        base64url(withUnsafeBytes(of: id.uuid) { Array($0) })
    }

    static func decodeID(_ token: String) -> UUID? {
        guard let bytes = unbase64url(token), bytes.count == 16 else { return nil }
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }

    static func encode(occurrence: Int64, attempt: Int) -> String {
        base64url(Array("\(occurrence):\(attempt)".utf8))
    }

    static func decodeRun(_ token: String) -> (Int64, Int)? {
        guard let bytes = unbase64url(token) else { return nil }
        let parts = String(decoding: bytes, as: UTF8.self).split(separator: ":")
        guard parts.count == 2, let occurrence = Int64(parts[0]), let attempt = Int(parts[1]) else { return nil }
        return (occurrence, attempt)
    }

    private static func base64url(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    private static func unbase64url(_ text: String) -> [UInt8]? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64).map { [UInt8]($0) }
    }
}
