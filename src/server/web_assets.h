// The web page of `sdpal serve` (index.html, its script, style sheet and icon), embedded in the
// binary at build time from src/server/web/ (cmake/embed_web_assets.cmake), so the server needs no
// files at run time and the page always matches the server it came with.
#pragma once

#include <string_view>
#include <vector>

namespace sdpal::server {

struct WebAsset {
  std::string_view content_type;  // the Content-Type header value, e.g. "text/html; charset=utf-8"
  std::string_view body;
};

// The asset served at `url_path` (the path of the request, without query string): "/" and
// "/index.html" give the page, "/app.js" its script, and so on; nullptr for any other path. Only
// exact matches: no file system behind it, so no path can reach anything but the embedded files.
const WebAsset* find_web_asset(std::string_view url_path);

// The URL paths of all embedded assets ("/index.html", "/app.js", ...), sorted.
std::vector<std::string_view> web_asset_paths();

}  // namespace sdpal::server
