// The one HTML page behind `nextn dashboard` and `nextn report`: page/dashboard.{html,css,js}
// and Apache ECharts (third_party/echarts), inlined, so that the page needs nothing else.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace nextn::dashboard {

// The live page: it polls the dashboard server's /api routes.
std::string render_live_page();

// A self-contained report: `data` ({"runs": [...], ...}, RunCatalog::snapshot) is embedded in the
// page, which draws from it and fetches nothing.
std::string render_report_page(const nlohmann::json& data);

// `text` as the contents of an HTML <script type="application/json"> element: every '<' escaped
// (\u003c), so no "</script>" inside a run's name or a note can end the element early.
std::string json_for_script_element(const nlohmann::json& value);

}  // namespace nextn::dashboard
