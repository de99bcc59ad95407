#include "server/web_assets.h"

#include "server/web_asset_table.h"

namespace sdpal::server {

const WebAsset* find_web_asset(std::string_view url_path) {
  if (url_path == "/") url_path = "/index.html";
  for (const EmbeddedWebFile& f : embedded_web_files())
    if (f.url_path == url_path) return &f.asset;
  return nullptr;
}

std::vector<std::string_view> web_asset_paths() {
  std::vector<std::string_view> paths;
  for (const EmbeddedWebFile& f : embedded_web_files()) paths.push_back(f.url_path);
  return paths;
}

}  // namespace sdpal::server
