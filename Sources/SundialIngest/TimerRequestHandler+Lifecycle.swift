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
        let fields = Self.updatedFields(request, &violations)
        var newSchedule: TimerSchedule?
        if fields.contains(.schedule) && !request.hasSchedule {
            violations.append(("schedule", "named in update_mask but not given (a timer always has a schedule)"))
        } else if fields.contains(.schedule) {
            do {
                let parsed = try TimerSchedule(proto: request.schedule)
                try parsed.validate(now: updatedAt)
                newSchedule = parsed
            } catch {
                violations += error.violations.map { ($0.field.hasPrefix("schedule") ? $0.field : "schedule.\($0.field)", $0.reason) }
            }
        }
        if fields.contains(.payload), request.payload.count > config.maxPayloadBytes {
            violations.append(("payload", "is \(request.payload.count) bytes; the limit is \(config.maxPayloadBytes)"))
        }
        var priority: Int?
        if fields.contains(.priority) {
            switch request.priority {
            case .unspecified: priority = Sundial_V1_Priority.normal.rawValue  // named in the mask: the default
            case .high, .normal, .low: priority = request.priority.rawValue
            case .UNRECOGNIZED(let raw): violations.append(("priority", "unknown value \(raw)"))
            }
        }
        if fields.contains(.labels) { violations += labelViolations(request.labels) }
        if fields.isEmpty {
            violations.append(("", "nothing to update: give a schedule, a payload, a priority or labels (or name them in update_mask)"))
        }
        guard violations.isEmpty else {
            throw SundialError(.invalidArgument, violations.map { "\($0.field): \($0.reason)" }.joined(separator: "; "), violations: violations)
        }
        // After validation (a refused request costs no token), before any database work.
        try await admission.admit(tenant: tenant)
        let change = TimerChange(
            schedule: newSchedule, scheduleBytes: newSchedule.flatMap { try? $0.proto.serializedBytes() as [UInt8] } ?? [],
            payload: fields.contains(.payload) ? [UInt8](request.payload) : nil, priority: priority,
            labelsJSON: fields.contains(.labels) ? Self.labelsJSON(request.labels) : nil,
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
        await publish(armed, of: timer)
        var response = Sundial_V1_UpdateTimerResponse()
        response.timer = TimerMapping.proto(timer)
        return response
    }

    /// A field an update can change.
    enum UpdatedField: String, CaseIterable {
        case schedule, payload, priority, labels
    }

    /// The fields `request` changes: those its `update_mask` names, or without a mask those
    /// present (see `UpdateTimerRequest` in timers.proto). Unknown mask paths are violations.
    static func updatedFields(
        _ request: Sundial_V1_UpdateTimerRequest, _ violations: inout [(field: String, reason: String)]
    ) -> Set<UpdatedField> {
        if request.hasUpdateMask, request.updatePayload, !request.updateMask.paths.contains("payload") {
            violations.append(("update_mask", "update_payload is set but the mask does not name \"payload\""))
        }
        guard request.hasUpdateMask else {
            var fields: Set<UpdatedField> = []
            if request.hasSchedule { fields.insert(.schedule) }
            if request.hasPayload || request.updatePayload { fields.insert(.payload) }
            if request.priority != .unspecified { fields.insert(.priority) }
            if !request.labels.isEmpty { fields.insert(.labels) }
            return fields
        }
        var fields: Set<UpdatedField> = []
        if request.updateMask.paths.count > UpdatedField.allCases.count * 4 {
            violations.append(("update_mask", "names \(request.updateMask.paths.count) paths; there are \(UpdatedField.allCases.count) fields"))
            return fields
        }
        for path in request.updateMask.paths {
            if let field = UpdatedField(rawValue: path) {
                fields.insert(field)
            } else {
                let known = UpdatedField.allCases.map(\.rawValue).joined(separator: ", ")
                violations.append(("update_mask", "unknown field \"\(path.prefix(64))\" (updatable: \(known))"))
            }
        }
        return fields
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

    // MARK: Pause / Resume

    public func pause(tenant: String, body: [UInt8]) async throws(SundialError) -> Sundial_V1_PauseTimerResponse {
        try Self.checkTenant(tenant)
        let request: Sundial_V1_PauseTimerRequest = try Self.decode(body, "PauseTimerRequest")
        let (timers, next) = try await eachTimer(
            tenant: tenant, operation: "pause", timerID: request.timerID, expectedVersion: request.expectedVersion,
            labels: request.labels, pageSize: request.pageSize, pageToken: request.pageToken,
            selecting: [.scheduled, .armed, .retrying, .completed]
        ) { id, expectedVersion in
            // The paused runs' schedules are not purged: a resume right after could publish on
            // the same subjects before a purge ran. Their fires are dropped by the claim (the
            // run is not armed) or, once resumed, replaced by the new version's.
            try await self.store.pause(tenant: tenant, id: id, expectedVersion: expectedVersion)
        }
        var response = Sundial_V1_PauseTimerResponse()
        response.timers = timers
        response.nextPageToken = next
        return response
    }

    public func resume(tenant: String, body: [UInt8]) async throws(SundialError) -> Sundial_V1_ResumeTimerResponse {
        try Self.checkTenant(tenant)
        let request: Sundial_V1_ResumeTimerRequest = try Self.decode(body, "ResumeTimerRequest")
        let (timers, next) = try await eachTimer(
            tenant: tenant, operation: "resume", timerID: request.timerID, expectedVersion: request.expectedVersion,
            labels: request.labels, pageSize: request.pageSize, pageToken: request.pageToken, selecting: [.paused]
        ) { id, expectedVersion in
            let outcome = try await self.store.resume(
                tenant: tenant, id: id, expectedVersion: expectedVersion, now: self.now(),
                misfireThreshold: self.config.misfireThreshold)
            if case .applied(let timer, _, let armed) = outcome {
                await self.publish(armed, of: timer)
            }
            return outcome
        }
        var response = Sundial_V1_ResumeTimerResponse()
        response.timers = timers
        response.nextPageToken = next
        return response
    }

    /// Applies a mutation to one timer (`timerID`; its refusal is the reply), or to one page of
    /// the tenant's timers in `selecting` states whose labels contain `labels` (refusals are
    /// left out of the reply: a timer that fired or finished meanwhile). Returns the timers
    /// changed and the next page's token.
    private func eachTimer(
        tenant: String, operation: String, timerID: String, expectedVersion rawVersion: UInt64,
        labels: [String: String], pageSize rawPageSize: UInt32, pageToken: String, selecting states: [StoredTimerState],
        apply: (UUID, Int64?) async throws -> MutationOutcome
    ) async throws(SundialError) -> ([Sundial_V1_Timer], String) {
        if !timerID.isEmpty {
            guard labels.isEmpty, pageToken.isEmpty else {
                throw .invalid("labels", "give timer_id or a label selector, not both")
            }
            let id = try Self.timerID(timerID)
            let expectedVersion = try Self.expectedVersion(rawVersion)
            let outcome: MutationOutcome
            do {
                outcome = try await apply(id, expectedVersion)
            } catch {
                throw storeFailure(error, operation)
            }
            guard case .applied(let timer, _, _) = outcome else { throw Self.mutationError(outcome, timerID) }
            return ([TimerMapping.proto(timer)], "")
        }
        let (page, pageSize) = try await selectorPage(
            tenant: tenant, operation: operation, labels: labels, pageSize: rawPageSize, pageToken: pageToken,
            states: states, violations: rawVersion != 0 ? [("expected_version", "goes with timer_id")] : [])
        var changed: [Sundial_V1_Timer] = []
        var bytes = 0
        var last: StoredTimer?
        for listed in page {
            // Stop before a reply NATS would refuse; the rest is the next page.
            let size = ((try? TimerMapping.proto(listed).serializedBytes() as [UInt8])?.count ?? 0) + 16
            if !changed.isEmpty, bytes + size > config.maxReplyBytes { break }
            let outcome: MutationOutcome
            do {
                outcome = try await apply(listed.id, nil)
            } catch {
                throw storeFailure(error, operation)
            }
            last = listed
            guard case .applied(let timer, _, _) = outcome else { continue }
            changed.append(TimerMapping.proto(timer))
            bytes += size
        }
        let next = last.map { last in last.id != page.last?.id || page.count == pageSize ? PageToken.encode(last.id) : "" } ?? ""
        return (changed, next)
    }

    /// Selector mode of Pause, Resume and Retry: one page of the tenant's timers in `states`
    /// whose labels contain `labels` (at least one), `pageSize` at most 100 (0: 50).
    private func selectorPage(
        tenant: String, operation: String, labels: [String: String], pageSize rawPageSize: UInt32, pageToken: String,
        states: [StoredTimerState], violations initial: [(field: String, reason: String)] = []
    ) async throws(SundialError) -> (page: [StoredTimer], pageSize: Int) {
        var violations = initial
        if labels.isEmpty { violations.append(("labels", "give timer_id or at least one label")) }
        violations += labelViolations(labels)
        let pageSize = rawPageSize == 0 ? 50 : Int(rawPageSize)
        if pageSize > 100 { violations.append(("page_size", "must be at most 100")) }
        var after: UUID?
        if !pageToken.isEmpty {
            after = PageToken.decodeID(pageToken)
            if after == nil { violations.append(("page_token", "is not a token from a previous page")) }
        }
        guard violations.isEmpty else {
            throw SundialError(.invalidArgument, violations.map { "\($0.field): \($0.reason)" }.joined(separator: "; "), violations: violations)
        }
        do {
            let page = try await store.list(
                tenant: tenant, afterID: after, states: states, queue: nil, labelsJSON: Self.labelsJSON(labels), limit: pageSize)
            return (page, pageSize)
        } catch {
            throw storeFailure(error, operation)
        }
    }

    // MARK: Retry (redrive)

    public func retry(tenant: String, body: [UInt8]) async throws(SundialError) -> Sundial_V1_RetryTimerResponse {
        try Self.checkTenant(tenant)
        let request: Sundial_V1_RetryTimerRequest = try Self.decode(body, "RetryTimerRequest")
        var response = Sundial_V1_RetryTimerResponse()
        if !request.timerID.isEmpty {
            guard request.labels.isEmpty, request.pageToken.isEmpty else {
                throw .invalid("labels", "give timer_id or a label selector, not both")
            }
            let id = try Self.timerID(request.timerID)
            var occurrence: Int64?
            if request.hasOccurrence {
                guard let number = Int64(exactly: request.occurrence) else {
                    throw .invalid("occurrence", "is out of range (at most \(Int64.max))")
                }
                occurrence = number
            }
            let outcome: RedriveOutcome
            do {
                // A redriven timer is active again: it counts against the tenant's limit.
                try await usage.admit(tenant: tenant, payloadBytes: 0)
                outcome = try await store.redrive(tenant: tenant, id: id, occurrence: occurrence, now: now())
            } catch let error as SundialError {
                throw error
            } catch {
                throw storeFailure(error, "retry")
            }
            switch outcome {
            case .redriven(let timer, let run):
                if let run { await publish([run], of: timer) }
                response.timers = [TimerMapping.proto(timer)]
            case .tooManyAttempts(let timer):
                throw SundialError(
                    .conflict,
                    "the occurrence has had too many attempts for another round (attempt numbers stop at \(ArmedRun.maximumAttempt)); timer \(TimerID.text(timer.id))")
            case .notFound:
                throw SundialError(.notFound, "timer \(request.timerID) not found")
            case .nothingToRetry(let timer):
                throw SundialError(
                    .conflict,
                    timer.state == .cancelled
                        ? "the timer is cancelled"
                        : "nothing to retry: \(occurrence.map { "occurrence \($0)" } ?? "the timer") has no dead-lettered attempt that was not retried already")
            }
            return response
        }
        // Selector mode: dead one-shot timers with these labels, one bounded page.
        let (page, pageSize) = try await selectorPage(
            tenant: tenant, operation: "retry", labels: request.labels, pageSize: request.pageSize,
            pageToken: request.pageToken, states: [.dead])
        var bytes = 0
        var last: StoredTimer?
        for listed in page {
            // A recurring timer is dead only when its schedule stopped evaluating: its dead
            // occurrences are redriven one by one (timer_id and occurrence).
            if listed.recurring {
                last = listed
                continue
            }
            // Stop before a reply NATS would refuse; the rest is the next page.
            let size = ((try? TimerMapping.proto(listed).serializedBytes() as [UInt8])?.count ?? 0) + 16
            if !response.timers.isEmpty, bytes + size > config.maxReplyBytes { break }
            let outcome: RedriveOutcome
            do {
                try await usage.admit(tenant: tenant, payloadBytes: 0)
                outcome = try await store.redrive(tenant: tenant, id: listed.id, occurrence: nil, now: now())
            } catch let error as SundialError {
                throw error
            } catch {
                throw storeFailure(error, "retry")
            }
            last = listed
            // Redriven meanwhile by someone else: not this request's.
            guard case .redriven(let timer, let run) = outcome else { continue }
            if let run { await publish([run], of: timer) }
            response.timers.append(TimerMapping.proto(timer))
            bytes += size
        }
        if let last, last.id != page.last?.id || page.count == pageSize {
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
        case .refused(let timer, let reason):
            return SundialError(.conflict, "the timer is \(timer.state.rawValue): \(reason)")
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
