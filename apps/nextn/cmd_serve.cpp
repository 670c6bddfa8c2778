// `nextn serve`: an OpenAI-compatible HTTP server (completions, chat completions, streaming) with
// continuous batching and MTP speculative decoding, Prometheus metrics at /metrics.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

#include "command_registry.h"
#include "decoding_weights_flags.h"
#include "draft_head_flags.h"
#include "nextn/checkpoint/hf_checkpoint.h"
#include "nextn/device/device.h"
#include "nextn/inference/decoding_panels.h"
#include "nextn/inference/draft_tree.h"
#include "nextn/io/atomic_file.h"
#include "nextn/server/engine.h"
#include "nextn/server/http_server.h"
#include "nextn/tokenizer/tokenizer.h"
#include "nextn/training/run_checkpoint.h"
#include "nextn/training/stop_signal.h"
#include "nextn/util/error.h"

namespace fs = std::filesystem;

namespace nextn::cli {
namespace {

// The last component of a directory path: "runs/demo", "runs/demo/" and "runs/demo/." all give
// "demo" (a path ending in a separator has an empty filename()).
std::string directory_name(const std::string& dir) {
  fs::path p = fs::absolute(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

struct ServeFlags {
  std::string model_dir, name, speculative, device = "cpu", draft_head = "model";
  server::HttpOptions http;
  server::EngineOptions engine;
  int64_t draft_vocab = 0;
  int64_t prefix_cache_mib = 256;        // --prefix-cache-mb
  CLI::Option* draft_option = nullptr;  // --draft, to tell "not given" from a given value
  std::string draft = "auto";            // --draft: N or "auto"
  CLI::Option* draft_tree_option = nullptr;  // --draft-tree: given empty is an error, not a chain
  std::string draft_tree;                    // --draft-tree: e.g. "2,2"
  bool no_verify = false;
  DecodingWeightsFlags decoding_weights;
  int threads = 0;
  double grace_seconds = 30;
};

void run_serve(ServeFlags& f) {
  apply_threads(f.threads);
  if (f.http.api_key.empty()) {
    if (const char* key = std::getenv("NEXTN_API_KEY")) f.http.api_key = key;
  }
  if (!f.speculative.empty()) {
    NEXTN_CHECK(f.speculative == "mtp", "--speculative must be 'mtp' (the model's MTP modules draft), got '",
                f.speculative, "'");
    // The count is checked against the model's MTP depth once it is loaded.
    if (f.draft != "auto") f.engine.draft_tokens = parse_draft_option(f.draft, 0).drafts;
    if (f.draft_tree_option->count() > 0) {
      NEXTN_CHECK(f.draft_option->count() == 0, "--draft-tree sets the depth itself: leave out --draft");
      f.engine.draft_tree = inference::parse_draft_tree(f.draft_tree);
    }
  } else {
    NEXTN_CHECK(f.draft_option->count() == 0 && f.draft_tree_option->count() == 0, "--draft and --draft-tree need --speculative mtp");
  }
  const std::string dir = resolve_model_dir(f.model_dir);
  const std::string tokenizer_path = (fs::path(dir) / "tokenizer.json").string();
  NEXTN_CHECK(io::file_exists(tokenizer_path), "'", dir, "' has no tokenizer.json: the server needs it");
  f.engine.prefix_cache_bytes = f.prefix_cache_mib << 20;
  if (f.http.threads == 0) f.http.threads = static_cast<int>(f.engine.max_batch + f.engine.max_queue + 16);

  // Listen first: /health says 503 while the model loads.
  StopSignal stop;
  server::HttpServer http(f.http);
  http.bind();
  std::thread listener([&] { http.listen(); });
  // An IPv6 address goes in brackets in a URL (RFC 3986): http://[::1]:8000
  const std::string url_host = f.http.host.find(':') != std::string::npos ? "[" + f.http.host + "]" : f.http.host;
  std::cout << "nextn serve: listening on http://" << url_host << ":" << http.port() << std::endl;

  // Should loading fail, the listener stops before the error unwinds past it (a joinable thread
  // would terminate the process instead of reporting the error).
  struct StopListener {
    server::HttpServer& http;
    std::thread& listener;
    ~StopListener() {
      http.stop();
      if (listener.joinable()) listener.join();
    }
  } stop_listener{http, listener};
  tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(tokenizer_path);
  const server::ChatFormatChoice chat = server::choose_chat_format(tok);
  DeepSeekV3 model = load_model(dir, resolve_device(f.device), !f.no_verify);
  NEXTN_CHECK(tok.vocab_size() <= model->config().vocab_size, "tokenizer '", tokenizer_path, "' has ",
              tok.vocab_size(), " tokens, more than the model's vocab_size ", model->config().vocab_size);
  model->eval();
  // Decoding's weights, packed (as `nextn generate` decodes with the same --layout and --precision).
  const std::unique_ptr<inference::DecodingPanels> panels = f.decoding_weights.pack(model);
  if (!f.speculative.empty()) {
    NEXTN_CHECK(model->config().mtp_depth() > 0, "--speculative mtp: the model in '", dir,
                "' has no MTP modules (num_nextn_predict_layers = 0)");
    if (f.engine.draft_tree.empty()) {
      const DraftCount draft = parse_draft_option(f.draft, model->config().mtp_depth());
      f.engine.draft_tokens = draft.drafts;
      f.engine.adaptive_draft = draft.adaptive;
    } else {
      f.engine.draft_tokens = static_cast<int64_t>(f.engine.draft_tree.size());
    }
    f.engine.draft_head.dtype = inference::parse_draft_head_dtype(f.draft_head);
    f.engine.draft_head.token_ids =
        draft_vocabulary_for(dir, f.draft_vocab, model->config().vocab_size, tok.hash()).token_ids;
  }
  server::Engine engine(model, f.engine);
  server::ServedModel served;
  served.name = f.name.empty() ? directory_name(f.model_dir) : f.name;
  if (served.name.empty()) served.name = "nextn";
  served.tokenizer = &tok;
  served.chat_format = chat.format;
  served.context_length = engine.context_length();
  served.vocab_size = model->config().vocab_size;
  http.attach(&engine, served);
  std::cout << "nextn serve: model '" << served.name << "' from " << dir << " ready (context " << served.context_length
            << ", max batch " << f.engine.max_batch << ", queue " << f.engine.max_queue << ", prefill chunk "
            << f.engine.prefill_chunk << ", prefix cache " << f.prefix_cache_mib << " MiB, chat format "
            << server::chat_format_name(chat.format) << " (" << chat.reason << ")"
            << (!f.engine.draft_tree.empty() ? ", MTP draft tree " + inference::draft_tree_label(f.engine.draft_tree)
                : f.engine.adaptive_draft ? ", MTP drafts auto (0.." + std::to_string(f.engine.draft_tokens) + " per step)"
                : f.engine.draft_tokens > 0 ? ", MTP drafts " + std::to_string(f.engine.draft_tokens) : std::string())
            << (f.http.api_key.empty() ? std::string() : ", API key required") << ", decoding reads "
            << describe_decoding_weights(panels.get()) << ")" << std::endl;

  while (!stop.requested()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  // SIGTERM / SIGINT: no new requests; the running ones finish within the grace period.
  std::cout << "nextn serve: stopping (signal " << stop.signal_number() << "); finishing the running requests"
            << std::endl;
  http.stop_accepting();
  engine.stop_accepting();
  // (At most a year: a larger finite value would overflow the milliseconds.)
  const bool drained =
      engine.wait_idle(std::chrono::milliseconds(static_cast<int64_t>(std::min(f.grace_seconds, 3.2e7) * 1000)));
  if (!drained) {
    std::cout << "nextn serve: grace period over; cancelling what still runs" << std::endl;
    engine.cancel_all();
    engine.wait_idle(std::chrono::seconds(5));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let handlers write their last bytes
  // The HTTP threads end before the engine and the tokenizer they use do.
  http.stop();
  listener.join();
  std::cout << "nextn serve: stopped" << std::endl;
}

void setup_serve(CLI::App& app) {
  auto f = std::make_shared<ServeFlags>();
  auto* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server with continuous batching and MTP drafting");
  cmd->add_option("--model", f->model_dir, "model directory, or a run directory (its newest checkpoint)")->required();
  add_no_verify_option(*cmd, f->no_verify);
  f->decoding_weights.add(*cmd);
  cmd->add_option("--host", f->http.host, "address to listen on");
  cmd->add_option("--port", f->http.port, "port (0: any free one, printed at start)")->check(CLI::Range(0, 65535));
  cmd->add_option("--served-model-name", f->name, "the model name clients send (default: the directory's name)");
  cmd->add_option("--speculative", f->speculative, "mtp: draft with the model's MTP modules");
  f->draft_option = cmd->add_option("--draft", f->draft, "drafts per step with --speculative mtp, or 'auto' (the "
                                    "default): each step drafts the number 0..D expected to give the most tokens per second");
  f->draft_tree_option = cmd->add_option("--draft-tree", f->draft_tree, "draft a tree instead of a chain while a request runs alone: the "
                  "candidates per node at each depth, e.g. 2,2; verified in one forward, output unchanged");
  cmd->add_option("--draft-vocab", f->draft_vocab, "drafts only among the K most frequent tokens (draft_vocab.json)");
  cmd->add_option("--draft-head", f->draft_head, "the drafter's head: model or bf16");
  cmd->add_option("--max-batch", f->engine.max_batch, "requests decoding at once")->check(positive());
  cmd->add_option("--max-queue", f->engine.max_queue, "requests waiting beyond those (more get 503)")
      ->check(non_negative());
  cmd->add_option("--context", f->engine.context_length, "context length (default: max_position_embeddings)");
  cmd->add_option("--prefill-chunk", f->engine.prefill_chunk, "prompt tokens per forward, and the most an engine "
                  "step runs before the running requests' next token (generate with the same value gives the same "
                  "tokens)")->check(positive());
  cmd->add_option("--prefix-cache-mb", f->prefix_cache_mib, "MiB of prompt chunks kept for later prompts that start "
                  "with the same tokens (the same outputs, a shorter prefill; 0: none)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  cmd->add_option("--api-key", f->http.api_key, "require 'Authorization: Bearer KEY' (or set NEXTN_API_KEY)");
  cmd->add_option("--max-body-bytes", f->http.max_body_bytes, "largest request body accepted");
  cmd->add_option("--grace", f->grace_seconds, "seconds the running requests get to finish after SIGTERM")
      ->check(non_negative());
  add_threads_option(*cmd, f->threads);
  cmd->add_option("--device", f->device, "cpu or cuda[:N]");
  cmd->callback([f] { run_serve(*f); });
}

NEXTN_REGISTER_COMMAND(65, setup_serve);

}  // namespace
}  // namespace nextn::cli
