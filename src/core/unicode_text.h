// Unicode helpers for prompt text: UTF-8 <-> code points and the few Unicode properties and
// transforms (NFC/NFKC, full lower-casing, letter/number/space classes) the CLIP tokenizer needs.
// Properties and transforms come from ICU so they follow the Unicode tables, not hand-made ones.
#pragma once
#include <array>
#include <string>
#include <string_view>

namespace sdpal::unicode {

// Decodes UTF-8; throws sdpal::Error naming `what` and the byte offset on invalid input
// (overlong forms, surrogates, code points above U+10FFFF and truncated sequences included).
std::u32string decode_utf8(std::string_view bytes, const std::string& what);
std::string encode_utf8(std::u32string_view text);
void append_utf8(std::string& out, char32_t c);

std::u32string nfc(std::u32string_view text);
std::u32string nfkc(std::u32string_view text);
// Full, language-independent lower-casing like Python's str.lower() (e.g. U+0130 becomes
// "i" + U+0307, and a word-final capital sigma becomes final sigma).
std::u32string to_lower(std::u32string_view text);
// Simple case folding of one code point (what case-insensitive regex matching compares).
char32_t fold_case(char32_t c);
// The simple case mappings of c: folded, lower, upper and title case.
std::array<char32_t, 4> case_variants(char32_t c);

bool is_letter(char32_t c);        // General_Category L* (regex \p{L})
bool is_number(char32_t c);        // General_Category N* (regex \p{N})
bool is_white_space(char32_t c);   // White_Space property (the `regex` module's \s)
bool is_python_space(char32_t c);  // Python str.isspace(): White_Space plus U+001C..U+001F

}  // namespace sdpal::unicode
