#include "disk/overlay.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <system_error>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "atomic_file.h"
#include "error.h"
#include "base/leftovers.h"
#include "disk/overlay_origin.h"
#include "strict_json.h"
#include "subprocess.h"

namespace sprout {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

/// rename() that fails with EEXIST instead of replacing `to`.
void rename_noreplace(const fs::path& from, const fs::path& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) != 0)
    throw std::system_error(errno, std::generic_category(),
                            fmt::format("cannot move {} to {}", from.string(), to.string()));
}

/// qemu-img create of a new overlay on the spec's base, at `pending`'s temporary path.
void create_overlay_at(const Spec& spec, const PendingFile& pending) {
  std::vector<std::string> argv = {"qemu-img", "create", "-q", "-f", "qcow2", "-b", fs::absolute(spec.base_image).string(),
                                   "-F", spec.base_format, pending.temp_path().string()};
  if (spec.disk_size_bytes) argv.push_back(std::to_string(*spec.disk_size_bytes));
  run_checked(argv, std::chrono::minutes(2));
  // The VM's disk is its private data: qemu-img makes it as the umask allows.
  if (::chmod(pending.temp_path().c_str(), StateDir::kFileMode) != 0)
    throw std::system_error(errno, std::generic_category(), "cannot chmod " + pending.temp_path().string());
}

/// Records that the new overlay at `pending`'s temporary path is made on `want`
/// (canonical), with the spec's baseSystem. Done before it takes the name root.qcow2:
/// until then the record names a file that is not the overlay, and is not believed.
void record_origin_of_new(const Spec& spec, const PendingFile& pending, const fs::path& want) {
  struct stat st;
  if (::stat(pending.temp_path().c_str(), &st) != 0)
    throw std::system_error(errno, std::generic_category(), pending.temp_path().string());
  write_overlay_origin(spec.state(), OverlayOrigin{static_cast<std::uint64_t>(st.st_ino), {want}, want,
                                                   spec.base_system});
}

fs::path create_overlay_file(const Spec& spec, const fs::path& want) {
  fs::path overlay = spec.overlay_path();
  PendingFile pending(overlay);
  create_overlay_at(spec, pending);
  record_origin_of_new(spec, pending, want);
  // Never replace an overlay that appeared meanwhile: it is somebody's state.
  rename_noreplace(pending.temp_path(), overlay);
  fsync_directory(overlay.parent_path());
  return overlay;
}

/// InputError unless qemu-img reads `spec`'s base image as the format the spec says.
void require_readable_base(const Spec& spec) {
  OverlayInfo base;
  try {
    base = inspect_image(spec.base_image);
  } catch (const std::exception& e) {
    throw InputError(fmt::format("{}: qemu-img cannot read the base image (spec {}: base.image): {}",
                                 spec.base_image.string(), spec.file.string(), e.what()));
  }
  if (base.format != spec.base_format)
    throw InputError(fmt::format("{}: the base image is not a {} image (qemu-img reads it as {}); fix the spec's "
                                 "base.image or base.format (spec {})",
                                 spec.base_image.string(), spec.base_format, base.format, spec.file.string()));
}

std::string timestamp_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return buf;
}

}  // namespace

OverlayInfo inspect_image(const fs::path& image) {
  auto out = run_checked({"qemu-img", "info", "--output=json", "-U", image.string()}, std::chrono::seconds(60));
  json j;
  try {
    j = parse_json_loosely(out, fmt::format("qemu-img info {}", image.string()));
  } catch (const InputError& e) {
    throw std::runtime_error(e.what());  // qemu-img's fault, not the user's input
  }
  if (!j.is_object()) throw std::runtime_error(fmt::format("qemu-img info {}: unexpected output", image.string()));
  OverlayInfo info;
  info.format = j.value("format", "");
  info.virtual_size = j.value("virtual-size", 0ull);
  if (j.contains("full-backing-filename"))
    info.backing = j["full-backing-filename"].get<std::string>();
  else if (j.contains("backing-filename"))
    info.backing = j["backing-filename"].get<std::string>();
  if (j.contains("backing-filename-format")) info.backing_format = j["backing-filename-format"].get<std::string>();
  return info;
}

