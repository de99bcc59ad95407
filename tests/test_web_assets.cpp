// The web page embedded in the binary (server/web_assets.h): what each URL path gives, that the
// embedded bytes are the files of src/server/web/, and that the page is self-contained (every asset
// it references is embedded, nothing is fetched from another host).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "server/web_asset_table.h"
#include "server/web_assets.h"

namespace {

namespace fs = std::filesystem;
using sdpal::server::find_web_asset;
using sdpal::server::web_asset_paths;
using sdpal::server::WebAsset;

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The URLs an HTML page or style sheet references: src/href attributes and CSS url(...).
std::vector<std::string> referenced_urls(const std::string& text) {
  static const std::regex attr_re(R"re(\b(?:src|href)\s*=\s*["']([^"']*)["'])re",
                                  std::regex::icase);
  static const std::regex css_re(R"re(url\(\s*["']?([^"')]*)["']?\s*\))re", std::regex::icase);
  std::vector<std::string> urls;
  for (const std::regex* re : {&attr_re, &css_re})
    for (auto it = std::sregex_iterator(text.begin(), text.end(), *re);
         it != std::sregex_iterator(); ++it)
      urls.push_back((*it)[1].str());
  return urls;
}

TEST(WebAssets, RootGivesTheHtmlPage) {
  const WebAsset* root = find_web_asset("/");
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(root->content_type, "text/html; charset=utf-8");
  EXPECT_NE(root->body.find("<!doctype html>"), std::string_view::npos);
  EXPECT_EQ(find_web_asset("/index.html"), root);
}

TEST(WebAssets, ContentTypesFollowTheExtension) {
  const WebAsset* js = find_web_asset("/app.js");
  ASSERT_NE(js, nullptr);
  EXPECT_EQ(js->content_type, "text/javascript; charset=utf-8");
  const WebAsset* css = find_web_asset("/style.css");
  ASSERT_NE(css, nullptr);
  EXPECT_EQ(css->content_type, "text/css; charset=utf-8");
  const WebAsset* icon = find_web_asset("/icon.svg");
  ASSERT_NE(icon, nullptr);
  EXPECT_EQ(icon->content_type, "image/svg+xml");

  using sdpal::server::content_type_for_file_name;
  EXPECT_EQ(content_type_for_file_name("a.png"), "image/png");
  EXPECT_EQ(content_type_for_file_name("a.json"), "application/json");
  EXPECT_EQ(content_type_for_file_name("a.exe"), "application/octet-stream");
  EXPECT_EQ(content_type_for_file_name(".js"), "application/octet-stream");
  EXPECT_EQ(content_type_for_file_name("js"), "application/octet-stream");
  for (std::string_view path : web_asset_paths())
    EXPECT_NE(find_web_asset(path)->content_type, "application/octet-stream")
        << path << " has an extension without a content type (server/web_asset_table.h)";
}

TEST(WebAssets, UnknownPathsGiveNothing) {
  for (std::string_view path :
       {"", "/nope", "index.html", "//index.html", "/INDEX.HTML", "/index.html?x=1", "/index.htm",
        "/../CMakeLists.txt", "/web/index.html", "/app.js/", "/./app.js", "/%2e%2e/README.md",
        "/sdapi/v1/txt2img"})
    EXPECT_EQ(find_web_asset(path), nullptr) << "'" << path << "'";
}

// The embedded bytes are exactly the files of src/server/web/, and every one of them is there:
// the build regenerates the table when a file changes.
TEST(WebAssets, EmbeddedBytesAreTheSourceFiles) {
  const fs::path web = fs::path(SDPAL_SOURCE_DIR) / "src/server/web";
  ASSERT_TRUE(fs::is_directory(web)) << web;
  std::set<std::string> on_disk;
  for (const auto& e : fs::recursive_directory_iterator(web))
    if (e.is_regular_file())
      on_disk.insert("/" + e.path().lexically_relative(web).generic_string());
  const std::vector<std::string_view> paths = web_asset_paths();
  EXPECT_TRUE(std::is_sorted(paths.begin(), paths.end()));
  const std::set<std::string> embedded(paths.begin(), paths.end());
  EXPECT_EQ(embedded, on_disk) << "rebuild: the embedded page differs from src/server/web";
  for (std::string_view path : paths) {
    const WebAsset* a = find_web_asset(path);
    ASSERT_NE(a, nullptr) << path;
    EXPECT_FALSE(a->body.empty()) << path;
    EXPECT_EQ(a->body, read_text(web / std::string(path.substr(1))))
        << path << " differs from its source file: the build did not regenerate the table";
  }
}

TEST(WebAssets, EveryReferencedAssetIsEmbedded) {
  int checked = 0;
  for (std::string_view path : web_asset_paths()) {
    if (!path.ends_with(".html") && !path.ends_with(".css")) continue;
    const std::string text(find_web_asset(path)->body);
    for (const std::string& url : referenced_urls(text)) {
      if (url.starts_with("#")) continue;  // an anchor within the page
      ASSERT_EQ(url.find(':'), std::string::npos)
          << path << " references '" << url << "': only assets of the page itself";
      ASSERT_FALSE(url.starts_with("//")) << path << " references '" << url << "'";
      const std::string target = url.starts_with("/") ? url : "/" + url;
      EXPECT_NE(find_web_asset(target), nullptr)
          << path << " references '" << url << "', which is not embedded";
      ++checked;
    }
  }
  EXPECT_GE(checked, 3) << "index.html should reference its script, style sheet and icon";
}

TEST(WebAssets, NothingIsFetchedFromAnotherHost) {
  // An absolute URL anywhere (a CDN script, a web font, an analytics beacon) would make the page
  // depend on the network; the one allowed is SVG's namespace name, which is never fetched.
  static const std::regex external_re(R"re((https?|wss?|ftp):|@import|\bsrc\s*=\s*["']//)re",
                                      std::regex::icase);
  const std::string svg_namespace = R"(xmlns="http://www.w3.org/2000/svg")";
  for (std::string_view path : web_asset_paths()) {
    std::string text(find_web_asset(path)->body);
    for (size_t at; (at = text.find(svg_namespace)) != std::string::npos;)
      text.erase(at, svg_namespace.size());
    std::smatch m;
    EXPECT_FALSE(std::regex_search(text, m, external_re))
        << path << " references another host: '" << m.str() << "'";
  }
  // The check itself catches what it is for.
  EXPECT_TRUE(std::regex_search(std::string("<script src=\"https://cdn.x/y.js\">"), external_re));
  EXPECT_TRUE(std::regex_search(std::string("<script src='//cdn.x/y.js'>"), external_re));
  EXPECT_TRUE(std::regex_search(std::string("@import 'x.css';"), external_re));
  EXPECT_EQ(referenced_urls("<a href=\"x.js\"></a><p style=\"background:url('i.png')\">").size(),
            2u);
}

}  // namespace
