// A1111's prompt emphasis syntax, with the semantics of stable-diffusion-webui's
// prompt_parser.parse_prompt_attention (webui 1.6+, weights may have spaces around them):
//   (text) x1.1   ((text)) x1.21   [text] /1.1   (text:1.5) x1.5   nesting multiplies
//   \( \) \[ \] \\  literal characters        BREAK  ends the current 75-token chunk
// Unbalanced brackets are closed at the end of the prompt (with their default multiplier); a
// ')' or ']' with nothing open, a stray ':' and "(text:w)" text whose ':w)' has no '(' open are
// plain text. Runs of equal weight are merged, as A1111 does.
// Approximations: Python's \d (any Unicode decimal digit) is ASCII digits here.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace sdpal {

struct PromptRun {
  std::string text;
  double weight = 1.0;  // A1111 computes weights in double; -1 with text "BREAK" is a chunk break
  bool operator==(const PromptRun&) const = default;
};

// True for the marker A1111 emits for BREAK (text "BREAK", weight exactly -1). As in A1111, a
// BREAK inside brackets gets its weight multiplied and is then ordinary text.
bool is_chunk_break(const PromptRun& r);

// Splits `prompt` (UTF-8; other bytes pass through as text) into weighted runs. Never empty: an
// empty prompt gives one run ("", 1). Throws sdpal::Error for a weight such as "(a:1.2.3)" that
// matches the syntax but is not a number (A1111 fails on it too).
std::vector<PromptRun> parse_prompt_attention(std::string_view prompt);

}  // namespace sdpal
