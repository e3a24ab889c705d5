import Foundation
import VirtformSystem

/// A tiny bootable disk for the lab's QEMU guests, for tests that need a guest that does
/// something: a raw ext2 image with extlinux, a Debian cloud kernel and an initramfs whose init
/// (busybox) loads virtio's balloon driver and then sleeps. A guest cloned from it boots from
/// its iSCSI LUN in a few seconds under TCG and follows balloon requests, so a live memory
/// change is visible in `virsh dommemstat`.
///
/// The kernel is not installed on this machine: `scripts/setup` downloads Debian's
/// `linux-image-cloud-amd64` package and unpacks `vmlinuz` and the virtio modules into
/// `GuestImage.kernelDirectory`.
public enum GuestImage {
    public static let kernelDirectory = "/var/cache/virtform-lab/kernel"
    /// The modules init loads, in dependency order.
    static let modules = ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_balloon"]
    /// What init writes to the serial console once the balloon driver is loaded.
    public static let readyLine = "virtform test guest: balloon driver loaded"

    /// Why an image cannot be built here, or nil.
    public static func unmetRequirements() -> String? {
        if getuid() != 0 { return "building the test guest's disk needs root (loop mount)" }
        for (program, package) in [("extlinux", "extlinux"), ("busybox", "busybox-static"), ("mkfs.ext2", "e2fsprogs"), ("mount", "mount")]
        where Executables.find(program) == nil {
            return "\(program) is missing (Debian package \(package)); scripts/setup installs it"
        }
        guard FileManager.default.fileExists(atPath: kernelDirectory + "/vmlinuz"),
            modules.allSatisfy({ FileManager.default.fileExists(atPath: "\(kernelDirectory)/\($0).ko") })
        else { return "the test guest's kernel is not in \(kernelDirectory); scripts/setup fetches it" }
        guard FileManager.default.fileExists(atPath: "/usr/lib/syslinux/mbr/mbr.bin") || FileManager.default.fileExists(atPath: "/usr/lib/EXTLINUX/mbr.bin")
        else { return "syslinux's boot files are missing (Debian package syslinux-common)" }
        return nil
    }

    /// Builds the image at `path` (a raw file of `size` bytes), using `scratch` for the
    /// initramfs tree and the mount point; everything but the image is removed afterwards.
    public static func build(at path: String, scratch: String, size: UInt64 = 64 << 20) async throws {
        if let problem = unmetRequirements() { throw LabError(problem) }
        func program(_ name: String) throws -> String {
            guard let found = Executables.find(name) else { throw LabError("\(name) is missing") }
            return found
        }
        let files = FileManager.default
        let tree = scratch + "/initramfs", mountPoint = scratch + "/mnt"
        try? files.removeItem(atPath: tree)
        for directory in ["bin", "proc", "dev", "sys", "lib"] { try files.createDirectory(atPath: "\(tree)/\(directory)", withIntermediateDirectories: true) }
        try files.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        defer { try? files.removeItem(atPath: tree) }
        let busybox = try program("busybox")
        try files.copyItem(atPath: busybox, toPath: tree + "/bin/busybox")
        for module in modules { try files.copyItem(atPath: "\(kernelDirectory)/\(module).ko", toPath: "\(tree)/lib/\(module).ko") }
        let initScript = """
            #!/bin/busybox sh
            /bin/busybox mount -t proc proc /proc
            /bin/busybox mount -t devtmpfs dev /dev
            /bin/busybox mount -t sysfs sys /sys
            for m in \(modules.joined(separator: " ")); do /bin/busybox insmod /lib/$m.ko; done
            if [ -d /sys/bus/virtio/drivers/virtio_balloon ]; then echo "\(readyLine)" > /dev/ttyS0; fi
            while true; do /bin/busybox sleep 3600; done

            """
        try initScript.write(toFile: tree + "/init", atomically: true, encoding: .utf8)
        try files.setAttributes([.posixPermissions: 0o755], ofItemAtPath: tree + "/init")

        // The initramfs: busybox's own cpio (newc), gzipped.
        let initrd = scratch + "/initrd.gz"
        let sh = try program("sh")
        try await Command.run([sh, "-c", "cd \"$0\" && \(busybox) find . | \(busybox) cpio -o -H newc | \(busybox) gzip -1 > \"$1\"", tree, initrd])
            .checked([sh, "-c", "cpio"])

        // The disk: ext2 with extlinux in its boot sector (an unpartitioned disk boots from it).
        _ = files.createFile(atPath: path, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: size)
        try handle.close()
        let mkfs = [try program("mkfs.ext2"), "-q", "-F", path]
        try await Command.run(mkfs).checked(mkfs)
        let mount = [try program("mount"), "-o", "loop", path, mountPoint]
        try await Command.run(mount).checked(mount)
        var failure: (any Error)?
        do {
            try files.createDirectory(atPath: mountPoint + "/boot", withIntermediateDirectories: true)
            try files.copyItem(atPath: kernelDirectory + "/vmlinuz", toPath: mountPoint + "/boot/vmlinuz")
            try files.copyItem(atPath: initrd, toPath: mountPoint + "/boot/initrd.gz")
            try """
                DEFAULT guest
                TIMEOUT 1
                LABEL guest
                  KERNEL /boot/vmlinuz
                  INITRD /boot/initrd.gz
                  APPEND console=ttyS0 quiet

                """.write(toFile: mountPoint + "/boot/extlinux.conf", atomically: true, encoding: .utf8)
            let install = [try program("extlinux"), "--install", mountPoint + "/boot"]
            try await Command.run(install).checked(install)
        } catch {
            failure = error
        }
        let umount = [try program("umount"), mountPoint]
        let unmounted = try await Command.run(umount)
        try? files.removeItem(atPath: initrd)
        if let failure { throw failure }
        _ = try unmounted.checked(umount)
    }
}
