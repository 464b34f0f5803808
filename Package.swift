// swift-tools-version:6.1
import PackageDescription

// Dependencies are kept lean on purpose: none of them pulls in SwiftNIO, so a clean CI build
// stays in the low minutes on a 2-core machine.
let package = Package(
    name: "sundial",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sundial", targets: ["sundial"]),
        .executable(name: "sundial-ingest", targets: ["sundial-ingest"]),
        .executable(name: "sundial-planner", targets: ["sundial-planner"]),
        .executable(name: "sundial-dispatcher", targets: ["sundial-dispatcher"]),
        .executable(name: "sundial-governor", targets: ["sundial-governor"]),
        // What an application links to create timers (`TimersClient`) and run their jobs
        // (`SundialWorker`), with the connection and message types they take.
        .library(name: "SundialClient", targets: ["SundialClient", "SundialExecutor", "SundialNATS", "SundialProto"]),
        .library(name: "SundialSchedule", targets: ["SundialSchedule"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        // Metrics (issue 13): the API and its Prometheus backend; both depend only on
        // swift-atomics — no SwiftNIO.
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
    ],
    targets: [
        // C, in exactly two places. Imported only by SundialNATS and SundialPostgres.
        .systemLibrary(
            name: "CNats", path: "Sources/CNats", pkgConfig: "libnats",
            providers: [.apt(["libnats-dev"])]),
        .systemLibrary(
            name: "CLibPQ", path: "Sources/CLibPQ", pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]),

        .target(name: "SundialThreads"),
        .target(
            name: "SundialNATS",
            dependencies: [
                "CNats", "SundialThreads",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "SundialPostgres",
            dependencies: [
                "CLibPQ", "SundialThreads",
                .product(name: "Logging", package: "swift-log"),
            ]),

        .target(
            name: "SundialProto",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .target(name: "SundialSchedule"),
        // Pure fair-share and token-bucket logic for the Governor and Dispatcher (issue 5).
        .target(name: "SundialFairness", exclude: ["README.md"]),
        // The pure core: timer ids, the shard map, occurrence stepping, retry backoff and the
        // scheduled-fire record. Imports neither NATS nor Postgres.
        .target(
            name: "SundialCore",
            dependencies: [
                "SundialProto", "SundialSchedule", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),
        // The wire contract as data: subjects, headers, error codes, schedule ↔ protobuf.
        .target(
            name: "SundialContract",
            dependencies: [
                "SundialProto", "SundialSchedule",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),
        // The contract on NATS: stream and consumer topology, the scheduled-fire message, error
        // replies.
        .target(
            name: "SundialMessaging",
            dependencies: ["SundialContract", "SundialCore", "SundialNATS", "SundialProto", "SundialSchedule"]),
        // The Timers API client.
        .target(
            name: "SundialClient",
            dependencies: [
                "SundialContract", "SundialMessaging", "SundialNATS", "SundialProto",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),
        .target(
            name: "SundialStore",
            dependencies: ["SundialPostgres", "SundialCore", "SundialContract", "SundialSchedule", "SundialProto"],
            resources: [.copy("Migrations")]),

        // Metric names and the sampling helpers services use (swift-metrics API only).
        .target(
            name: "SundialObservability",
            dependencies: [.product(name: "CoreMetrics", package: "swift-metrics")]),
        // The Prometheus backend and the /metrics, /healthz, /readyz listener; linked by the
        // server entry point only.
        .target(
            name: "SundialMetricsServer",
            dependencies: [
                "SundialObservability", "SundialThreads",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]),

        .target(
            name: "SundialIngest",
            dependencies: [
                "SundialCore", "SundialMessaging", "SundialContract", "SundialStore", "SundialNATS", "SundialProto", "SundialSchedule",
                "SundialFairness",
                "SundialObservability",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "SundialPlanner",
            dependencies: [
                "SundialCore", "SundialMessaging", "SundialContract", "SundialStore", "SundialNATS", "SundialProto", "SundialSchedule",
                "SundialObservability",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "SundialDispatcher",
            dependencies: [
                "SundialCore", "SundialMessaging", "SundialContract", "SundialStore", "SundialPostgres", "SundialNATS", "SundialProto", "SundialFairness",
                "SundialObservability",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "SundialGovernor",
            dependencies: [
                "SundialCore", "SundialMessaging", "SundialContract", "SundialStore", "SundialNATS", "SundialProto", "SundialFairness", "SundialSchedule",
                "SundialObservability",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "SundialExecutor",
            dependencies: ["SundialCore", "SundialContract", "SundialMessaging", "SundialNATS", "SundialProto", "SundialSchedule"]),
        // The webhook executor: POSTs each job of a queue to a URL, signed (HMAC-SHA256).
        .target(name: "SundialWebhook", dependencies: ["SundialExecutor", "SundialSchedule"]),
        .target(
            name: "SundialLocalCluster",
            dependencies: [
                "SundialCore", "SundialMessaging", "SundialContract", "SundialNATS", "SundialPostgres", "SundialStore",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "SundialBench",
            dependencies: [
                "SundialCore", "SundialMessaging", "SundialClient", "SundialContract", "SundialExecutor", "SundialNATS",
                "SundialProto",
                "SundialStore", "SundialPostgres", "SundialSchedule", "SundialFairness",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/SundialBench"),

        // The server entry point (composition root): environment → configs, connections,
        // migrations, the services in one ServiceGroup, metrics and logging. Linked by the
        // deployables under services/ and by the CLI's `serve` and `dev`; never the reverse.
        .target(
            name: "SundialServer",
            dependencies: [
                "SundialCore", "SundialMessaging", "SundialIngest", "SundialPlanner", "SundialDispatcher", "SundialGovernor", "SundialFairness",
                "SundialContract", "SundialNATS", "SundialPostgres", "SundialStore", "SundialSchedule",
                "SundialObservability", "SundialMetricsServer",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]),

        // The CLI: `sundial dev`, `sundial timers …`, `sundial work tail`, `sundial bench`,
        // `sundial schedule preview`. Commands live in a library so tests can drive them.
        .target(
            name: "SundialCLI",
            dependencies: [
                "SundialCore", "SundialMessaging", "SundialClient", "SundialIngest", "SundialPlanner", "SundialDispatcher", "SundialGovernor", "SundialExecutor",
                "SundialFairness", "SundialLocalCluster", "SundialBench", "SundialSchedule", "SundialProto",
                "SundialContract", "SundialNATS", "SundialStore", "SundialServer", "SundialWebhook",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // Swift 5 mode only so main.swift may touch C's global `stdout` (line buffering).
        .executableTarget(
            name: "sundial", dependencies: ["SundialCLI"], swiftSettings: [.swiftLanguageMode(.v5)]),

        // One deployable per folder under services/; each folder's README is its contract.
        // They link the server entry point only: no CLI, no benchmarks.
        .executableTarget(
            name: "sundial-ingest", dependencies: ["SundialServer"], path: "services/ingest",
            exclude: ["README.md"]),
        .executableTarget(
            name: "sundial-planner", dependencies: ["SundialServer"], path: "services/planner",
            exclude: ["README.md"]),
        .executableTarget(
            name: "sundial-dispatcher", dependencies: ["SundialServer"], path: "services/dispatcher",
            exclude: ["README.md"]),
        .executableTarget(
            name: "sundial-governor", dependencies: ["SundialServer"], path: "services/governor",
            exclude: ["README.md"]),

        // Shared by the test targets: the harness's nats-server and Postgres, `eventually`,
        // reproducible randomness. A library target (test targets cannot depend on each other);
        // no deployable links it.
        .target(
            name: "SundialTestSupport",
            dependencies: [
                "SundialLocalCluster", "SundialNATS", "SundialPostgres", .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/SundialTestSupport"),
        // The C wrappers and the store, each against a real server.
        .testTarget(
            name: "SundialNATSTests",
            dependencies: ["SundialNATS", "SundialTestSupport", "SundialLocalCluster", .product(name: "Logging", package: "swift-log")]),
        .testTarget(
            name: "SundialPostgresTests",
            dependencies: ["SundialPostgres", "SundialTestSupport", "SundialLocalCluster", .product(name: "Logging", package: "swift-log")]),
        .testTarget(
            name: "SundialStoreTests",
            dependencies: ["SundialStore", "SundialCore", "SundialPostgres", "SundialTestSupport"]),
        .testTarget(
            name: "SundialScheduleTests",
            dependencies: ["SundialCore", "SundialSchedule", "SundialProto", "SundialContract"]),
        .testTarget(name: "SundialFairnessTests", dependencies: ["SundialFairness"]),
        // The webhook executor's pure parts: signing and judging answers.
        .testTarget(name: "SundialWebhookTests", dependencies: ["SundialWebhook"]),
        // The Dispatcher's pure parts: per-batch decisions and result parsing.
        .testTarget(
            name: "SundialDispatcherTests",
            dependencies: [
                "SundialDispatcher", "SundialCore", "SundialContract", "SundialFairness", "SundialProto",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),
        .testTarget(
            name: "SundialUnitTests",
            dependencies: [
                "SundialCore", "SundialContract", "SundialPlanner", "SundialNATS", "SundialStore", "SundialSchedule",
                "SundialProto", "SundialMetricsServer", "SundialObservability", "SundialServer", "SundialBench",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(
            name: "SundialIntegrationTests",
            dependencies: [
                "SundialTestSupport",
                "SundialCore", "SundialMessaging", "SundialClient", "SundialLocalCluster", "SundialIngest", "SundialPlanner", "SundialDispatcher", "SundialGovernor",
                "SundialFairness", "SundialExecutor", "SundialNATS", "SundialPostgres", "SundialStore", "SundialProto",
                "SundialContract", "SundialCLI", "SundialServer", "SundialMetricsServer", "SundialObservability", "SundialWebhook",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]),
    ]
)
