// A streaming response's body written to its client's socket from any thread, without ever
// blocking the writer: each write() is one HTTP/1.1 chunk (RFC 9112 section 7.1: hex size, CRLF,
// data, CRLF) sent with one non-blocking send(); what the socket does not take at once is kept,
// in order, for the request's own thread to send (flush(), which may wait for the client).
//
// Why: the server's engine writes each stream's token as it comes, one system call per token,
// instead of waking the request's thread to write it (a futex wake, a context switch and three
// system calls per token, ~70 us of CPU per token on a 2-core machine where the model needs both
// cores). The request's thread sleeps in wait() until the engine wakes it (bytes left over, or the
// request's end), the client goes away, or a timeout.
//
// The socket stays httplib's: it is only written here between attach and close(), while httplib's
// thread for the request waits in the response's content provider; close() comes before httplib
// writes the response's end, and before it may close the socket.
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>

namespace nextn::server {

class ChunkedSocketWriter {
 public:
  explicit ChunkedSocketWriter(int socket);  // nextn::Error when no eventfd can be made
  ~ChunkedSocketWriter();
  ChunkedSocketWriter(const ChunkedSocketWriter&) = delete;
  ChunkedSocketWriter& operator=(const ChunkedSocketWriter&) = delete;

  // Any thread: `payload` as one chunk, sent now as far as the socket takes it (an empty one sends
  // nothing: it would end the body). False after close() or once the connection failed (nothing
  // more is sent then).
  bool write(std::string_view payload);
  // The request's thread: sends what write() left over, waiting for the socket as long as it
  // takes; false once the connection failed.
  bool flush();
  // Any thread: ends the request thread's wait().
  void wake();

  enum class Event { kWoken, kLeftOver, kPeerClosed, kTimeout };
  // The request's thread: sleeps until wake(), bytes left over by write(), the client's close
  // (FIN or reset: POLLRDHUP, as ClientConnection::closed()), or the timeout.
  Event wait(std::chrono::milliseconds timeout);

  // After close() no write() touches the socket; flush() still sends what was left over.
  void close();
  bool failed() const;

 private:
  // Without waiting; what the socket does not take goes to left_over_. mutex_ held.
  bool send_now(std::string_view bytes);

  const int socket_;
  int wake_fd_ = -1;  // eventfd
  mutable std::mutex mutex_;
  std::string left_over_;  // written, not yet sent
  bool flushing_ = false;  // flush() is sending left_over_'s bytes outside the lock
  bool closed_ = false;
  bool failed_ = false;
};

}  // namespace nextn::server
