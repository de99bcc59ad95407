// The table of embedded web files that the build generates (cmake/embed_web_assets.cmake writes
// its definition into the build folder); server/web_assets.h is the interface to use.
#pragma once

#include <span>
#include <string_view>

#include "server/web_assets.h"

namespace sdpal::server {

struct EmbeddedWebFile {
  std::string_view url_path;  // "/" + the file's path under src/server/web/
  WebAsset asset;
};

// All embedded files, sorted by path.
std::span<const EmbeddedWebFile> embedded_web_files();

// The Content-Type of a file by its extension; application/octet-stream for one not listed (the
// test of the assets rejects that, so a new kind of file gets its type here first).
constexpr std::string_view content_type_for_file_name(std::string_view name) {
  struct Type {
    std::string_view extension, content_type;
  };
  constexpr Type kTypes[] = {{".html", "text/html; charset=utf-8"},
                             {".js", "text/javascript; charset=utf-8"},
                             {".css", "text/css; charset=utf-8"},
                             {".json", "application/json"},
                             {".svg", "image/svg+xml"},
                             {".png", "image/png"},
                             {".ico", "image/x-icon"}};
  for (const Type& t : kTypes)
    if (name.size() > t.extension.size() && name.ends_with(t.extension)) return t.content_type;
  return "application/octet-stream";
}

}  // namespace sdpal::server
