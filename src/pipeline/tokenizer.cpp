#include "pipeline/tokenizer.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <queue>
#include <sstream>
#include <string_view>

#include "core/error.h"
#include "core/json_file.h"
#include "core/limits.h"
#include "core/unicode_text.h"
#include "pipeline/ftfy_fix.h"

namespace sdpal {

using nlohmann::json;

// A string that is never split: the special tokens and added_tokens.json entries.
struct ClipTokenizer::SpecialToken {
  std::u32string content;
  int id = 0;
  // transformers strips whitespace next to special tokens given as plain strings (e.g. SD 2.x's
  // pad token "!"); tokens given as AddedToken objects strip only as their flags say.
  bool strip_left = true;   // strip trailing whitespace of the text before it
  bool strip_right = true;  // strip leading whitespace of the text after it
};

struct ClipTokenizer::BpeCache {
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<int>> ids;
};

namespace {

constexpr const char* kStartOfText = "<|startoftext|>";
constexpr const char* kEndOfText = "<|endoftext|>";
// The CLIP merges list holds at most 49152 - 256 - 2 merges; later lines are ignored.
constexpr size_t kMaxMerges = 49152 - 256 - 2;
constexpr size_t kMaxCachedWords = 1 << 16;
constexpr size_t kMaxCachedWordBytes = 256;

// GPT-2/CLIP byte -> symbol table: printable Latin-1 bytes stand for themselves, the others
// (controls, space, ...) are moved to U+0100 onwards so no symbol is whitespace or a control.
const std::array<std::string, 256>& byte_symbols() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> out;
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      unicode::append_utf8(out[b], printable ? static_cast<char32_t>(b) : next++);
    }
    return out;
  }();
  return table;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open " + path + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("cannot read " + path);
  return ss.str();
}

bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

json parse_json_file(const std::string& path) { return parse_json_text(read_file(path), path); }

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' ||
         (c >= 0x1C && c <= 0x1F);
}

std::vector<std::string_view> split_on_space(std::string_view line) {
  std::vector<std::string_view> parts;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_ascii_space(line[i])) ++i;
    const size_t start = i;
    while (i < line.size() && !is_ascii_space(line[i])) ++i;
    if (i > start) parts.push_back(line.substr(start, i - start));
  }
  return parts;
}

// A special-token entry from tokenizer_config.json / special_tokens_map.json.
struct TokenEntry {
  std::string content;
  bool added_token = false;  // given as an AddedToken object
  bool lstrip = false, rstrip = false;
};

std::optional<TokenEntry> parse_token_entry(const json& v, const std::string& file,
                                            const std::string& key) {
  if (v.is_null()) return std::nullopt;
  if (v.is_string()) return TokenEntry{v.get<std::string>()};
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    TokenEntry e{v["content"].get<std::string>(), true};
    e.lstrip = v.value("lstrip", false);
    e.rstrip = v.value("rstrip", false);
    // single_word is ignored: CLIP tokenizers never set it.
    return e;
  }
  fail(file + ": " + key + " is neither a string nor an object with a \"content\" string");
}

// CLIP pre-tokenizer: the spans matched by (case-insensitively)
//   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// tried in that order at each position; characters matching none (whitespace) are skipped.
std::vector<std::u32string_view> clip_pretokenize(std::u32string_view text) {
  auto matches_at = [&](size_t i, std::u32string_view literal) {
    if (i + literal.size() > text.size()) return false;
    for (size_t k = 0; k < literal.size(); ++k)
      if (unicode::fold_case(text[i + k]) != literal[k]) return false;
    return true;
  };
  // [^\s\p{L}\p{N}] under IGNORECASE also rejects characters whose case variants are letters,
  // numbers or spaces (e.g. U+0345, which folds to iota); such characters match nothing.
  auto is_plain_class = [](char32_t c) {
    return unicode::is_white_space(c) || unicode::is_letter(c) || unicode::is_number(c);
  };
  auto is_other = [&](char32_t c) {
    if (is_plain_class(c)) return false;
    if (c < 0x80) return true;
    for (char32_t v : unicode::case_variants(c))
      if (v != c && is_plain_class(v)) return false;
    return true;
  };
  static constexpr std::u32string_view kFixed[] = {U"<|startoftext|>", U"<|endoftext|>"};
  static constexpr std::u32string_view kContractions[] = {U"'s", U"'t",  U"'re", U"'ve",
                                                          U"'m", U"'ll", U"'d"};
  std::vector<std::u32string_view> tokens;
  size_t i = 0;
  while (i < text.size()) {
    size_t len = 0;
    for (auto lit : kFixed)
      if (len == 0 && matches_at(i, lit)) len = lit.size();
    if (len == 0 && text[i] == '\'')
      for (auto lit : kContractions)
        if (len == 0 && matches_at(i, lit)) len = lit.size();
    if (len == 0 && unicode::is_letter(text[i])) {
      while (i + len < text.size() && unicode::is_letter(text[i + len])) ++len;
    } else if (len == 0 && unicode::is_number(text[i])) {
      len = 1;
    } else if (len == 0 && is_other(text[i])) {
      while (i + len < text.size() && is_other(text[i + len])) ++len;
    }
    if (len == 0) {
      ++i;
      continue;
    }
    tokens.push_back(text.substr(i, len));
    i += len;
  }
  return tokens;
}

