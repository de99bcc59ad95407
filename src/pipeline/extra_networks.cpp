#include "pipeline/extra_networks.h"

#include "core/unicode_text.h"

namespace sdpal {
namespace {

// Length of the run of Python \w characters (letters, numbers, '_') at byte i; ASCII-only
// bytes are decoded directly, other UTF-8 sequences through decode_utf8.
size_t word_run(std::string_view s, size_t i) {
  size_t j = i;
  while (j < s.size()) {
    const auto b = static_cast<unsigned char>(s[j]);
    if (b < 0x80) {
      if (!(b == '_' || (b >= '0' && b <= '9') || ((b | 0x20) >= 'a' && (b | 0x20) <= 'z'))) break;
      ++j;
      continue;
    }
    const size_t n = (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    if (n == 0 || j + n > s.size()) break;
    std::u32string cp;
    try {
      cp = unicode::decode_utf8(s.substr(j, n), "prompt");
    } catch (...) {
      break;
    }
    if (cp.size() != 1 || !(unicode::is_letter(cp[0]) || unicode::is_number(cp[0]))) break;
    j += n;
  }
  return j - i;
}

}  // namespace

std::string strip_extra_networks(std::string_view prompt, std::vector<ExtraNetworkTag>* tags) {
  std::string out;
  size_t i = 0, copied = 0;
  while ((i = prompt.find('<', i)) != std::string_view::npos) {
    const size_t name_len = word_run(prompt, i + 1);
    const size_t colon = i + 1 + name_len;
    const size_t close = colon + 1 < prompt.size() ? prompt.find('>', colon + 1) : prompt.npos;
    if (name_len == 0 || colon >= prompt.size() || prompt[colon] != ':' || close == prompt.npos ||
        close == colon + 1) {
      ++i;
      continue;
    }
    ExtraNetworkTag tag{std::string(prompt.substr(i + 1, name_len)), {}};
    const std::string_view args = prompt.substr(colon + 1, close - colon - 1);
    size_t a = 0;
    for (size_t b; (b = args.find(':', a)) != args.npos; a = b + 1)
      tag.args.emplace_back(args.substr(a, b - a));
    tag.args.emplace_back(args.substr(a));
    if (tags) tags->push_back(std::move(tag));
    out.append(prompt.substr(copied, i - copied));
    i = copied = close + 1;
  }
  out.append(prompt.substr(copied));
  return out;
}

}  // namespace sdpal
