import Foundation
import SundialContract
import SundialCore
import SundialProto
import SundialSchedule
import Testing

@testable import SundialCLI

/// `sundial timers create` for every schedule kind (issue 15): the options become the request
/// Ingest accepts, `--dry-run` previews, and contradictory options are refused.
@Suite("Integration: timers create from the CLI")
struct CLIIntegrationTests {
    static func parse(_ arguments: [String]) throws -> TimersCommand.Create {
        try TimersCommand.Create.parse(["--tenant", "acme", "--queue", "q"] + arguments)
    }

    @Test("every kind becomes its schedule; retry policy, labels and --after are carried")
    func everyKindBuildsItsRequest() throws {
        let cron = try Self.parse([
            "--cron", "0 9 * * MON-FRI", "--time-zone", "Europe/Berlin", "--max-occurrences", "5", "--max-attempts", "3",
            "--initial-backoff", "2s", "--max-backoff", "1m", "--label", "team=ops", "--jitter", "30s",
        ]).request()
        #expect(cron.schedule.cron.expression == "0 9 * * MON-FRI" && cron.schedule.timeZone == "Europe/Berlin")
        #expect(cron.schedule.end.maxOccurrences == 5 && cron.schedule.jitter.seconds == 30)
        #expect(cron.retryPolicy.maxAttempts == 3 && cron.retryPolicy.initialBackoff.seconds == 2)
        #expect(cron.retryPolicy.maxBackoff.seconds == 60 && cron.labels == ["team": "ops"])

        let every = try Self.parse(["--every", "90m", "--start", "2030-01-01T00:00:00Z"]).request()
        #expect(every.schedule.every.interval.seconds == 5400 && every.schedule.every.start.seconds == 1_893_456_000)
        let weekdays = try Self.parse(["--weekdays", "mon,wed", "--at-time", "09:30", "--recurring"]).request()
        #expect(weekdays.schedule.weekdays.recurring && weekdays.schedule.weekdays.timeOfDay.hour == 9)
        #expect(weekdays.schedule.weekdays.timeOfDay.minute == 30)
        #expect(try Self.parse(["--date", "03-15", "--at-time", "08:00"]).request().schedule.date.month == 3)
        #expect(try Self.parse(["--in", "10s"]).request().schedule.delay.duration.seconds == 10)
        #expect(try Self.parse(["--delay", "10s"]).request().schedule.delay.duration.seconds == 10)
        let parent = TimerID.text(TimerID.make())
        #expect(try Self.parse(["--in", "1h", "--after", parent]).request().afterTimerID == parent)

        // Contradictions and nonsense are refused before anything is sent.
        #expect(throws: (any Error).self) { try Self.parse(["--in", "10s", "--cron", "@daily"]).request() }
        #expect(throws: (any Error).self) { try Self.parse([]).request() }
        #expect(throws: (any Error).self) { try Self.parse(["--in", "10s", "--at-time", "09:00"]).request() }
        #expect(throws: (any Error).self) { try Self.parse(["--in", "10s", "--after", "not-an-id"]).request() }
        #expect(throws: (any Error).self) { try Self.parse(["--in", "10s", "--initial-backoff", "soon"]).request() }
    }

    @Test("the dry-run preview lists the next fire times")
    func dryRunPreview() throws {
        let options = try Self.parse(["--cron", "0 9 * * *", "--dry-run", "--count", "3"])
        let schedule = try options.schedule.buildSchedule()
        let lines = ScheduleOptions.preview(
            schedule, createdAt: Date(timeIntervalSince1970: 1_798_761_600), timerID: "x", count: options.count)  // 2027-01-01T00:00Z
        #expect(lines.map { String($0.prefix(20)) } == ["2027-01-01T09:00:00Z", "2027-01-02T09:00:00Z", "2027-01-03T09:00:00Z"])
    }

    @Test("Ingest accepts what the CLI builds: a cron timer in Berlin is scheduled for 09:00 local on a weekday")
    func ingestAcceptsTheRequest() async throws {
        try await withTestSystem("clicreate") { system in
            let request = try Self.parse(["--cron", "0 9 * * MON-FRI", "--time-zone", "Europe/Berlin", "--max-attempts", "3"])
                .request()
            let created = try await system.client(tenant: "acme").create(request)
            #expect(created.timer.schedule.cron.expression == "0 9 * * MON-FRI" && created.timer.retryPolicy.maxAttempts == 3)
            let next = created.timer.nextFireAt.date
            var berlin = Calendar(identifier: .gregorian)
            berlin.timeZone = TimeZone(identifier: "Europe/Berlin")!
            let parts = berlin.dateComponents([.hour, .minute, .weekday], from: next)
            #expect(parts.hour == 9 && parts.minute == 0 && (2...6).contains(parts.weekday ?? 0), "\(next)")
        }
    }
}
