import SundialPostgres
import Testing

/// Named parameters: how `$name` placeholders become positions, and how bindings are checked.
@Suite("Named statement parameters")
struct PostgresQueryTests {
    @Test("names are numbered by first appearance; a name used twice is one parameter; casts are untouched")
    func numbering() {
        let query = PostgresQuery(
            name: "t_numbering",
            sql: "SELECT * FROM t WHERE b = $beta AND a = $alpha::bigint AND ($beta::int = 0 OR c = $gamma)")
        #expect(query.parameterNames == ["beta", "alpha", "gamma"])
        #expect(query.preparedSQL == "SELECT * FROM t WHERE b = $1 AND a = $2::bigint AND ($1::int = 0 OR c = $3)")
    }

    @Test("a $ inside string literals, quoted identifiers and comments is text")
    func skipsLiteralsAndComments() {
        let query = PostgresQuery(
            name: "t_literals",
            sql: """
                SELECT '$not' || 'it''s $still_not' AS "col$umn", $real -- $comment
                /* $block */ FROM t
                """)
        #expect(query.parameterNames == ["real"])
        #expect(query.preparedSQL.contains("'$not' || 'it''s $still_not' AS \"col$umn\", $1 -- $comment"))
        #expect(query.preparedSQL.contains("/* $block */"))
    }

    @Test("positional parameters, dollar quotes and unterminated quotes are refused")
    func refusals() throws {
        func problem(_ sql: String) -> String? {
            if case .failure(let problem) = PostgresQuery.compile(sql) { return problem.message }
            return nil
        }
        #expect(problem("SELECT $1")?.contains("positional") == true)
        #expect(problem("SELECT $tag$text$tag$")?.contains("dollar") == true)
        #expect(problem("SELECT $$text$$")?.contains("dollar") == true)
        #expect(problem("SELECT 'open")?.contains("unterminated") == true)
        #expect(problem("SELECT 1 /* open")?.contains("unterminated") == true)
        #expect(problem("SELECT $Upper")?.contains("`$`") == true)
        #expect(problem("SELECT $ok") == nil)
    }

    @Test("bindings are put in position order whatever order they are written in")
    func bindingOrder() throws {
        let query = PostgresQuery(name: "t_order", sql: "SELECT $first, $second, $third")
        let values = try query.values(for: ["third": .int(3), "first": .int(1), "second": .text("two")])
        #expect(values == [.int(1), .text("two"), .int(3)])
    }

    @Test("a missing, unknown or repeated name is a .parameters error, not a shifted value")
    func bindingErrors() throws {
        let query = PostgresQuery(name: "t_errors", sql: "SELECT $tenant, $id")
        let missing = #expect(throws: PostgresError.self) { try query.values(for: ["tenant": .text("a")]) }
        #expect(missing?.kind == .parameters)
        #expect(missing?.message.contains("$id") == true)

        let unknown = #expect(throws: PostgresError.self) {
            try query.values(for: ["tenant": .text("a"), "id": .int(1), "idd": .int(2)])
        }
        #expect(unknown?.kind == .parameters)
        #expect(unknown?.message.contains("$idd") == true)

        let twice = #expect(throws: PostgresError.self) {
            try query.values(for: ["tenant": .text("a"), "id": .int(1), "tenant": .text("b")])
        }
        #expect(twice?.kind == .parameters)
        #expect(twice?.message.contains("twice") == true)

        let none = PostgresQuery(name: "t_none", sql: "SELECT 1")
        #expect(none.parameterNames.isEmpty)
        #expect(try none.values(for: [:]).isEmpty)
    }
}