// Python's re.sub(r"\s+", " ", text).strip().
std::u32string collapse_whitespace(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (unicode::is_white_space(text[i])) {
      out.push_back(' ');
      while (i < text.size() && unicode::is_white_space(text[i])) ++i;
    } else {
      out.push_back(text[i++]);
    }
  }
  size_t b = 0, e = out.size();
  while (b < e && unicode::is_python_space(out[b])) ++b;
  while (e > b && unicode::is_python_space(out[e - 1])) --e;
  return out.substr(b, e - b);
}

std::u32string lstrip(const std::u32string& s) {
  size_t b = 0;
  while (b < s.size() && unicode::is_python_space(s[b])) ++b;
  return s.substr(b);
}

std::u32string rstrip(const std::u32string& s) {
  size_t e = s.size();
  while (e > 0 && unicode::is_python_space(s[e - 1])) --e;
  return s.substr(0, e);
}

}  // namespace

ClipTokenizer::ClipTokenizer() : cache_(std::make_unique<BpeCache>()) {}
ClipTokenizer::ClipTokenizer(ClipTokenizer&&) noexcept = default;
ClipTokenizer& ClipTokenizer::operator=(ClipTokenizer&&) noexcept = default;
ClipTokenizer::~ClipTokenizer() = default;

ClipTokenizer ClipTokenizer::load(const std::string& dir) { return load(dir, dir); }

