import VirtformCommands

/// The executable only hands over to the commands library.
@main
enum VirtformMain {
    static func main() async {
        Virtform.prepareProcess()
        await Virtform.run()
    }
}
