#include "nextn/server/chunked_socket_writer.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>

#include "nextn/util/error.h"

namespace nextn::server {
namespace {

// How long flush() waits for a client that does not read: httplib's own write timeout.
constexpr int kWriteTimeoutMs = 5000;

enum class SendResult { kAll, kFull, kFailed };

// Sends from the front of `bytes` without waiting, until all are sent or the socket is full.
SendResult send_until_full(int socket, std::string_view& bytes) {
  while (!bytes.empty()) {
    const ssize_t sent = ::send(socket, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent >= 0) {
      bytes.remove_prefix(static_cast<size_t>(sent));
    } else if (errno != EINTR) {
      return errno == EAGAIN || errno == EWOULDBLOCK ? SendResult::kFull : SendResult::kFailed;
    }
  }
  return SendResult::kAll;
}

// All of `bytes`, waiting for the socket when it is full; false when the connection failed or the
// client did not read for kWriteTimeoutMs.
bool send_waiting(int socket, std::string_view bytes) {
  while (true) {
    const SendResult result = send_until_full(socket, bytes);
    if (result != SendResult::kFull) return result == SendResult::kAll;
    pollfd p{socket, POLLOUT, 0};
    int ready;
    do {
      ready = ::poll(&p, 1, kWriteTimeoutMs);
    } while (ready < 0 && errno == EINTR);
    if (ready <= 0 || (p.revents & (POLLERR | POLLHUP)) != 0) return false;
  }
}

}  // namespace

ChunkedSocketWriter::ChunkedSocketWriter(int socket) : socket_(socket) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  NEXTN_CHECK(wake_fd_ >= 0, "eventfd: ", errno_text());
}

ChunkedSocketWriter::~ChunkedSocketWriter() { ::close(wake_fd_); }

bool ChunkedSocketWriter::write(std::string_view payload) {
  if (payload.empty()) {  // a chunk of size 0 would end the body
    std::lock_guard<std::mutex> lock(mutex_);
    return !closed_ && !failed_;
  }
  char size[20];
  const int size_length = std::snprintf(size, sizeof size, "%zx\r\n", payload.size());
  std::string frame;
  frame.reserve(static_cast<size_t>(size_length) + payload.size() + 2);
  frame.append(size, static_cast<size_t>(size_length)).append(payload).append("\r\n");
  std::lock_guard<std::mutex> lock(mutex_);
  if (closed_ || failed_) return false;
  if (!left_over_.empty() || flushing_) {  // earlier bytes go first: flush() sends these after them
    left_over_ += frame;
    return true;
  }
  return send_now(frame);
}

bool ChunkedSocketWriter::send_now(std::string_view bytes) {
  switch (send_until_full(socket_, bytes)) {
    case SendResult::kAll:
      return true;
    case SendResult::kFull:  // the request's thread sends the rest
      left_over_.append(bytes);
      wake();
      return true;
    case SendResult::kFailed:
      break;
  }
  failed_ = true;
  wake();
  return false;
}

bool ChunkedSocketWriter::flush() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!left_over_.empty() && !failed_) {
    std::string bytes;
    bytes.swap(left_over_);
    flushing_ = true;
    lock.unlock();
    // Outside the lock: write() meanwhile appends to left_over_, sent by the next round.
    const bool sent = send_waiting(socket_, bytes);
    lock.lock();
    flushing_ = false;
    if (!sent) failed_ = true;
  }
  return !failed_;
}

void ChunkedSocketWriter::wake() {
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);  // only fails when the counter is full
}

ChunkedSocketWriter::Event ChunkedSocketWriter::wait(std::chrono::milliseconds timeout) {
  pollfd fds[2] = {{socket_, POLLRDHUP, 0}, {wake_fd_, POLLIN, 0}};
  const int ready = ::poll(fds, 2, static_cast<int>(timeout.count()));
  if (ready <= 0) return Event::kTimeout;
  if ((fds[1].revents & POLLIN) != 0) {
    uint64_t count = 0;
    [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &count, sizeof count);
  }
  if ((fds[0].revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) return Event::kPeerClosed;
  std::lock_guard<std::mutex> lock(mutex_);
  return left_over_.empty() ? Event::kWoken : Event::kLeftOver;
}

void ChunkedSocketWriter::close() {
  std::lock_guard<std::mutex> lock(mutex_);
  closed_ = true;
}

bool ChunkedSocketWriter::failed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return failed_;
}

}  // namespace nextn::server