ClipTokenizer ClipTokenizer::load(const std::string& dir, const std::string& config_dir) {
  ClipTokenizer tok;
  const std::string base = dir.empty() || dir.back() == '/' ? dir : dir + "/";

  // vocab.json: {"symbol": id, ...}
  const std::string vocab_path = base + "vocab.json";
  const json vocab = parse_json_file(vocab_path);
  if (!vocab.is_object() || vocab.empty())
    fail(vocab_path + ": expected a non-empty JSON object mapping tokens to ids");
  tok.vocab_.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() >= INT_MAX)
      fail(vocab_path + ": id of token \"" + it.key() + "\" is not a non-negative integer");
    const int id = it.value().get<int>();
    tok.vocab_.emplace(it.key(), id);
    tok.vocab_size_ = std::max(tok.vocab_size_, id + 1);
  }

  // merges.txt: a "#version" header line, then one "left right" pair per line, best first.
  const std::string merges_path = base + "merges.txt";
  const std::string merges = read_file(merges_path);
  unicode::decode_utf8(merges, merges_path);  // validates the encoding
  size_t begin = 0, end = merges.size();
  while (begin < end && is_ascii_space(merges[begin])) ++begin;
  while (end > begin && is_ascii_space(merges[end - 1])) --end;
  const std::string_view body(merges.data() + begin, end - begin);
  if (body.empty() || body[0] != '#')
    fail(merges_path + ": expected a \"#version\" header line (empty or not a merges file?)");
  size_t pos = body.find('\n');
  size_t line_no = 1;
  while (pos != std::string_view::npos && line_no <= kMaxMerges) {
    const size_t next = body.find('\n', pos + 1);
    const std::string_view line = body.substr(
        pos + 1, next == std::string_view::npos ? std::string_view::npos : next - pos - 1);
    const auto parts = split_on_space(line);
    if (parts.size() == 2) {
      // A repeated pair keeps its last rank, as a Python dict built from the list would.
      tok.merge_ranks_[std::string(parts[0]) + ' ' + std::string(parts[1])] =
          static_cast<int>(line_no - 1);
    } else if (!parts.empty()) {
      fail(merges_path + ": line " + std::to_string(line_no + 1) +
           " is not a pair of symbols separated by a space");
    }
    ++line_no;
    pos = next;
  }
  if (tok.merge_ranks_.empty()) fail(merges_path + ": contains no merges");

  // Optional extra tokens from a saved tokenizer (e.g. after textual inversion).
  const std::string added_path = base + "added_tokens.json";
  if (file_exists(added_path)) {
    const json added = parse_json_file(added_path);
    if (!added.is_object()) fail(added_path + ": expected a JSON object mapping tokens to ids");
    for (auto it = added.begin(); it != added.end(); ++it) {
      if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
          it.value().get<int64_t>() >= INT_MAX)
        fail(added_path + ": id of token \"" + it.key() + "\" is not a non-negative integer");
      tok.added_.emplace(it.key(), it.value().get<int>());
      tok.vocab_size_ = std::max(tok.vocab_size_, it.value().get<int>() + 1);
    }
  }

  // Special tokens: special_tokens_map.json overrides tokenizer_config.json; CLIPTokenizer's
  // defaults apply when neither names one.
  const std::string config_base =
      config_dir.empty() || config_dir.back() == '/' ? config_dir : config_dir + "/";
  const std::string config_path = config_base + "tokenizer_config.json";
  const std::string map_path = config_base + "special_tokens_map.json";
  const json config = file_exists(config_path) ? parse_json_file(config_path) : json::object();
  const json token_map = file_exists(map_path) ? parse_json_file(map_path) : json::object();
  if (!config.is_object()) fail(config_path + ": expected a JSON object");
  if (!token_map.is_object()) fail(map_path + ": expected a JSON object");

  auto entry_for = [&](const std::string& key, const char* fallback) -> std::optional<TokenEntry> {
    if (token_map.contains(key) && !token_map[key].is_null())
      return parse_token_entry(token_map[key], map_path, key);
    if (config.contains(key) && !config[key].is_null())
      return parse_token_entry(config[key], config_path, key);
    if (fallback) return TokenEntry{fallback};
    return std::nullopt;
  };
  // Order matters only for duplicates: the last AddedToken with a given content sets its flags.
  std::vector<std::pair<std::string, TokenEntry>> entries;
  const std::pair<const char*, const char*> keys[] = {
      {"bos_token", kStartOfText}, {"eos_token", kEndOfText}, {"unk_token", kEndOfText},
      {"sep_token", nullptr},      {"pad_token", kEndOfText}, {"cls_token", nullptr},
      {"mask_token", nullptr}};
  for (const auto& [key, fallback] : keys)
    if (auto e = entry_for(key, fallback)) entries.emplace_back(key, *e);
  for (const json* src : {&token_map, &config}) {
    if (!src->contains("additional_special_tokens")) continue;
    const json& list = (*src)["additional_special_tokens"];
    const std::string& file = src == &token_map ? map_path : config_path;
    if (!list.is_array()) fail(file + ": additional_special_tokens is not a list");
    for (const json& v : list)
      if (auto e = parse_token_entry(v, file, "additional_special_tokens"))
        entries.emplace_back("additional_special_tokens", *e);
    break;  // the special_tokens_map.json list replaces the tokenizer_config.json one
  }

  auto special_id = [&](const std::string& key, const std::string& content) {
    if (tok.added_.count(content) == 0 && tok.vocab_.count(content) == 0)
      fail(vocab_path + ": has no id for " + key + " \"" + content + "\"");
    return tok.id_of(content);
  };
  for (const auto& [key, entry] : entries) {
    const int id = special_id(key, entry.content);
    if (key == "bos_token") tok.bos_id_ = id;
    if (key == "eos_token") tok.eos_id_ = id;
    if (key == "unk_token") tok.unk_id_ = id;
    if (key == "pad_token") tok.pad_id_ = id;
    const std::u32string content = unicode::decode_utf8(entry.content, key);
    if (content.empty()) fail(config_path + ": " + key + " is empty");
    SpecialToken* special = nullptr;
    for (auto& s : tok.specials_)
      if (s.content == content) special = &s;
    if (!special) {
      tok.specials_.push_back({content, id});
      special = &tok.specials_.back();
    }
    if (entry.added_token) {
      special->strip_left = entry.lstrip;
      special->strip_right = entry.rstrip;
    }
  }
  // Added tokens behave like special tokens given as plain strings (never split, strip around).
  for (const auto& [text, id] : tok.added_) {
    const std::u32string content = unicode::decode_utf8(text, added_path);
    bool known = false;
    for (const auto& s : tok.specials_) known = known || s.content == content;
    if (!known && !content.empty()) tok.specials_.push_back({content, id});
  }

  if (config.contains("model_max_length")) {
    const json& m = config["model_max_length"];
    if (!m.is_number() || m.get<double>() < 2 || m.get<double>() > 65536 ||
        m.get<double>() != static_cast<double>(static_cast<int64_t>(m.get<double>())))
      fail(config_path + ": model_max_length " + m.dump() +
           " is not a usable sequence length (expected an integer in [2, 65536])");
    tok.max_length_ = static_cast<int>(m.get<double>());
  }
  return tok;
}

