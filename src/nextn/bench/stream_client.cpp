#include "nextn/bench/stream_client.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "nextn/util/error.h"

namespace nextn {
namespace {

using Clock = std::chrono::steady_clock;

// One request on its own connection: its response parsed as it arrives.
struct Exchange {
  int fd = -1;
  Clock::time_point started;
  std::string in;  // received, not yet parsed
  enum class Stage { kHeaders, kChunkSize, kChunkData, kPlainBody, kDone } stage = Stage::kHeaders;
  int status = 0;
  size_t chunk_left = 0;
  std::string events;  // the body's bytes, not yet split into events
  bool saw_done = false;
  Clock::time_point last_token;
  StreamResult result;
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

void open_exchange(Exchange& x, const StreamServer& server, const std::string& path, const std::string& body) {
  x = Exchange{};
  x.started = Clock::now();
  x.fd = ::socket(server.address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  NEXTN_CHECK(x.fd >= 0, "bench serve: socket: ", errno_text());
  NEXTN_CHECK(::connect(x.fd, reinterpret_cast<const sockaddr*>(&server.address), server.length) == 0,
              "bench serve: connect to ", server.host, ":", server.port, ": ", errno_text());
  int yes = 1;
  ::setsockopt(x.fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
  const std::string host = server.host.find(':') != std::string::npos ? "[" + server.host + "]" : server.host;
  const std::string request = "POST " + path + " HTTP/1.1\r\nHost: " + host + ":" + std::to_string(server.port) +
                              "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                              "\r\nConnection: close\r\n\r\n" + body;
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n = ::send(x.fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    NEXTN_CHECK(n > 0 || errno == EINTR, "bench serve: send: ", errno_text());
    if (n > 0) sent += static_cast<size_t>(n);
  }
}

void take_events(Exchange& x) {
  for (size_t end; (end = x.events.find("\n\n")) != std::string::npos; x.events.erase(0, end + 2)) {
    const std::string event = x.events.substr(0, end);
    if (event.rfind("data: ", 0) != 0) continue;
    if (event == "data: [DONE]") {
      x.saw_done = true;
      continue;
    }
    const int64_t ids = count_token_ids(event);
    if (ids == 0) continue;
    const Clock::time_point now = Clock::now();
    if (x.result.tokens == 0) {
      x.result.ttft = std::chrono::duration<double>(now - x.started).count();
    } else {
      x.result.token_gaps.push_back(std::chrono::duration<double>(now - x.last_token).count());
    }
    x.last_token = now;
    x.result.tokens += ids;
  }
}

// Parses what arrived; kDone once the response is complete (or cannot be).
void parse(Exchange& x) {
  while (true) {
    switch (x.stage) {
      case Exchange::Stage::kHeaders: {
        const size_t end = x.in.find("\r\n\r\n");
        if (end == std::string::npos) return;
        const std::string head = lower(x.in.substr(0, end + 2));
        x.in.erase(0, end + 4);
        if (head.rfind("http/1.1 ", 0) == 0) x.status = std::atoi(head.c_str() + 9);
        x.stage = head.find("\r\ntransfer-encoding: chunked\r\n") != std::string::npos ? Exchange::Stage::kChunkSize
                                                                                     : Exchange::Stage::kPlainBody;
        break;
      }
      case Exchange::Stage::kChunkSize: {
        const size_t end = x.in.find("\r\n");
        if (end == std::string::npos) return;
        x.chunk_left = std::strtoul(x.in.c_str(), nullptr, 16);
        x.in.erase(0, end + 2);
        if (x.chunk_left == 0) {
          x.stage = Exchange::Stage::kDone;
          return;
        }
        x.stage = Exchange::Stage::kChunkData;
        break;
      }
      case Exchange::Stage::kChunkData: {
        if (x.in.size() < x.chunk_left + 2) return;
        x.events.append(x.in, 0, x.chunk_left);
        x.in.erase(0, x.chunk_left + 2);
        take_events(x);
        x.stage = Exchange::Stage::kChunkSize;
        break;
      }
      case Exchange::Stage::kPlainBody:  // an error's body: read to the end of the connection
      case Exchange::Stage::kDone:
        return;
    }
  }
}

void close_exchange(Exchange& x) {
  ::close(x.fd);
  x.fd = -1;
  x.result.ok = x.status == 200 && x.saw_done;
  if (!x.result.ok) {
    x.result.error = x.status == 0 ? "no response" : "status " + std::to_string(x.status);
    if (x.status == 200) x.result.error = "the stream ended without data: [DONE]";
    if (x.stage == Exchange::Stage::kPlainBody && !x.in.empty()) x.result.error += ": " + x.in.substr(0, 300);
  }
}

}  // namespace

StreamServer resolve_stream_server(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int status = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  NEXTN_CHECK(status == 0 && found != nullptr, "bench serve: cannot resolve '", host, "': ", ::gai_strerror(status));
  const addrinfo* chosen = found;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int probe = ::socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const bool accepts = probe >= 0 && ::connect(probe, a->ai_addr, a->ai_addrlen) == 0;
    if (probe >= 0) ::close(probe);
    if (accepts) {
      chosen = a;
      break;
    }
  }
  StreamServer server{host, "", port, {}, static_cast<socklen_t>(chosen->ai_addrlen)};
  std::memcpy(&server.address, chosen->ai_addr, chosen->ai_addrlen);
  char text[NI_MAXHOST] = {};
  if (::getnameinfo(chosen->ai_addr, chosen->ai_addrlen, text, sizeof text, nullptr, 0, NI_NUMERICHOST) == 0) {
    server.address_text = text;
  }
  ::freeaddrinfo(found);
  return server;
}

int64_t count_token_ids(const std::string& event) {
  static const std::string kField = "\"token_ids\":[";
  const size_t at = event.find(kField);
  if (at == std::string::npos) return 0;
  const size_t begin = at + kField.size(), end = event.find(']', begin);
  if (end == std::string::npos || end == begin) return 0;
  return 1 + std::count(event.begin() + static_cast<std::ptrdiff_t>(begin), event.begin() + static_cast<std::ptrdiff_t>(end), ',');
}

std::vector<std::vector<StreamResult>> run_streams(const StreamServer& server, const std::string& path,
                                                   const std::vector<std::vector<std::string>>& bodies) {
  const size_t streams = bodies.size();
  std::vector<std::vector<StreamResult>> results(streams);
  std::vector<Exchange> exchanges(streams);
  std::vector<size_t> next(streams, 0);
  for (size_t s = 0; s < streams; ++s) {
    if (!bodies[s].empty()) open_exchange(exchanges[s], server, path, bodies[s][next[s]++]);
  }
  std::vector<pollfd> fds;
  std::vector<size_t> owner;
  char buffer[1 << 16];
  while (true) {
    fds.clear();
    owner.clear();
    for (size_t s = 0; s < streams; ++s) {
      if (exchanges[s].fd < 0) continue;
      fds.push_back({exchanges[s].fd, POLLIN, 0});
      owner.push_back(s);
    }
    if (fds.empty()) break;
    const int ready = ::poll(fds.data(), fds.size(), 600 * 1000);
    if (ready < 0 && errno == EINTR) continue;
    NEXTN_CHECK(ready > 0, "bench serve: no response for 600 s");
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      Exchange& x = exchanges[owner[i]];
      const ssize_t n = ::recv(x.fd, buffer, sizeof buffer, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n > 0) {
        x.in.append(buffer, static_cast<size_t>(n));
        parse(x);
        if (x.stage != Exchange::Stage::kDone) continue;
      }
      // The response is complete, or the connection ended (n <= 0) before it was.
      close_exchange(x);
      results[owner[i]].push_back(x.result);
      const size_t s = owner[i];
      if (next[s] < bodies[s].size()) open_exchange(x, server, path, bodies[s][next[s]++]);
    }
  }
  return results;
}

}  // namespace nextn
