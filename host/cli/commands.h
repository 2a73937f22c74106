// The `sprout` subcommands. Each takes the arguments after its name and returns the
// process exit status: 0 success, 1 runtime failure, 2 usage or input error (thrown
// as InputError or a cxxopts exception and mapped in main.cc).
#pragma once

#include <string>
#include <vector>

namespace sprout {

using Args = std::vector<std::string>;

int cmd_export(const Args& args);
int cmd_prepare(const Args& args);
int cmd_gc(const Args& args);
int cmd_check_spec(const Args& args);
int cmd_run(const Args& args);
int cmd_watch(const Args& args);
int cmd_status(const Args& args);
int cmd_list(const Args& args);
int cmd_wait(const Args& args);
int cmd_domain_xml(const Args& args);
int cmd_define(const Args& args);
int cmd_undefine(const Args& args);
int cmd_stop(const Args& args);
int cmd_destroy(const Args& args);
int cmd_logs(const Args& args);
int cmd_ssh(const Args& args);
int cmd_console(const Args& args);
int cmd_check_host(const Args& args);

}  // namespace sprout
