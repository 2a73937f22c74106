#include "image/listed_tree_stream.h"

#include "image/listed_tree.h"

namespace sprout {

namespace {
constexpr std::size_t kChunk = 256 << 10;
constexpr std::size_t kMaxInFlight = 8 << 20;
struct Stopped {};
}  // namespace

ListedTreeStream::ListedTreeStream(const TreeListing& listing, std::vector<bool> wanted)
    : listing_(listing), wanted_(std::move(wanted)), thread_([this] { run(); }) {}

ListedTreeStream::~ListedTreeStream() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void ListedTreeStream::push(Chunk c) {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return stop_ || bytes_ < kMaxInFlight; });
  if (stop_) throw Stopped{};
  bytes_ += c.data.size();
  queue_.push_back(std::move(c));
  changed_.notify_all();
}

void ListedTreeStream::run() {
  try {
    ListedTreeReader reader(listing_);
    for (std::size_t i = 0; i < listing_.entries.size(); ++i) {
      if (!wanted_[i]) continue;
      Chunk c;
      c.entry = i;
      c.hash = reader.read_file(i, [&](const char* data, std::size_t n) {
        c.data.append(data, n);
        if (c.data.size() >= kChunk) {
          push(std::move(c));
          c = Chunk{};
          c.entry = i;
        }
      });
      c.last = true;
      push(std::move(c));
    }
  } catch (const Stopped&) {
  } catch (...) {
    std::lock_guard lock(mutex_);
    failure_ = std::current_exception();
    changed_.notify_all();
  }
}

ListedTreeStream::Chunk ListedTreeStream::next() {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return !queue_.empty() || failure_; });
  if (queue_.empty()) std::rethrow_exception(failure_);
  Chunk c = std::move(queue_.front());
  queue_.pop_front();
  bytes_ -= c.data.size();
  changed_.notify_all();
  return c;
}

}  // namespace sprout
