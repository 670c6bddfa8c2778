// The engine thread's direct stream writes (server/chunked_socket_writer.h) over a real loopback
// TCP connection: the bytes are HTTP/1.1 chunks in write order, a full socket never blocks
// write() and flush() sends the rest, a closed peer is seen, and nothing is sent after close().
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "nextn/bench/stream_client.h"
#include "nextn/server/chunked_socket_writer.h"

namespace nextn::server {
namespace {

struct LoopbackPair {
  int writer = -1, reader = -1;
  LoopbackPair(int buffer_bytes = 0) {
    const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    EXPECT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    EXPECT_EQ(::listen(listener, 1), 0);
    EXPECT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length), 0);
    reader = ::socket(AF_INET, SOCK_STREAM, 0);
    if (buffer_bytes > 0) ::setsockopt(reader, SOL_SOCKET, SO_RCVBUF, &buffer_bytes, sizeof buffer_bytes);
    EXPECT_EQ(::connect(reader, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    writer = ::accept(listener, nullptr, nullptr);
    if (buffer_bytes > 0) ::setsockopt(writer, SOL_SOCKET, SO_SNDBUF, &buffer_bytes, sizeof buffer_bytes);
    ::close(listener);
  }
  ~LoopbackPair() {
    if (writer >= 0) ::close(writer);
    if (reader >= 0) ::close(reader);
  }
  // Everything readable within `wait_ms` of the last byte.
  std::string read_available(int wait_ms = 50) const {
    std::string out;
    char buffer[65536];
    pollfd p{reader, POLLIN, 0};
    while (::poll(&p, 1, wait_ms) > 0) {
      const ssize_t n = ::recv(reader, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      out.append(buffer, static_cast<size_t>(n));
    }
    return out;
  }
};

std::string chunk_of(const std::string& payload) {
  char size[20];
  std::snprintf(size, sizeof size, "%zx\r\n", payload.size());
  return size + payload + "\r\n";
}

TEST(ChunkedSocketWriter, WritesEachPayloadAsOneHttpChunkInOrder) {
  LoopbackPair pair;
  ChunkedSocketWriter writer(pair.writer);
  const std::string a = "data: {\"x\":1}\n\n", b(300, 'b');
  EXPECT_TRUE(writer.write(a));
  EXPECT_TRUE(writer.write(""));  // nothing: a zero-size chunk would end the body
  EXPECT_TRUE(writer.write(b));
  EXPECT_TRUE(writer.flush());
  EXPECT_EQ(pair.read_available(), chunk_of(a) + chunk_of(b));
  EXPECT_EQ(chunk_of(b).substr(0, 5), "12c\r\n");  // 300 in hex
  writer.close();
  EXPECT_FALSE(writer.write(a));
  EXPECT_EQ(pair.read_available(20), "");
}

TEST(ChunkedSocketWriter, AFullSocketNeverBlocksTheWriterAndFlushSendsTheRestInOrder) {
  LoopbackPair pair(4096);
  ChunkedSocketWriter writer(pair.writer);
  // Far more than the two socket buffers hold, with nobody reading: every write() returns.
  std::string expected;
  for (int i = 0; i < 400; ++i) {
    const std::string payload = "event " + std::to_string(i) + " " + std::string(997, static_cast<char>('a' + i % 26));
    ASSERT_TRUE(writer.write(payload));
    expected += chunk_of(payload);
  }
  // The left-over bytes woke the request's side.
  EXPECT_EQ(writer.wait(std::chrono::milliseconds(1000)), ChunkedSocketWriter::Event::kLeftOver);
  std::string received;
  std::thread reader([&] { received = pair.read_available(300); });
  // Writes while flush() sends: they go after everything before them.
  std::thread more([&] {
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(writer.write("late " + std::to_string(i)));
  });
  more.join();
  for (int i = 0; i < 50; ++i) expected += chunk_of("late " + std::to_string(i));
  EXPECT_TRUE(writer.flush());
  EXPECT_TRUE(writer.flush());  // nothing left: still fine
  reader.join();
  EXPECT_EQ(received.size(), expected.size());
  EXPECT_TRUE(received == expected);
}

TEST(ChunkedSocketWriter, AClientThatLeavesIsSeenAndLaterWritesFail) {
  LoopbackPair pair;
  ChunkedSocketWriter writer(pair.writer);
  EXPECT_EQ(writer.wait(std::chrono::milliseconds(20)), ChunkedSocketWriter::Event::kTimeout);
  writer.wake();
  EXPECT_EQ(writer.wait(std::chrono::milliseconds(1000)), ChunkedSocketWriter::Event::kWoken);
  ::close(pair.reader);
  pair.reader = -1;
  EXPECT_EQ(writer.wait(std::chrono::milliseconds(1000)), ChunkedSocketWriter::Event::kPeerClosed);
  // The first write may still be taken (the peer answers it with a reset); a later one fails.
  bool failed = false;
  for (int i = 0; i < 10 && !failed; ++i) failed = !writer.write("data: x\n\n");
  EXPECT_TRUE(failed);
  EXPECT_TRUE(writer.failed());
  EXPECT_FALSE(writer.flush());
}

TEST(StreamClient, CountsTheTokenIdsOfAnEvent) {
  EXPECT_EQ(count_token_ids(R"(data: {"choices":[{"text":"a","token_ids":[5]}]})"), 1);
  EXPECT_EQ(count_token_ids(R"(data: {"choices":[{"text":"a,b","token_ids":[5,17,2]}]})"), 3);
  EXPECT_EQ(count_token_ids(R"(data: {"choices":[{"text":"","token_ids":[]}]})"), 0);
  EXPECT_EQ(count_token_ids(R"(data: {"choices":[{"text":"[1,2]"}]})"), 0);
}

}  // namespace
}  // namespace nextn::server
