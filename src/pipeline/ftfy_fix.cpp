#include "pipeline/ftfy_fix.h"

#include <unicode/uchar.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>

#include "core/unicode_text.h"
#include "pipeline/html_entities.h"

namespace sdpal {

namespace {

// Windows-1252 meaning of the bytes 0x80..0x9F; the five undefined ones keep their Latin-1 code
// point (Python's html module and ftfy's "sloppy-windows-1252" agree on this table).
constexpr std::array<char32_t, 32> kCp1252High = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};

bool is_ascii_alnum(char32_t c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool is_hex_digit(char32_t c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// Python's html.unescape() of a complete "&#...;" reference whose body is `body`; nullopt when
// it would not consume the whole reference (ftfy then keeps the text as written).
std::optional<std::u32string> decode_numeric_reference(std::u32string_view body) {
  const bool hex = body[0] == 'x' || body[0] == 'X';
  const std::u32string_view digits = hex ? body.substr(1) : body;
  if (digits.empty()) return std::nullopt;
  uint64_t num = 0;
  for (char32_t c : digits) {
    if (hex ? !is_hex_digit(c) : !(c >= '0' && c <= '9')) return std::nullopt;
    const uint64_t d = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
    num = std::min<uint64_t>(num * (hex ? 16 : 10) + d, 0x110000);  // saturate: all too big
  }
  if (num == 0) return U"\uFFFD";
  if (num == 0x0D) return U"\r";
  if (num >= 0x80 && num <= 0x9F) return std::u32string(1, kCp1252High[num - 0x80]);
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return U"\uFFFD";
  const bool noncharacter = (num >= 0xFDD0 && num <= 0xFDEF) || (num & 0xFFFE) == 0xFFFE;
  if ((num >= 0x01 && num <= 0x08) || num == 0x0B || (num >= 0x0E && num <= 0x1F) || num == 0x7F ||
      noncharacter)
    return U"";
  // ftfy keeps the reference when the decoded text contains ';'.
  if (num == ';') return std::nullopt;
  return std::u32string(1, static_cast<char32_t>(num));
}

void fix_c1_controls(std::u32string& text) {
  for (char32_t& c : text)
    if (c >= 0x80 && c <= 0x9F) c = kCp1252High[c - 0x80];
}

struct Ligature {
  char32_t c;
  std::u32string_view letters;
};
// The Latin ligatures and digraph letters ftfy splits (other scripts' ligatures are kept).
constexpr Ligature kLigatures[] = {
    {0x0132, U"IJ"},      {0x0133, U"ij"},      {0x0149, U"\u02BCn"}, {0x01C4, U"D\u017D"},
    {0x01C5, U"D\u017E"}, {0x01C6, U"d\u017E"}, {0x01C7, U"LJ"},      {0x01C8, U"Lj"},
    {0x01C9, U"lj"},      {0x01CA, U"NJ"},      {0x01CB, U"Nj"},      {0x01CC, U"nj"},
    {0x01F1, U"DZ"},      {0x01F2, U"Dz"},      {0x01F3, U"dz"},      {0xFB00, U"ff"},
    {0xFB01, U"fi"},      {0xFB02, U"fl"},      {0xFB03, U"ffi"},     {0xFB04, U"ffl"},
    {0xFB05, U"\u017Ft"}, {0xFB06, U"st"}};

std::u32string fix_latin_ligatures(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    const Ligature* hit = nullptr;
    if ((c >= 0x0132 && c <= 0x01F3) || (c >= 0xFB00 && c <= 0xFB06))
      for (const Ligature& l : kLigatures)
        if (l.c == c) hit = &l;
    if (hit)
      out += hit->letters;
    else
      out.push_back(c);
  }
  return out;
}

// Half-width and full-width forms (U+FF01..U+FFEF) map to their NFKC form; U+3000 to a space.
std::u32string fix_character_width(std::u32string_view text) {
  static const std::array<std::u32string, 0xFFF0 - 0xFF01> kNarrow = [] {
    std::array<std::u32string, 0xFFF0 - 0xFF01> table;
    for (char32_t c = 0xFF01; c < 0xFFF0; ++c) table[c - 0xFF01] = unicode::nfkc({&c, 1});
    return table;
  }();
  std::u32string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    if (c == 0x3000)
      out.push_back(' ');
    else if (c >= 0xFF01 && c < 0xFFF0)
      out += kNarrow[c - 0xFF01];
    else
      out.push_back(c);
  }
  return out;
}

void uncurl_quotes(std::u32string& text) {
  for (char32_t& c : text) {
    if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B))
      c = '\'';
    else if (c >= 0x201C && c <= 0x201F)
      c = '"';
  }
}

std::u32string fix_line_breaks(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char32_t c = text[i];
    if (c == '\r') {
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
      out.push_back('\n');
    } else if (c == 0x2028 || c == 0x2029 || c == 0x85) {
      out.push_back('\n');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// Removes ESC '[' (decimal digit | ';')* ASCII-letter sequences (colour codes and the like).
std::u32string remove_terminal_escapes(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == 0x1B && i + 1 < text.size() && text[i + 1] == '[') {
      size_t j = i + 2;
      while (j < text.size() && (text[j] == ';' || u_charType(static_cast<UChar32>(text[j])) ==
                                                       U_DECIMAL_DIGIT_NUMBER))
        ++j;
      if (j < text.size() && text[j] < 0x80 && (text[j] | 0x20) >= 'a' && (text[j] | 0x20) <= 'z') {
        i = j;
        continue;
      }
    }
    out.push_back(text[i]);
  }
  return out;
}

