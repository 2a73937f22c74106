// Whether KVM really runs a guest on this host, with the CPU model sprout gives one
// (`-accel kvm -cpu host`, libvirt's host-passthrough): "/dev/kvm opens" is not proof
// (a PVM or broken nested KVM opens and then aborts qemu). The probe boots 7 bytes of
// guest code (a 64 KiB firmware whose reset vector writes to isa-debug-exit) under
// exactly that command line, with a deadline; the guest was seen to run when qemu exits
// with the code the guest wrote. The verdict is cached per host boot, qemu binary and
// /dev/kvm (boot_id, the binary's path, device, inode, size and mtime, and the device
// node's identity) in a directory only this user can write (/run/sprout/kvm-probe for
// root), so a host pays for it once per boot.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/boot_id.h"  // host_boot_id(), part of a verdict
#include "spec/spec.h"


namespace sprout {

/// What a probe saw.
struct KvmProbe {
  bool runs = false;          ///< the guest code ran under KVM
  std::string why;            ///< one line: what happened ("qemu killed by signal 6 (SIGABRT)", ...)
  std::vector<std::string> qemu_output;  ///< qemu's last lines
  std::int64_t probe_ms = 0;  ///< how long the probe took
  bool cached = false;        ///< the verdict came from this boot's cache
};

/// The firmware image the probe boots: 64 KiB, reset vector at its end.
std::string kvm_probe_firmware();

/// The probe's qemu command line for `firmware`, under `accel` ("kvm" with -cpu host,
/// or "tcg", which tests use to show the guest code itself is right).
std::vector<std::string> kvm_probe_command(const std::string& qemu, const std::filesystem::path& firmware,
                                           const std::string& accel);

/// Runs the probe now (no cache).
KvmProbe run_kvm_probe(const std::string& qemu, const std::string& accel = "kvm",
                       std::chrono::milliseconds deadline = std::chrono::seconds(10));

/// The cached verdict for this boot and this qemu binary, probing (and caching) when
/// there is none or `reprobe`.
KvmProbe kvm_verdict(const std::string& qemu, bool reprobe = false);

/// What `sprout run` / `sprout define` use for a spec's "accel".
struct AccelChoice {
  bool kvm = false;
  /// Why, when "auto" chose TCG (one line for the warning); "" otherwise.
  std::string fallback_why;
  std::optional<KvmProbe> probe;  ///< when "auto" looked
};
AccelChoice choose_accel(Accel accel, const std::string& qemu);


}  // namespace sprout
