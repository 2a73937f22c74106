// A listing's files read ahead on a thread of their own (through ListedTreeReader,
// with all its checks), in listing order, and handed over in chunks: reading and
// hashing one file overlaps writing the one before, so an image builder is not
// left waiting on the disk and SHA-256 in turn. At most 8 MiB are in flight.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "image/tree.h"

namespace sprout {

class ListedTreeStream {
 public:
  /// Starts reading the regular files of `listing` (one of each hard-link group:
  /// `wanted[i]` says which entries) at once.
  ListedTreeStream(const TreeListing& listing, std::vector<bool> wanted);
  ~ListedTreeStream();  ///< stops the reader (an unfinished stream is abandoned)
  ListedTreeStream(const ListedTreeStream&) = delete;
  ListedTreeStream& operator=(const ListedTreeStream&) = delete;

  struct Chunk {
    std::size_t entry = 0;
    std::string data;
    bool last = false;  ///< the file's last chunk (possibly empty)
    std::string hash;   ///< with `last`: the hex SHA-256 of all the file's bytes
  };
  /// The next chunk, in listing order; rethrows what the reader failed with
  /// (InputError for a tree that changed since it was listed).
  Chunk next();

 private:
  void run();
  void push(Chunk c);

  const TreeListing& listing_;
  std::vector<bool> wanted_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Chunk> queue_;
  std::size_t bytes_ = 0;
  bool stop_ = false;
  std::exception_ptr failure_;
  std::thread thread_;
};

}  // namespace sprout
