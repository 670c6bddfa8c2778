#include "nextn/server/client_connection.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace nextn::server {
namespace {

// "127.0.0.1", 8000 from a socket address (IPv4 and IPv6; IPv4-mapped IPv6 as IPv4).
bool address_of(const sockaddr_storage& a, std::string& host, int& port) {
  char text[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    port = ntohs(v4->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
    inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    port = ntohs(v6->sin6_port);
  } else {
    return false;
  }
  host = text;
  if (host.rfind("::ffff:", 0) == 0 && host.find('.') != std::string::npos) host = host.substr(7);
  return true;
}

// An address as address_of() writes it: IPv4-mapped IPv6 as IPv4, without an IPv6 scope.
std::string normalised(std::string host) {
  if (host.rfind("::ffff:", 0) == 0 && host.find('.') != std::string::npos) host = host.substr(7);
  if (const auto scope = host.find('%'); scope != std::string::npos) host.erase(scope);
  return host;
}

}  // namespace

ClientConnection::ClientConnection(const std::string& local_addr_in, int local_port, const std::string& remote_addr_in,
                                   int remote_port) {
  if (local_port < 0 || remote_port < 0) return;
  const std::string local_addr = normalised(local_addr_in), remote_addr = normalised(remote_addr_in);
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return;
  while (dirent* entry = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == ::dirfd(dir)) continue;
    sockaddr_storage local{}, remote{};
    socklen_t local_length = sizeof local, remote_length = sizeof remote;
    if (::getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &local_length) != 0) continue;
    if (::getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&remote), &remote_length) != 0) continue;
    std::string lhost, rhost;
    int lport = 0, rport = 0;
    if (address_of(local, lhost, lport) && address_of(remote, rhost, rport) && lport == local_port &&
        rport == remote_port && lhost == local_addr && rhost == remote_addr) {
      fd_ = static_cast<int>(fd);
      break;
    }
  }
  ::closedir(dir);
}

bool ClientConnection::closed() const {
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

}  // namespace nextn::server
