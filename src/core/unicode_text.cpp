#include "core/unicode_text.h"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <algorithm>

#include "core/error.h"

namespace sdpal::unicode {

namespace {

icu::UnicodeString to_icu(std::u32string_view text) {
  return icu::UnicodeString::fromUTF32(reinterpret_cast<const UChar32*>(text.data()),
                                       static_cast<int32_t>(text.size()));
}

std::u32string from_icu(const icu::UnicodeString& s) {
  std::u32string out;
  out.reserve(static_cast<size_t>(s.length()));
  for (int32_t i = 0; i < s.length();) {
    const UChar32 c = s.char32At(i);
    out.push_back(static_cast<char32_t>(c));
    i += U16_LENGTH(c);
  }
  return out;
}

bool all_below(std::u32string_view text, char32_t limit) {
  return std::all_of(text.begin(), text.end(), [limit](char32_t c) { return c < limit; });
}

std::u32string normalize(const icu::Normalizer2* (*instance)(UErrorCode&), std::u32string_view text,
                         const char* form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* norm = instance(status);
  if (U_FAILURE(status)) fail(std::string("ICU: cannot load the ") + form + " normalizer");
  const icu::UnicodeString out = norm->normalize(to_icu(text), status);
  if (U_FAILURE(status)) fail(std::string("ICU: ") + form + " normalisation failed");
  return from_icu(out);
}

}  // namespace

std::u32string decode_utf8(std::string_view bytes, const std::string& what) {
  std::u32string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  auto bad = [&]() { fail(what + " is not valid UTF-8 (byte offset " + std::to_string(i) + ")"); };
  while (i < n) {
    const unsigned char b = p[i];
    if (b < 0x80) {
      out.push_back(b);
      ++i;
      continue;
    }
    int len = 0;
    char32_t c = 0;
    char32_t min = 0;
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2, c = b & 0x1F, min = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3, c = b & 0x0F, min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4, c = b & 0x07, min = 0x10000;
    } else {
      bad();
    }
    if (i + len > n) bad();
    for (int k = 1; k < len; ++k) {
      const unsigned char cont = p[i + k];
      if ((cont & 0xC0) != 0x80) bad();
      c = (c << 6) | (cont & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) bad();
    out.push_back(c);
    i += len;
  }
  return out;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string encode_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) append_utf8(out, c);
  return out;
}

std::u32string nfc(std::u32string_view text) {
  // Nothing below U+0300 composes or decomposes under NFC: skip ICU for plain prompts.
  if (all_below(text, 0x300)) return std::u32string(text);
  return normalize(&icu::Normalizer2::getNFCInstance, text, "NFC");
}

std::u32string nfkc(std::u32string_view text) {
  if (all_below(text, 0xA0)) return std::u32string(text);
  return normalize(&icu::Normalizer2::getNFKCInstance, text, "NFKC");
}

std::u32string to_lower(std::u32string_view text) {
  if (all_below(text, 0x80)) {
    std::u32string out(text);
    for (char32_t& c : out)
      if (c >= 'A' && c <= 'Z') c += 'a' - 'A';
    return out;
  }
  icu::UnicodeString s = to_icu(text);
  s.toLower(icu::Locale::getRoot());
  return from_icu(s);
}

char32_t fold_case(char32_t c) {
  return static_cast<char32_t>(u_foldCase(static_cast<UChar32>(c), U_FOLD_CASE_DEFAULT));
}

std::array<char32_t, 4> case_variants(char32_t c) {
  const auto u = static_cast<UChar32>(c);
  return {fold_case(c), static_cast<char32_t>(u_tolower(u)), static_cast<char32_t>(u_toupper(u)),
          static_cast<char32_t>(u_totitle(u))};
}

bool is_letter(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_L_MASK) != 0;
}

bool is_number(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_N_MASK) != 0;
}

bool is_white_space(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
  return u_isUWhiteSpace(static_cast<UChar32>(c)) != 0;
}

bool is_python_space(char32_t c) { return is_white_space(c) || (c >= 0x1C && c <= 0x1F); }

}  // namespace sdpal::unicode
