#include "pipeline/prompt_syntax.h"

#include <charconv>

#include "core/error.h"
#include "core/limits.h"
#include "core/unicode_text.h"

namespace sdpal {
namespace {

constexpr double kRoundMultiplier = 1.1;
constexpr double kSquareMultiplier = 1 / 1.1;

// One code point of `s` at byte `i` and its length; invalid UTF-8 gives U+FFFD over one byte
// (it is never a space or a word character, which is all the parser asks).
char32_t code_point_at(std::string_view s, size_t i, size_t* len) {
  const auto b = static_cast<unsigned char>(s[i]);
  int n = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + n > s.size()) {
    *len = 1;
    return 0xFFFD;
  }
  char32_t c = n == 1 ? b : b & (0x7F >> n);
  for (int k = 1; k < n; ++k) {
    const auto cb = static_cast<unsigned char>(s[i + k]);
    if ((cb & 0xC0) != 0x80) {
      *len = 1;
      return 0xFFFD;
    }
    c = (c << 6) | (cb & 0x3F);
  }
  *len = n;
  return c;
}

bool is_space_at(std::string_view s, size_t i, size_t* len) {
  return unicode::is_python_space(code_point_at(s, i, len));
}

// Python's \w for str: letters, numbers and '_'.
bool is_word_char(char32_t c) {
  return c == U'_' || unicode::is_letter(c) || unicode::is_number(c);
}

bool word_char_before(std::string_view s, size_t i) {
  if (i == 0) return false;
  size_t start = i - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80 && i - start < 4)
    --start;
  size_t len = 0;
  const char32_t c = code_point_at(s, start, &len);
  return start + len == i && is_word_char(c);
}

bool word_char_at(std::string_view s, size_t i) {
  if (i >= s.size()) return false;
  size_t len = 0;
  return is_word_char(code_point_at(s, i, &len));
}

size_t skip_spaces(std::string_view s, size_t i) {
  size_t len = 0;
  while (i < s.size() && is_space_at(s, i, &len)) i += len;
  return i;
}

// re.split(r"\s*\bBREAK\b\s*", text), appending the parts with BREAK markers between them.
void append_text_splitting_breaks(std::string_view text, std::vector<PromptRun>& out) {
  size_t part_start = 0, p = 0;
  while (p < text.size()) {
    const size_t b = skip_spaces(text, p);
    const size_t e = b + 5;
    if (text.substr(b, 5) == "BREAK" && !word_char_before(text, b) && !word_char_at(text, e)) {
      out.push_back({std::string(text.substr(part_start, p - part_start)), 1.0});
      out.push_back({"BREAK", -1.0});
      p = part_start = skip_spaces(text, e);
      continue;
    }
    size_t len = 0;
    code_point_at(text, p, &len);
    p += len;
  }
  out.push_back({std::string(text.substr(part_start)), 1.0});
}

// The weight alternative of A1111's regex at a ':' (position i): `:\s*([+-]?[.\d]+)\s*\)`.
// Returns the match length (0 if none) and the weight's text.
size_t match_weight(std::string_view s, size_t i, std::string_view* number) {
  size_t j = skip_spaces(s, i + 1);
  const size_t num_start = j;
  if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
  const size_t digits_start = j;
  while (j < s.size() && (s[j] == '.' || (s[j] >= '0' && s[j] <= '9'))) ++j;
  if (j == digits_start) return 0;
  *number = s.substr(num_start, j - num_start);
  j = skip_spaces(s, j);
  if (j >= s.size() || s[j] != ')') return 0;
  return j + 1 - i;
}

// Python's float() of the matched number; the syntax admits "." or "1.2.3", which A1111 fails on.
double parse_weight(std::string_view number, std::string_view prompt) {
  std::string_view digits = number;
  double sign = 1;
  if (!digits.empty() && (digits[0] == '+' || digits[0] == '-')) {
    sign = digits[0] == '-' ? -1 : 1;
    digits.remove_prefix(1);
  }
  double v = 0;
  const auto [end, ec] =
      std::from_chars(digits.data(), digits.data() + digits.size(), v, std::chars_format::fixed);
  if (ec != std::errc() || end != digits.data() + digits.size()) {
    std::string shown(prompt.substr(0, 200));
    throw Error("prompt: the emphasis weight '" + std::string(number) +
                "' is not a number (write it like (text:1.2)); prompt: \"" + shown +
                (prompt.size() > 200 ? "...\"" : "\""));
  }
  return sign * v;
}

}  // namespace

bool is_chunk_break(const PromptRun& r) { return r.weight == -1.0 && r.text == "BREAK"; }

std::vector<PromptRun> parse_prompt_attention(std::string_view s) {
  std::vector<PromptRun> res;
  std::vector<size_t> round, square;
  auto multiply_from = [&res](size_t start, double m) {
    for (size_t p = start; p < res.size(); ++p) res[p].weight *= m;
  };
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '\\') {
      // \( \) \[ \] \\ are literals; a lone backslash adds an empty run (A1111's text[1:]).
      const bool escape =
          i + 1 < s.size() && std::string_view("()[]\\").find(s[i + 1]) != std::string_view::npos;
      res.push_back({escape ? std::string(1, s[i + 1]) : std::string(), 1.0});
      i += escape ? 2 : 1;
    } else if (c == '(' || c == '[') {
      SDPAL_CHECK(round.size() + square.size() < limits::kMaxPromptBracketDepth,
                  "prompt: more than " + std::to_string(limits::kMaxPromptBracketDepth) +
                      " emphasis brackets open at once (at byte " + std::to_string(i) +
                      "); write a literal bracket as \\( or \\[");
      (c == '(' ? round : square).push_back(res.size());
      ++i;
    } else if (c == ':') {
      std::string_view number;
      const size_t n = match_weight(s, i, &number);
      if (n > 0 && !round.empty()) {
        multiply_from(round.back(), parse_weight(number, s));
        round.pop_back();
      } else {
        append_text_splitting_breaks(s.substr(i, n > 0 ? n : 1), res);
      }
      i += n > 0 ? n : 1;
    } else if (c == ')' && !round.empty()) {
      multiply_from(round.back(), kRoundMultiplier);
      round.pop_back();
      ++i;
    } else if (c == ']' && !square.empty()) {
      multiply_from(square.back(), kSquareMultiplier);
      square.pop_back();
      ++i;
    } else if (c == ')' || c == ']') {
      append_text_splitting_breaks(s.substr(i, 1), res);
      ++i;
    } else {
      size_t j = i;
      while (j < s.size() && std::string_view("\\()[]:").find(s[j]) == std::string_view::npos) ++j;
      append_text_splitting_breaks(s.substr(i, j - i), res);
      i = j;
    }
  }
  for (size_t pos : round) multiply_from(pos, kRoundMultiplier);
  for (size_t pos : square) multiply_from(pos, kSquareMultiplier);
  if (res.empty()) res.push_back({"", 1.0});
  // Merge runs of identical weights.
  std::vector<PromptRun> merged;
  for (auto& r : res) {
    if (!merged.empty() && merged.back().weight == r.weight)
      merged.back().text += r.text;
    else
      merged.push_back(std::move(r));
  }
  return merged;
}

}  // namespace sdpal
