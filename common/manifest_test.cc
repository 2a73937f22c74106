#include "manifest.h"

#include <gtest/gtest.h>

#include "error.h"

using namespace sprout;

namespace {
Manifest sample() {
  Manifest m;
  m.name = "web";
  m.generation = std::string(64, 'a');
  m.config_digest = std::string(64, 'b');
  m.self_digest = std::string(64, 'c');
  m.rebuild.target = "/etc/nixos/hosts/self/configuration.nix";
  m.rebuild.extra_args = {"--show-trace"};
  return m;
}
std::string error_of(const std::string& text) {
  try {
    parse_manifest(text, "m.json");
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}
}  // namespace

TEST(Manifest, AHugeNumberIsAnInputError) {  // the fuzzer's reproducer
  EXPECT_NE(error_of("{\"version\": 1e999}").find("number overflow"), std::string::npos);
}

TEST(Manifest, RoundTrips) {
  Manifest m = sample();
  EXPECT_EQ(parse_manifest(m.to_json_text(), "m"), m);
  m.ssh_digest = std::string(64, 'd');
  EXPECT_EQ(parse_manifest(m.to_json_text(), "m"), m);
}

TEST(Manifest, RejectsGarbageClearly) {
  EXPECT_NE(error_of("").find("m.json: not valid JSON"), std::string::npos);
  EXPECT_NE(error_of("\x01\x02").find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of(std::string(70000, ' ')).find("larger than"), std::string::npos);
  auto text = sample().to_json_text();
  auto bad_digest = text;
  bad_digest.replace(bad_digest.find(std::string(64, 'b')), 64, "xyz");
  EXPECT_NE(error_of(bad_digest).find("disks.config.digest: expected a SHA-256 digest"), std::string::npos);
  auto newer = text;
  newer.replace(newer.find("\"version\": 1"), 12, "\"version\": 9");
  EXPECT_NE(error_of(newer).find("manifest version 1, the disk has 9"), std::string::npos);
  auto extra = text;
  extra.insert(1, "\"surprise\": true,");
  EXPECT_NE(error_of(extra).find("surprise: unknown key"), std::string::npos);
}

TEST(Manifest, MissingFile) {
  EXPECT_THROW(load_manifest("/nonexistent/sprout-manifest.json"), InputError);
}

TEST(Manifest, HostBuiltRoundTripsAndGuestBuiltHasNoSystem) {
  Manifest m = sample();
  EXPECT_EQ(m.to_json_text().find("system"), std::string::npos);  // what older agents read
  EXPECT_EQ(m.to_json_text().find("closure"), std::string::npos);
  m.system = "/nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097y-nixos-system-web";
  m.closure_digest = std::string(64, 'e');
  EXPECT_TRUE(m.host_built());
  EXPECT_EQ(parse_manifest(m.to_json_text(), "m"), m);
}

TEST(Manifest, HostBuiltNeedsAStorePathAndItsClosure) {
  Manifest m = sample();
  m.system = "/nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097y-nixos-system-web";
  m.closure_digest = std::string(64, 'e');
  auto text = m.to_json_text();
  auto outside = text;
  outside.replace(outside.find("/nix/store/"), 11, "/tmp/store/");
  EXPECT_NE(error_of(outside).find("system: /tmp/store/"), std::string::npos);
  EXPECT_NE(error_of(outside).find("is not in /nix/store"), std::string::npos);
  auto doc = nlohmann::json::parse(text);
  doc["disks"].erase("closure");
  EXPECT_NE(error_of(doc.dump()).find("needs disks.closure"), std::string::npos);
  doc = nlohmann::json::parse(text);
  doc.erase("system");
  EXPECT_NE(error_of(doc.dump()).find("disks.closure is given without the system"), std::string::npos);
}
