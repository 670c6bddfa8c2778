// `bench serve`'s client: many streaming completions at once from one thread, over plain
// HTTP/1.1 sockets and poll(), as an event loop (vLLM's benchmark_serving is one asyncio loop).
// On a 2-core machine the load generator shares the cores with the server it measures: a thread
// per stream (httplib, a wake-up and a JSON parse per token each) took ~30 us of CPU per token,
// this loop ~10 us: a read() shared by every stream that got a token, and a scan of the event
// for its "token_ids".
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

namespace nextn {

struct StreamResult {
  bool ok = false;    // status 200 and the stream's "data: [DONE]"
  int64_t tokens = 0;  // the token ids its chunks carried
  double ttft = 0;     // seconds from connecting to the first chunk with a token
  // Seconds between consecutive chunks with tokens (inter-token latency; a chunk of several
  // tokens, from a speculative step, counts once).
  std::vector<double> token_gaps;
  std::string error;
};

// Where the streams go: a host name or an IPv4 / IPv6 address, resolved once.
struct StreamServer {
  std::string host;
  std::string address_text;  // the chosen address, numeric ("::1", "127.0.0.1")
  int port = 0;
  sockaddr_storage address{};
  socklen_t length = 0;
};
// The first of the host's addresses that accepts a connection ("localhost" may give ::1 first to
// a server listening on 127.0.0.1 only); nextn::Error when the name does not resolve.
StreamServer resolve_stream_server(const std::string& host, int port);

// For each stream, its request bodies are POSTed to `path` one after another (a connection
// each), all streams at once; results per stream, in order.
std::vector<std::vector<StreamResult>> run_streams(const StreamServer& server, const std::string& path,
                                                   const std::vector<std::vector<std::string>>& bodies);

// How many token ids one SSE event's JSON carries in "token_ids" (0 without the field).
int64_t count_token_ids(const std::string& event);

}  // namespace nextn
