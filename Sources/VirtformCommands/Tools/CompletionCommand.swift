import ArgumentParser

/// `virtform completion bash|zsh|fish`: the shell's completion script, from the commands
/// themselves (ArgumentParser writes it), so it never lags behind a renamed flag.
struct CompletionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "completion",
        abstract: "Print the completion script for a shell.",
        discussion: """
            bash: virtform completion bash > /etc/bash_completion.d/virtform
            zsh:  virtform completion zsh > "${fpath[1]}/_virtform"
            fish: virtform completion fish > ~/.config/fish/completions/virtform.fish
            """
    )

    enum Shell: String, ExpressibleByArgument, CaseIterable {
        case bash, zsh, fish
    }

    @Argument(help: "bash, zsh or fish.")
    var shell: Shell

    func run() async throws {
        let kind: CompletionShell = switch shell {
        case .bash: .bash
        case .zsh: .zsh
        case .fish: .fish
        }
        Output.current.write(Virtform.completionScript(for: kind))
    }
}
