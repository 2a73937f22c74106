#include "agent_config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "error.h"

using namespace sprout::agent;

TEST(AgentConfig, WhatTheNixosModuleWrites) {
  auto c = parse_agent_config(R"({"version":1,
    "mountPoints":{"config":"/etc/nixos","self":"/etc/nixos/hosts/self","ssh":null},
    "rebuild":{"command":["nixos-rebuild","boot"],"timeoutSeconds":60,"maxAttempts":2,"respecializeOnChange":false},
    "rebootCommand":["systemctl","reboot"],"stateDir":"/var/lib/sprout"})", "agent.json");
  EXPECT_FALSE(c.ssh_mount);
  EXPECT_EQ(c.rebuild_timeout_seconds, 60);
  EXPECT_EQ(c.max_attempts, 2);
  EXPECT_FALSE(c.respecialize_on_change);
  EXPECT_EQ(c.effective_log_file(), "/var/lib/sprout/agent.log");
}

// tests/nix/expected-agent.json is what nixos/guest.nix writes with its defaults (the
// nix-eval test compares the module's output with it): the agent must read it as is.
TEST(AgentConfig, ReadsTheNixosModulesGoldenFile) {
  const char* path = SPROUT_SOURCE_ROOT "/tests/nix/expected-agent.json";
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(text.empty()) << path;  // parse, not load: a missing file would be all defaults
  auto c = parse_agent_config(text, path);
  EXPECT_EQ(c.config_mount, "/etc/nixos");
  EXPECT_EQ(c.self_mount, "/etc/nixos/hosts/self");
  EXPECT_EQ(c.ssh_mount, std::optional<std::string>("/root/.ssh"));
  EXPECT_EQ(c.rebuild_command, (std::vector<std::string>{"nixos-rebuild", "boot"}));
  EXPECT_EQ(c.rebuild_timeout_seconds, 3600);
  EXPECT_EQ(c.max_attempts, 3);
  EXPECT_TRUE(c.respecialize_on_change);
  EXPECT_EQ(c.reboot_command, (std::vector<std::string>{"systemctl", "reboot"}));
  EXPECT_EQ(c.state_dir, "/var/lib/sprout");
  EXPECT_EQ(c.closure_mount, "/run/sprout/closure");
  EXPECT_TRUE(c.nix_bin_dir.ends_with("-nix/bin")) << c.nix_bin_dir;  // config.nix.package
}

TEST(AgentConfig, DefaultsAndExtraKeys) {
  auto c = parse_agent_config(R"({"version":1,"diskWaitSeconds":2,"flushTimeoutSeconds":0,
    "statusPort":"x.0","logFile":"/tmp/a.log"})", "a");
  EXPECT_EQ(c.config_mount, "/etc/nixos");
  EXPECT_EQ(*c.ssh_mount, "/root/.ssh");
  EXPECT_EQ(c.state_dir, "/var/lib/sprout");
  EXPECT_EQ(c.disk_wait_seconds, 2);
  EXPECT_EQ(c.flush_timeout_seconds, 0);
  EXPECT_EQ(c.effective_log_file(), "/tmp/a.log");
}

TEST(AgentConfig, ErrorsNameTheKey) {
  auto msg = [](const std::string& text) {
    try {
      parse_agent_config(text, "agent.json");
    } catch (const sprout::InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg(R"({"version":1,"stateDir":"rel"})").find("stateDir"), std::string::npos);
  EXPECT_NE(msg(R"({"version":1,"rebuild":{"command":[]}})").find("rebuild.command"), std::string::npos);
  EXPECT_NE(msg(R"({"version":1,"bogus":1})").find("bogus"), std::string::npos);
  EXPECT_NE(msg(R"({"version":1,"nixBinDir":"bin"})").find("nixBinDir: expected an absolute path"), std::string::npos);
  EXPECT_NE(msg(R"({"version":1,"mountPoints":{"closure":""}})").find("mountPoints.closure"), std::string::npos);
  EXPECT_NE(msg(R"({"version":2})").find("version"), std::string::npos);
  EXPECT_NE(msg("{").find("agent.json"), std::string::npos);
}

TEST(AgentConfig, MissingFileGivesDefaults) {
  bool missing = false;
  auto c = load_agent_config("/nonexistent/agent.json", &missing);
  EXPECT_TRUE(missing);
  EXPECT_EQ(c.reboot_command, (std::vector<std::string>{"systemctl", "reboot"}));
}

// A config nested 100,000 deep crashed the agent (stack overflow): refused in one
// line naming the file, like any other bad config.
TEST(AgentConfig, NestedTooDeepIsRefusedNamingTheFile) {
  for (const std::string& text : {std::string(100000, '[') + std::string(100000, ']'),
                                  "{\"version\":1,\"rebuild\":" + std::string(100000, '[') + std::string(100000, ']') + "}"}) {
    try {
      parse_agent_config(text, "/etc/sprout/agent.json");
      ADD_FAILURE() << "accepted";
    } catch (const sprout::InputError& e) {
      EXPECT_EQ(std::string(e.what()),
                "/etc/sprout/agent.json: lists and objects nested more than 64 deep; sprout reads no JSON that deep");
    }
  }
}