int ClipTokenizer::vocab_id(const std::string& symbol) const {
  if (auto it = added_.find(symbol); it != added_.end()) return it->second;
  if (auto it = vocab_.find(symbol); it != vocab_.end()) return it->second;
  return -1;
}

int ClipTokenizer::id_of(const std::string& token) const {
  if (auto it = added_.find(token); it != added_.end()) return it->second;
  if (auto it = vocab_.find(token); it != vocab_.end()) return it->second;
  return unk_id_;
}

// CLIP's BPE loop (merge every occurrence of the lowest-ranked adjacent pair, left to right, until
// no pair has a rank) in O(n log n) instead of O(n^2) per word: the symbols form a linked list and
// the candidate pairs a min-heap by (rank, position). All pairs of one rank are merged, in
// position order, before the pairs those merges create are queued (a merge never creates a pair
// of its own rank), which is exactly what the reference's rounds do.
std::vector<std::string> ClipTokenizer::bpe_merge(std::vector<std::string> sym) const {
  const int n = static_cast<int>(sym.size());
  if (n < 2) return sym;
  std::vector<int> prev(n), next(n);
  std::vector<char> alive(n, 1);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  std::string key;
  auto rank_at = [&](int i) {  // rank of the pair starting at symbol i, INT_MAX if none
    if (i < 0 || next[i] < 0) return INT_MAX;
    key.assign(sym[i]).append(1, ' ').append(sym[next[i]]);
    const auto it = merge_ranks_.find(key);
    return it == merge_ranks_.end() ? INT_MAX : it->second;
  };
  using Entry = std::pair<int, int>;  // rank, position of the pair's left symbol
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  for (int i = 0; i + 1 < n; ++i)
    if (const int r = rank_at(i); r != INT_MAX) heap.push({r, i});
  std::vector<int> merged;
  while (!heap.empty()) {
    const int rank = heap.top().first;
    merged.clear();
    while (!heap.empty() && heap.top().first == rank) {
      const int i = heap.top().second;
      heap.pop();
      // Stale entries: the left symbol was merged away, or its pair changed since queued.
      if (!alive[i] || rank_at(i) != rank) continue;
      const int j = next[i];
      sym[i] += sym[j];
      alive[j] = 0;
      next[i] = next[j];
      if (next[j] >= 0) prev[next[j]] = i;
      merged.push_back(i);
    }
    for (const int i : merged)
      for (const int p : {prev[i], i})
        if (const int r = rank_at(p); r != INT_MAX) heap.push({r, p});
  }
  std::vector<std::string> out;
  for (int i = 0; i >= 0; i = next[i]) out.push_back(std::move(sym[i]));
  return out;
}

