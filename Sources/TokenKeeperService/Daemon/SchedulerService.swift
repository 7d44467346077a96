import RefreshScheduler
import ServiceLifecycle

/// Runs the scheduler; graceful shutdown asks it to finish what is in flight.
struct SchedulerService: Service {
    let scheduler: RefreshScheduler
    let notifier: SystemdNotifier

    func run() async throws {
        let scheduler = self.scheduler
        let notifier = self.notifier
        try await withGracefulShutdownHandler {
            try await scheduler.run()
        } onGracefulShutdown: {
            notifier.stopping()
            Task { await scheduler.stop() }
        }
    }
}
