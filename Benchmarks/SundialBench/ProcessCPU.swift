import Foundation

/// CPU time (user + system) of the processes a benchmark runs against, read from
/// `/proc/<pid>/stat` (Linux): every nats-server, every Postgres process (with what exited
/// backends left in their postmaster's children's time), every `sundial` process by role
/// (`sundial dev` runs all four services in one; `sundial dev --processes` and `sundial serve
/// <service>` one each), and this process, the benchmark client. Everything on the machine
/// that matches counts: run benchmarks on a box with nothing else of the kind running.
public enum ProcessCPU {
    /// Seconds of CPU per role since each process started.
    public static func snapshot() -> [String: Double] {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        guard ticks > 0, let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [:] }
        let me = getpid()
        var seconds: [String: Double] = [:]
        for entry in entries {
            guard let pid = Int32(entry), let stat = Stat(pid: pid) else { continue }
            let role: String
            if pid == me {
                role = "bench client"
            } else if stat.command == "nats-server" {
                role = "nats-server"
            } else if stat.command == "postgres" {
                role = "postgres"
            } else if stat.command == "sundial" {
                guard let sundialRole = sundialRole(pid: pid) else { continue }
                role = sundialRole
            } else {
                continue
            }
            var used = stat.userTicks + stat.systemTicks
            // A postmaster (its parent is no postgres) holds the time of backends that exited.
            if role == "postgres", Stat(pid: stat.parent)?.command != "postgres" {
                used += stat.childUserTicks + stat.childSystemTicks
            }
            seconds[role, default: 0] += Double(used) / ticks
        }
        return seconds
    }

    /// What a `sundial` process runs, from its command line; nil for any other command (a CLI
    /// call, another benchmark).
    static func sundialRole(pid: Int32) -> String? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
        let arguments = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard arguments.count >= 2 else { return nil }
        switch arguments[1] {
        case "dev": return arguments.contains("--processes") ? "sundial dev (supervisor)" : "sundial dev (all services)"
        case "serve": return arguments.count > 2 ? arguments[2...].joined(separator: "+") : "sundial serve (all services)"
        default: return nil
        }
    }

    /// The fields of `/proc/<pid>/stat` used here.
    struct Stat {
        var command: String
        var parent: Int32
        var userTicks: Int
        var systemTicks: Int
        var childUserTicks: Int
        var childSystemTicks: Int

        init?(pid: Int32) {
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/stat") else { return nil }
            let text = String(decoding: data, as: UTF8.self)
            // The command is in parentheses and may hold spaces or parentheses: split at the last ')'.
            guard let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")") else { return nil }
            let fields = text[text.index(after: close)...].split(separator: " ")
            // fields[0] is field 3 (state) of proc(5): ppid is 4, utime 14, stime 15, cutime 16, cstime 17.
            guard fields.count > 14, let parent = Int32(fields[1]), let user = Int(fields[11]), let system = Int(fields[12]),
                  let childUser = Int(fields[13]), let childSystem = Int(fields[14])
            else { return nil }
            command = String(text[text.index(after: open)..<close])
            self.parent = parent
            userTicks = user
            systemTicks = system
            childUserTicks = childUser
            childSystemTicks = childSystem
        }
    }

    /// CPU seconds per 1,000 timers for each role between two snapshots.
    public static func perThousand(from start: [String: Double], to end: [String: Double], timers: Int) -> [String: Double] {
        guard timers > 0 else { return [:] }
        var result: [String: Double] = [:]
        for (role, seconds) in end {
            result[role] = max(0, seconds - (start[role] ?? 0)) * 1000 / Double(timers)
        }
        return result
    }

    /// `role  s per 1,000` lines, largest first, and the total.
    public static func table(_ perThousand: [String: Double]) -> String {
        let rows = perThousand.sorted { $0.value > $1.value }
        var text = "CPU seconds per 1,000 timers (from /proc):\n"
        for (role, seconds) in rows {
            text += "  " + role.padding(toLength: 28, withPad: " ", startingAt: 0) + String(format: "%.3f", seconds) + "\n"
        }
        text += "  " + "total".padding(toLength: 28, withPad: " ", startingAt: 0)
            + String(format: "%.3f", rows.reduce(0) { $0 + $1.value })
        return text
    }
}
