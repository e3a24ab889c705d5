/// A command that could not do its work (a file not written, a lock held, a plan out of date):
/// printed as `Error: …`, exit status 1. Mistakes in how the command was called stay
/// ArgumentParser's `ValidationError` (exit status 64, with the usage).
struct CommandFailure: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}