bool is_removed_control(char32_t c) {
  return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F ||
         (c >= 0x206A && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

std::u32string remove_control_chars(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t c : text)
    if (!is_removed_control(c)) out.push_back(c);
  return out;
}

// The longest HTML reference body (letters/digits between '&' or "&#" and ';').
constexpr size_t kMaxReferenceBody = 24;

// The reference starting at buf[i] == '&': its decoded text, or nullopt when buf[i, end] is not
// a reference that ftfy decodes; `end` receives the index of its ';' when there is one.
std::optional<std::u32string> reference_at(std::u32string_view buf, size_t i, size_t* end) {
  const bool numeric = i + 1 < buf.size() && buf[i + 1] == '#';
  const size_t body_start = i + (numeric ? 2 : 1);
  size_t e = body_start;
  // Bounded scan: a longer run of letters is no reference anyway.
  while (e < buf.size() && e - body_start <= kMaxReferenceBody && is_ascii_alnum(buf[e])) ++e;
  const size_t body_len = e - body_start;
  *end = e;
  if (body_len < 1 || body_len > kMaxReferenceBody || e >= buf.size() || buf[e] != ';')
    return std::nullopt;
  const std::u32string_view body = buf.substr(body_start, body_len);
  if (numeric) return decode_numeric_reference(body);
  const std::string name(body.begin(), body.end());  // ASCII by construction
  if (auto value = find_html_entity(name)) return std::u32string(*value);
  return std::nullopt;
}

// ftfy's fix_and_explain() on one segment, minus the mojibake repair.
std::u32string fix_segment(std::u32string text, bool unescape_html) {
  for (int round = 0; round < kMaxFtfyRounds; ++round) {
    const std::u32string before = text;
    if (unescape_html) text = unescape_html_fully(text);
    fix_c1_controls(text);
    text = fix_latin_ligatures(text);
    text = fix_character_width(text);
    uncurl_quotes(text);
    text = fix_line_breaks(text);
    text = remove_terminal_escapes(text);
    text = remove_control_chars(text);
    text = unicode::nfc(text);
    if (text == before) return text;
  }
  return text;
}

}  // namespace

std::u32string unescape_html_like_ftfy(std::u32string_view text) {
  // References look like &name; or &#digits; with 1 to 24 ASCII letters/digits.
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] != '&') {
      out.push_back(text[i++]);
      continue;
    }
    const bool numeric = i + 1 < text.size() && text[i + 1] == '#';
    const size_t body_start = i + (numeric ? 2 : 1);
    size_t end = body_start;
    while (end < text.size() && is_ascii_alnum(text[end])) ++end;
    const size_t body_len = end - body_start;
    if (body_len < 1 || body_len > 24 || end >= text.size() || text[end] != ';') {
      out.push_back(text[i++]);
      continue;
    }
    const std::u32string_view body = text.substr(body_start, body_len);
    std::optional<std::u32string> decoded;
    if (numeric) {
      decoded = decode_numeric_reference(body);
    } else {
      std::string name(body.begin(), body.end());  // ASCII by construction
      if (auto value = find_html_entity(name)) decoded = std::u32string(*value);
    }
    if (decoded) {
      out += *decoded;
    } else {
      out.append(text.substr(i, end + 1 - i));
    }
    i = end + 1;
  }
  return out;
}

std::u32string unescape_html_fully(std::u32string_view text) {
  // One buffer: output buf[0, w), unread input buf[r, n), w <= r (every decoding shrinks). After a
  // reference is decoded, the output from the first '&' that could now start a new reference
  // (at most 2 + kMaxReferenceBody characters before the decoded text) is moved back in front of
  // the input and read again; what a further pass would decode is decoded now. Each decoding
  // shortens the text, and each re-read is bounded, so the whole is linear.
  constexpr size_t kLookBack = kMaxReferenceBody + 2;
  std::u32string buf(text);
  size_t w = 0, r = 0;
  while (r < buf.size()) {
    if (buf[r] != '&') {
      buf[w++] = buf[r++];
      continue;
    }
    size_t end = 0;
    const std::optional<std::u32string> decoded = reference_at(buf, r, &end);
    if (!decoded) {
      // Not a reference: copy it (through its ';' when it has the shape of one, as one pass does).
      const size_t stop = end < buf.size() && buf[end] == ';' ? end + 1 : r + 1;
      while (r < stop) buf[w++] = buf[r++];
      continue;
    }
    const size_t start = w;
    for (char32_t c : *decoded) buf[w++] = c;
    r = end + 1;
    size_t back = w;
    for (size_t q = start > kLookBack ? start - kLookBack : 0; q < w; ++q)
      if (buf[q] == '&') {
        back = q;
        break;
      }
    if (back < w && w < r) {
      std::copy_backward(buf.begin() + back, buf.begin() + w, buf.begin() + r);
      r -= w - back;
      w = back;
    } else if (back < w) {  // w == r: the text to re-read is already in front of the input
      r = back;
      w = back;
    }
  }
  buf.resize(w);
  return buf;
}

std::u32string fix_text_like_ftfy(std::u32string_view text) {
  // ftfy fixes line by line (at most 1e6 code points at a time); HTML un-escaping is turned off
  // for the rest of the text from the first line that contains a literal '<'.
  constexpr size_t kMaxSegment = 1000000;
  std::u32string out;
  out.reserve(text.size());
  bool unescape_html = true;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t newline = text.find('\n', pos);
    size_t end = newline == std::u32string_view::npos ? text.size() : newline + 1;
    end = std::min(end, pos + kMaxSegment);
    const std::u32string_view segment = text.substr(pos, end - pos);
    if (segment.find('<') != std::u32string_view::npos) unescape_html = false;
    out += fix_segment(std::u32string(segment), unescape_html);
    pos = end;
  }
  return out;
}

}  // namespace sdpal
