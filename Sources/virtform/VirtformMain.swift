import VirtformCommands

/// The executable only hands over to the commands library.
@main
enum VirtformMain {
    static func main() async {
        await Virtform.main(nil)
    }
}
