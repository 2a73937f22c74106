#include "disk/overlay_origin.h"

#include <fstream>
#include <set>

#include <gtest/gtest.h>

#include "base/temp_dir.h"

using namespace sprout;
namespace fs = std::filesystem;

namespace {

const std::string kSystem = "/nix/store/00000000000000000000000000000000-nixos-system-web";
const std::string kOldBaseSystem = "/nix/store/11111111111111111111111111111111-nixos-system-base-a";
const std::string kNewBaseSystem = "/nix/store/22222222222222222222222222222222-nixos-system-base-b";
const fs::path kOldBase = "/nix/store/aaaa-nixos-disk-image/nixos.qcow2";
const fs::path kNewBase = "/nix/store/bbbb-nixos-disk-image/nixos.qcow2";

Spec host_spec() {
  Spec s;
  s.name = "web";
  s.state_dir = "/var/lib/sprout/vms/web";
  s.base_image = kNewBase;
  s.specialize = Specialize::host;
  s.system = kSystem;
  s.base_system = kNewBaseSystem;
  return s;
}

/// The record prepare writes for an overlay (inode 42) made on the old base.
OverlayOrigin made_on_old_base() { return OverlayOrigin{42, {kOldBase}, kOldBase, kOldBaseSystem}; }

std::set<std::string> gone;  // store paths the test's store lacks
bool in_store(const std::string& p) { return !gone.count(p); }

ClosureBase decide(const std::optional<OverlayNow>& overlay, const std::optional<OverlayOrigin>& origin,
                   const Spec& spec = host_spec()) {
  return closure_base_for(spec, kNewBase, overlay, origin, "no record", in_store);
}

}  // namespace

TEST(OverlayOrigin, ANewOverlayGetsTheSpecsBaseSystem) {
  // create, recreate, or no overlay at all: the guest will have the spec's base.
  EXPECT_EQ(decide(std::nullopt, made_on_old_base()).base_system, kNewBaseSystem);
  EXPECT_EQ(decide(std::nullopt, std::nullopt).base_system, kNewBaseSystem);
  EXPECT_EQ(decide(std::nullopt, std::nullopt).note, "");
}

TEST(OverlayOrigin, AnOverlayKeptOnItsOldBaseGetsTheRecordedBaseSystem) {
  ClosureBase c = decide(OverlayNow{42, kOldBase}, made_on_old_base());
  EXPECT_EQ(c.base_system, kOldBaseSystem);
  EXPECT_NE(c.note.find(kOldBase.string()), std::string::npos) << c.note;
}

TEST(OverlayOrigin, ARebasedOverlayStillHasTheStoreItWasMadeOn) {
  // A safe rebase keeps what the guest sees: the record lists the new base too.
  OverlayOrigin o = made_on_old_base();
  o.backing_files = {kNewBase};
  EXPECT_EQ(decide(OverlayNow{42, kNewBase}, o).base_system, kOldBaseSystem);
  // Mid-rebase (both listed), whichever the header names.
  o.backing_files = {kOldBase, kNewBase};
  EXPECT_EQ(decide(OverlayNow{42, kOldBase}, o).base_system, kOldBaseSystem);
  EXPECT_EQ(decide(OverlayNow{42, kNewBase}, o).base_system, kOldBaseSystem);
}

TEST(OverlayOrigin, AnOverlayMadeOnTheSpecsBaseGetsTheSpecsBaseSystem) {
  OverlayOrigin o{42, {kNewBase}, kNewBase, "/nix/store/33333333333333333333333333333333-older-claim"};
  ClosureBase c = decide(OverlayNow{42, kNewBase}, o);
  EXPECT_EQ(c.base_system, kNewBaseSystem);
  EXPECT_EQ(c.note, "");
}

TEST(OverlayOrigin, UnknownIsTheWholeClosureWithOneLineSayingWhy) {
  struct Case {
    std::optional<OverlayOrigin> origin;
    OverlayNow now;
    std::string says;
  };
  OverlayOrigin no_system = made_on_old_base();
  no_system.base_system = "";
  std::vector<Case> cases = {
      {std::nullopt, {42, kOldBase}, "no record"},
      {made_on_old_base(), {43, kOldBase}, "about another file"},       // replaced, or a stopped recreate
      {made_on_old_base(), {42, kNewBase}, "was set outside sprout"},   // qemu-img rebase by hand
      {no_system, {42, kOldBase}, "no baseSystem recorded"},
  };
  for (const auto& c : cases) {
    ClosureBase r = decide(c.now, c.origin);
    EXPECT_EQ(r.base_system, "") << c.says;
    EXPECT_NE(r.note.find(c.says), std::string::npos) << r.note;
    EXPECT_NE(r.note.find("whole closure of " + kSystem), std::string::npos) << r.note;
    EXPECT_EQ(r.note.find('\n'), std::string::npos) << r.note;
  }
  gone = {kOldBaseSystem};
  ClosureBase r = decide(OverlayNow{42, kOldBase}, made_on_old_base());
  gone.clear();
  EXPECT_EQ(r.base_system, "");
  EXPECT_NE(r.note.find("no longer in this host's store"), std::string::npos) << r.note;
}

TEST(OverlayOrigin, NoBaseSystemInTheSpecIsTheWholeClosure) {
  Spec s = host_spec();
  s.base_system = "";
  ClosureBase c = decide(OverlayNow{42, kOldBase}, made_on_old_base(), s);
  EXPECT_EQ(c.base_system, "");
  EXPECT_EQ(c.note, "");
}

TEST(OverlayOrigin, TheRecordReadsBackAndABadOneIsNone) {
  TempDir dir("overlay-origin");
  StateDir state{dir.path()};
  std::string why;
  EXPECT_FALSE(read_overlay_origin(state, why));
  EXPECT_NE(why.find("no overlay-origin.json"), std::string::npos) << why;

  write_overlay_origin(state, OverlayOrigin{7, {kOldBase, kNewBase}, kOldBase, ""});
  auto o = read_overlay_origin(state, why);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->overlay_inode, 7u);
  EXPECT_EQ(o->backing_files, (std::vector<fs::path>{kOldBase, kNewBase}));
  EXPECT_EQ(o->base_image, kOldBase);
  EXPECT_EQ(o->base_system, "");

  for (const char* bad : {"{", "[]", R"({"version": 2})", R"({"version": "1"})",
                          R"({"version": 1, "overlayInode": -1, "backingFiles": [], "baseImage": "/x", "baseSystem": null})",
                          R"({"version": 1, "overlayInode": 1, "backingFiles": [3], "baseImage": "/x", "baseSystem": null})"}) {
    std::ofstream(state.overlay_origin(), std::ios::trunc) << bad;
    why.clear();
    EXPECT_FALSE(read_overlay_origin(state, why)) << bad;
    EXPECT_NE(why.find("is not a record sprout wrote"), std::string::npos) << why;
  }
}
