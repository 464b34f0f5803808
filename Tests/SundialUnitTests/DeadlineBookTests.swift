import SundialNATS
import Testing

/// The request deadlines' bookkeeping, on plain integers as the clock.
@Suite("Request deadline book")
struct DeadlineBookTests {
    @Test("a request is answered once: by its handler if it finishes first, else by its deadline")
    func firstAnswerWins() {
        var book = DeadlineBook<Int, String>()
        let early = book.add(due: 100, "early")
        let late = book.add(due: 300, "late")
        let beforeDue = book.expire(now: 99)
        #expect(beforeDue.isEmpty)
        let lateFinishedFirst = book.finish(late)  // its handler finished in time: it answers
        #expect(lateFinishedFirst)
        let atDue = book.expire(now: 100)  // the deadline answers, once
        #expect(atDue == ["early"])
        let afterwards = book.expire(now: 1000)
        #expect(afterwards.isEmpty)
        let earlyFinishedFirst = book.finish(early)  // its handler ends past its deadline: reply dropped
        #expect(!earlyFinishedFirst)
        let lateAgain = book.finish(late)  // a ticket claims only once
        #expect(!lateAgain)
        #expect(book.count == 0)
    }

    @Test("everything due is expired in due order, nothing early, whatever the booking order")
    func expiresInDueOrder() {
        var book = DeadlineBook<Int, Int>()
        for due in [50, 10, 40, 20, 60, 30] { _ = book.add(due: due, due) }
        let first = book.expire(now: 35)
        #expect(first == [10, 20, 30])
        #expect(book.count == 3)
        let rest = book.expire(now: 60)
        #expect(rest == [40, 50, 60])
        #expect(book.count == 0)
    }

    @Test("tickets stay distinct, and a finished one is gone for good")
    func distinctTickets() {
        var book = DeadlineBook<Int, Int>()
        var tickets = Set<UInt64>()
        var finished = 0
        for n in 0..<10_000 {
            let ticket = book.add(due: n, n)
            tickets.insert(ticket)
            if n.isMultiple(of: 2), book.finish(ticket) { finished += 1 }
        }
        #expect(tickets.count == 10_000)
        #expect(finished == 5_000)
        #expect(book.count == 5_000)
        let expired = book.expire(now: 10_000)
        #expect(expired == Array(stride(from: 1, to: 10_000, by: 2)))
    }
}
