#include "decision.h"

#include <gtest/gtest.h>

using namespace sprout::agent;

namespace {
const std::string G1(64, 'a'), G2(64, 'b');

DecisionInput input(std::optional<AgentState> st, std::string current = "/nix/store/base") {
  DecisionInput in;
  in.generation = G1;
  in.max_attempts = 3;
  in.state = std::move(st);
  in.current_system = std::move(current);
  return in;
}
AgentState state(std::string gen, int attempts, std::string built = "", bool applied = false) {
  AgentState s;
  s.generation = gen;
  s.attempts = attempts;
  s.built_system = built;
  s.applied = applied;
  if (applied) s.applied_system = built;
  return s;
}
}  // namespace

TEST(Decision, NoStateSpecializesFirstAttempt) {
  auto d = decide(input(std::nullopt));
  EXPECT_EQ(d.action, Action::specialize);
  EXPECT_EQ(d.attempt, 1);
  EXPECT_TRUE(d.save);
  EXPECT_EQ(d.next_state.generation, G1);
  EXPECT_EQ(d.next_state.attempts, 1);
}

TEST(Decision, AlreadySpecialized) {
  auto d = decide(input(state(G1, 1, "/nix/store/x", true), "/nix/store/x"));
  EXPECT_EQ(d.action, Action::already_specialized);
  EXPECT_FALSE(d.save);
  EXPECT_EQ(d.message.find("note"), std::string::npos);
}

TEST(Decision, AppliedButRunningSomethingElseStillSpecializedWithNote) {
  auto d = decide(input(state(G1, 1, "/nix/store/x", true), "/nix/store/y"));
  EXPECT_EQ(d.action, Action::already_specialized);
  EXPECT_NE(d.message.find("note"), std::string::npos);
}

TEST(Decision, RebuiltAndNowRunningItIsRecorded) {
  auto d = decide(input(state(G1, 1, "/nix/store/x"), "/nix/store/x"));
  EXPECT_EQ(d.action, Action::record_applied);
  EXPECT_TRUE(d.save);
  EXPECT_TRUE(d.next_state.applied);
  EXPECT_EQ(d.next_state.applied_system, "/nix/store/x");
}

TEST(Decision, RebuiltButNotBootedFailsWithBothPathsAndDoesNotLoop) {
  auto d = decide(input(state(G1, 1, "/nix/store/x"), "/nix/store/base"));
  EXPECT_EQ(d.action, Action::failed_not_booted);
  EXPECT_NE(d.message.find("/nix/store/x"), std::string::npos);
  EXPECT_NE(d.message.find("/nix/store/base"), std::string::npos);
  EXPECT_FALSE(d.save);
}

TEST(Decision, InterruptedAttemptIsRetried) {
  auto d = decide(input(state(G1, 1)));
  EXPECT_EQ(d.action, Action::specialize);
  EXPECT_EQ(d.attempt, 2);
  EXPECT_EQ(d.next_state.attempts, 2);
}

TEST(Decision, AttemptsExhaustedGivesUp) {
  auto s = state(G1, 3);
  s.last_result = "exited with status 1";
  auto d = decide(input(s));
  EXPECT_EQ(d.action, Action::give_up);
  EXPECT_NE(d.message.find("gave up after 3 attempts"), std::string::npos);
  EXPECT_FALSE(d.save);
}

TEST(Decision, NewGenerationSpecializesAgainOnce) {
  auto d = decide(input(state(G2, 1, "/nix/store/x", true), "/nix/store/x"));
  EXPECT_EQ(d.action, Action::specialize);
  EXPECT_EQ(d.attempt, 1);
  EXPECT_EQ(d.next_state.generation, G1);
  EXPECT_TRUE(d.next_state.built_system.empty());
  EXPECT_NE(d.message.find("changed"), std::string::npos);
  // Once rebuilt and booted for G1, it is settled.
  auto d2 = decide(input(state(G1, 1, "/nix/store/z"), "/nix/store/z"));
  EXPECT_EQ(d2.action, Action::record_applied);
}

TEST(Decision, NewGenerationWithRespecializeOffKeepsOld) {
  auto in = input(state(G2, 1, "/nix/store/x", true), "/nix/store/x");
  in.respecialize_on_change = false;
  auto d = decide(in);
  EXPECT_EQ(d.action, Action::keep_old);
  EXPECT_FALSE(d.save);
}

TEST(Decision, RespecializeOffStillSpecializesFirstTime) {
  auto in = input(std::nullopt);
  in.respecialize_on_change = false;
  EXPECT_EQ(decide(in).action, Action::specialize);
}