std::vector<int> ClipTokenizer::bpe_ids(const std::string& word) const {
  {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    if (auto it = cache_->ids.find(word); it != cache_->ids.end()) return it->second;
  }
  std::vector<int> ids;
  if (word == kStartOfText || word == kEndOfText) {
    // The pre-tokenizer's special-token matches bypass BPE (and get no '</w>').
    ids.push_back(id_of(word));
  } else {
    // Split into byte symbols (one UTF-8 character each); the last one carries '</w>'.
    std::vector<std::string> symbols;
    for (size_t i = 0; i < word.size();) {
      const unsigned char lead = static_cast<unsigned char>(word[i]);
      const size_t len = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
      symbols.emplace_back(word.substr(i, len));
      i += len;
    }
    symbols.back() += "</w>";
    symbols = bpe_merge(std::move(symbols));
    for (const auto& s : symbols) ids.push_back(id_of(s));
  }
  // Only short words are cached: 65536 cached 128 KB words would hold 8 GB.
  if (word.size() > kMaxCachedWordBytes) return ids;
  std::lock_guard<std::mutex> lock(cache_->mutex);
  if (cache_->ids.size() >= kMaxCachedWords) cache_->ids.clear();
  cache_->ids.emplace(word, ids);
  return ids;
}

std::vector<int> ClipTokenizer::encode_text_piece(const std::u32string& piece) const {
  const std::u32string text = unicode::to_lower(collapse_whitespace(fix_text_like_ftfy(piece)));
  const auto& symbols = byte_symbols();
  std::vector<int> ids;
  std::string word;
  for (std::u32string_view token : clip_pretokenize(text)) {
    word.clear();
    for (unsigned char b : unicode::encode_utf8(token)) word += symbols[b];
    const std::vector<int> word_ids = bpe_ids(word);
    ids.insert(ids.end(), word_ids.begin(), word_ids.end());
  }
  return ids;
}

std::vector<int> ClipTokenizer::tokenize(const std::string& text) const {
  if (text.size() > limits::kMaxPromptBytes)
    fail("prompt of " + std::to_string(text.size()) + " bytes is longer than the bound of " +
         std::to_string(limits::kMaxPromptBytes) + " bytes");
  const std::u32string u = unicode::decode_utf8(text, "prompt");
  // Split off special tokens: leftmost match first, the longest one where several start there.
  std::vector<std::u32string> pieces;
  size_t start = 0;
  for (size_t i = 0; i < u.size();) {
    const SpecialToken* found = nullptr;
    for (const auto& s : specials_)
      if (u.compare(i, s.content.size(), s.content) == 0 &&
          (!found || s.content.size() > found->content.size()))
        found = &s;
    if (!found) {
      ++i;
      continue;
    }
    if (i > start) pieces.push_back(u.substr(start, i - start));
    pieces.push_back(found->content);
    i += found->content.size();
    start = i;
  }
  if (start < u.size()) pieces.push_back(u.substr(start));

  auto special_of = [&](const std::u32string& piece) -> const SpecialToken* {
    for (const auto& s : specials_)
      if (s.content == piece) return &s;
    return nullptr;
  };
  // Whitespace next to special tokens is stripped the way transformers does it.
  for (size_t i = 0; i < pieces.size(); ++i) {
    const SpecialToken* s = special_of(pieces[i]);
    if (!s) continue;
    if (s->strip_right && i + 1 < pieces.size() && !pieces[i + 1].empty())
      pieces[i + 1] = lstrip(pieces[i + 1]);
    if (s->strip_left && i > 0 && !pieces[i - 1].empty()) pieces[i - 1] = rstrip(pieces[i - 1]);
  }
  std::vector<int> ids;
  for (const auto& piece : pieces) {
    if (piece.empty()) continue;
    if (const SpecialToken* s = special_of(piece)) {
      ids.push_back(s->id);
    } else {
      const std::vector<int> piece_ids = encode_text_piece(piece);
      ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
    }
  }
  return ids;
}

std::vector<int> ClipTokenizer::encode(const std::string& text) const {
  std::vector<int> ids{bos_id_};
  const std::vector<int> content = tokenize(text);
  ids.insert(ids.end(), content.begin(), content.end());
  ids.push_back(eos_id_);
  return ids;
}

std::vector<int> ClipTokenizer::encode_padded(const std::string& text, int* dropped_tokens) const {
  std::vector<int> content = tokenize(text);
  const size_t room = static_cast<size_t>(max_length_) - 2;
  const size_t dropped = content.size() > room ? content.size() - room : 0;
  content.resize(content.size() - dropped);
  if (dropped_tokens) *dropped_tokens = static_cast<int>(dropped);
  std::vector<int> ids;
  ids.reserve(max_length_);
  ids.push_back(bos_id_);
  ids.insert(ids.end(), content.begin(), content.end());
  ids.push_back(eos_id_);
  ids.resize(max_length_, pad_id_);
  return ids;
}

}  // namespace sdpal
