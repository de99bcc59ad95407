// The layering of src/ (docs/architecture.md): source dependencies run one way,
//   core -> kernels / formats -> models -> pipeline -> compression -> server -> tools,
// so a file may include (#include "dir/...") only headers of its own layer or of lower ranks, and
// kernels and formats, peers of rank 1, may not include each other. Every .h/.cpp under src/ is
// scanned; a file in a directory without a rank, or an include of one, is an error too, so a new
// directory has to be given its place here (and in the document) first.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace fs = std::filesystem;

struct Layer {
  const char* dir;
  int rank;
};
constexpr Layer kLayers[] = {{"core", 0},     {"kernels", 1},     {"formats", 1}, {"models", 2},
                             {"pipeline", 3}, {"compression", 4}, {"server", 5},  {"tools", 6}};

std::optional<int> rank_of(std::string_view dir) {
  for (const Layer& l : kLayers)
    if (dir == l.dir) return l.rank;
  return std::nullopt;
}

// "formats/png.cpp" -> "formats"; "" when the path has no directory.
std::string top_dir(std::string_view path) {
  const size_t slash = path.find('/');
  return slash == std::string_view::npos ? std::string() : std::string(path.substr(0, slash));
}

// The include directives of `text` (the contents of src/<file>, `file` relative to src/, e.g.
// "formats/png.cpp") that break the layering, one "file:line: ..." message each.
std::vector<std::string> layer_violations(const std::string& file, const std::string& text) {
  std::vector<std::string> out;
  const std::string from = top_dir(file);
  const std::optional<int> from_rank = rank_of(from);
  if (!from_rank) {
    out.push_back(file + ":1: '" + from +
                  "' is not a layer (give it a rank in tests/test_architecture.cpp "
                  "and docs/architecture.md)");
    return out;
  }
  static const std::regex include_re(R"re(^\s*#\s*include\s*"([^"]+)")re");
  std::istringstream in(text);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    std::smatch m;
    if (!std::regex_search(line, m, include_re)) continue;
    const std::string target = m[1].str();
    const std::string to = top_dir(target);
    const std::optional<int> to_rank = rank_of(to);
    const std::string where = file + ":" + std::to_string(n) + ": ";
    if (!to_rank) {
      out.push_back(where + "includes \"" + target + "\", which is in no layer");
    } else if (*to_rank > *from_rank) {
      out.push_back(where + from + " (rank " + std::to_string(*from_rank) + ") includes " + target +
                    " of the higher layer " + to + " (rank " + std::to_string(*to_rank) + ")");
    } else if (*to_rank == *from_rank && to != from) {
      out.push_back(where + from + " includes " + target + " of its peer layer " + to);
    }
  }
  return out;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(Architecture, CheckerFlagsIncludesAgainstTheLayerOrder) {
  const std::string text =
      "// formats/x.cpp\n"
      "#include \"formats/x.h\"\n"
      "\n"
      "#include <vector>\n"
      "#include \"core/tensor.h\"\n"
      "#include \"models/weights.h\"\n"           // line 6: formats -> models
      "  #  include \"compression/bitpack.h\"\n"  // line 7: formats -> compression
      "#include \"kernels/gemm.h\"\n"             // line 8: peer
      "// #include \"tools/options.h\"\n"         // a comment, not a directive
      "#include \"nowhere/thing.h\"\n";           // line 10: no layer
  const std::vector<std::string> v = layer_violations("formats/x.cpp", text);
  ASSERT_EQ(v.size(), 4u) << ::testing::PrintToString(v);
  EXPECT_EQ(v[0].rfind("formats/x.cpp:6: ", 0), 0u) << v[0];
  EXPECT_NE(v[0].find("models/weights.h"), std::string::npos) << v[0];
  EXPECT_EQ(v[1].rfind("formats/x.cpp:7: ", 0), 0u) << v[1];
  EXPECT_EQ(v[2].rfind("formats/x.cpp:8: ", 0), 0u) << v[2];
  EXPECT_NE(v[2].find("peer"), std::string::npos) << v[2];
  EXPECT_EQ(v[3].rfind("formats/x.cpp:10: ", 0), 0u) << v[3];

  // Each direction of each pair, and the peers both ways.
  EXPECT_EQ(layer_violations("core/a.cpp", "#include \"kernels/b.h\"\n").size(), 1u);
  EXPECT_EQ(layer_violations("kernels/a.cpp", "#include \"formats/b.h\"\n").size(), 1u);
  EXPECT_EQ(layer_violations("models/a.h", "#include \"pipeline/b.h\"\n").size(), 1u);
  EXPECT_EQ(layer_violations("pipeline/a.h", "#include \"compression/b.h\"\n").size(), 1u);
  EXPECT_EQ(layer_violations("compression/a.h", "#include \"tools/b.h\"\n").size(), 1u);
  EXPECT_EQ(layer_violations("newdir/a.cpp", "#include \"core/b.h\"\n").size(), 1u);
  EXPECT_TRUE(layer_violations("tools/a.cpp",
                               "#include \"tools/b.h\"\n#include \"compression/c.h\"\n"
                               "#include \"pipeline/d.h\"\n#include \"models/e.h\"\n"
                               "#include \"kernels/f.h\"\n#include \"formats/g.h\"\n"
                               "#include \"core/h.h\"\n")
                  .empty());
  EXPECT_TRUE(layer_violations("models/a.cpp",
                               "#include \"kernels/f.h\"\n#include \"formats/g.h\"\n"
                               "#include <models/x.h>\n")
                  .empty());
}

TEST(Architecture, SourcesIncludeOnlyTheirOwnOrLowerLayers) {
  const fs::path src = fs::path(SDPAL_SOURCE_DIR) / "src";
  ASSERT_TRUE(fs::is_directory(src)) << src;
  int files = 0;
  std::vector<std::string> violations;
  for (const auto& e : fs::recursive_directory_iterator(src)) {
    if (!e.is_regular_file()) continue;
    const std::string ext = e.path().extension().string();
    if (ext != ".h" && ext != ".cpp") continue;
    ++files;
    const std::string rel = e.path().lexically_relative(src).generic_string();
    for (std::string& v : layer_violations(rel, read_text(e.path())))
      violations.push_back("src/" + v);
  }
  EXPECT_GT(files, 100) << "scanned too few files under " << src;
  std::string all;
  for (const std::string& v : violations) all += v + "\n";
  EXPECT_TRUE(violations.empty()) << violations.size()
                                  << " include(s) against the layer order (docs/architecture.md):\n"
                                  << all;
}

}  // namespace
