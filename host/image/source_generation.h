// What an export of a VM's sources would make now, found without exporting (for
// `sprout list`, as git status finds a changed tree): the generation export_disks()
// would record, computed from the trees as they are. It writes nothing: no image, no
// link, no lock, no digest cache, no leftover. Files the digest cache (digest_cache.h)
// knows unchanged (size, mtime, ctime, inode, device) are not read, as an export
// does not read them, so an unchanged tree costs its listing; the rest are read.
#pragma once

#include <string>

#include "image/export.h"

namespace sprout {

/// The generation export_disks(`request`) would make now (a host-built VM's closure
/// by its key alone: no Nix command). InputError for sources an export refuses.
std::string source_generation(const ExportRequest& request);

}  // namespace sprout
