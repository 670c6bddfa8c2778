#include "nextn/dashboard/page.h"

#include <string_view>

#include "nextn/util/error.h"

namespace nextn::dashboard {
namespace assets {
extern const std::string_view dashboard_html, dashboard_css, dashboard_js, echarts_js;
}  // namespace assets

namespace {

// Fills the template's markers with their texts. The template is scanned, never the output, so
// that marker-like text inside a script or the data is left alone.
std::string render(const std::string& mode, const std::string& data_json) {
  // An inlined script must not contain "</script": the element would end there.
  NEXTN_CHECK(assets::echarts_js.find("</script") == std::string_view::npos &&
                  assets::dashboard_js.find("</script") == std::string_view::npos,
              "an embedded script contains '</script'");
  const std::pair<std::string_view, std::string_view> fills[] = {
      {"/*NEXTN_CSS*/", assets::dashboard_css},  {"/*NEXTN_ECHARTS*/", assets::echarts_js},
      {"NEXTN_MODE", mode},                      {"/*NEXTN_DATA*/", data_json},
      {"/*NEXTN_DASHBOARD*/", assets::dashboard_js}};
  const std::string_view page_template = assets::dashboard_html;
  std::string page;
  page.reserve(page_template.size() + assets::echarts_js.size() + assets::dashboard_js.size() + data_json.size());
  size_t done = 0;
  for (const auto& [marker, text] : fills) {
    const size_t at = page_template.find(marker, done);
    NEXTN_CHECK(at != std::string_view::npos, "dashboard page template has no ", std::string(marker),
                " (after the previous marker)");
    page.append(page_template.substr(done, at - done));
    page.append(text);
    done = at + marker.size();
  }
  page.append(page_template.substr(done));
  return page;
}

}  // namespace

std::string json_for_script_element(const nlohmann::json& value) {
  const std::string text = value.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '<') {
      out += "\\u003c";  // only inside strings: '<' is not JSON syntax
    } else {
      out += c;
    }
  }
  return out;
}

std::string render_live_page() { return render("live", "null"); }

std::string render_report_page(const nlohmann::json& data) { return render("report", json_for_script_element(data)); }

}  // namespace nextn::dashboard
