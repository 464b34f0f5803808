#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Foundation
import Synchronization
import SundialThreads

/// A child process started with `posix_spawn` and reaped with `waitpid` on a dedicated
/// thread. Foundation's `Process` was not used: on Linux its exit monitoring missed child
/// exits in processes with many threads (children stayed zombies and `terminationHandler`
/// never ran), which hung `sundial dev` and the tests.
public final class ChildProcess: Sendable {
    public let pid: pid_t
    private let exitState = Mutex<ExitState>(ExitState())
    private let reaper: DedicatedThread

    private struct ExitState {
        var status: Int32?
        var waiters: [CheckedContinuation<Int32, Never>] = []
    }

    /// Where the child's stdout and stderr go.
    public enum Output: Sendable {
        /// Appended to a file.
        case file(String)
        /// A pipe; `onOutput` gets each chunk on a dedicated reader thread until EOF.
        case pipe(onOutput: @Sendable ([UInt8]) -> Void)
    }

    public static func spawn(
        executable: String, arguments: [String], environment: [String: String]? = nil,
        workingDirectory: String? = nil, output: Output
    ) throws -> ChildProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        var pipeFDs: [Int32] = [-1, -1]
        switch output {
        case .file(let path):
            posix_spawn_file_actions_addopen(&actions, 1, path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        case .pipe:
            guard pipe(&pipeFDs) == 0 else { throw ChildProcessError("pipe failed: errno \(errno)") }
            posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
            posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 2)
            posix_spawn_file_actions_addclose(&actions, pipeFDs[0])
            posix_spawn_file_actions_addclose(&actions, pipeFDs[1])
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Children start with default signal handling and an empty mask, and in their own
        // process group so a Ctrl-C aimed at us is handled by us (we stop them in order).
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))

        // Glibc's posix_spawn_file_actions_addchdir_np is not visible to Swift; coreutils'
        // `env -C` changes directory and execs the real program instead.
        let command = workingDirectory.map { ["/usr/bin/env", "-C", $0, executable] } ?? [executable]
        let argv = (command + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envList = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let envp = envList.map { strdup($0) } + [nil]
        defer { envp.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, command[0], &actions, &attributes, argv, envp)
        if case .pipe = output { close(pipeFDs[1]) }
        guard result == 0 else {
            if case .pipe = output { close(pipeFDs[0]) }
            throw ChildProcessError("cannot start \(executable): \(String(cString: strerror(result)))")
        }
        let child = ChildProcess(pid: pid)
        child.startReaping()
        if case .pipe(let onOutput) = output {
            let fd = pipeFDs[0]
            let reader = Thread {
                var buffer = [UInt8](repeating: 0, count: 16_384)
                while true {
                    let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if count <= 0 { break }
                    onOutput(Array(buffer[0..<count]))
                }
                close(fd)
            }
            reader.name = "child-output-\(pid)"
            reader.start()
        }
        return child
    }

    private init(pid: pid_t) {
        self.pid = pid
        reaper = DedicatedThread(name: "reap-\(pid)")
    }

    /// Blocks the reaper thread in waitpid; the closure keeps `self` alive until the exit.
    private func startReaping() {
        let pid = self.pid
        reaper.submit {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            // Exit code, or 128 + signal number when killed by a signal (shell convention).
            let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            let waiters = self.exitState.withLock { state in
                state.status = code
                defer { state.waiters.removeAll() }
                return state.waiters
            }
            for waiter in waiters { waiter.resume(returning: code) }
        }
    }

    deinit { reaper.shutdown() }

    public var isRunning: Bool { exitState.withLock { $0.status == nil } }

    /// The exit status (128 + signal when killed by one).
    public func waitForExit() async -> Int32 {
        await withCheckedContinuation { continuation in
            let status: Int32? = exitState.withLock { state in
                if let status = state.status { return status }
                state.waiters.append(continuation)
                return nil
            }
            if let status { continuation.resume(returning: status) }
        }
    }

    public func signal(_ signal: Int32) {
        if isRunning { kill(pid, signal) }
    }
}

public struct ChildProcessError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}
