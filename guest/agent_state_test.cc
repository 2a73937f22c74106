#include "agent_state.h"

#include <gtest/gtest.h>

#include "test_tree.h"

using namespace sprout::agent;
using sprout::agent::testing::TempTree;

TEST(AgentState, MissingIsNoStateWithoutProblem) {
  TempTree t;
  auto l = load_agent_state(t.path("/var/lib/sprout/state.json"));
  EXPECT_FALSE(l.state);
  EXPECT_TRUE(l.problem.empty());
}

TEST(AgentState, RoundTrip) {
  TempTree t;
  AgentState s;
  s.generation = "g";
  s.attempts = 2;
  s.built_system = "/nix/store/x";
  s.last_result = "rebuilt";
  save_agent_state(t.path("/var/lib/sprout/state.json"), s);
  auto l = load_agent_state(t.path("/var/lib/sprout/state.json"));
  ASSERT_TRUE(l.state);
  EXPECT_EQ(*l.state, s);
}

TEST(AgentState, GarbledIsNoStateAndReported) {
  TempTree t;
  for (std::string text : std::vector<std::string>{"{not json", "[]", "{\"version\":1}", "{\"version\":1,\"generation\":\"g\",\"x\":1}",
                           "{\"version\":2,\"generation\":\"g\"}", std::string("\0\0\0", 3)}) {
    t.write("/s/state.json", text);
    auto l = load_agent_state(t.path("/s/state.json"));
    EXPECT_FALSE(l.state) << text;
    EXPECT_NE(l.problem.find("treated as no state"), std::string::npos) << l.problem;
    EXPECT_NE(l.problem.find("state.json"), std::string::npos) << l.problem;
  }
}

TEST(AgentState, NestedTooDeepIsNoStateAndReported) {
  TempTree t;
  t.write("/s/state.json", std::string(30000, '[') + std::string(30000, ']'));  // under the 64 KiB read
  auto l = load_agent_state(t.path("/s/state.json"));
  EXPECT_FALSE(l.state);
  EXPECT_NE(l.problem.find("state.json: lists and objects nested more than 64 deep"), std::string::npos) << l.problem;
  EXPECT_NE(l.problem.find("treated as no state"), std::string::npos) << l.problem;
}
