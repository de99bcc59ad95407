// Text repair equivalent to ftfy.fix_text() with its default settings (ftfy 6.x), which the
// slow CLIPTokenizer applies before lower-casing. Steps, repeated until nothing changes:
// HTML entity un-escaping ("auto": skipped from the first line containing '<' on),
// C1 controls read as Windows-1252, Latin ligatures split (ﬁ -> fi), half/full-width forms
// narrowed (ＡＢ -> AB, U+3000 -> space), curly quotes straightened, line breaks unified,
// ANSI terminal escapes and invisible control characters removed, NFC normalisation.
//
// Not implemented: ftfy's mojibake heuristic (fix_encoding, e.g. "cafÃ©" -> "café"), whose
// detection rules change between ftfy releases; such text is tokenized as written.
#pragma once
#include <string>
#include <string_view>

namespace sdpal {

std::u32string fix_text_like_ftfy(std::u32string_view text);

// The individual steps, exposed for tests.
// One pass of Python's html.unescape() as ftfy applies it.
std::u32string unescape_html_like_ftfy(std::u32string_view text);
// unescape_html_like_ftfy repeated until the text stops changing, in linear time (repeating the
// pass costs O(n^2) on "&amp;amp;amp;...": one level per pass). fix_text_like_ftfy uses this.
std::u32string unescape_html_fully(std::u32string_view text);

// ftfy repeats its fixes until the text stops changing; sdpal stops after this many rounds (real
// text needs 2: nested references resolve in one round above), so that no input can make the
// repair cost more than a fixed number of linear passes.
inline constexpr int kMaxFtfyRounds = 16;

}  // namespace sdpal