void require_base_image(const Spec& spec) {
  std::error_code ec;
  if (!fs::is_regular_file(spec.base_image, ec))
    throw InputError(fmt::format("{}: base image not found (spec {}: base.image); build it or fix the path",
                                 spec.base_image.string(), spec.file.string()));
}

OverlayPlan plan_overlay(const Spec& spec) {
  require_base_image(spec);
  OverlayPlan plan;
  plan.overlay = spec.overlay_path();
  plan.want = fs::weakly_canonical(fs::absolute(spec.base_image));
  if (!fs::exists(fs::symlink_status(plan.overlay))) {
    require_readable_base(spec);  // else qemu-img create fails on it, after the export
    plan.action = OverlayPlan::create;
    return plan;
  }
  if (!fs::is_regular_file(fs::symlink_status(plan.overlay)))
    throw InputError(fmt::format("{}: exists but is not a regular file; move it away", plan.overlay.string()));
  OverlayInfo info = inspect_image(plan.overlay);
  struct stat st;
  if (::stat(plan.overlay.c_str(), &st) == 0) plan.inode = st.st_ino;
  if (info.format != "qcow2" || !info.backing)
    throw InputError(fmt::format("{}: is not a qcow2 overlay with a backing file (format {}); sprout will not "
                                 "touch it: move it away to start fresh",
                                 plan.overlay.string(), info.format));
  std::error_code ec;
  plan.have = fs::weakly_canonical(*info.backing, ec);
  if (ec) plan.have = *info.backing;
  if (plan.have == plan.want) {
    plan.action = OverlayPlan::reuse;
    return plan;
  }
  if (spec.base_change == BaseChange::keep) {
    if (!fs::exists(plan.have))
      throw std::runtime_error(fmt::format("{}: its base {} is gone and baseChange is \"keep\"; set baseChange to "
                                           "\"recreate\" to start over (the old overlay is kept aside)",
                                           plan.overlay.string(), plan.have.string()));
    plan.action = OverlayPlan::keep_old_base;
    return plan;
  }
  if (spec.base_change == BaseChange::rebase && !fs::exists(plan.have))
    throw std::runtime_error(fmt::format("{}: cannot rebase safely: its old base {} no longer exists; use "
                                         "baseChange \"recreate\" or restore the old base",
                                         plan.overlay.string(), plan.have.string()));
  require_readable_base(spec);
  plan.action = spec.base_change == BaseChange::rebase ? OverlayPlan::rebase : OverlayPlan::recreate;
  return plan;
}

