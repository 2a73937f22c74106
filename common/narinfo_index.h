// The closure disk's narinfo index (host-built VMs): every narinfo of the disk in one
// file, `sprout-narinfos` at its top, so the guest reads one file where it read one a
// path (2,031 small files on a cold disk took 1.3-2.1 s under emulation: issue 25,
// docs/performance.md). Each narinfo's text exactly as in its HASH.narinfo, followed
// by an empty line (a narinfo has none). The host writes it beside the narinfos, which
// older agents and `nix copy` read; the guest reads it when the disk has it.
#pragma once

#include <map>
#include <string>

namespace sprout {

inline constexpr const char* kNarInfoIndexFile = "sprout-narinfos";

/// One narinfo's record in the index: its text (ending in '\n'), then an empty line.
std::string narinfo_index_record(const std::string& narinfo_text);

/// The index's narinfos by store path (each record's `StorePath:`), their texts as
/// written. std::runtime_error naming the record for a record without one, a path
/// given twice, or text that is not records.
std::map<std::string, std::string> split_narinfo_index(const std::string& index);

}  // namespace sprout
