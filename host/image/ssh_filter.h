// What of an ssh directory may reach a guest. By default only public material is
// exported: authorized_keys*, *.pub, known_hosts*, config. Private keys are detected
// by name (id_*, *.pem, *.key, ...) and by content ("BEGIN ... PRIVATE KEY", PuTTY
// key files) and left out, as is anything else not known to be public; every file
// left out is reported with the reason. allow_private_keys exports everything.
#pragma once

#include <sys/stat.h>

#include <string>
#include <vector>

#include "image/tree.h"

namespace sprout {

struct Exclusion {
  std::string path;    ///< relative to the ssh directory
  std::string reason;  ///< "private key (by content)", ...
};

class SshFilter {
 public:
  explicit SshFilter(bool allow_private_keys) : allow_private_(allow_private_keys) {}
  /// Decides one entry; records exclusions. Usable as a TreeFilter.
  bool operator()(const TreeEntry& e);
  const std::vector<Exclusion>& excluded() const { return excluded_; }

 private:
  bool allow_private_;
  std::vector<Exclusion> excluded_;
};

/// True when the file's first bytes look like a private key of any common format.
/// With `listed`, the file opened must be that inode (device and inode number), or
/// it is an InputError: the filter must judge the file the export will read.
bool looks_like_private_key(const std::string& path, const struct stat* listed = nullptr);

}  // namespace sprout
