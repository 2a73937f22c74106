#include "vm_name.h"

#include <gtest/gtest.h>

using sprout::vm_name_problem;

TEST(VmName, AcceptsOrdinaryNames) {
  for (std::string n : {std::string("web"), std::string("db-1"), std::string("a.b_c"), std::string("A9"),
                        std::string(64, 'x')})
    EXPECT_EQ(vm_name_problem(n), "") << n;
}

TEST(VmName, RejectsWithPreciseReasons) {
  EXPECT_EQ(vm_name_problem(""), "a VM name must not be empty");
  EXPECT_NE(vm_name_problem("..").find("not a usable"), std::string::npos);
  EXPECT_NE(vm_name_problem("a/b").find("'/'"), std::string::npos);
  EXPECT_NE(vm_name_problem(std::string("a\nb")).find("control characters"), std::string::npos);
  EXPECT_NE(vm_name_problem(std::string("a\x7f")).find("control characters"), std::string::npos);
  EXPECT_NE(vm_name_problem(std::string(65, 'x')).find("at most 64 bytes"), std::string::npos);
  EXPECT_NE(vm_name_problem("-x").find("must not start"), std::string::npos);
  EXPECT_NE(vm_name_problem(".hidden").find("must not start"), std::string::npos);
  EXPECT_NE(vm_name_problem("a b").find("only use letters"), std::string::npos);
  EXPECT_NE(vm_name_problem("caf\xc3\xa9").find("\\xc3"), std::string::npos);
}
