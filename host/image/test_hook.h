// A seam for tests of what happens while an image is built, now that no mkfs.ext4
// process is there to wrap: when $SPROUT_TEST_HOOK names a program, the export runs
// it (a child that dies with sprout, output logged, ten-minute timeout) at each step,
// `HOOK build ROLE` before an image's entries are read and `HOOK built ROLE TEMP`
// once the image is in its temporary file, before it is committed. A hook that fails
// fails the export. Unset (as everywhere but in tests), it costs one getenv.
#pragma once

#include <string>
#include <vector>

namespace sprout {

void run_test_hook(const std::vector<std::string>& args);

}  // namespace sprout
