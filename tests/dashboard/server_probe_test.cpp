// Reading a nextn serve's /metrics: the Prometheus text parser against the server's own renderer
// (a round trip of known counts), its errors, and a probe of a live and of a missing server.
#include <gtest/gtest.h>
#include <httplib.h>

#include <cmath>
#include <thread>

#include "nextn/dashboard/server_probe.h"
#include "nextn/server/metrics.h"
#include "nextn/util/error.h"

namespace nextn::dashboard {
namespace {

std::string rendered_server_metrics() {
  server::Metrics metrics;
  metrics.request("/v1/completions", 200);
  metrics.request("/v1/completions", 200);
  metrics.request("/v1/chat/completions", 503);
  metrics.tokens(11, 40);
  metrics.tokens(5, 2);
  metrics.time_to_first_token(0.02);
  metrics.speculative({10, 8}, {7, 3});
  metrics.speculative({5, 0}, {4, 0});
  server::EngineGauges gauges;
  gauges.running = 3;
  gauges.queued = 2;
  gauges.batch_size = 3;
  return metrics.render(gauges);
}

TEST(ServerProbe, ReadsTheServersOwnMetricsPage) {
  auto samples = parse_prometheus_text(rendered_server_metrics());
  auto summary = summarize_server_metrics(samples);
  EXPECT_EQ(summary["generated_tokens"], 42);
  EXPECT_EQ(summary["prompt_tokens"], 16);
  EXPECT_EQ(summary["requests"], 3);
  EXPECT_EQ(summary["running"], 3);
  EXPECT_EQ(summary["queued"], 2);
  EXPECT_EQ(summary["batch_size"], 3);
  EXPECT_EQ(summary["drafted"], (nlohmann::json{15, 8}));
  EXPECT_EQ(summary["accepted"], (nlohmann::json{11, 3}));
  bool found_bucket = false;
  for (const auto& s : samples) {
    if (s.name == "nextn_time_to_first_token_seconds_bucket" && s.labels.at("le") == "+Inf") {
      found_bucket = true;
      EXPECT_EQ(s.value, 1);
    }
  }
  EXPECT_TRUE(found_bucket);
}

TEST(ServerProbe, ParsesLabelsEscapesAndSpecialValues) {
  auto samples = parse_prometheus_text(
      "# HELP x y\n\nm{a=\"q\\\"uote\",b=\"line\\nbreak\"} +Inf 1700000000\nn NaN\no -1.5e3\n");
  ASSERT_EQ(samples.size(), 3u);
  EXPECT_EQ(samples[0].labels.at("a"), "q\"uote");
  EXPECT_EQ(samples[0].labels.at("b"), "line\nbreak");
  EXPECT_TRUE(std::isinf(samples[0].value));
  EXPECT_TRUE(std::isnan(samples[1].value));
  EXPECT_EQ(samples[2].value, -1500);
  // CRLF line ends, a tab or several spaces before the value, blank and indented lines.
  samples = parse_prometheus_text("a 1\r\nb\t2\r\n  \t \r\n   c{x=\"y\"}   3   17\n");
  ASSERT_EQ(samples.size(), 3u);
  EXPECT_EQ(samples[0].value, 1);
  EXPECT_EQ(samples[1].value, 2);
  EXPECT_EQ(samples[2].name, "c");
  EXPECT_EQ(samples[2].value, 3);
  for (const std::string bad : {"m{a=\"x\" 1\n", "m\n", "m 12abc\n", "{a=\"b\"} 1\n", "m{a=x} 1\n"}) {
    try {
      parse_prometheus_text("ok 1\n" + bad);
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
    }
  }
}

TEST(ServerProbe, ProbesALiveServerAndNamesAMissingOne) {
  httplib::Server fake;
  const std::string page = rendered_server_metrics();
  fake.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) { res.set_content(page, "text/plain"); });
  const int port = fake.bind_to_any_port("127.0.0.1");
  std::thread listener([&] { fake.listen_after_bind(); });
  auto probe = probe_server("http://127.0.0.1:" + std::to_string(port));
  fake.stop();
  listener.join();
  ASSERT_TRUE(probe["ok"].get<bool>()) << probe.dump();
  EXPECT_EQ(probe["generated_tokens"], 42);
  EXPECT_GT(probe["time"].get<double>(), 1.7e9);

  auto missing = probe_server("http://127.0.0.1:" + std::to_string(port));  // nothing listens now
  EXPECT_FALSE(missing["ok"].get<bool>());
  EXPECT_NE(missing["error"].get<std::string>().find("no answer from http://127.0.0.1:"), std::string::npos)
      << missing.dump();
}

}  // namespace
}  // namespace nextn::dashboard
