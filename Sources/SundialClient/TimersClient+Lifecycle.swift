import SundialProto

/// Update, Cancel, List and History on the client side. Errors are thrown as `SundialError`:
/// 404 for an unknown (or another tenant's) id, 409 for a version mismatch or a request that
/// lost the race with the fire ("already fired"), 400 for invalid requests.
extension TimersClient {
    /// Applies an update; the reply carries the timer at its new version.
    public func update(_ request: Sundial_V1_UpdateTimerRequest) async throws -> Sundial_V1_Timer {
        let response: Sundial_V1_UpdateTimerResponse = try await call(.update, request)
        return response.timer
    }

    /// Cancels a timer (idempotent: cancelling a cancelled timer returns it again).
    /// `expectedVersion` nil or 0: no compare-and-set.
    public func cancel(_ timerID: String, expectedVersion: UInt64? = nil) async throws -> Sundial_V1_Timer {
        var request = Sundial_V1_CancelTimerRequest()
        request.timerID = timerID
        if let expectedVersion { request.expectedVersion = expectedVersion }
        let response: Sundial_V1_CancelTimerResponse = try await call(.cancel, request)
        return response.timer
    }

    /// One page of the tenant's timers (in id order); follow `nextPageToken` until it is empty.
    public func list(_ request: Sundial_V1_ListTimersRequest) async throws -> Sundial_V1_ListTimersResponse {
        try await call(.list, request)
    }

    /// Redrive: runs a dead-lettered occurrence again (`occurrence` nil: the timer's latest
    /// one). 409 when there is none to retry.
    public func retry(_ timerID: String, occurrence: UInt64? = nil) async throws -> Sundial_V1_Timer {
        var request = Sundial_V1_RetryTimerRequest()
        request.timerID = timerID
        if let occurrence { request.occurrence = occurrence }
        let response: Sundial_V1_RetryTimerResponse = try await call(.retry, request)
        return response.timers.first ?? Sundial_V1_Timer()
    }

    /// Redrive by label selector: one page of the tenant's dead one-shot timers whose labels
    /// contain `labels`; follow `nextPageToken` until it is empty.
    public func retry(_ request: Sundial_V1_RetryTimerRequest) async throws -> Sundial_V1_RetryTimerResponse {
        try await call(.retry, request)
    }

    /// Pauses a timer: it fires nothing until resumed (idempotent). 409 when a one-shot's job
    /// was dispatched already.
    public func pause(_ timerID: String, expectedVersion: UInt64? = nil) async throws -> Sundial_V1_Timer {
        var request = Sundial_V1_PauseTimerRequest()
        request.timerID = timerID
        if let expectedVersion { request.expectedVersion = expectedVersion }
        let response: Sundial_V1_PauseTimerResponse = try await call(.pause, request)
        return response.timers.first ?? Sundial_V1_Timer()
    }

    /// Pause by label selector, one page; follow `nextPageToken` until it is empty.
    public func pause(_ request: Sundial_V1_PauseTimerRequest) async throws -> Sundial_V1_PauseTimerResponse {
        try await call(.pause, request)
    }

    /// Resumes a paused timer (idempotent); missed occurrences go by its misfire policy.
    public func resume(_ timerID: String, expectedVersion: UInt64? = nil) async throws -> Sundial_V1_Timer {
        var request = Sundial_V1_ResumeTimerRequest()
        request.timerID = timerID
        if let expectedVersion { request.expectedVersion = expectedVersion }
        let response: Sundial_V1_ResumeTimerResponse = try await call(.resume, request)
        return response.timers.first ?? Sundial_V1_Timer()
    }

    /// Resume by label selector, one page; follow `nextPageToken` until it is empty.
    public func resume(_ request: Sundial_V1_ResumeTimerRequest) async throws -> Sundial_V1_ResumeTimerResponse {
        try await call(.resume, request)
    }

    /// One page of a timer's runs in (occurrence, attempt) order.
    public func history(_ timerID: String, pageSize: UInt32 = 0, pageToken: String = "") async throws
        -> Sundial_V1_TimerHistoryResponse
    {
        var request = Sundial_V1_TimerHistoryRequest()
        request.timerID = timerID
        request.pageSize = pageSize
        request.pageToken = pageToken
        return try await call(.history, request)
    }
}