namespace {

/// Safe mode (no -u): qemu-img compares old and new base and keeps the VM's view, so
/// the origin record stays true: the new base joins its backing files first (a kill
/// mid-rebase leaves the header naming either), and the old one leaves afterwards.
/// A record about another file is left alone: nothing is known about this overlay.
void rebase_overlay(const Spec& spec, const OverlayPlan& plan) {
  std::string why;
  std::optional<OverlayOrigin> origin = read_overlay_origin(spec.state(), why);
  if (origin && (origin->overlay_inode != plan.inode ||
                 std::find(origin->backing_files.begin(), origin->backing_files.end(), plan.have) ==
                     origin->backing_files.end()))
    origin.reset();
  if (origin) {
    origin->backing_files.push_back(plan.want);
    write_overlay_origin(spec.state(), *origin);
  }
  run_checked({"qemu-img", "rebase", "-q", "-f", "qcow2", "-b", plan.want.string(), "-F", spec.base_format,
               plan.overlay.string()},
              std::chrono::hours(2));
  if (origin) {
    origin->backing_files = {plan.want};
    write_overlay_origin(spec.state(), *origin);
  }
}

/// recreate: the old overlay is kept under a dated name, never deleted. Order, so a
/// kill at any instant leaves the VM on its old overlay or wholly on the new one:
/// check the new base (plan_overlay), give the old overlay its second name (a hard
/// link), create the new overlay under a temporary name, then rename it over root.qcow2.
void recreate_overlay(const Spec& spec, const OverlayPlan& plan, PrepareResult& r) {
  const fs::path& want = plan.want;
  const fs::path& have = plan.have;
  fs::path dir = r.overlay.parent_path();
  struct stat old_st;
  if (::stat(r.overlay.c_str(), &old_st) != 0)
    throw std::system_error(errno, std::generic_category(), r.overlay.string());
  // A recreate killed after the link left the old overlay a second name: reuse it.
  fs::path aside;
  for (const auto& entry : fs::directory_iterator(dir)) {
    struct stat st;
    if (StateDir::is_overlay_aside(entry.path().filename().string()) && ::lstat(entry.path().c_str(), &st) == 0 &&
        st.st_ino == old_st.st_ino && st.st_dev == old_st.st_dev)
      aside = entry.path();
  }
  bool linked = !aside.empty();
  if (!linked) {
    aside = dir / fmt::format("{}{}", StateDir::kOverlayAsidePrefix, timestamp_now());
    for (int i = 1; fs::exists(fs::symlink_status(aside)); ++i)
      aside = dir / fmt::format("{}{}-{}", StateDir::kOverlayAsidePrefix, timestamp_now(), i);
  }
  if (!linked && ::link(r.overlay.c_str(), aside.c_str()) != 0)
    throw std::system_error(errno, std::generic_category(),
                            fmt::format("cannot keep the old overlay as {}", aside.string()));
  fsync_directory(dir);
  PendingFile pending(r.overlay);
  create_overlay_at(spec, pending);
  // From here on the record names the new overlay: the old one (root.qcow2 until the
  // rename below, then the name kept aside) is not believed to be on any base.
  record_origin_of_new(spec, pending, plan.want);
  struct stat now_st;
  if (::stat(r.overlay.c_str(), &now_st) != 0 || now_st.st_ino != old_st.st_ino || now_st.st_dev != old_st.st_dev)
    throw std::runtime_error(fmt::format("{}: changed while a new overlay was being made; nothing was replaced "
                                         "(the old one is also at {})",
                                         r.overlay.string(), aside.string()));
  pending.commit();
  r.action = "recreated";
  r.backing = want;
  r.moved_aside = aside;
  r.moved_aside_backing = have;
  spdlog::warn("base changed: moved the old overlay to {} and created a new one on {}", aside.string(), want.string());
}

}  // namespace

PrepareResult prepare_overlay(const Spec& spec) { return apply_overlay(spec, plan_overlay(spec)); }

PrepareResult apply_overlay(const Spec& spec, const OverlayPlan& plan) {
  std::error_code ec;
  spec.state().make_private(spec.backend == Backend::libvirt);
  remove_leftovers(spec.state_dir);  // a killed prepare's half-made overlay

  PrepareResult r;
  r.overlay = plan.overlay;
  const fs::path& want = plan.want;
  const fs::path& have = plan.have;
  r.backing = plan.action == OverlayPlan::create ? want : have;
  switch (plan.action) {
    case OverlayPlan::create:
      create_overlay_file(spec, want);
      r.action = "created";
      spdlog::info("created overlay {} on {}", r.overlay.string(), want.string());
      return r;
    case OverlayPlan::reuse: r.action = "reused"; return r;
    case OverlayPlan::keep_old_base:
      spdlog::warn("{}: stays on its old base {} (spec base is {}; baseChange is \"keep\")", r.overlay.string(),
                   have.string(), want.string());
      r.action = "kept-old-base";
      return r;
    case OverlayPlan::rebase:
      rebase_overlay(spec, plan);
      r.action = "rebased";
      r.backing = want;
      spdlog::info("rebased {} from {} onto {}", r.overlay.string(), have.string(), want.string());
      return r;
    case OverlayPlan::recreate: break;
  }
  recreate_overlay(spec, plan, r);
  return r;
}

}  // namespace sprout
