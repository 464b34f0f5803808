import Foundation
import Logging
import SundialLocalCluster

/// Service instances for the fleet benchmarks (`sundial bench chaos`, `sundial bench scale`):
/// each instance its own `sundial serve <component>` child, as a deployment runs them, logging
/// to `<logs>/<component>-<n>.log`, optionally held to a CPU quota. An instance can be killed
/// (SIGKILL) and started again with the same settings, as an orchestrator would restart it.
final class ServiceFleet: @unchecked Sendable {
    struct Instance {
        let component: String
        let index: Int
        var child: ChildProcess
        let quota: CPUQuotaGroup?
        var name: String { "\(component)-\(index + 1)" }
    }

    private let executable: String
    private let environment: [String: String]
    private let logs: URL
    private let cpuPerInstance: Double?
    private let lock = NSLock()
    private var instances: [Instance] = []

    /// `cpuPerInstance`: cores each instance may use (a cgroup CPU quota), nil for no limit.
    init(executable: String, environment: [String: String], logs: URL, cpuPerInstance: Double?) {
        self.executable = executable
        self.environment = environment
        self.logs = logs
        self.cpuPerInstance = cpuPerInstance
    }

    /// Starts `count` instances of `component`; `pinned` says whether they get the CPU quota.
    func start(_ component: String, count: Int, pinned: Bool = true) throws {
        for _ in 0..<count {
            let index = lock.withLock { instances.filter { $0.component == component }.count }
            let quota = try pinned ? cpuPerInstance.map { try CPUQuotaGroup.create(name: "\(component)-\(index + 1)", cores: $0) } : nil
            let child = try spawn(component, index: index, quota: quota)
            lock.withLock { instances.append(Instance(component: component, index: index, child: child, quota: quota)) }
        }
    }

    var names: [String] { lock.withLock { instances.map(\.name) } }

    /// SIGKILL, and wait until the process is gone.
    func kill(_ name: String) async {
        guard let instance = lock.withLock({ instances.first { $0.name == name } }) else { return }
        instance.child.signal(SIGKILL)
        _ = await instance.child.waitForExit()
    }

    /// Starts a killed instance again with the same settings (and quota).
    func restart(_ name: String) throws {
        try lock.withLock {
            guard let position = instances.firstIndex(where: { $0.name == name }) else { return }
            let instance = instances[position]
            instances[position].child = try spawn(instance.component, index: instance.index, quota: instance.quota)
        }
    }

    /// Whether every instance is still running (a benchmark stops when one died on its own).
    var exited: [String] { lock.withLock { instances.filter { !$0.child.isRunning }.map(\.name) } }

    /// SIGTERM to every instance (their graceful shutdown), wait, then remove the quotas.
    func stop() async {
        let all = lock.withLock { instances }
        for instance in all where instance.child.isRunning { instance.child.signal(SIGTERM) }
        for instance in all { _ = await instance.child.waitForExit() }
        for instance in all { instance.quota?.remove() }
    }

    private func spawn(_ component: String, index: Int, quota: CPUQuotaGroup?) throws -> ChildProcess {
        let log = logs.appendingPathComponent("\(component)-\(index + 1).log").path
        let child = try ChildProcess.spawn(
            executable: executable, arguments: ["serve", component], environment: environment, output: .file(log),
            diesWithParent: true)
        try quota?.add(child.pid)
        return child
    }
}

/// A cgroup with a CPU quota (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us`) that processes
/// are moved into: how the fleet benchmarks give each instance a fixed share of the machine.
/// Needs a writable cgroup file system (root, as on these benchmark boxes).
struct CPUQuotaGroup: Sendable {
    let directory: URL

    static let period = 100_000

    static func create(name: String, cores: Double) throws -> CPUQuotaGroup {
        guard cores > 0, cores <= 64 else { throw CPUQuotaError("cores per instance must be in (0, 64]") }
        let quota = max(1000, Int(cores * Double(period)))
        let unique = "sundial-bench-\(getpid())-\(name)"
        let fm = FileManager.default
        if fm.fileExists(atPath: "/sys/fs/cgroup/cgroup.controllers") {
            // v2: the cpu controller must be enabled for the children of the root.
            let directory = URL(fileURLWithPath: "/sys/fs/cgroup/\(unique)")
            try? "+cpu".write(toFile: "/sys/fs/cgroup/cgroup.subtree_control", atomically: false, encoding: .utf8)
            try make(directory)
            try write("\(quota) \(period)", to: directory.appendingPathComponent("cpu.max"))
            return CPUQuotaGroup(directory: directory)
        }
        let v1 = URL(fileURLWithPath: "/sys/fs/cgroup/cpu")
        guard fm.fileExists(atPath: v1.appendingPathComponent("cpu.cfs_quota_us").path) else {
            throw CPUQuotaError("no cgroup CPU controller at /sys/fs/cgroup (v2) or /sys/fs/cgroup/cpu (v1)")
        }
        let directory = v1.appendingPathComponent(unique)
        try make(directory)
        try write(String(period), to: directory.appendingPathComponent("cpu.cfs_period_us"))
        try write(String(quota), to: directory.appendingPathComponent("cpu.cfs_quota_us"))
        return CPUQuotaGroup(directory: directory)
    }

    /// Moves a process (all its threads) into the group.
    func add(_ pid: pid_t) throws {
        try Self.write(String(pid), to: directory.appendingPathComponent("cgroup.procs"))
    }

    /// Removes the group once its processes have exited (best effort).
    func remove() {
        rmdir(directory.path)
    }

    private static func make(_ directory: URL) throws {
        if mkdir(directory.path, 0o755) != 0 && errno != EEXIST {
            throw CPUQuotaError("cannot create \(directory.path): errno \(errno) (needs root and a writable cgroup file system)")
        }
    }

    private static func write(_ value: String, to file: URL) throws {
        do {
            try value.write(to: file, atomically: false, encoding: .utf8)
        } catch {
            throw CPUQuotaError("cannot write \(value) to \(file.path): \(error)")
        }
    }
}

struct CPUQuotaError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
