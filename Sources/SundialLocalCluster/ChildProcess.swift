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
    private let exitState: ExitBox
    private let reaper: DedicatedThread

    struct ExitState {
        var status: Int32?
        var waiters: [CheckedContinuation<Int32, Never>] = []
    }

    final class ExitBox: Sendable {
        let state = Mutex(ExitState())
    }

    /// Where `setpriv` is, for children that must die with us (util-linux; Debian has it).
    static let setpriv: String? = ["/usr/bin/setpriv", "/bin/setpriv"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// Where the child's stdout and stderr go.
    public enum Output: Sendable {
        /// Appended to a file.
        case file(String)
        /// A pipe; `onOutput` gets each chunk on a dedicated reader thread until EOF.
        case pipe(onOutput: @Sendable ([UInt8]) -> Void)
    }

    /// `diesWithParent`: the child gets SIGTERM when this process dies, also by SIGKILL
    /// (`setpriv --pdeathsig`; the kernel ties it to the spawning thread, so the child is
    /// spawned from its reaper thread, which lives exactly as long as the child).
    public static func spawn(
        executable: String, arguments: [String], environment: [String: String]? = nil,
        workingDirectory: String? = nil, output: Output, diesWithParent: Bool = false
    ) throws -> ChildProcess {
        var pipeFDs: [Int32] = [-1, -1]
        let redirect: Redirect
        switch output {
        case .file(let path):
            redirect = .file(path, truncate: false)
        case .pipe:
            guard pipe(&pipeFDs) == 0 else { throw ChildProcessError("pipe failed: errno \(errno)") }
            redirect = .descriptor(pipeFDs[1])
        }
        var executable = executable
        var arguments = arguments
        if diesWithParent, let setpriv = Self.setpriv {
            arguments = ["--pdeathsig", "TERM", "--", executable] + arguments
            executable = setpriv
        }
        let box = ExitBox()
        let reaper = DedicatedThread(name: "child-reaper")
        let launched = LaunchHandOff()
        let (exe, args, env, dir) = (executable, arguments, environment, workingDirectory)
        _ = reaper.submit {
            // Launch and reap on this one thread: it is the child's parent thread for the
            // kernel's parent-death signal, and it stays until the child has exited.
            let pid: pid_t
            do {
                pid = try launch(exe, args, env, dir, redirect)
                launched.put(.success(pid))
            } catch {
                launched.put(.failure(error))
                return
            }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            let code = ChildProcess.exitCode(status)
            let waiters = box.state.withLock { state in
                state.status = code
                defer { state.waiters.removeAll() }
                return state.waiters
            }
            for waiter in waiters { waiter.resume(returning: code) }
        }
        let pid: pid_t
        do {
            pid = try launched.take()
        } catch {
            reaper.shutdown()
            if case .pipe = output { close(pipeFDs[0]); close(pipeFDs[1]) }
            throw error
        }
        let child = ChildProcess(pid: pid, exitState: box, reaper: reaper)
        if case .pipe(let onOutput) = output {
            close(pipeFDs[1])
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

    /// Runs to completion, blocking the calling thread (for `atexit` cleanup, where async
    /// code can no longer run). Output is written to `outputFile` (truncated) or discarded.
    public static func runBlocking(
        executable: String, arguments: [String], environment: [String: String]? = nil,
        workingDirectory: String? = nil, outputFile: String? = nil
    ) throws -> Int32 {
        let pid = try launch(
            executable, arguments, environment, workingDirectory, .file(outputFile ?? "/dev/null", truncate: true))
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw ChildProcessError("waitpid failed: \(String(cString: strerror(errno)))") }
        }
        return exitCode(status)
    }

    enum Redirect {
        case file(String, truncate: Bool)
        case descriptor(Int32)
    }

    /// WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift does not import.
    static func exitCode(_ status: Int32) -> Int32 {
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    private static func launch(
        _ executable: String, _ arguments: [String], _ environment: [String: String]?,
        _ workingDirectory: String?, _ redirect: Redirect
    ) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        switch redirect {
        case .file(let path, let truncate):
            posix_spawn_file_actions_addopen(&actions, 1, path, O_WRONLY | O_CREAT | (truncate ? O_TRUNC : O_APPEND), 0o644)
        case .descriptor(let fd):
            posix_spawn_file_actions_adddup2(&actions, fd, 1)
        }
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        if let workingDirectory {
            guard let addChdir = SpawnExtensions.addChdir else {
                throw ChildProcessError("this libc lacks posix_spawn_file_actions_addchdir_np")
            }
            _ = addChdir(&actions, workingDirectory)
        }
        #if os(Linux)
            // Without this a child (and a daemon it leaves behind, like the postmaster that
            // `pg_ctl start` forks) inherits every descriptor we hold without CLOEXEC —
            // sockets, a test runner's pipes — and keeps it open for its whole life.
            guard let closeFrom = SpawnExtensions.addCloseFrom else {
                throw ChildProcessError("this libc lacks posix_spawn_file_actions_addclosefrom_np (glibc ≥ 2.34)")
            }
            _ = closeFrom(&actions, 3)
        #endif
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Default signal handling, an empty mask, and a process group of its own, so a Ctrl-C
        // aimed at us is handled by us (we stop children in order).
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envList = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let envp = envList.map { strdup($0) } + [nil]
        defer { envp.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else {
            throw ChildProcessError("cannot start \(executable): \(String(cString: strerror(result)))")
        }
        return pid
    }

    private init(pid: pid_t, exitState: ExitBox, reaper: DedicatedThread) {
        self.pid = pid
        self.exitState = exitState
        self.reaper = reaper
    }

    deinit { reaper.shutdown() }

    public var isRunning: Bool { exitState.state.withLock { $0.status == nil } }

    /// The exit status (128 + signal when killed by one).
    public func waitForExit() async -> Int32 {
        await withCheckedContinuation { continuation in
            let status: Int32? = exitState.state.withLock { state in
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

/// The launch result, handed from the reaper thread to the spawning caller.
private final class LaunchHandOff: Sendable {
    private let result = Mutex<Result<pid_t, any Error>?>(nil)
    private let ready = DispatchSemaphore(value: 0)

    func put(_ value: Result<pid_t, any Error>) {
        result.withLock { $0 = value }
        ready.signal()
    }

    /// Waits for the launch (a posix_spawn: short).
    func take() throws -> pid_t {
        ready.wait()
        return try result.withLock { $0! }.get()
    }
}

public struct ChildProcessError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// glibc's `posix_spawn_file_actions_add{chdir,closefrom}_np` are declared only under
/// `_GNU_SOURCE`, which Swift's Glibc module does not define, so look them up at run time.
private enum SpawnExtensions {
    typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32
    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    static let addChdir: AddChdir? = symbol("posix_spawn_file_actions_addchdir_np")
    static let addCloseFrom: AddCloseFrom? = symbol("posix_spawn_file_actions_addclosefrom_np")

    private static func symbol<T>(_ name: String) -> T? {
        guard let handle = dlopen(nil, RTLD_NOW), let pointer = dlsym(handle, name) else { return nil }
        return unsafeBitCast(pointer, to: T.self)
    }
}
